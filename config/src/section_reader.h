#pragma once
/// @file Typed, error-reporting access to the keys of one config table.

#include <chrono>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <toml++/toml.h>

#include "loader.h"

namespace kms::config::detail {

/// Whether an absent key is an error.
enum class Need { optional, required };

/// Reads one table (a section or one [[certificate]] entry). Every accessor reports its own
/// errors to the Loader under `[label] key:` and returns nullopt for a missing or bad value.
class SectionReader {
 public:
  /// @param label  section name in errors ("acme", "certificate.main")
  /// @param schema section name in the settings table ("acme", "certificate")
  SectionReader(Loader& loader, toml::table& table, std::string label, std::string_view schema);

  /// Reports unknown keys and wrong types; then fills absent keys from their defaults.
  void checkKeysAndApplyDefaults();

  [[nodiscard]] const std::string& label() const { return label_; }
  /// False when the files a setting names are not to be opened (FileChecks::off).
  [[nodiscard]] bool checksFiles() const { return loader_.checksFiles(); }
  [[nodiscard]] bool has(std::string_view key) const { return table_.contains(key); }
  [[nodiscard]] const toml::node* node(std::string_view key) const { return table_.get(key); }

  [[nodiscard]] std::optional<std::string> string(std::string_view key, Need need);
  [[nodiscard]] std::optional<std::int64_t> integer(std::string_view key, Need need);
  [[nodiscard]] std::optional<double> number(std::string_view key, Need need);
  [[nodiscard]] std::optional<bool> boolean(std::string_view key, Need need);
  /// The array's strings (only when every element is a string).
  [[nodiscard]] std::optional<std::vector<std::string>> strings(std::string_view key, Need need);

  /// A string that must be an absolute path.
  [[nodiscard]] std::optional<std::string> absolutePath(std::string_view key, Need need);
  /// A string that must be a URL accepted by checkUrl.
  [[nodiscard]] std::optional<std::string> url(std::string_view key, Need need);
  /// A path to a readable regular file (checkReadableFile).
  [[nodiscard]] std::optional<std::string> readableFile(std::string_view key, Need need);
  /// A readable file that decides what kmsd runs or whom it trusts: kms::checkOwnership too.
  [[nodiscard]] std::optional<std::string> trustedFile(std::string_view key, Need need);
  /// A trustedFile holding PEM certificates (trust anchors, CRL signer, CA bundles): every
  /// one must parse, and there must be at least one.
  [[nodiscard]] std::optional<std::string> pemFile(std::string_view key, Need need);
  /// A path to a secret file (checkSecretFile); content never kept.
  [[nodiscard]] std::optional<std::string> secretFile(std::string_view key, Need need);
  /// A non-empty string.
  [[nodiscard]] std::optional<std::string> nonEmpty(std::string_view key, Need need);

  /// Error about `key`'s value, at the value (or at the table header when absent).
  void fail(std::string_view key, std::string what);
  /// Error about element `index` of array `key`, reported as "key[index]".
  void failElement(std::string_view key, std::size_t index, std::string what);
  /// Error for an absent key, at the table header.
  void missing(std::string_view key, std::string what = "missing required key");

 private:
  const toml::node* present(std::string_view key, Need need);
  /// `value` when `check` finds nothing wrong with it, else nullopt and its problem reported
  /// on `key` (nullopt stays nullopt: its problem is already reported).
  using Check = std::function<std::optional<std::string>(const std::string&)>;
  std::optional<std::string> checked(std::string_view key, std::optional<std::string> value, const Check& check);
  /// `check` of a file a setting names, or no check with FileChecks::off.
  [[nodiscard]] Check fileCheck(Check check) const;

  Loader& loader_;
  toml::table& table_;
  std::string label_;
  std::string_view schema_;
  Position header_;
};

/// "string", "integer", "float", "boolean", "date", "time", "date-time", "array", "table".
[[nodiscard]] const char* typeName(const toml::node& node);

/// An optional integer within [min, max] ("must be between MIN and MAX, got N" otherwise).
/// `value` keeps its default when the key is absent or wrong.
void readInteger(SectionReader& r, std::string_view key, int min, int max, int& value);

/// An optional duration ("90s", "5m", ...) within [min, max]; `range` is the error text
/// for a value outside it. `value` keeps its default when the key is absent or wrong.
void readDuration(SectionReader& r, const char* key, std::chrono::seconds min, std::chrono::seconds max,
                  const char* range, std::chrono::seconds& value);

/// An optional string that must be one of `choices` (else `error` about it).
template <class E>
void readChoice(SectionReader& r, const char* key, std::initializer_list<std::pair<std::string_view, E>> choices,
                const char* error, E& value) {
  auto text = r.string(key, Need::optional);
  if (!text) {
    return;
  }
  for (const auto& [name, choice] : choices) {
    if (*text == name) {
      value = choice;
      return;
    }
  }
  r.fail(key, error);
}

}  // namespace kms::config::detail
