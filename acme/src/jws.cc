#include "acme/jws.h"

#include <openssl/crypto.h>

#include <nlohmann/json.hpp>

#include "pki/encoding.h"
#include "pki/jose.h"

namespace kms::acme {
namespace {

using nlohmann::json;

json jwkObject(const pki::EcPublicKey& key) {
  return json::parse(key.jwkJson());
}

std::string flattened(const std::string& protectedB64, const std::string& payloadB64, pki::ByteView signature) {
  json out{{"protected", protectedB64}, {"payload", payloadB64}, {"signature", pki::base64UrlEncode(signature)}};
  return out.dump();
}

/// The header as JSON text; bytes that are not UTF-8 (from a peer) are an error, never an
/// exception.
Result<std::string> headerText(const json& header) {
  try {
    return header.dump();
  } catch (const json::exception& e) {
    return fail(Errc::protocol, std::string("cannot encode the JWS protected header: ") + e.what());
  }
}

Result<std::string> signEs256(pki::Signer& key, const json& header, std::string_view payload) {
  auto text = headerText(header);
  if (!text) {
    return fail(text.error());
  }
  std::string input = pki::jwsSigningInput(*text, payload);
  auto sig = key.signMessage(pki::asBytes(input));
  if (!sig) {
    return fail(sig.error());
  }
  const std::size_t dot = input.find('.');
  return flattened(input.substr(0, dot), input.substr(dot + 1), *sig);
}

}  // namespace

Result<std::string> signRequest(pki::Signer& key, std::string_view url, std::string_view nonce, std::string_view kid,
                                std::string_view payload) {
  json header{{"alg", "ES256"}, {"url", url}};
  if (!nonce.empty()) {
    header["nonce"] = nonce;
  }
  if (kid.empty()) {
    header["jwk"] = jwkObject(key.publicKey());
  } else {
    header["kid"] = kid;
  }
  return signEs256(key, header, payload);
}

Result<std::string> externalAccountBinding(const SecretBytes& hmacKey, std::string_view kid,
                                           std::string_view newAccountUrl, const pki::EcPublicKey& accountKey) {
  json header{{"alg", "HS256"}, {"kid", kid}, {"url", newAccountUrl}};
  auto text = headerText(header);
  if (!text) {
    return fail(text.error());
  }
  std::string protectedB64 = pki::base64UrlEncode(pki::asBytes(*text));
  std::string payloadB64 = pki::base64UrlEncode(pki::asBytes(accountKey.jwkJson()));
  std::string input = protectedB64 + "." + payloadB64;
  auto mac = pki::hmacSha256(pki::ByteView(hmacKey.data(), hmacKey.size()), pki::asBytes(input));
  if (!mac) {
    return fail(Errc::crypto, "HMAC-SHA256 for the external account binding failed");
  }
  std::string out = flattened(protectedB64, payloadB64, *mac);
  OPENSSL_cleanse(mac->data(), mac->size());
  return out;
}

Result<std::string> keyChangeInner(pki::Signer& newKey, std::string_view keyChangeUrl, std::string_view accountUrl,
                                   const pki::EcPublicKey& oldKey) {
  json header{{"alg", "ES256"}, {"jwk", jwkObject(newKey.publicKey())}, {"url", keyChangeUrl}};
  json payload{{"account", accountUrl}, {"oldKey", jwkObject(oldKey)}};
  auto payloadText = headerText(payload);
  if (!payloadText) {
    return fail(payloadText.error());
  }
  return signEs256(newKey, header, *payloadText);
}

std::string keyAuthorization(std::string_view token, const pki::EcPublicKey& accountKey) {
  return std::string(token) + "." + accountKey.jwkThumbprint();
}

}  // namespace kms::acme
