#pragma once
/// @file RFC 7512 "pkcs11:" URIs that name keys on a token.

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "kms/error.h"
#include "pki/encoding.h"

namespace kms::hsm {

/// A parsed pkcs11: URI. Attribute values are percent-decoded byte strings.
class Pkcs11Uri {
 public:
  /// Parses "pkcs11:path-attrs[?query-attrs]". Fails on another scheme, a malformed
  /// percent escape, an empty or repeated attribute name, or a character RFC 7512 does
  /// not allow unescaped. Unknown standard-conforming attributes are kept.
  [[nodiscard]] static Result<Pkcs11Uri> parse(std::string_view text);

  /// A URI for a key: token label, object label, CKA_ID and object type.
  [[nodiscard]] static Pkcs11Uri forKey(std::string token, std::string object, const pki::Bytes& id,
                                        std::string type = "private");

  /// Formats with path attributes in insertion order; values are percent-encoded where
  /// needed, and "id" is always fully percent-encoded.
  [[nodiscard]] std::string toString() const;

  /// Value of a path attribute ("token", "object", "id", "type", ...).
  [[nodiscard]] std::optional<std::string> path(std::string_view name) const;
  /// Value of a query attribute ("pin-source", "module-path", ...).
  [[nodiscard]] std::optional<std::string> query(std::string_view name) const;
  /// The "id" attribute as bytes (empty when absent).
  [[nodiscard]] pki::Bytes id() const;

  void setPath(std::string name, std::string value);
  void setQuery(std::string name, std::string value);

  friend bool operator==(const Pkcs11Uri&, const Pkcs11Uri&) = default;

 private:
  std::vector<std::pair<std::string, std::string>> path_;
  std::vector<std::pair<std::string, std::string>> query_;
};

}  // namespace kms::hsm
