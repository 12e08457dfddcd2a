#pragma once
/// @file CA-side validation of a tkauth-01 Authority Token (RFC 9448 §6, docs/protocols.md).

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "kms/error.h"
#include "pki/encoding.h"
#include "pki/x509.h"

namespace kms::lab {

/// What the token must match.
struct TkauthExpectations {
  std::string trustedX5u;                    ///< the only token-authority certificate URL trusted
  const pki::Certificate* signer = nullptr;  ///< the certificate served at trustedX5u
  std::vector<pki::Certificate> roots;       ///< STI-PA trust anchors the signer must chain to
  pki::Bytes identifierDer;                  ///< DER of the authorization's TNAuthList
  std::string fingerprint;                   ///< "SHA256 AA:..." of the account key, flavour chosen by the CA
  const std::set<std::string>* usedJti = nullptr;
};

struct TkauthAccepted {
  std::string jti;
  std::int64_t exp = 0;
};

/// Checks, in order: compact JWS; header alg ES256 and x5u https and trusted; signer
/// chains to the roots; signature; exp/jti/atc present; exp in the future (nbf if present
/// not in the future); jti unused; tktype TNAuthList (any case); tkvalue decodes to the
/// identifier DER; fingerprint equal; ca false. The error message says which check failed.
[[nodiscard]] Result<TkauthAccepted> checkAuthorityToken(const std::string& jwt, const TkauthExpectations& expect,
                                                         pki::SystemTime now);

}  // namespace kms::lab
