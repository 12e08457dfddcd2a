#include "sti_pa/client.h"

#include <openssl/crypto.h>

#include <algorithm>
#include <atomic>

#include <nlohmann/json.hpp>

#include "kms/secret.h"
#include "kms/url.h"
#include "pki/encoding.h"
#include "pki/jose.h"
#include "pki/json_limits.h"
#include "pki/tn_auth_list.h"

namespace kms::sti_pa {
namespace {

using nlohmann::json;

constexpr std::size_t kMaxCachedX5u = 16;

Error err(Errc code, std::string message, std::string context, long status = 0) {
  Error e;
  e.code = code;
  e.message = std::move(message);
  e.context = std::move(context);
  e.native = status;
  if (status != 0) {
    e.nativeName = "HTTP " + std::to_string(status);
  }
  return e;
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

/// The "message" member of an STI-PA JSON answer, if any.
std::string messageOf(const std::string& body) {
  json j = pki::checkJsonLimits(body) ? json::parse(body, nullptr, false) : json();
  if (j.is_object() && j.contains("message") && j["message"].is_string()) {
    return j["message"].get<std::string>();
  }
  return {};
}

/// Maps a non-success STI-PA answer to an error naming the endpoint.
Error answerError(const http::HttpResponse& r, const std::string& url, const std::string& what) {
  std::string msg = messageOf(r.body);
  std::string detail = msg.empty() ? "" : ": " + msg;
  if (r.status == 401) {
    return err(Errc::unauthorized, what + " was refused (HTTP 401)" + detail, url, r.status);
  }
  if (r.status == 403) {
    return err(Errc::unauthorized,
               what + " was forbidden (HTTP 403)" + detail +
                   "; check that this host's egress IP address is allow-listed at the STI-PA",
               url, r.status);
  }
  Error e = err(Errc::protocol, what + " failed (HTTP " + std::to_string(r.status) + ")" + detail, url, r.status);
  return e;
}

Result<json> successJson(const http::HttpResponse& r, const std::string& url, const std::string& what) {
  if (r.status != 200) {
    return fail(answerError(r, url, what));
  }
  if (auto limits = pki::checkJsonLimits(r.body); !limits) {
    return fail(err(Errc::protocol, what + ": " + limits.error().message, url, r.status));
  }
  json j = json::parse(r.body, nullptr, false);
  if (!j.is_object()) {
    return fail(err(Errc::protocol, what + ": the answer is not a JSON object", url, r.status));
  }
  if (j.value("status", "") != "success") {
    std::string msg = j.value("message", "");
    return fail(
        err(Errc::protocol, what + ": status is not \"success\"" + (msg.empty() ? "" : ": " + msg), url, r.status));
  }
  return j;
}

/// Verifies a compact ES256 JWS signed by the first certificate at its x5u, chained to anchors.
Result<json> verifyX5uJws(const std::string& compact, const std::vector<pki::Certificate>& anchors, pki::SystemTime now,
                          const std::function<Result<std::string>(const std::string&)>& fetchX5u, const char* what) {
  auto jws = pki::parseCompactJws(compact);
  if (!jws) {
    Error e = jws.error();
    e.code = Errc::protocol;
    e.message = std::string(what) + ": " + e.message;
    return fail(e);
  }
  if (auto limits = pki::checkJsonLimits(jws->protectedJson); !limits) {
    return fail(err(Errc::protocol, std::string(what) + ": header: " + limits.error().message, ""));
  }
  json header = json::parse(jws->protectedJson, nullptr, false);
  if (!header.is_object() || header.value("alg", "") != "ES256") {
    return fail(err(Errc::protocol, std::string(what) + ": alg must be ES256", ""));
  }
  std::string x5u = header.value("x5u", "");
  if (x5u.rfind("https://", 0) != 0) {
    return fail(err(Errc::protocol, std::string(what) + ": x5u must be an https URL", x5u));
  }
  auto pem = fetchX5u(x5u);
  if (!pem) {
    return fail(pem.error());
  }
  auto chain = pki::parsePemChain(*pem);
  if (!chain) {
    return fail(err(Errc::protocol, std::string(what) + ": x5u does not hold a PEM certificate", x5u));
  }
  if (!anchors.empty()) {
    if (auto v = pki::verifyChain(*chain, anchors, now); !v) {
      return fail(err(Errc::protocol, std::string(what) + ": signer certificate " + v.error().message, x5u));
    }
  }
  auto key = pki::EcPublicKey::fromSpkiDer(chain->front().spkiDer());
  if (!key) {
    return fail(err(Errc::protocol, std::string(what) + ": signer key is not P-256", x5u));
  }
  auto good = key->verifyEs256(pki::asBytes(jws->signingInput), jws->signature);
  if (!good || !*good) {
    return fail(err(Errc::protocol, std::string(what) + ": signature does not verify", x5u));
  }
  if (auto limits = pki::checkJsonLimits(jws->payload); !limits) {
    return fail(err(Errc::protocol, std::string(what) + ": payload: " + limits.error().message, x5u));
  }
  json payload = json::parse(jws->payload, nullptr, false);
  if (!payload.is_object()) {
    return fail(err(Errc::protocol, std::string(what) + ": payload is not a JSON object", x5u));
  }
  return payload;
}

}  // namespace

Result<SpcToken> verifySpcToken(const std::string& jwt, const Atc& expected,
                                const std::vector<pki::Certificate>& anchors, pki::SystemTime now,
                                const std::function<Result<std::string>(const std::string&)>& fetchX5u) {
  auto payload = verifyX5uJws(jwt, anchors, now, fetchX5u, "SPC token");
  if (!payload) {
    return fail(payload.error());
  }
  const json& p = *payload;
  if (!p.contains("exp") || !p["exp"].is_number_integer()) {
    return fail(err(Errc::protocol, "SPC token: no integer exp claim", ""));
  }
  auto exp = pki::fromUnixSeconds(p["exp"].get<std::int64_t>());
  // A token that expires within seconds would expire before the CA validates it.
  if (exp <= now + std::chrono::seconds(30)) {
    return fail(err(Errc::protocol, "SPC token: expired or expiring within 30 s", ""));
  }
  if (!p.contains("jti") || !p["jti"].is_string() || p["jti"].get<std::string>().empty()) {
    return fail(err(Errc::protocol, "SPC token: no jti claim", ""));
  }
  if (!p.contains("atc") || !p["atc"].is_object()) {
    return fail(err(Errc::protocol, "SPC token: no atc claim", ""));
  }
  const json& atc = p["atc"];
  if (lower(atc.value("tktype", "")) != "tnauthlist") {
    return fail(err(Errc::protocol, "SPC token: atc.tktype is not TNAuthList", ""));
  }
  if (atc.value("tkvalue", "") != expected.tkvalue) {
    return fail(err(Errc::protocol, "SPC token: atc.tkvalue differs from the request (another SPC?)", ""));
  }
  if (atc.value("fingerprint", "") != expected.fingerprint) {
    return fail(err(Errc::protocol, "SPC token: atc.fingerprint is not the account key's", ""));
  }
  bool ca = atc.contains("ca") && atc["ca"].is_boolean() && atc["ca"].get<bool>();
  if (ca != expected.ca) {
    return fail(err(Errc::protocol, "SPC token: atc.ca differs from the request", ""));
  }
  SpcToken t;
  t.jwt = jwt;
  t.fingerprint = expected.fingerprint;
  t.jti = p["jti"].get<std::string>();
  t.exp = exp;
  auto list = pki::TnAuthList::fromIdentifierValue(expected.tkvalue);
  if (list && list->singleSpc()) {
    t.spc = *list->singleSpc();
  }
  return t;
}

namespace {

/// The payload checks shared by a fresh and a kept CA list (all but signature and expiry).
Result<CaList> caListFromPayload(const json& p, const std::string& jws) {
  CaList list;
  list.jws = jws;
  if (!p.contains("sequence") || !p["sequence"].is_number_integer() || p["sequence"].get<std::int64_t>() < 0) {
    return fail(err(Errc::protocol, "CA list: no non-negative integer sequence", ""));
  }
  list.sequence = p["sequence"].get<std::int64_t>();
  if (!p.contains("exp") || !p["exp"].is_number_integer()) {
    return fail(err(Errc::protocol, "CA list: no integer exp", ""));
  }
  list.exp = p["exp"].get<std::int64_t>();
  if (p.contains("version") && p["version"].is_string()) {
    list.version = p["version"].get<std::string>();
  }
  if (!p.contains("trustList") || !p["trustList"].is_array()) {
    return fail(err(Errc::protocol, "CA list: no trustList array", ""));
  }
  for (const auto& pem : p["trustList"]) {
    if (!pem.is_string()) {
      return fail(err(Errc::protocol, "CA list: trustList holds a non-string", ""));
    }
    auto certs = pki::parsePemChain(pem.get<std::string>());
    if (!certs) {
      return fail(err(Errc::protocol, "CA list: trustList holds an entry that is not a PEM certificate", ""));
    }
    list.roots.insert(list.roots.end(), certs->begin(), certs->end());
  }
  if (list.roots.empty()) {
    return fail(err(Errc::protocol, "CA list: trustList is empty", ""));
  }
  return list;
}

}  // namespace

Result<CaList> verifyCaList(const std::string& jws, const std::vector<pki::Certificate>& anchors, std::int64_t now,
                            const std::function<Result<std::string>(const std::string&)>& fetchX5u) {
  auto payload = verifyX5uJws(jws, anchors, std::chrono::system_clock::time_point(std::chrono::seconds(now)),
                              fetchX5u, "CA list");
  if (!payload) {
    return fail(payload.error());
  }
  auto list = caListFromPayload(*payload, jws);
  if (!list) {
    return list;
  }
  if (list->exp <= now) {
    return fail(err(Errc::protocol, "CA list: expired (exp " + std::to_string(list->exp) + " is not after now " +
                                        std::to_string(now) + ")",
                    ""));
  }
  return list;
}

Result<CaList> readKeptCaList(const std::string& jws) {
  auto parts = pki::parseCompactJws(jws);
  if (!parts) {
    return fail(err(Errc::protocol, "kept CA list: " + parts.error().message, ""));
  }
  json payload = pki::checkJsonLimits(parts->payload) ? json::parse(parts->payload, nullptr, false) : json();
  if (!payload.is_object()) {
    return fail(err(Errc::protocol, "kept CA list: payload is not a JSON object", ""));
  }
  return caListFromPayload(payload, jws);
}

class StiPaClient::Impl {
 public:
  Impl(http::Transport& transport, StiPaOptions options) : transport_(transport), options_(std::move(options)) {}

