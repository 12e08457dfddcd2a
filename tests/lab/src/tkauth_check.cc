#include "tkauth_check.h"

#include <chrono>

#include <nlohmann/json.hpp>

#include "pki/jose.h"
#include "pki/ec_key.h"
#include "pki/jose.h"
#include "util.h"

namespace kms::lab {

namespace {

using json = nlohmann::json;

tl::unexpected<Error> reject(const std::string& detail) {
  return fail(Errc::unauthorized, detail, "tkauth-01");
}

}  // namespace

Result<TkauthAccepted> checkAuthorityToken(const std::string& jwt, const TkauthExpectations& expect,
                                           pki::SystemTime now) {
  auto jws = pki::parseCompactJws(jwt);
  if (!jws) {
    return reject("token is not a compact JWS: " + jws.error().message);
  }
  json header = json::parse(jws->protectedJson, nullptr, false);
  if (header.is_discarded() || !header.is_object()) {
    return reject("token header is not a JSON object");
  }
  if (header.value("alg", "") != "ES256") {
    return reject("token alg must be ES256");
  }
  if (!header.contains("x5u") || !header["x5u"].is_string()) {
    return reject("token header has no x5u");
  }
  std::string x5u = header["x5u"].get<std::string>();
  if (!x5u.starts_with("https://")) {
    return reject("token x5u is not an https URL");
  }
  if (x5u != expect.trustedX5u || expect.signer == nullptr) {
    return reject("token x5u " + x5u + " is not a trusted token authority certificate");
  }
  if (auto chain = pki::verifyChain({*expect.signer}, expect.roots, now); !chain) {
    return reject("token signer certificate does not chain to the STI-PA root: " + chain.error().message);
  }
  auto signerKey = pki::EcPublicKey::fromSpkiDer(expect.signer->spkiDer());
  if (!signerKey) {
    return reject("token signer key is not P-256");
  }
  auto good = signerKey->verifyEs256(pki::asBytes(jws->signingInput), jws->signature);
  if (!good || !*good) {
    return reject("token signature does not verify with the x5u certificate");
  }
  json payload = json::parse(jws->payload, nullptr, false);
  if (payload.is_discarded() || !payload.is_object()) {
    return reject("token payload is not a JSON object");
  }
  if (!payload.contains("exp") || !payload["exp"].is_number()) {
    return reject("token has no numeric exp claim");
  }
  if (!payload.contains("jti") || !payload["jti"].is_string() || payload["jti"].get<std::string>().empty()) {
    return reject("token has no jti claim");
  }
  if (!payload.contains("atc") || !payload["atc"].is_object()) {
    return reject("token has no atc claim");
  }
  auto nowSec = std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
  auto exp = payload["exp"].get<std::int64_t>();
  if (exp <= nowSec) {
    return reject("token expired (exp " + std::to_string(exp) + " <= now " + std::to_string(nowSec) + ")");
  }
  if (payload.contains("nbf") && (!payload["nbf"].is_number() || payload["nbf"].get<std::int64_t>() > nowSec)) {
    return reject("token not yet valid (nbf)");
  }
  std::string jti = payload["jti"].get<std::string>();
  if (expect.usedJti != nullptr && expect.usedJti->count(jti) > 0) {
    return reject("token jti " + jti + " was already used");
  }
  const json& atc = payload["atc"];
  if (!atc.contains("tktype") || !atc["tktype"].is_string() ||
      !iequals(atc["tktype"].get<std::string>(), "TNAuthList")) {
    return reject("atc.tktype is not TNAuthList");
  }
  if (!atc.contains("tkvalue") || !atc["tkvalue"].is_string()) {
    return reject("atc.tkvalue missing");
  }
  auto value = decodeEitherBase64(atc["tkvalue"].get<std::string>());
  if (!value || *value != expect.identifierDer) {
    return reject("atc.tkvalue does not match the identifier's TNAuthList");
  }
  if (!atc.contains("fingerprint") || !atc["fingerprint"].is_string() ||
      !iequals(atc["fingerprint"].get<std::string>(), expect.fingerprint)) {
    return reject("atc.fingerprint does not match the account key (expected " + expect.fingerprint + ")");
  }
  if (atc.contains("ca") && (!atc["ca"].is_boolean() || atc["ca"].get<bool>())) {
    return reject("atc.ca must be false (kms-lab issues end-entity certificates only)");
  }
  return TkauthAccepted{jti, exp};
}

}  // namespace kms::lab
