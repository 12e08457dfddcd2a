#pragma once
/// @file TNAuthList (RFC 8226 with errata: EXPLICIT tags) DER encoding and decoding.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kms/error.h"
#include "pki/encoding.h"

namespace kms::pki {

/// OID of the TNAuthList certificate extension and ACME identifier (id-pe 26).
inline constexpr const char* kTnAuthListOid = "1.3.6.1.5.5.7.1.26";

/// One TNEntry: a service provider code, a telephone number range, or one number.
struct TnEntry {
  enum class Kind { spc, range, one };
  Kind kind = Kind::spc;
  std::string value;        ///< SPC, the first number of the range, or the number
  std::uint64_t count = 0;  ///< range only: how many numbers (>= 2)

  [[nodiscard]] static TnEntry spc(std::string code) { return {Kind::spc, std::move(code), 0}; }
  [[nodiscard]] static TnEntry one(std::string number) { return {Kind::one, std::move(number), 0}; }
  [[nodiscard]] static TnEntry range(std::string start, std::uint64_t n) { return {Kind::range, std::move(start), n}; }
  friend bool operator==(const TnEntry&, const TnEntry&) = default;
};

/// A TNAuthorizationList: SEQUENCE SIZE (1..MAX) OF TNEntry.
class TnAuthList {
 public:
  TnAuthList() = default;
  explicit TnAuthList(std::vector<TnEntry> entries) : entries_(std::move(entries)) {}
  /// A list holding exactly one SPC.
  [[nodiscard]] static TnAuthList forSpc(std::string spc) { return TnAuthList({TnEntry::spc(std::move(spc))}); }

  /// Parses DER. Fails on any malformed or trailing byte, an empty list, a telephone
  /// number outside 1..15 characters of "0123456789#*", or a range count below 2.
  [[nodiscard]] static Result<TnAuthList> fromDer(ByteView der);
  /// Parses an ACME identifier value: base64url (RFC 9448) or padded standard base64
  /// (US practice, docs/protocols.md).
  [[nodiscard]] static Result<TnAuthList> fromIdentifierValue(std::string_view value);

  /// DER encoding. Fails on the same conditions fromDer rejects, and on an SPC that is
  /// empty or not IA5.
  [[nodiscard]] Result<Bytes> toDer() const;

  [[nodiscard]] const std::vector<TnEntry>& entries() const { return entries_; }
  /// The SPC when the list is exactly one SPC entry (the SHAKEN end-entity form).
  [[nodiscard]] std::optional<std::string> singleSpc() const;

  friend bool operator==(const TnAuthList&, const TnAuthList&) = default;

 private:
  std::vector<TnEntry> entries_;
};

/// True when code is a valid SHAKEN end-entity SPC: one or more of [0-9A-Z] (ATIS v005).
[[nodiscard]] bool isValidSpc(std::string_view code);

}  // namespace kms::pki
