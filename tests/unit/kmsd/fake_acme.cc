#include "fake_acme.h"

#include <openssl/x509.h>

#include <ctime>
#include <memory>
#include <nlohmann/json.hpp>

#include "pki/encoding.h"

namespace kms::daemon::test {
namespace {

using nlohmann::json;

http::HttpResponse reply(long status, const json& body, const std::string& type = "application/json") {
  http::HttpResponse r;
  r.status = status;
  r.body = body.dump();
  r.headers.emplace_back("content-type", type);
  return r;
}

http::HttpResponse problem(long status, const std::string& type, const std::string& detail) {
  return reply(status, json{{"type", "urn:ietf:params:acme:error:" + type}, {"detail", detail}},
               "application/problem+json");
}

/// The payload of a flattened JWS body ("" for POST-as-GET).
std::string payloadOf(const std::string& body) {
  auto jws = json::parse(body, nullptr, false);
  if (!jws.is_object() || !jws.contains("payload") || !jws["payload"].is_string()) {
    return "";
  }
  auto raw = pki::base64UrlDecode(jws["payload"].get<std::string>());
  return raw ? std::string(raw->begin(), raw->end()) : "";
}

/// The number after `prefix` in `path` ("/order/3" -> 3), 0 when it is not one.
int indexAfter(const std::string& path, const std::string& prefix) {
  if (path.rfind(prefix, 0) != 0) {
    return 0;
  }
  try {
    return std::stoi(path.substr(prefix.size()));
  } catch (const std::exception&) {
    return 0;
  }
}

}  // namespace

FakeAcme::FakeAcme() : rootPem_(kms::test::makeCertPem(kms::test::caSpec("Fake ACME Root"), caKey_, caKey_)) {}

FakeAcme::OrderState& FakeAcme::order(int n) {
  std::lock_guard<std::mutex> lock(mutex_);
  return orders_.at(static_cast<std::size_t>(n - 1));
}

std::string FakeAcme::orderUrl(int n) const { return std::string(kBase) + "/order/" + std::to_string(n); }

int FakeAcme::orders() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return static_cast<int>(orders_.size());
}

int FakeAcme::count(const std::string& kind) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = counts_.find(kind);
  return it == counts_.end() ? 0 : it->second;
}

Result<http::HttpResponse> FakeAcme::send(const http::HttpRequest& request) {
  std::lock_guard<std::mutex> lock(mutex_);
  http::HttpResponse r = handle(request);
  r.headers.emplace_back("replay-nonce", "nonce" + std::to_string(++nonce_));
  return r;
}