  /// spcToken / takeSpcToken: under mutex_ from the cache lookup to the hand-out.
  Result<SpcToken> token(const std::string& spc, const pki::EcPublicKey& accountKey, bool ca, bool take,
                         const StiPaClient& self);

  http::Transport& transport_;
  StiPaOptions options_;
  std::mutex mutex_;
  std::optional<SecretBytes> accessToken_;
  std::map<std::string, SpcToken> cache_;  // key: spc|fingerprint|ca
  std::map<std::string, bool> used_;       // jti → presented
  std::map<std::string, std::string> x5uCache_;
  std::string lastCrlUrl_;
  std::atomic<int> logins_{0};
  std::atomic<int> tokenRequests_{0};

  std::string url(const std::string& path) const {
    std::string base = options_.url;
    while (!base.empty() && base.back() == '/') {
      base.pop_back();
    }
    return base + path;
  }

  /// `what`: the request metrics' action label (HttpRequest::what).
  Result<http::HttpResponse> send(const std::string& method, const std::string& u, const std::string& body, bool auth,
                                  const char* what) {
    http::HttpRequest req{method, u, {{"Accept", "application/json"}}, body, what};
    if (!body.empty()) {
      req.headers.emplace_back("Content-Type", "application/json");
    }
    if (auth && accessToken_) {
      req.headers.emplace_back("Authorization", std::string(accessToken_->view()));
    }
    auto r = transport_.send(req);
    // The copies of the password (login body) and of the access token (header) go now.
    OPENSSL_cleanse(req.body.data(), req.body.size());
    for (auto& [name, value] : req.headers) {
      OPENSSL_cleanse(value.data(), value.size());
    }
    return r;
  }

