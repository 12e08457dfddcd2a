#include "acme/jws.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <nlohmann/json.hpp>

#include "pki/encoding.h"

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

Result<std::string> signEs256(pki::Signer& key, const json& header, std::string_view payload) {
  std::string protectedB64 = pki::base64UrlEncode(pki::asBytes(header.dump()));
  std::string payloadB64 = pki::base64UrlEncode(pki::asBytes(payload));
  std::string input = protectedB64 + "." + payloadB64;
  auto sig = key.signMessage(pki::asBytes(input));
  if (!sig) {
    return fail(sig.error());
  }
  return flattened(protectedB64, payloadB64, *sig);
}

Result<std::string> decodePart(std::string_view part, const char* what) {
  auto bytes = pki::base64UrlDecode(part);
  if (!bytes) {
    return fail(Errc::invalidArgument, std::string("JWS ") + what + " is not base64url");
  }
  return std::string(bytes->begin(), bytes->end());
}

Result<ParsedJws> assemble(std::string_view protectedB64, std::string_view payloadB64, std::string_view sigB64) {
  auto header = decodePart(protectedB64, "protected header");
  if (!header) {
    return fail(header.error());
  }
  auto payload = decodePart(payloadB64, "payload");
  if (!payload) {
    return fail(payload.error());
  }
  auto sig = pki::base64UrlDecode(sigB64);
  if (!sig) {
    return fail(Errc::invalidArgument, "JWS signature is not base64url");
  }
  if (!json::accept(*header)) {
    return fail(Errc::invalidArgument, "JWS protected header is not JSON");
  }
  ParsedJws out;
  out.protectedJson = std::move(*header);
  out.payload = std::move(*payload);
  out.signingInput = std::string(protectedB64) + "." + std::string(payloadB64);
  out.signature = std::move(*sig);
  return out;
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
  std::string protectedB64 = pki::base64UrlEncode(pki::asBytes(header.dump()));
  std::string payloadB64 = pki::base64UrlEncode(pki::asBytes(accountKey.jwkJson()));
  std::string input = protectedB64 + "." + payloadB64;
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int macLen = 0;
  if (HMAC(EVP_sha256(), hmacKey.data(), static_cast<int>(hmacKey.size()),
           reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac, &macLen) == nullptr) {
    return fail(Errc::crypto, "HMAC-SHA256 for the external account binding failed");
  }
  std::string out = flattened(protectedB64, payloadB64, pki::ByteView(mac, macLen));
  OPENSSL_cleanse(mac, sizeof mac);
  return out;
}

Result<std::string> keyChangeInner(pki::Signer& newKey, std::string_view keyChangeUrl, std::string_view accountUrl,
                                   const pki::EcPublicKey& oldKey) {
  json header{{"alg", "ES256"}, {"jwk", jwkObject(newKey.publicKey())}, {"url", keyChangeUrl}};
  json payload{{"account", accountUrl}, {"oldKey", jwkObject(oldKey)}};
  return signEs256(newKey, header, payload.dump());
}

std::string keyAuthorization(std::string_view token, const pki::EcPublicKey& accountKey) {
  return std::string(token) + "." + accountKey.jwkThumbprint();
}

Result<ParsedJws> parseCompactJws(std::string_view compact) {
  std::size_t a = compact.find('.');
  std::size_t b = a == std::string_view::npos ? a : compact.find('.', a + 1);
  if (a == std::string_view::npos || b == std::string_view::npos ||
      compact.find('.', b + 1) != std::string_view::npos) {
    return fail(Errc::invalidArgument, "compact JWS must have exactly three parts");
  }
  return assemble(compact.substr(0, a), compact.substr(a + 1, b - a - 1), compact.substr(b + 1));
}

Result<ParsedJws> parseFlattenedJws(std::string_view text) {
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return fail(Errc::invalidArgument, "flattened JWS is not a JSON object");
  }
  for (const char* member : {"protected", "payload", "signature"}) {
    if (!j.contains(member) || !j[member].is_string()) {
      return fail(Errc::invalidArgument, std::string("flattened JWS has no string member '") + member + "'");
    }
  }
  return assemble(j["protected"].get<std::string>(), j["payload"].get<std::string>(),
                  j["signature"].get<std::string>());
}

}  // namespace kms::acme
