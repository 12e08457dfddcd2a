#pragma once
/// @file Validation of a parsed TOML document into a Config (private to kms_config).

#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <toml++/toml.h>

#include "config/config.h"
#include "schema.h"

namespace kms::config::detail {

/// Where an error points.
struct Position {
  std::string file;
  int line = 0;
  int column = 0;
};

/// Turns one parsed document (plus environment overrides) into a Config, collecting every
/// error instead of stopping at the first. Single use.
class Loader {
 public:
  explicit Loader(std::string sourceName, FileChecks files = FileChecks::on)
      : source_(std::move(sourceName)), files_(files) {}

  /// Applies `env` to `root` (which it modifies), then validates everything.
  [[nodiscard]] tl::expected<Config, ConfigErrors> load(toml::table& root, const Environment& env);
  /// As load, but the Config as far as it is valid together with every error.
  [[nodiscard]] ConfigRead read(toml::table& root, const Environment& env);
  [[nodiscard]] bool checksFiles() const { return files_ == FileChecks::on; }

  /// Position of a value: "env NAME" for an override, its source in the file, else `fallback`.
  [[nodiscard]] Position positionOf(const toml::node* node, const Position& fallback) const;
  /// Position of a table's header, or 1:1 when the table is not in the file.
  [[nodiscard]] Position headerOf(const toml::node& table) const;
  /// Position of a key as written in the file.
  [[nodiscard]] Position keyPosition(const toml::key& key) const;
  /// True when `node` was filled in from the settings table's default.
  [[nodiscard]] bool isDefault(const toml::node* node) const { return defaulted_.contains(node); }
  void markDefault(const toml::node* node) { defaulted_.insert(node); }

  void report(const Position& where, std::string section, std::string key, std::string what);

 private:
  void applyEnvironment(toml::table& root, const Environment& env);
  void checkRoot(const toml::table& root);
  void readCertificates(toml::table& root, Config& config);

  std::string source_;
  FileChecks files_;
  ConfigErrors errors_;
  std::map<const toml::node*, std::string> envOrigin_;  // node -> KMSD_* name
  std::set<const toml::node*> defaulted_;
  std::vector<std::string> applied_;
  const toml::node* firstSpc_ = nullptr;  // first certificate using spc, for the sti_pa rule
  std::string firstSpcLabel_;
};

/// Inserts (or replaces) `key` in `table` from text, typed as `kind`: arrays are
/// comma-separated. Returns the new node, or nullptr with `error` set.
const toml::node* setFromText(toml::table& table, std::string_view key, Kind kind, std::string_view text,
                              std::string& error);

}  // namespace kms::config::detail