  /// {"userId": …, "password": …} with the password escaped straight into the buffer.
  static std::string loginBody(const std::string& userId, const SecretBytes& password) {
    std::string text = "{\"userId\":" + json(userId).dump() + ",\"password\":\"";
    text.reserve(text.size() + password.size() * 6 + 2);
    for (unsigned char c : password.view()) {
      if (c == '"' || c == '\\') {
        text += '\\';
        text += static_cast<char>(c);
      } else if (c < 0x20) {
        static const char* hex = "0123456789abcdef";
        text += "\\u00";
        text += hex[c >> 4];
        text += hex[c & 15];
      } else {
        text += static_cast<char>(c);
      }
    }
    text += "\"}";
    return text;
  }

  Result<void> login() {
    auto password = readSecretFile(options_.passwordFile);
    if (!password) {
      Error e = password.error();
      e.message = "cannot read the STI-PA password file: " + e.message;
      return fail(e);
    }
    std::string text = loginBody(options_.userId, *password);
    const std::string u = url("/auth/login");
    auto r = send("POST", u, text, false, "login");
    OPENSSL_cleanse(text.data(), text.size());
    if (!r) {
      return fail(r.error());
    }
    ++logins_;
    if (r->status == 401) {
      Error e = answerError(*r, u, "login of user '" + options_.userId + "'");
      return fail(e);
    }
    auto j = successJson(*r, u, "login of user '" + options_.userId + "'");
    if (!j) {
      return fail(j.error());
    }
    if (!j->contains("accessToken") || !(*j)["accessToken"].is_string()) {
      return fail(err(Errc::protocol, "login answer has no accessToken", u));
    }
    auto& token = (*j)["accessToken"].get_ref<std::string&>();
    accessToken_ = SecretBytes(std::string_view(token));
    OPENSSL_cleanse(token.data(), token.size());
    OPENSSL_cleanse(r->body.data(), r->body.size());
    return ok();
  }

