// AcmeService: orders, authorizations, tkauth-01 challenges and finalize.

#include <chrono>
#include <iostream>

#include "acme_service.h"
#include "cert_builder.h"
#include "pki/tn_auth_list.h"
#include "shaken_issuer.h"
#include "tkauth_check.h"
#include "util.h"

namespace kms::lab {

namespace {

using json = nlohmann::json;
constexpr auto kOrderLifetime = std::chrono::hours(24 * 7);

/// Decodes an identifier value as the CA is configured to accept it.
std::optional<pki::Bytes> decodeIdentifier(const std::string& value, IdentifierEncoding encoding) {
  switch (encoding) {
    case IdentifierEncoding::padded:
      if (auto b = pki::base64Decode(value)) {
        return *b;
      }
      return std::nullopt;
    case IdentifierEncoding::base64url:
      if (auto b = pki::base64UrlDecode(value)) {
        return *b;
      }
      return std::nullopt;
    case IdentifierEncoding::any:
      break;
  }
  return decodeEitherBase64(value);
}

json unauthorizedError(const std::string& detail) {
  return json{{"type", "urn:ietf:params:acme:error:unauthorized"}, {"detail", detail}, {"status", 403}};
}

}  // namespace

json AcmeService::challengeJson(const Authz& authz) const {
  const Challenge& c = authz.challenge;
  json j{{"type", "tkauth-01"},
         {"tkauth-type", "atc"},
         {"token-authority", ctx_.stiPaUrl()},
         {"url", ctx_.acmeUrl("chall/" + authz.id)},
         {"token", c.token},
         {"status", c.status}};
  if (!c.validated.empty()) {
    j["validated"] = c.validated;
  }
  if (c.error) {
    j["error"] = *c.error;
  }
  return j;
}

json AcmeService::authzJson(const Authz& authz) const {
  const Order& order = orders_.at(authz.orderId);
  return json{{"status", authz.status},
              {"expires", authz.expires},
              {"identifier", {{"type", order.identifierType}, {"value", order.identifierValue}}},
              {"challenges", json::array({challengeJson(authz)})}};
}

json AcmeService::orderJson(const Order& order) const {
  json authzUrls = json::array();
  for (const auto& id : order.authzIds) {
    authzUrls.push_back(ctx_.acmeUrl("authz/" + id));
  }
  json j{{"status", order.status},
         {"expires", order.expires},
         {"identifiers", json::array({{{"type", order.identifierType}, {"value", order.identifierValue}}})},
         {"authorizations", authzUrls},
         {"finalize", ctx_.acmeUrl("order/" + order.id + "/finalize")}};
  if (!order.certId.empty()) {
    j["certificate"] = ctx_.acmeUrl("cert/" + order.certId);
  }
  if (order.replaces) {
    j["replaces"] = *order.replaces;
  }
  if (order.error) {
    j["error"] = *order.error;
  }
  return j;
}

void AcmeService::refreshOrder(Order& order) {
  if (order.status != "pending") {
    return;
  }
  bool allValid = true;
  for (const auto& id : order.authzIds) {
    const Authz& a = authzs_.at(id);
    if (a.status == "invalid") {
      order.status = "invalid";
      order.error = unauthorizedError("authorization failed: " +
                                      (a.challenge.error ? a.challenge.error->value("detail", "") : std::string()));
      return;
    }
    allValid = allValid && a.status == "valid";
  }
  if (allValid) {
    order.status = "ready";
  }
}

LabReply AcmeService::newOrder(const Post& post) {
  if (ctx_.options.rateLimitSeconds > 0 && ++newOrdersSeen_ > ctx_.options.rateLimitAfter) {
    const auto now = std::chrono::steady_clock::now();
    if (!limitedUntil_) {
      limitedUntil_ = now + std::chrono::seconds(ctx_.options.rateLimitSeconds);
    }
    if (now < *limitedUntil_) {
      const auto left = std::chrono::duration_cast<std::chrono::seconds>(*limitedUntil_ - now).count() + 1;
      std::cerr << "kms-lab: newOrder refused (rate limit, " << left << " s left)\n";
      return acmeProblem(429, "rateLimited", "too many new orders; retry after " + std::to_string(left) + " s")
          .with("Retry-After", std::to_string(left));
    }
  }
  json payload = json::parse(post.payload, nullptr, false);
  if (payload.is_discarded() || !payload.is_object() || !payload.contains("identifiers") ||
      !payload["identifiers"].is_array() || payload["identifiers"].empty()) {
    return acmeProblem(400, "malformed", "newOrder needs a non-empty identifiers array");
  }
  if (payload["identifiers"].size() != 1) {
    return acmeProblem(400, "rejectedIdentifier", "kms-lab issues exactly one TNAuthList identifier per order");
  }
  const json& ident = payload["identifiers"][0];
  if (!ident.is_object() || !ident.contains("type") || !ident["type"].is_string() || !ident.contains("value") ||
      !ident["value"].is_string()) {
    return acmeProblem(400, "malformed", "identifier must be {\"type\":..., \"value\":...}");
  }
  std::string type = ident["type"].get<std::string>();
  if (type != "TNAuthList") {
    return acmeProblem(400, "unsupportedIdentifier", "identifier type " + type + " is not supported (TNAuthList only)");
  }
  std::string value = ident["value"].get<std::string>();
  auto der = decodeIdentifier(value, ctx_.options.identifierEncoding);
  if (!der) {
    return acmeProblem(
        400, "malformed",
        std::string("TNAuthList identifier value is not ") +
            (ctx_.options.identifierEncoding == IdentifierEncoding::padded      ? "padded standard base64"
             : ctx_.options.identifierEncoding == IdentifierEncoding::base64url ? "unpadded base64url"
                                                                                : "base64 or base64url"));
  }
  auto list = pki::TnAuthList::fromDer(*der);
  if (!list) {
    return acmeProblem(400, "malformed", "identifier value is not a DER TNAuthList: " + list.error().message);
  }
  auto spc = list->singleSpc();
  if (!spc || !pki::isValidSpc(*spc)) {
    return acmeProblem(400, "rejectedIdentifier", "TNAuthList must hold exactly one SPC of [0-9A-Z]");
  }
  std::optional<std::string> replaces;
  if (payload.contains("replaces")) {
    if (!payload["replaces"].is_string()) {
      return acmeProblem(400, "malformed", "replaces must be a string");
    }
    replaces = payload["replaces"].get<std::string>();
    StoredCertificate* old = ctx_.store.certificateByAriId(*replaces);
    if (old == nullptr || old->accountId != post.account->id) {
      return acmeProblem(400, "malformed", "replaces names no certificate of this account");
    }
    if (replaced_.count(*replaces) > 0) {
      return acmeProblem(409, "alreadyReplaced", "certificate " + *replaces + " was already replaced");
    }
  }
  std::string expires = rfc3339(std::chrono::system_clock::now() + kOrderLifetime);
  Order order;
  order.id = randomToken(12);
  order.accountId = post.account->id;
  order.expires = expires;
  order.identifierType = type;
  order.identifierValue = value;
  order.der = *der;
  order.spc = *spc;
  order.replaces = replaces;
  Authz authz;
  authz.id = randomToken(12);
  authz.accountId = order.accountId;
  authz.orderId = order.id;
  authz.expires = expires;
  authz.challenge.token = randomToken(16);
  order.authzIds.push_back(authz.id);
  if (replaces) {
    replaced_.insert(*replaces);
  }
  std::string id = order.id;
  authzs_.emplace(authz.id, std::move(authz));
  orders_.emplace(id, std::move(order));
  post.account->orders.push_back(id);
  const std::string location = ctx_.acmeUrl("order/" + id) + (ctx_.hostile.location == "not-utf8" ? "\xc3\x28" : "");
  return saveOr500(LabReply::json(201, orderJson(orders_.at(id))).with("Location", location));
}

LabReply AcmeService::order(const Post& post, const std::string& id) {
  auto it = orders_.find(id);
  if (it == orders_.end()) {
    return acmeProblem(404, "malformed", "no order " + id);
  }
  if (it->second.accountId != post.account->id) {
    return acmeProblem(403, "unauthorized", "order " + id + " belongs to another account");
  }
  Order& order = it->second;
  if (order.processingUntil) {
    const int secs = ctx_.options.processingSeconds;
    if (std::chrono::steady_clock::now() < *order.processingUntil) {
      return acmeProblem(429, "rateLimited", "order polled before the Retry-After its finalize answer gave")
          .with("Retry-After", std::to_string(secs));
    }
    order.processingUntil.reset();
    order.status = "valid";
    order.certId = order.pendingCertId;
  }
  refreshOrder(order);
  return LabReply::json(200, orderJson(order));
}

LabReply AcmeService::authorization(const Post& post, const std::string& id) {
  auto it = authzs_.find(id);
  if (it == authzs_.end()) {
    return acmeProblem(404, "malformed", "no authorization " + id);
  }
  if (it->second.accountId != post.account->id) {
    return acmeProblem(403, "unauthorized", "authorization " + id + " belongs to another account");
  }
  if (!post.payload.empty()) {
    json payload = json::parse(post.payload, nullptr, false);
    if (!payload.is_discarded() && payload.value("status", "") == "deactivated") {
      it->second.status = "deactivated";
    }
  }
  return LabReply::json(200, authzJson(it->second));
}

LabReply AcmeService::challenge(const Post& post, const std::string& id) {
  auto it = authzs_.find(id);
  if (it == authzs_.end()) {
    return acmeProblem(404, "malformed", "no challenge " + id);
  }
  Authz& authz = it->second;
  if (authz.accountId != post.account->id) {
    return acmeProblem(403, "unauthorized", "challenge " + id + " belongs to another account");
  }
  if (!post.payload.empty() && authz.challenge.status == "pending") {
    json payload = json::parse(post.payload, nullptr, false);
    if (payload.is_discarded() || !payload.is_object()) {
      return acmeProblem(400, "malformed", "challenge response must be a JSON object");
    }
    const std::string& member = ctx_.options.challengeMember;
    Order& order = orders_.at(authz.orderId);
    if (!payload.contains(member) || !payload[member].is_string()) {
      authz.challenge.status = "invalid";
      authz.challenge.error = unauthorizedError("challenge response has no string member '" + member + "'");
      authz.status = "invalid";
      refreshOrder(order);
    } else {
      validateChallenge(authz, order, payload[member].get<std::string>(), post.key);
    }
  }
  return LabReply::json(200, challengeJson(authz))
      .with("Link", "<" + ctx_.acmeUrl("authz/" + authz.id) + ">;rel=\"up\"");
}

void AcmeService::validateChallenge(Authz& authz, Order& order, const std::string& token,
                                    const pki::EcPublicKey& accountKey) {
  TkauthExpectations expect;
  expect.trustedX5u = ctx_.tokenSignerUrl();
  expect.signer = &ctx_.pki->stiPaSigner->cert;
  expect.roots = {ctx_.pki->stiPaRoot->cert};
  expect.identifierDer = order.der;
  expect.fingerprint = ctx_.options.fingerprint == FingerprintFlavour::spki ? accountKey.spkiFingerprint()
                                                                            : accountKey.thumbprintFingerprint();
  expect.usedJti = &usedJti_;
  auto now = std::chrono::system_clock::now();
  auto accepted = checkAuthorityToken(token, expect, now);
  if (accepted) {
    usedJti_.insert(accepted->jti);
    authz.challenge.status = "valid";
    authz.challenge.validated = rfc3339(now);
    authz.status = "valid";
  } else {
    authz.challenge.status = "invalid";
    authz.challenge.error = unauthorizedError(accepted.error().message);
    authz.status = "invalid";
  }
  refreshOrder(order);
}

LabReply AcmeService::finalize(const Post& post, const std::string& id) {
  auto it = orders_.find(id);
  if (it == orders_.end()) {
    return acmeProblem(404, "malformed", "no order " + id);
  }
  Order& order = it->second;
  if (order.accountId != post.account->id) {
    return acmeProblem(403, "unauthorized", "order " + id + " belongs to another account");
  }
  refreshOrder(order);
  if (order.status != "ready") {
    return acmeProblem(403, "orderNotReady", "order is " + order.status + ", not ready");
  }
  json payload = json::parse(post.payload, nullptr, false);
  if (payload.is_discarded() || !payload.is_object() || !payload.contains("csr") || !payload["csr"].is_string()) {
    return acmeProblem(400, "malformed", "finalize payload must be {\"csr\": base64url DER}");
  }
  auto der = pki::base64UrlDecode(payload["csr"].get<std::string>());
  if (!der) {
    return acmeProblem(400, "badCSR", "csr is not base64url");
  }
  auto csr = parseCsr(*der);
  if (!csr) {
    return acmeProblem(400, "badCSR", csr.error().message);
  }
  if (!csr->tnAuthList) {
    return acmeProblem(400, "badCSR", "CSR has no TNAuthList extension (1.3.6.1.5.5.7.1.26)");
  }
  if (*csr->tnAuthList != order.der) {
    return acmeProblem(400, "badCSR", "CSR TNAuthList extension is not byte-identical to the order identifier");
  }
  if (csr->caRequested) {
    return acmeProblem(400, "badCSR", "CSR requests cA=TRUE but the token authorised an end-entity certificate");
  }
  if (csr->key == post.account->key) {
    return acmeProblem(400, "badCSR", "the certificate key must not be the account key");
  }
  auto cert = issueShakenCertificate(ctx_, *csr, order.spc, order.der);
  if (!cert) {
    return acmeProblem(500, "serverInternal", cert.error().toString());
  }
  auto ari = cert->ariCertId();
  StoredCertificate stored{cert->serialHex(), order.accountId, cert->pem(), ari ? *ari : std::string(), false, 0, 0,
                           order.replaces.value_or("")};
  ctx_.store.addCertificate(stored);
  if (ctx_.options.processingSeconds > 0) {
    const int secs = ctx_.options.processingSeconds;
    order.status = "processing";
    order.pendingCertId = stored.id;
    order.processingUntil = std::chrono::steady_clock::now() + std::chrono::seconds(secs);
    return saveOr500(LabReply::json(200, orderJson(order))
                         .with("Location", ctx_.acmeUrl("order/" + order.id))
                         .with("Retry-After", std::to_string(secs)));
  }
  order.certId = stored.id;
  order.status = "valid";
  return saveOr500(LabReply::json(200, orderJson(order)).with("Location", ctx_.acmeUrl("order/" + order.id)));
}

}  // namespace kms::lab
