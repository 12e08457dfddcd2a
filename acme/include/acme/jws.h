#pragma once
/// @file JWS for ACME (RFC 8555 §6.2, RFC 7515 flattened JSON): ES256 requests signed by
/// a pki::Signer (the HSM), the HS256 External Account Binding, the key-change inner JWS.
/// Parsing and verifying JWS in general is JOSE, in pki/jose.h.

#include <optional>
#include <string>
#include <string_view>

#include "kms/error.h"
#include "kms/secret.h"
#include "pki/signer.h"

namespace kms::acme {

/// A request JWS: protected {"alg":"ES256", "kid" or "jwk", "nonce", "url"} over payload.
/// payload "" is POST-as-GET. kid empty selects the "jwk" form (newAccount, revoke by
/// certificate key). nonce empty omits it (only for the key-change inner JWS).
[[nodiscard]] Result<std::string> signRequest(pki::Signer& key, std::string_view url, std::string_view nonce,
                                              std::string_view kid, std::string_view payload);

/// The externalAccountBinding value (RFC 8555 §7.3.4): protected {"alg":"HS256","kid","url"},
/// payload = the account JWK, HMAC-SHA256 with the CA-issued key.
[[nodiscard]] Result<std::string> externalAccountBinding(const SecretBytes& hmacKey, std::string_view kid,
                                                         std::string_view newAccountUrl,
                                                         const pki::EcPublicKey& accountKey);

/// The inner JWS of keyChange (RFC 8555 §7.3.5): protected {"alg","jwk":<new>,"url"},
/// payload {"account": accountUrl, "oldKey": <old JWK>}, signed by the new key.
[[nodiscard]] Result<std::string> keyChangeInner(pki::Signer& newKey, std::string_view keyChangeUrl,
                                                 std::string_view accountUrl, const pki::EcPublicKey& oldKey);

/// RFC 8555 §8.1 key authorization: token "." thumbprint(account key).
[[nodiscard]] std::string keyAuthorization(std::string_view token, const pki::EcPublicKey& accountKey);

}  // namespace kms::acme