  /// An authenticated request; logs in first if needed and once more on 401.
  Result<http::HttpResponse> authed(const std::string& method, const std::string& u, const std::string& body,
                                    const char* what) {
    if (!accessToken_) {
      if (auto l = login(); !l) {
        return fail(l.error());
      }
    }
    auto r = send(method, u, body, true, what);
    if (r && r->status == 401) {
      accessToken_.reset();
      if (auto l = login(); !l) {
        return fail(l.error());
      }
      r = send(method, u, body, true, what);
    }
    return r;
  }

  /// URLs the STI-PA hands back (the token's x5u, the CRL URL) must be https on its own host.
  Result<void> allowed(const std::string& u, const char* what) const {
    const std::string own = urlOrigin(options_.url);
    const std::string target = urlOrigin(u);
    const bool listed = std::any_of(options_.allowedHosts.begin(), options_.allowedHosts.end(),
                                    [&target](const std::string& h) { return urlOrigin("https://" + h) == target; });
    if (u.rfind("https://", 0) != 0 || target.empty() || (target != own && !listed)) {
      return fail(err(Errc::protocol,
                      std::string(what) + " is not an https URL on the STI-PA's host " + own.substr(own.find("://") + 3) +
                          " or in [sti_pa] allowed_hosts: " + u.substr(0, 256),
                      u.substr(0, 256)));
    }
    return ok();
  }