http::HttpResponse FakeAcme::handle(const http::HttpRequest& request) {
  const std::string base = kBase;
  if (request.url.rfind(base, 0) != 0) {
    return problem(404, "malformed", "not this CA");
  }
  const std::string path = request.url.substr(base.size());
  if (path == "/dir") {
    return reply(200, json{{"newNonce", base + "/nonce"},
                           {"newAccount", base + "/account"},
                           {"newOrder", base + "/new-order"},
                           {"revokeCert", base + "/revoke"},
                           {"keyChange", base + "/key-change"},
                           {"renewalInfo", base + "/renewal-info"}});
  }
  if (path.rfind("/renewal-info/", 0) == 0) {
    // ARI (RFC 9773): a window a month from now, a day wide.
    const std::time_t start = std::time(nullptr) + 30L * 86400;
    auto stamp = [](std::time_t t) {
      char text[32];
      std::tm tm{};
      if (gmtime_r(&t, &tm) == nullptr) {
        return std::string();
      }
      const std::size_t n = std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &tm);
      return std::string(text, n);
    };
    return reply(200, json{{"suggestedWindow", {{"start", stamp(start)}, {"end", stamp(start + 86400)}}}});
  }
  if (path == "/nonce") {
    http::HttpResponse r;
    r.status = request.method == "HEAD" ? 200 : 204;
    return r;
  }
  const std::string payload = payloadOf(request.body);
  if (path == "/account") {
    ++counts_["newAccount"];
    auto p = json::parse(payload, nullptr, false);
    if (!account_ && p.is_object() && p.value("onlyReturnExisting", false)) {
      return problem(400, "accountDoesNotExist", "no account for this key");
    }
    const long status = account_ ? 200 : 201;
    account_ = true;
    http::HttpResponse r = reply(status, json{{"status", "valid"}});
    r.headers.emplace_back("location", base + "/account/1");
    return r;
  }
  if (path == "/new-order") {
    ++counts_["newOrder"];
    auto p = json::parse(payload, nullptr, false);
    OrderState o;
    if (p.is_object() && p.contains("replaces")) {
      if (refuseReplaces) {
        return problem(409, "alreadyReplaced", "that certificate was already replaced");
      }
      o.replaces = p["replaces"].get<std::string>();
    }
    for (const auto& id : p.value("identifiers", json::array())) {
      o.dnsNames.push_back(id.value("value", ""));
    }
    orders_.push_back(o);
    const int n = static_cast<int>(orders_.size());
    http::HttpResponse r = orderAnswer(n, 201);
    r.headers.emplace_back("location", orderUrl(n));
    return r;
  }
  if (int n = indexAfter(path, "/order/"); n > 0 && n <= static_cast<int>(orders_.size())) {
    if (path.ends_with("/finalize")) {
      ++counts_["finalize"];
      return finalize(n, payload);
    }
    ++counts_["order"];
    return orderAnswer(n, 200);
  }
  if (int n = indexAfter(path, "/authz/"); n > 0 && n <= static_cast<int>(orders_.size())) {
    ++counts_["authz"];
    const OrderState& o = orders_[static_cast<std::size_t>(n - 1)];
    return reply(200, json{{"status", o.authzStatus},
                           {"identifier", {{"type", "dns"}, {"value", o.dnsNames.empty() ? "" : o.dnsNames.front()}}},
                           {"challenges",
                            json::array({{{"type", "http-01"},
                                          {"url", base + "/chall/" + std::to_string(n)},
                                          {"status", o.challengeStatus},
                                          {"token", "tokenNumber" + std::to_string(n) + "xxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}}})}});
  }
  if (int n = indexAfter(path, "/chall/"); n > 0 && n <= static_cast<int>(orders_.size())) {
    ++counts_["challenge"];
    OrderState& o = orders_[static_cast<std::size_t>(n - 1)];
    if (validateOnAnswer && o.challengeStatus == "pending") {
      o.challengeStatus = "valid";
      o.authzStatus = "valid";
      o.status = "ready";
    } else if (o.challengeStatus == "pending") {
      o.challengeStatus = "processing";
    }
    return reply(200, json{{"type", "http-01"},
                           {"url", request.url},
                           {"status", o.challengeStatus},
                           {"token", "tokenNumber" + std::to_string(n) + "xxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}});
  }
  if (int n = indexAfter(path, "/cert/"); n > 0 && n <= static_cast<int>(orders_.size())) {
    ++counts_["certificate"];
    http::HttpResponse r;
    r.status = 200;
    r.body = orders_[static_cast<std::size_t>(n - 1)].chainPem;
    r.headers.emplace_back("content-type", "application/pem-certificate-chain");
    return r;
  }
  return problem(404, "malformed", "no such resource " + path);
}

http::HttpResponse FakeAcme::orderAnswer(int n, long status) {
  const OrderState& o = orders_[static_cast<std::size_t>(n - 1)];
  const std::string base = kBase;
  json ids = json::array();
  for (const std::string& name : o.dnsNames) {
    ids.push_back({{"type", "dns"}, {"value", name}});
  }
  json body{{"status", o.status},
            {"identifiers", ids},
            {"authorizations", json::array({base + "/authz/" + std::to_string(n)})},
            {"finalize", orderUrl(n) + "/finalize"}};
  if (o.status == "valid") {
    body["certificate"] = base + "/cert/" + std::to_string(n);
  }
  if (o.status == "invalid") {
    body["error"] = {{"type", "urn:ietf:params:acme:error:unauthorized"}, {"detail", "the challenge failed"}};
  }
  http::HttpResponse r = reply(status, body);
  if (orderRetryAfter) {
    r.headers.emplace_back("retry-after", std::to_string(*orderRetryAfter));
  }
  return r;
}

http::HttpResponse FakeAcme::finalize(int n, const std::string& payload) {
  OrderState& o = orders_[static_cast<std::size_t>(n - 1)];
  if (o.status != "ready") {
    return problem(403, "orderNotReady", "the order is " + o.status);
  }
  auto p = json::parse(payload, nullptr, false);
  auto der = p.is_object() ? pki::base64UrlDecode(p.value("csr", "")) : Result<pki::Bytes>(fail(Errc::protocol, "no"));
  if (!der) {
    return problem(400, "badCSR", "no CSR");
  }
  o.chainPem = issue(std::string(der->begin(), der->end()), o.dnsNames);
  if (o.chainPem.empty()) {
    return problem(400, "badCSR", "the CSR does not parse");
  }
  o.status = finalizeProcessing ? "processing" : "valid";
  return orderAnswer(n, 200);
}

/// A leaf for the CSR's key naming `names`, signed by the fake root; leaf + root as PEM
/// ("" when the CSR does not parse).
std::string FakeAcme::issue(const std::string& csrDer, const std::vector<std::string>& names) {
  const auto* p = reinterpret_cast<const unsigned char*>(csrDer.data());
  std::unique_ptr<X509_REQ, decltype(&X509_REQ_free)> req(d2i_X509_REQ(nullptr, &p, static_cast<long>(csrDer.size())),
                                                          X509_REQ_free);
  unsigned char* spki = nullptr;
  const int spkiLen = req ? i2d_PUBKEY(X509_REQ_get0_pubkey(req.get()), &spki) : -1;
  if (spkiLen <= 0) {
    return "";
  }
  const std::string subjectSpki(reinterpret_cast<const char*>(spki), static_cast<std::size_t>(spkiLen));
  OPENSSL_free(spki);
  kms::test::CertSpec spec;
  spec.subject = {{"CN", names.empty() ? std::string("leaf") : names.front()}};
  spec.serial = ++serial_;
  spec.notAfterSeconds = 90L * 86400;
  std::string san;
  for (const std::string& n : names) {
    san += (san.empty() ? "DNS:" : ",DNS:") + n;
  }
  spec.extensions = {{"basicConstraints", "critical,CA:FALSE"},
                     {"keyUsage", "critical,digitalSignature"},
                     {"subjectKeyIdentifier", "hash"},
                     {"authorityKeyIdentifier", "keyid:always"},
                     {"subjectAltName", san}};
  return kms::test::makeCertPemFor(spec, subjectSpki, caKey_.native(), rootPem_) + rootPem_;
}

}  // namespace kms::daemon::test
