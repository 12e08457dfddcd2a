#include "acme/client.h"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <ctime>
#include <deque>
#include <mutex>
#include <set>

#include <nlohmann/json.hpp>

#include "acme/jws.h"
#include "kms/text.h"
#include "kms/url.h"
#include "objects.h"
#include "pki/encoding.h"
#include "pki/json_limits.h"

namespace kms::acme {
namespace {

/// The public call a request belongs to, named for the request metrics (HttpRequest::what).
/// Per thread: the client is used from several workers at once.
thread_local const char* tAction = nullptr;
struct ActionScope {
  explicit ActionScope(const char* action) : previous(tAction) { tAction = action; }
  ~ActionScope() { tAction = previous; }
  ActionScope(const ActionScope&) = delete;
  ActionScope& operator=(const ActionScope&) = delete;
  const char* previous;
};

using nlohmann::json;
using namespace std::chrono_literals;

constexpr std::string_view kProblemPrefix = "urn:ietf:params:acme:error:";
constexpr std::size_t kMaxPooledNonces = 64;
constexpr std::size_t kMaxAlternates = 4;

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

/// Media type without parameters, lower-cased.
std::string mediaType(const HttpResponse& r) {
  std::string ct = lower(r.header("content-type").value_or(""));
  auto semi = ct.find(';');
  if (semi != std::string::npos) {
    ct.resize(semi);
  }
  while (!ct.empty() && ct.back() == ' ') {
    ct.pop_back();
  }
  return ct;
}

Error protocolError(const std::string& url, std::string message) {
  Error e;
  e.code = Errc::protocol;
  e.message = std::move(message);
  e.context = url;
  return e;
}

/// Link: <url>;rel="alternate" values of a response.
std::vector<std::string> links(const HttpResponse& r, std::string_view rel) {
  std::vector<std::string> out;
  for (const std::string& value : r.headerValues("link")) {
    std::size_t pos = 0;
    while ((pos = value.find('<', pos)) != std::string::npos) {
      std::size_t end = value.find('>', pos);
      if (end == std::string::npos) {
        break;
      }
      std::string target = value.substr(pos + 1, end - pos - 1);
      std::size_t next = value.find('<', end);
      std::string params = lower(value.substr(end + 1, next == std::string::npos ? std::string::npos : next - end - 1));
      if (params.find("rel=\"" + std::string(rel) + "\"") != std::string::npos ||
          params.find("rel=" + std::string(rel)) != std::string::npos) {
        out.push_back(target);
      }
      pos = end + 1;
    }
  }
  return out;
}

}  // namespace

std::optional<std::chrono::seconds> parseRetryAfter(std::string_view value, pki::SystemTime now) {
  std::string v(value);
  while (!v.empty() && v.back() == ' ') {
    v.pop_back();
  }
  if (v.empty()) {
    return std::nullopt;
  }
  // Every wait a CA names is bounded: under a second counts as none (the caller's own
  // schedule, never "at once"), and more than a day is a day.
  const auto bounded = [](std::int64_t secs) -> std::optional<std::chrono::seconds> {
    if (secs < 1) {
      return std::nullopt;
    }
    return std::chrono::seconds(std::min<std::int64_t>(secs, kMaxRetryAfter.count()));
  };
  if (std::all_of(v.begin(), v.end(), [](unsigned char c) { return std::isdigit(c) != 0; })) {
    return bounded(v.size() > 9 ? kMaxRetryAfter.count() : std::stol(v));
  }
  std::tm tm{};
  const char* end = strptime(v.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &tm);
  if (end == nullptr || *end != '\0') {
    return std::nullopt;
  }
  // time_t arithmetic: a date far from now must not overflow system_clock's nanoseconds.
  std::int64_t at = static_cast<std::int64_t>(timegm(&tm));
  std::int64_t nowSeconds = static_cast<std::int64_t>(std::chrono::system_clock::to_time_t(now));
  return bounded(at - nowSeconds);
}

pki::SystemTime pickRenewalTime(const RenewalInfo& info, pki::SystemTime now, std::uint64_t randomValue) {
  if (info.windowEnd <= now) {
    return now;
  }
  pki::SystemTime from = std::max(info.windowStart, now);
  auto span = std::chrono::duration_cast<std::chrono::seconds>(info.windowEnd - from).count();
  if (span <= 0) {
    return from;
  }
  return from + std::chrono::seconds(static_cast<std::int64_t>(randomValue % static_cast<std::uint64_t>(span)));
}

namespace {

Disposition problemDisposition(const std::string& type, int status, bool retryAfter) {
  // The order, its CSR or its key is refused as such: the same request fails again.
  static const std::set<std::string, std::less<>> kRefused{
      "badCSR", "badPublicKey", "badSignatureAlgorithm", "rejectedIdentifier", "unsupportedIdentifier",
      "caa",    "badRevocationReason", "alreadyRevoked"};
  if (kRefused.count(type) != 0) {
    return Disposition::permanent;
  }
  // The CA asked its clients to slow down (RFC 8555 §6.6), or is down and named a time.
  if (type == "rateLimited" || status == 429 || (status == 503 && retryAfter)) {
    return Disposition::caPause;
  }
  return Disposition::retry;
}

}  // namespace

Error problemError(const HttpResponse& response, const std::string& url) {
  Error e;
  e.context = url;
  e.native = response.status;
  e.code = Errc::protocol;
  std::string type;
  std::string detail;
  // A problem nested too deep (or too wide) is read as no problem document at all.
  json j = pki::checkJsonLimits(response.body) ? json::parse(response.body, nullptr, false) : json();
  // Every member is read only when it has the expected type: a server controls this text.
  auto text = [](const json& o, const char* key) -> std::string {
    auto it = o.find(key);
    return it != o.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  if (!j.is_discarded() && j.is_object()) {
    type = text(j, "type");
    detail = text(j, "detail");
    if (auto sub = j.find("subproblems"); sub != j.end() && sub->is_array()) {
      for (const auto& p : *sub) {
        if (!p.is_object()) {
          continue;
        }
        std::string id;
        if (auto ident = p.find("identifier"); ident != p.end() && ident->is_object()) {
          id = text(*ident, "value");
        }
        std::string what = text(p, "detail");
        detail += "; " + (id.empty() ? std::string() : id + ": ") + (what.empty() ? text(p, "type") : what);
      }
    }
  }
  std::string shortType = type.rfind(kProblemPrefix, 0) == 0 ? type.substr(kProblemPrefix.size()) : type;
  if (shortType.empty()) {
    shortType = "HTTP " + std::to_string(response.status);
  }
  e.nativeName = shortType;
  e.message = "ACME " + shortType + (detail.empty() ? std::string() : ": " + detail);
  if (shortType == "unauthorized" || shortType == "externalAccountRequired" || shortType == "userActionRequired") {
    e.code = Errc::unauthorized;
  } else if (shortType == "accountDoesNotExist") {
    e.code = Errc::notFound;
  }
  if (auto ra = response.header("retry-after")) {
    e.retryAfter = parseRetryAfter(*ra, std::chrono::system_clock::now());
  }
  e.disposition = problemDisposition(shortType, response.status, e.retryAfter.has_value());
  return e;
}

namespace {

bool printableAscii(std::string_view text) {
  return std::all_of(text.begin(), text.end(), [](char c) { return c > 0x20 && c < 0x7f; });
}

/// RFC 8555 6.5.1: a nonce is base64url without padding.
bool isNonce(std::string_view n) {
  return !n.empty() && n.size() <= 512 && std::all_of(n.begin(), n.end(), [](char c) {
           return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
         });
}

bool isLoopbackOrigin(const std::string& origin) {
  return origin.rfind("http://127.0.0.1:", 0) == 0 || origin.rfind("http://localhost:", 0) == 0 ||
         origin.rfind("http://[::1]:", 0) == 0;
}

}  // namespace

// ---------------------------------------------------------------------------------------

class AcmeClient::Impl {
 public:
  Impl(Transport& transport, ClientOptions options)
      : transport_(transport), options_(std::move(options)), origin_(urlOrigin(options_.directoryUrl)) {}

  /// A URL the CA handed back may be used only on the directory's origin, and over https
  /// (http only when the directory itself is plain http on loopback, as a test CA is):
  /// nothing is ever sent to another host, a plain-http listener or a file: URL.
  Result<void> allowed(const std::string& url) const {
    if (!printableAscii(url)) {
      return fail(protocolError(origin_, "refusing a URL from the CA with bytes outside printable ASCII: '" +
                                             escapeControl(url, 256) + "'"));
    }
    const std::string origin = urlOrigin(url);
    const bool secure = origin.rfind("https://", 0) == 0 || isLoopbackOrigin(origin_);
    if (origin.empty() || origin != origin_ || !secure) {
      Error e{Errc::protocol,
              "refusing a URL from the CA that is not on the directory's origin " + origin_ + ": " +
                  url.substr(0, 256),
              url.substr(0, 256), 0, {}, Disposition::retry, std::nullopt};
      return fail(e);
    }
    return ok();
  }
  /// The Location header of a response to `url`: present, printable ASCII and on the
  /// directory's origin (it becomes a kid or a URL kmsd polls).
  Result<std::string> locationOf(const HttpResponse& r, const std::string& url, const char* what) const {
    auto location = r.header("location");
    if (!location) {
      return fail(protocolError(url, std::string(what) + " answered without a Location header"));
    }
    if (auto a = allowed(*location); !a) {
      Error e = a.error();
      e.message = std::string(what) + " answered a Location header kmsd refuses: " + e.message;
      return fail(e);
    }
    return *location;
  }

  /// Every request to a URL the CA named goes through here.
  Result<HttpResponse> send(const HttpRequest& req) {
    if (auto a = allowed(req.url); !a) {
      return fail(a.error());
    }
    if (req.what == nullptr && tAction != nullptr) {
      HttpRequest named = req;
      named.what = tAction;
      return transport_.send(named);
    }
    return transport_.send(req);
  }

  Transport& transport_;
  ClientOptions options_;
  std::string origin_;  ///< of the directory URL (the operator's)
  Directory directory_;
  std::mutex nonceMutex_;
  std::deque<std::string> nonces_;
  std::atomic<std::uint64_t> badNonceRetries_{0};

  /// A Replay-Nonce that is not base64url (RFC 8555 6.5.1) is never kept or sent.
  void harvest(const HttpResponse& r) {
    if (auto n = r.header("replay-nonce"); n && isNonce(*n)) {
      std::lock_guard<std::mutex> lock(nonceMutex_);
      nonces_.push_back(*n);
      if (nonces_.size() > kMaxPooledNonces) {
        nonces_.pop_front();
      }
    }
  }

  Result<std::string> takeNonce() {
    {
      std::lock_guard<std::mutex> lock(nonceMutex_);
      if (!nonces_.empty()) {
        std::string n = std::move(nonces_.front());
        nonces_.pop_front();
        return n;
      }
    }
    HttpRequest req{"HEAD", directory_.newNonce, {}, {}, "newNonce"};
    auto r = send(req);
    if (!r) {
      return fail(r.error());
    }
    auto n = r->header("replay-nonce");
    if (r->status >= 400 || !n || n->empty()) {
      return fail(protocolError(directory_.newNonce, "newNonce answered HTTP " + std::to_string(r->status) +
                                                         " without a Replay-Nonce header"));
    }
    if (!isNonce(*n)) {
      return fail(protocolError(directory_.newNonce, "newNonce answered a Replay-Nonce that is not base64url: '" +
                                                         escapeControl(*n, 128) + "'"));
    }
    return *n;
  }

  /// Signed POST with badNonce retry. kid empty = jwk form. Error statuses become errors.
  Result<HttpResponse> post(pki::Signer& key, const std::string& kid, const std::string& url,
                            const std::string& payload, bool conflictIsAnswer = false) {
    if (auto a = allowed(url); !a) {  // before the URL goes into a signed header
      return fail(a.error());
    }
    for (int attempt = 0;; ++attempt) {
      auto nonce = takeNonce();
      if (!nonce) {
        return fail(nonce.error());
      }
      auto body = signRequest(key, url, *nonce, kid, payload);
      if (!body) {
        return fail(body.error());
      }
      HttpRequest req{"POST", url, {{"Content-Type", "application/jose+json"}}, std::move(*body)};
      auto r = send(req);
      if (!r) {
        return fail(r.error());
      }
      harvest(*r);
      if (r->status < 400 || (conflictIsAnswer && r->status == 409)) {
        return r;
      }
      Error e = problemError(*r, url);
      if (e.nativeName == "badNonce" && attempt < options_.maxBadNonceRetries) {
        ++badNonceRetries_;
        continue;
      }
      return fail(e);
    }
  }

  /// post() then parse a JSON body, checking the media type.
  Result<HttpResponse> postJson(pki::Signer& key, const std::string& kid, const std::string& url,
                                const std::string& payload) {
    auto r = post(key, kid, url, payload);
    if (!r) {
      return r;
    }
    std::string mt = mediaType(*r);
    if (mt != "application/json") {
      return fail(
          protocolError(url, "expected application/json, got '" + mt + "' (HTTP " + std::to_string(r->status) + ")"));
    }
    return r;
  }

  /// POST to newAccount (jwk form); the account URL comes from Location.
  Result<Account> accountRequest(pki::Signer& key, const std::string& payload) {
    const std::string& url = directory_.newAccount;
    auto r = postJson(key, "", url, payload);
    if (!r) {
      return fail(r.error());
    }
    auto location = locationOf(*r, url, "newAccount");
    if (!location) {
      return fail(location.error());
    }
    auto account = detail::parseAccount(r->body, url);
    if (!account) {
      return fail(account.error());
    }
    account->url = *location;
    return account;
  }
};

AcmeClient::AcmeClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
AcmeClient::~AcmeClient() = default;

Result<std::unique_ptr<AcmeClient>> AcmeClient::create(Transport& transport, ClientOptions options) {
  auto impl = std::make_unique<Impl>(transport, std::move(options));
  const std::string url = impl->options_.directoryUrl;
  auto r = transport.send(HttpRequest{"GET", url, {}, {}, "directory"});
  if (!r) {
    return fail(r.error());
  }
  if (r->status != 200) {
    return fail(problemError(*r, url));
  }
  auto dir = detail::parseDirectory(r->body, url);
  if (!dir) {
    return fail(dir.error());
  }
  impl->directory_ = std::move(*dir);
  return std::unique_ptr<AcmeClient>(new AcmeClient(std::move(impl)));
}

const Directory& AcmeClient::directory() const {
  return impl_->directory_;
}
std::uint64_t AcmeClient::badNonceRetries() const {
  return impl_->badNonceRetries_.load();
}

Result<Account> AcmeClient::newAccount(pki::Signer& key, const std::vector<std::string>& contact,
                                       const ExternalAccountBinding* eab) {
  ActionScope scope("newAccount");
  const std::string& url = impl_->directory_.newAccount;
  json payload{{"termsOfServiceAgreed", true}};
  if (!contact.empty()) {
    payload["contact"] = contact;
  }
  if (eab != nullptr) {
    auto binding = externalAccountBinding(eab->hmacKey, eab->kid, url, key.publicKey());
    if (!binding) {
      return fail(binding.error());
    }
    payload["externalAccountBinding"] = json::parse(*binding);
  }
  return impl_->accountRequest(key, payload.dump());
}

Result<Account> AcmeClient::findAccount(pki::Signer& key) {
  ActionScope scope("newAccount");
  return impl_->accountRequest(key, R"({"onlyReturnExisting":true})");
}

Result<void> AcmeClient::changeKey(const AccountRef& account, pki::Signer& newKey) {
  ActionScope scope("keyChange");
  const std::string& url = impl_->directory_.keyChange;
  if (url.empty()) {
    return fail(Errc::unsupported, "the ACME directory has no keyChange", impl_->options_.directoryUrl);
  }
  auto inner = keyChangeInner(newKey, url, account.url, account.key.publicKey());
  if (!inner) {
    return fail(inner.error());
  }
  auto r = impl_->post(account.key, account.url, url, *inner, true);
  if (!r) {
    return fail(r.error());
  }
  if (r->status == 409) {
    Error e = problemError(*r, url);
    e.code = Errc::alreadyExists;
    e.message = "the new key already belongs to an account";
    if (auto other = impl_->locationOf(*r, url, "keyChange")) {
      e.message += " (" + *other + ")";
    }
    return fail(e);
  }
  return ok();
}

Result<Account> AcmeClient::deactivate(const AccountRef& account) {
  ActionScope scope("deactivateAccount");
  auto r = impl_->postJson(account.key, account.url, account.url, R"({"status":"deactivated"})");
  if (!r) {
    return fail(r.error());
  }
  auto a = detail::parseAccount(r->body, account.url);
  if (!a) {
    return fail(a.error());
  }
  a->url = account.url;
  return a;
}

Result<Order> AcmeClient::newOrder(const AccountRef& account, const std::vector<Identifier>& identifiers,
                                   const std::optional<std::string>& replaces) {
  ActionScope scope("newOrder");
  const std::string& url = impl_->directory_.newOrder;
  json ids = json::array();
  for (const Identifier& id : identifiers) {
    ids.push_back({{"type", id.type}, {"value", id.value}});
  }
  json payload{{"identifiers", ids}};
  if (replaces) {
    payload["replaces"] = *replaces;
  }
  auto r = impl_->postJson(account.key, account.url, url, payload.dump());
  if (!r) {
    return fail(r.error());
  }
  auto location = impl_->locationOf(*r, url, "newOrder");
  if (!location) {
    return fail(location.error());
  }
  auto order = detail::parseOrder(r->body, *location);
  if (!order) {
    return fail(order.error());
  }
  return order;
}

namespace {

/// The answer's Retry-After (bounded by parseRetryAfter); empty when absent, unreadable or
/// under a second.
std::optional<std::chrono::seconds> answerRetryAfter(const HttpResponse& r) {
  auto ra = r.header("retry-after");
  if (!ra) {
    return std::nullopt;
  }
  return parseRetryAfter(*ra, std::chrono::system_clock::now());
}

/// Parses an order or authorization answer and keeps its Retry-After.
template <class T>
Result<T> withRetryAfter(const HttpResponse& r, Result<T> parsed) {
  if (parsed) {
    parsed->retryAfter = answerRetryAfter(r);
  }
  return parsed;
}

}  // namespace

Result<Order> AcmeClient::getOrder(const AccountRef& account, const std::string& url) {
  ActionScope scope("order");
  auto r = impl_->postJson(account.key, account.url, url, "");
  if (!r) {
    return fail(r.error());
  }
  return withRetryAfter(*r, detail::parseOrder(r->body, url));
}

Result<Authorization> AcmeClient::getAuthorization(const AccountRef& account, const std::string& url) {
  ActionScope scope("authorization");
  auto r = impl_->postJson(account.key, account.url, url, "");
  if (!r) {
    return fail(r.error());
  }
  return withRetryAfter(*r, detail::parseAuthorization(r->body, url));
}

Result<Challenge> AcmeClient::respondChallenge(const AccountRef& account, const std::string& url,
                                               const std::string& payloadJson) {
  ActionScope scope("challenge");
  auto r = impl_->postJson(account.key, account.url, url, payloadJson);
  if (!r) {
    return fail(r.error());
  }
  return detail::parseChallenge(r->body, url);
}

Result<Order> AcmeClient::finalize(const AccountRef& account, const Order& order, const pki::Bytes& csrDer) {
  ActionScope scope("finalize");
  json payload{{"csr", pki::base64UrlEncode(csrDer)}};
  auto r = impl_->postJson(account.key, account.url, order.finalize, payload.dump());
  if (!r) {
    return fail(r.error());
  }
  return withRetryAfter(*r, detail::parseOrder(r->body, order.url));
}

Result<CertificateChain> AcmeClient::downloadCertificate(const AccountRef& account, const std::string& url) {
  ActionScope scope("certificate");
  auto r = impl_->post(account.key, account.url, url, "");
  if (!r) {
    return fail(r.error());
  }
  std::string mt = mediaType(*r);
  if (mt != "application/pem-certificate-chain") {
    return fail(protocolError(url, "expected application/pem-certificate-chain, got '" + mt + "'"));
  }
  CertificateChain chain;
  chain.pem = std::move(r->body);
  chain.alternates = links(*r, "alternate");
  if (chain.alternates.size() > kMaxAlternates) {
    chain.alternates.resize(kMaxAlternates);  // a CA has no reason to offer more
  }
  return chain;
}

Result<void> AcmeClient::revoke(const AccountRef& account, const pki::Bytes& certDer, std::optional<int> reason) {
  ActionScope scope("revokeCert");
  const std::string& url = impl_->directory_.revokeCert;
  if (url.empty()) {
    return fail(Errc::unsupported, "the ACME directory has no revokeCert", impl_->options_.directoryUrl);
  }
  json payload{{"certificate", pki::base64UrlEncode(certDer)}};
  if (reason) {
    payload["reason"] = *reason;
  }
  auto r = impl_->post(account.key, account.url, url, payload.dump());
  if (!r) {
    return fail(r.error());
  }
  return ok();
}

Result<RenewalInfo> AcmeClient::renewalInfo(const std::string& certId) {
  ActionScope scope("renewalInfo");
  if (!impl_->directory_.renewalInfo) {
    return fail(Errc::unsupported, "the ACME directory has no renewalInfo (ARI)", impl_->options_.directoryUrl);
  }
  std::string base = *impl_->directory_.renewalInfo;
  std::string url = base + (base.empty() || base.back() == '/' ? "" : "/") + certId;
  auto r = impl_->send(HttpRequest{"GET", url, {}, {}});
  if (!r) {
    return fail(r.error());
  }
  if (r->status != 200) {
    return fail(problemError(*r, url));
  }
  auto info = detail::parseRenewalInfo(r->body, url);
  if (!info) {
    return fail(info.error());
  }
  std::chrono::seconds retry{21600};
  if (auto ra = r->header("retry-after")) {
    if (auto secs = parseRetryAfter(*ra, std::chrono::system_clock::now())) {
      retry = *secs;
    }
  }
  info->retryAfter = std::clamp(retry, std::chrono::seconds(60), std::chrono::seconds(86400));
  return info;
}

}  // namespace kms::acme
