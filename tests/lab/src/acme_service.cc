// AcmeService: request plumbing (nonces, JWS, routing), directory, accounts, key change,
// revocation, certificate download and renewal information. Orders, authorizations,
// challenges and finalize are in acme_orders.cc.

#include "acme_service.h"
#include "pki/jose.h"

#include <chrono>
#include <regex>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "pki/jose.h"
#include "util.h"

namespace kms::lab {

namespace {

using json = nlohmann::json;

constexpr std::size_t kMaxNonces = 10000;
constexpr const char* kRetryAfterAri = "3600";

std::optional<pki::EcPublicKey> keyFromJwk(const json& jwk) {
  if (!jwk.is_object() || jwk.value("kty", "") != "EC" || jwk.value("crv", "") != "P-256" || !jwk.contains("x") ||
      !jwk["x"].is_string() || !jwk.contains("y") || !jwk["y"].is_string()) {
    return std::nullopt;
  }
  auto key = pki::EcPublicKey::fromJwkCoordinates(jwk["x"].get<std::string>(), jwk["y"].get<std::string>());
  return key ? std::optional<pki::EcPublicKey>(*key) : std::nullopt;
}

json jwkOf(const pki::EcPublicKey& key) {
  return json::parse(key.jwkJson());
}

}  // namespace

LabReply acmeProblem(int status, const std::string& type, const std::string& detail) {
  json body{{"type", "urn:ietf:params:acme:error:" + type}, {"detail", detail}, {"status", status}};
  if (type == "badSignatureAlgorithm") {
    body["algorithms"] = json::array({"ES256"});
  }
  return LabReply::json(status, body, "application/problem+json");
}

std::string AcmeService::newNonce() {
  std::string nonce = randomToken(16);
  nonces_.insert(nonce);
  nonceOrder_.push_back(nonce);
  while (nonceOrder_.size() > kMaxNonces) {
    nonces_.erase(nonceOrder_.front());
    nonceOrder_.pop_front();
  }
  return nonce;
}

LabReply AcmeService::handle(const LabRequest& request) {
  LabReply reply = route(request);
  reply.with("Replay-Nonce", (ctx_.hostile.nonce == "not-utf8" ? "\xff\xfe" : "") + newNonce());
  reply.with("Link", "<" + ctx_.directoryUrl() + ">;rel=\"index\"");
  reply.with("Cache-Control", "no-store");
  return reply;
}

LabReply AcmeService::route(const LabRequest& request) {
  std::string path = request.path.substr(std::string("/acme/").size());
  if (path == "directory") {
    return directory();
  }
  if (path == "new-nonce") {
    if (request.method == "HEAD") {
      return LabReply{200, {}, ""};
    }
    if (request.method == "GET") {
      return LabReply{204, {}, ""};
    }
  }
  if (path.starts_with("renewal-info/") && request.method == "GET") {
    return renewalInfo(path.substr(std::string("renewal-info/").size()));
  }
  if (request.method != "POST") {
    return acmeProblem(405, "malformed", request.method + " is not allowed here; use POST (or POST-as-GET)");
  }
  static const std::regex resource("^(acct|order|authz|chall|cert)/([A-Za-z0-9_-]+)(/orders|/finalize)?$");
  std::smatch m;
  bool isResource = std::regex_match(path, m, resource);
  bool known =
      isResource || path == "new-account" || path == "new-order" || path == "revoke-cert" || path == "key-change";
  if (!known) {
    return acmeProblem(404, "malformed", "no such resource: " + request.path);
  }
  auto verified = verifyPost(request, path == "new-account" || path == "revoke-cert", path == "new-account");
  if (auto* reply = std::get_if<LabReply>(&verified)) {
    return *reply;
  }
  const Post& post = std::get<Post>(verified);
  if (path == "new-account") {
    return newAccount(post);
  }
  if (path == "revoke-cert") {
    return revoke(post);
  }
  if (path == "new-order") {
    return newOrder(post);
  }
  if (path == "key-change") {
    return keyChange(post);
  }
  const std::string kind = m[1].str();
  const std::string id = m[2].str();
  const std::string sub = m[3].str();
  if (kind == "acct") {
    return sub == "/orders" ? accountOrders(post, id)
           : sub.empty()    ? account(post, id)
                            : acmeProblem(404, "malformed", "no such resource");
  }
  if (kind == "order") {
    return sub == "/finalize" ? finalize(post, id)
           : sub.empty()      ? order(post, id)
                              : acmeProblem(404, "malformed", "no such resource");
  }
  if (!sub.empty()) {
    return acmeProblem(404, "malformed", "no such resource: " + request.path);
  }
  if (kind == "authz") {
    return authorization(post, id);
  }
  if (kind == "chall") {
    return challenge(post, id);
  }
  return certificate(post, id);
}

std::variant<AcmeService::Post, LabReply> AcmeService::verifyPost(const LabRequest& request, bool jwkAllowed,
                                                                  bool jwkRequired) {
  if (!request.header("content-type").starts_with("application/jose+json")) {
    return acmeProblem(415, "malformed", "Content-Type must be application/jose+json");
  }
  auto jws = pki::parseFlattenedJws(request.body);
  if (!jws) {
    return acmeProblem(400, "malformed", "request body is not a flattened JWS: " + jws.error().message);
  }
  json header = json::parse(jws->protectedJson, nullptr, false);
  if (header.is_discarded() || !header.is_object()) {
    return acmeProblem(400, "malformed", "JWS protected header is not a JSON object");
  }
  if (header.value("alg", "") != "ES256") {
    return acmeProblem(400, "badSignatureAlgorithm", "kms-lab accepts ES256 only");
  }
  std::string nonce = header.contains("nonce") && header["nonce"].is_string() ? header["nonce"].get<std::string>() : "";
  if (nonce.empty() || nonces_.erase(nonce) == 0) {
    return acmeProblem(400, "badNonce", nonce.empty() ? "JWS has no nonce" : "nonce unknown or already used");
  }
  std::string expectedUrl = ctx_.baseUrl + request.path;
  if (!header.contains("url") || header["url"] != expectedUrl) {
    return acmeProblem(401, "unauthorized", "JWS url header must be " + expectedUrl);
  }
  bool hasJwk = header.contains("jwk");
  bool hasKid = header.contains("kid");
  if (hasJwk == hasKid) {
    return acmeProblem(400, "malformed", "JWS must carry exactly one of jwk and kid");
  }
  Post post{jws->payload, pki::EcPublicKey{}, nullptr};
  if (hasJwk) {
    if (!jwkAllowed) {
      return acmeProblem(400, "malformed", "this resource requires kid (the account URL), not jwk");
    }
    auto key = keyFromJwk(header["jwk"]);
    if (!key) {
      return acmeProblem(400, "badPublicKey", "jwk must be an EC P-256 public key");
    }
    post.key = *key;
  } else {
    if (jwkRequired) {
      return acmeProblem(400, "malformed", "newAccount requires jwk, not kid");
    }
    std::string prefix = ctx_.acmeUrl("acct/");
    std::string kid = header["kid"].is_string() ? header["kid"].get<std::string>() : "";
    StoredAccount* acct = kid.starts_with(prefix) ? ctx_.store.account(kid.substr(prefix.size())) : nullptr;
    if (acct == nullptr) {
      return acmeProblem(400, "accountDoesNotExist", "no account " + kid);
    }
    if (acct->status != "valid") {
      return acmeProblem(401, "unauthorized", "account " + kid + " is " + acct->status);
    }
    post.key = acct->key;
    post.account = acct;
  }
  auto good = post.key.verifyEs256(pki::asBytes(jws->signingInput), jws->signature);
  if (!good || !*good) {
    return acmeProblem(400, "malformed", "JWS signature does not verify");
  }
  return post;
}

LabReply AcmeService::directory() const {
  if (ctx_.options.foreignUrls) {
    // A hostile CA: plain http on the same host, another host, a file: URL.
    std::string plain = ctx_.acmeUrl("new-nonce");
    plain.replace(0, 5, "http");
    std::string other = ctx_.acmeUrl("new-account");
    other.replace(other.find("127.0.0.1"), 9, "127.0.0.2");
    json dir{{"newNonce", plain},
             {"newAccount", other},
             {"newOrder", ctx_.acmeUrl("new-order")},
             {"revokeCert", ctx_.acmeUrl("revoke-cert")},
             {"keyChange", ctx_.acmeUrl("key-change")},
             {"renewalInfo", "file:///etc/passwd"},
             {"meta", {{"externalAccountRequired", false}}}};
    return LabReply::json(200, dir);
  }
  json dir{{"newNonce", ctx_.acmeUrl("new-nonce")},
           {"newAccount", ctx_.acmeUrl("new-account")},
           {"newOrder", ctx_.acmeUrl("new-order")},
           {"revokeCert", ctx_.acmeUrl("revoke-cert")},
           {"keyChange", ctx_.acmeUrl("key-change")},
           {"renewalInfo", ctx_.acmeUrl("renewal-info")},
           {"meta", {{"externalAccountRequired", !ctx_.options.noEab}, {"website", ctx_.baseUrl + "/"}}}};
  return LabReply::json(200, dir);
}

LabReply AcmeService::saveOr500(LabReply reply) {
  if (auto saved = ctx_.store.save(); !saved) {
    return acmeProblem(500, "serverInternal", saved.error().toString());
  }
  return reply;
}

json AcmeService::accountJson(const StoredAccount& account) const {
  return json{{"status", account.status},
              {"contact", account.contact},
              {"orders", ctx_.acmeUrl("acct/" + account.id + "/orders")},
              {"key", jwkOf(account.key)}};
}

std::optional<std::string> AcmeService::checkEab(const json& eab, const pki::EcPublicKey& accountKey) const {
  auto jws = pki::parseFlattenedJws(eab.dump());
  if (!jws) {
    return "externalAccountBinding is not a flattened JWS";
  }
  json header = json::parse(jws->protectedJson, nullptr, false);
  if (header.is_discarded() || header.value("alg", "") != "HS256") {
    return "externalAccountBinding alg must be HS256";
  }
  if (header.value("kid", "") != kEabKid) {
    return "externalAccountBinding kid is unknown";
  }
  if (header.value("url", "") != ctx_.acmeUrl("new-account")) {
    return "externalAccountBinding url must be the newAccount URL";
  }
  if (header.contains("nonce")) {
    return "externalAccountBinding must not carry a nonce";
  }
  auto inner = keyFromJwk(json::parse(jws->payload, nullptr, false));
  if (!inner || !(*inner == accountKey)) {
    return "externalAccountBinding payload is not the account's JWK";
  }
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int macLen = 0;
  if (HMAC(EVP_sha256(), ctx_.eabKey.data(), static_cast<int>(ctx_.eabKey.size()),
           reinterpret_cast<const unsigned char*>(jws->signingInput.data()), jws->signingInput.size(), mac,
           &macLen) == nullptr) {
    return "HMAC failed";
  }
  if (macLen != jws->signature.size() || CRYPTO_memcmp(mac, jws->signature.data(), macLen) != 0) {
    return "externalAccountBinding MAC does not verify with the key of " + std::string(kEabKid);
  }
  return std::nullopt;
}

LabReply AcmeService::newAccount(const Post& post) {
  json payload = json::parse(post.payload, nullptr, false);
  if (payload.is_discarded() || !payload.is_object()) {
    return acmeProblem(400, "malformed", "newAccount payload must be a JSON object");
  }
  if (StoredAccount* existing = ctx_.store.accountByKey(post.key)) {
    return LabReply::json(200, accountJson(*existing)).with("Location", ctx_.acmeUrl("acct/" + existing->id));
  }
  if (payload.value("onlyReturnExisting", false)) {
    return acmeProblem(400, "accountDoesNotExist", "no account for this key");
  }
  if (payload.contains("externalAccountBinding")) {
    if (auto problem = checkEab(payload["externalAccountBinding"], post.key)) {
      return acmeProblem(401, "unauthorized", *problem);
    }
  } else if (!ctx_.options.noEab) {
    return acmeProblem(400, "externalAccountRequired",
                       "this CA requires External Account Binding (kid " + std::string(kEabKid) + ")");
  }
  std::vector<std::string> contact;
  if (payload.contains("contact")) {
    if (!payload["contact"].is_array()) {
      return acmeProblem(400, "malformed", "contact must be an array of URLs");
    }
    for (const auto& c : payload["contact"]) {
      if (!c.is_string() || !c.get<std::string>().starts_with("mailto:")) {
        return acmeProblem(400, "unsupportedContact", "contacts must be mailto: URLs");
      }
      contact.push_back(c.get<std::string>());
    }
  }
  StoredAccount& acct = ctx_.store.addAccount(post.key, contact);
  return saveOr500(LabReply::json(201, accountJson(acct)).with("Location", ctx_.acmeUrl("acct/" + acct.id)));
}

LabReply AcmeService::account(const Post& post, const std::string& id) {
  if (post.account->id != id) {
    return acmeProblem(403, "unauthorized", "account " + id + " is not the signer's account");
  }
  StoredAccount& acct = *post.account;
  if (!post.payload.empty()) {
    json payload = json::parse(post.payload, nullptr, false);
    if (payload.is_discarded() || !payload.is_object()) {
      return acmeProblem(400, "malformed", "account update must be a JSON object");
    }
    if (payload.contains("contact") && payload["contact"].is_array()) {
      acct.contact = payload["contact"].get<std::vector<std::string>>();
    }
    if (payload.value("status", "") == "deactivated") {
      acct.status = "deactivated";
    }
    return saveOr500(LabReply::json(200, accountJson(acct)).with("Location", ctx_.acmeUrl("acct/" + acct.id)));
  }
  return LabReply::json(200, accountJson(acct)).with("Location", ctx_.acmeUrl("acct/" + acct.id));
}

LabReply AcmeService::accountOrders(const Post& post, const std::string& id) {
  if (post.account->id != id) {
    return acmeProblem(403, "unauthorized", "account " + id + " is not the signer's account");
  }
  json urls = json::array();
  for (const auto& orderId : post.account->orders) {
    if (orders_.count(orderId) > 0) {
      urls.push_back(ctx_.acmeUrl("order/" + orderId));
    }
  }
  return LabReply::json(200, json{{"orders", urls}});
}

LabReply AcmeService::keyChange(const Post& post) {
  auto inner = pki::parseFlattenedJws(post.payload);
  if (!inner) {
    return acmeProblem(400, "malformed", "keyChange payload must be a flattened JWS");
  }
  json header = json::parse(inner->protectedJson, nullptr, false);
  if (header.is_discarded() || header.value("alg", "") != "ES256" || !header.contains("jwk") ||
      header.contains("nonce") || header.contains("kid")) {
    return acmeProblem(400, "malformed", "inner JWS must be ES256 with jwk, without nonce and kid");
  }
  if (header.value("url", "") != ctx_.acmeUrl("key-change")) {
    return acmeProblem(400, "malformed", "inner JWS url must be the keyChange URL");
  }
  auto newKey = keyFromJwk(header["jwk"]);
  if (!newKey) {
    return acmeProblem(400, "badPublicKey", "new key must be EC P-256");
  }
  auto good = newKey->verifyEs256(pki::asBytes(inner->signingInput), inner->signature);
  if (!good || !*good) {
    return acmeProblem(400, "malformed", "inner JWS signature does not verify with the new key");
  }
  json payload = json::parse(inner->payload, nullptr, false);
  std::string accountUrl = ctx_.acmeUrl("acct/" + post.account->id);
  if (payload.is_discarded() || payload.value("account", "") != accountUrl) {
    return acmeProblem(400, "malformed", "inner payload account must be " + accountUrl);
  }
  auto oldKey = payload.contains("oldKey") ? keyFromJwk(payload["oldKey"]) : std::nullopt;
  if (!oldKey || !(*oldKey == post.account->key)) {
    return acmeProblem(400, "malformed", "inner payload oldKey is not the account's current key");
  }
  if (StoredAccount* other = ctx_.store.accountByKey(*newKey)) {
    return acmeProblem(409, "malformed", "the new key already belongs to an account")
        .with("Location", ctx_.acmeUrl("acct/" + other->id));
  }
  post.account->key = *newKey;
  return saveOr500(LabReply::json(200, accountJson(*post.account)));
}

LabReply AcmeService::certificate(const Post& post, const std::string& id) {
  StoredCertificate* cert = ctx_.store.certificate(id);
  if (cert == nullptr) {
    return acmeProblem(404, "malformed", "no certificate " + id);
  }
  if (!post.payload.empty()) {
    return acmeProblem(400, "malformed", "certificate download is POST-as-GET (empty payload)");
  }
  if (cert->accountId != post.account->id) {
    return acmeProblem(403, "unauthorized", "certificate " + id + " belongs to another account");
  }
  const KeyedCert& issuer = ctx_.options.brokenChain ? *ctx_.pki->decoyIntermediate : *ctx_.pki->stiCaIntermediate;
  return LabReply::bytes(200, cert->leafPem + issuer.cert.pem(), "application/pem-certificate-chain");
}

LabReply AcmeService::revoke(const Post& post) {
  json payload = json::parse(post.payload, nullptr, false);
  if (payload.is_discarded() || !payload.is_object() || !payload.contains("certificate") ||
      !payload["certificate"].is_string()) {
    return acmeProblem(400, "malformed", "revokeCert payload must be {\"certificate\": base64url DER}");
  }
  auto der = pki::base64UrlDecode(payload["certificate"].get<std::string>());
  Result<pki::Certificate> parsed = fail(Errc::invalidArgument, "not base64url");
  if (der) {
    parsed = pki::Certificate::fromDer(*der);
  }
  if (!parsed) {
    return acmeProblem(400, "malformed", "certificate is not base64url DER X.509");
  }
  StoredCertificate* cert = ctx_.store.certificate(parsed->serialHex());
  if (cert == nullptr || cert->leafPem != parsed->pem()) {
    return acmeProblem(404, "malformed", "certificate was not issued by this CA");
  }
  if (post.account != nullptr ? cert->accountId != post.account->id : !parsed->hasPublicKey(post.key)) {
    return acmeProblem(403, "unauthorized", "neither the issuing account nor the certificate key signed this request");
  }
  int reason = 0;
  if (payload.contains("reason")) {
    if (!payload["reason"].is_number_integer()) {
      return acmeProblem(400, "badRevocationReason", "reason must be an integer");
    }
    reason = payload["reason"].get<int>();
    if (reason < 0 || reason > 10 || reason == 7) {
      return acmeProblem(400, "badRevocationReason", "reason " + std::to_string(reason) + " is not an RFC 5280 code");
    }
  }
  if (cert->revoked) {
    return acmeProblem(400, "alreadyRevoked", "certificate " + cert->id + " is already revoked");
  }
  cert->revoked = true;
  cert->reason = reason;
  cert->revokedAt = unixNow();
  return saveOr500(LabReply{200, {}, ""});
}

LabReply AcmeService::renewalInfo(const std::string& certId) {
  if (ctx_.hostile.ariRetryAfter) {
    return acmeProblem(503, "serverInternal", "renewalInfo unavailable (/lab/hostile)")
        .with("Retry-After", *ctx_.hostile.ariRetryAfter);
  }
  StoredCertificate* stored = ctx_.store.certificateByAriId(certId);
  if (stored == nullptr) {
    return acmeProblem(404, "malformed", "no certificate with certID " + certId);
  }
  auto cert = pki::Certificate::fromPem(stored->leafPem);
  if (!cert) {
    return acmeProblem(500, "serverInternal", cert.error().toString());
  }
  SystemTime start;
  SystemTime end;
  if (stored->revoked || ctx_.ariWindow == "every" ||
      (ctx_.ariWindow == "now" && ctx_.ariNowFor.count(stored->id) > 0)) {
    auto now = std::chrono::system_clock::now();
    start = now - std::chrono::hours(1);
    end = now;
  } else {
    auto lifetime = cert->notAfter() - cert->notBefore();
    start = cert->notBefore() + lifetime * 2 / 3;
    end = cert->notBefore() + lifetime * 5 / 6;
  }
  json body{{"suggestedWindow", {{"start", rfc3339(start)}, {"end", rfc3339(end)}}}};
  return LabReply::json(200, body).with("Retry-After", kRetryAfterAri);
}

}  // namespace kms::lab
