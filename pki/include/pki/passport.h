#pragma once
/// @file PASSporT (RFC 8225) for SHAKEN (RFC 8588), diverted calls (RFC 8946) and Rich Call
/// Data (RFC 9795): claims checked and put in canonical form, the compact JWS signed by a
/// `Signer` (the HSM), and the SIP Identity header (RFC 8224) that carries it.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kms/error.h"
#include "pki/signer.h"

namespace kms::pki {

/// A telephone number as a PASSporT carries it (RFC 8224 §8.3): digits only. A leading '+'
/// and the visual separators '-', '.', '(', ')' and space are dropped; anything else (a
/// letter, '#', '*') is refused, as is a number of no digits or more than 15 (E.164). The
/// error names `field`.
[[nodiscard]] Result<std::string> canonicalTn(std::string_view text, std::string_view field);

/// True for a UUID in its 8-4-4-4-12 hexadecimal text form (either case).
[[nodiscard]] bool isUuid(std::string_view text);
/// A random (version 4) UUID, lower case.
[[nodiscard]] std::string randomUuid();

/// The kinds of PASSporT kmsd signs (the `ppt` header member and Identity parameter).
enum class PassportType { shaken, div };
[[nodiscard]] const char* toString(PassportType type) noexcept;

/// Rich Call Data (RFC 9795) in a SHAKEN PASSporT: the caller's display name and, optionally,
/// a call reason.
struct RichCallData {
  std::string name;                  ///< rcd.nam
  std::optional<std::string> reason; ///< crn
};

/// What a PASSporT asserts, TNs in canonical form.
struct PassportClaims {
  PassportType type = PassportType::shaken;
  std::string orig;               ///< orig.tn
  std::vector<std::string> dest;  ///< dest.tn; for `div` the new target
  std::int64_t iat = 0;           ///< seconds since the epoch
  std::string attest;             ///< shaken: "A", "B" or "C"
  std::string origid;             ///< shaken: a UUID
  std::string div;                ///< div: the number the call was first placed to
  std::optional<RichCallData> rcd;  ///< shaken only
};

/// Refuses claims a verifier would reject, naming the claim: a TN not canonical, no dest,
/// attest not A/B/C, origid not a UUID, a `div` claim on a shaken token or attest/origid/rcd
/// on a div one, an empty rcd name.
[[nodiscard]] Result<void> checkClaims(const PassportClaims& claims);

/// The protected header in canonical form (RFC 8225 §9: members sorted, no white space):
/// {"alg":"ES256","ppt":…,"typ":"passport","x5u":…}.
[[nodiscard]] std::string passportHeaderJson(PassportType type, std::string_view x5u);
/// The payload in canonical form.
[[nodiscard]] std::string passportPayloadJson(const PassportClaims& claims);

/// The compact JWS, signed ES256 by `signer` (raw r||s), after checkClaims.
[[nodiscard]] Result<std::string> signPassport(const PassportClaims& claims, std::string_view x5u, Signer& signer);

/// The SIP Identity header value: `<jws>;info=<x5u>;alg=ES256;ppt=<type>`.
[[nodiscard]] std::string identityHeader(std::string_view jws, std::string_view x5u, PassportType type);

/// An Identity header value taken apart (folding white space removed first).
struct IdentityHeader {
  std::string jws;
  std::string info;  ///< without the angle brackets
  std::string alg;
  std::string ppt;
};
[[nodiscard]] Result<IdentityHeader> parseIdentityHeader(std::string_view value);

}  // namespace kms::pki