  Result<std::string> fetchX5u(const std::string& u) {
    if (auto it = x5uCache_.find(u); it != x5uCache_.end()) {
      return it->second;
    }
    if (auto a = allowed(u, "x5u"); !a) {
      return fail(a.error());
    }
    auto r = transport_.send(http::HttpRequest{"GET", u, {}, {}, "x5u"});
    if (!r) {
      return fail(r.error());
    }
    if (r->status != 200) {
      return fail(err(Errc::protocol, "x5u certificate download failed (HTTP " + std::to_string(r->status) + ")", u,
                      r->status));
    }
    if (x5uCache_.size() >= kMaxCachedX5u) {
      x5uCache_.clear();  // bounded: a server naming ever new URLs cannot grow it
    }
    x5uCache_[u] = r->body;
    return r->body;
  }
};

StiPaClient::StiPaClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
StiPaClient::~StiPaClient() = default;

std::unique_ptr<StiPaClient> StiPaClient::create(http::Transport& transport, StiPaOptions options) {
  return std::unique_ptr<StiPaClient>(new StiPaClient(std::make_unique<Impl>(transport, std::move(options))));
}

std::string StiPaClient::fingerprintOf(const pki::EcPublicKey& key) const {
  return impl_->options_.fingerprint == FingerprintKind::spki ? key.spkiFingerprint() : key.thumbprintFingerprint();
}

int StiPaClient::logins() const {
  return impl_->logins_.load();
}
int StiPaClient::tokenRequests() const {
  return impl_->tokenRequests_.load();
}

Result<SpcToken> StiPaClient::spcToken(const std::string& spc, const pki::EcPublicKey& accountKey, bool ca) {
  return impl_->token(spc, accountKey, ca, false, *this);
}

Result<SpcToken> StiPaClient::takeSpcToken(const std::string& spc, const pki::EcPublicKey& accountKey, bool ca) {
  return impl_->token(spc, accountKey, ca, true, *this);
}

Result<SpcToken> StiPaClient::Impl::token(const std::string& spc, const pki::EcPublicKey& accountKey, bool ca,
                                          bool take, const StiPaClient& self) {
  Impl& d = *this;
  if (!pki::isValidSpc(spc)) {
    return fail(Errc::invalidArgument, "SPC must be one or more of 0-9 A-Z: '" + spc + "'");
  }
  auto der = pki::TnAuthList::forSpc(spc).toDer();
  if (!der) {
    return fail(der.error());
  }
  Atc atc;
  atc.tkvalue = pki::base64Encode(*der);
  atc.ca = ca;
  atc.fingerprint = self.fingerprintOf(accountKey);
  const std::string key = spc + "|" + atc.fingerprint + "|" + (ca ? "ca" : "ee");
  std::lock_guard<std::mutex> lock(d.mutex_);
  auto now = std::chrono::system_clock::now();
  if (auto it = d.cache_.find(key); it != d.cache_.end()) {
    if (!d.used_[it->second.jti] && it->second.exp - d.options_.minRemaining > now) {
      if (take) {
        d.used_[it->second.jti] = true;
      }
      return it->second;
    }
    d.cache_.erase(it);
  }
  json body{
      {"atc", {{"tktype", atc.tktype}, {"tkvalue", atc.tkvalue}, {"ca", atc.ca}, {"fingerprint", atc.fingerprint}}}};
  const std::string u = d.url("/account/" + spc + "/token");
  auto r = d.authed("POST", u, body.dump(), "spc_token");
  if (!r) {
    return fail(r.error());
  }
  ++d.tokenRequests_;
  auto j = successJson(*r, u, "SPC token request for " + spc);
  if (!j) {
    return fail(j.error());
  }
  if (!j->contains("token") || !(*j)["token"].is_string()) {
    return fail(err(Errc::protocol, "SPC token answer has no token", u));
  }
  auto token = verifySpcToken((*j)["token"].get<std::string>(), atc, d.options_.trustAnchors, now,
                              [&d](const std::string& x5u) { return d.fetchX5u(x5u); });
  if (!token) {
    Error e = token.error();
    if (e.context.empty()) {
      e.context = u;
    }
    return fail(e);
  }
  token->spc = spc;
  token->crlUrl = j->value("crl", "");
  if (!token->crlUrl.empty()) {
    d.lastCrlUrl_ = token->crlUrl;
  }
  d.cache_[key] = *token;
  if (take) {
    d.used_[token->jti] = true;
  }
  return token;
}

void StiPaClient::markUsed(const std::string& jti) {
  std::lock_guard<std::mutex> lock(impl_->mutex_);
  impl_->used_[jti] = true;
}

void StiPaClient::forgetTokens() {
  std::lock_guard<std::mutex> lock(impl_->mutex_);
  impl_->cache_.clear();
}

Result<CaList> StiPaClient::caList() {
  Impl& d = *impl_;
  std::lock_guard<std::mutex> lock(d.mutex_);
  const std::string u = d.url("/ca-list");
  auto r = d.authed("GET", u, "", "ca_list");
  if (!r) {
    return fail(r.error());
  }
  auto j = successJson(*r, u, "CA list request");
  if (!j) {
    return fail(j.error());
  }
  if (!j->contains("caList") || !(*j)["caList"].is_string()) {
    return fail(err(Errc::protocol, "CA list answer has no caList", u));
  }
  auto list = verifyCaList((*j)["caList"].get<std::string>(), d.options_.trustAnchors,
                           std::chrono::duration_cast<std::chrono::seconds>(
                               std::chrono::system_clock::now().time_since_epoch())
                               .count(),
                           [&d](const std::string& x5u) { return d.fetchX5u(x5u); });
  if (!list) {
    Error e = list.error();
    if (e.context.empty()) {
      e.context = u;
    }
    return fail(e);
  }
  return list;
}

Result<pki::Bytes> StiPaClient::crl() {
  Impl& d = *impl_;
  std::string u;
  {
    std::lock_guard<std::mutex> lock(d.mutex_);
    u = d.lastCrlUrl_;
  }
  if (u.empty()) {
    std::string base = d.options_.url;
    auto api = base.rfind("/api/");
    u = (api == std::string::npos ? base : base.substr(0, api)) + "/download/v1/crl";
  }
  if (auto a = d.allowed(u, "the CRL URL"); !a) {
    return fail(a.error());
  }
  auto r = d.transport_.send(http::HttpRequest{"GET", u, {{"Accept", "application/pkix-crl"}}, {}, "crl"});
  if (!r) {
    return fail(r.error());
  }
  if (r->status != 200) {
    return fail(answerError(*r, u, "CRL download"));
  }
  return pki::Bytes(r->body.begin(), r->body.end());
}

}  // namespace kms::sti_pa
