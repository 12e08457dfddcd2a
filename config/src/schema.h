#pragma once
/// @file The settings table: every key kmsd accepts, with its type, default and help.
///
/// One table feeds the unknown-key and type checks, the environment overrides, the
/// defaults and the documentation (the idea of PowerDNS' rec-rust-lib/table.py).

#include <span>
#include <string>
#include <string_view>

namespace kms::config::detail {

/// TOML type a key must have.
enum class Kind {
  string,
  integer,
  number,
  boolean,
  stringArray,
  tableArray,  ///< nested [[section.key]] entries, read by their own reader
};

/// One accepted key.
struct Setting {
  std::string_view section;  ///< "daemon", ..., "certificate"
  std::string_view key;      ///< "state_dir"
  Kind kind = Kind::string;
  std::string_view defaultText;  ///< applied when the key is absent; empty: no default
  std::string_view help;
};

/// The single-table sections, in file order; each can be overridden from the environment.
inline constexpr std::string_view kTableSections[] = {"daemon", "hsm", "sti_pa", "acme", "publisher", "signing", "metrics", "alerts"};
/// The array-of-tables section.
inline constexpr std::string_view kCertificateSection = "certificate";

/// All settings, grouped by section.
[[nodiscard]] std::span<const Setting> settings();

/// The setting for section/key, or nullptr when the key is unknown.
[[nodiscard]] const Setting* findSetting(std::string_view section, std::string_view key);

/// "a string", "an integer", "a number", "an array of strings".
[[nodiscard]] const char* kindName(Kind kind);

/// "KMSD_ACME_DIRECTORY_URL" for acme/directory_url.
[[nodiscard]] std::string envName(std::string_view section, std::string_view key);

}  // namespace kms::config::detail
