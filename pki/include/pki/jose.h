#pragma once
/// @file JOSE (RFC 7515): compact and flattened JWS parsing, the ES256 signing input, and
/// ES256 verification. ACME-only JWS (nonce, url, kid, EAB, keyChange) stays in acme/.

#include <string>
#include <string_view>

#include "kms/error.h"
#include "pki/ec_key.h"

namespace kms::pki {

/// A parsed compact or flattened JWS: decoded header and payload, signing input, signature.
struct ParsedJws {
  std::string protectedJson;  ///< decoded protected header (checked to be JSON)
  std::string payload;        ///< decoded payload
  std::string signingInput;   ///< b64u(protected) "." b64u(payload)
  Bytes signature;
};

/// Parses a compact JWS (three base64url parts) without verifying it. Errc::invalidArgument
/// naming what is malformed.
[[nodiscard]] Result<ParsedJws> parseCompactJws(std::string_view compact);
/// Parses a flattened JSON JWS {"protected","payload","signature"} without verifying it.
[[nodiscard]] Result<ParsedJws> parseFlattenedJws(std::string_view json);

/// b64u(protectedJson) "." b64u(payload): what an ES256 signer signs.
[[nodiscard]] std::string jwsSigningInput(std::string_view protectedJson, std::string_view payload);

/// Checks the raw r||s ES256 signature of `jws` with `key`. Errc::crypto when it does not
/// verify (or is not 64 bytes).
[[nodiscard]] Result<void> verifyEs256(const ParsedJws& jws, const EcPublicKey& key);

}  // namespace kms::pki
