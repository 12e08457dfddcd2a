#include "sti_pa_service.h"

#include <algorithm>
#include <chrono>
#include <regex>
#include <set>

#include "cert_builder.h"
#include "pki/tn_auth_list.h"
#include "util.h"

namespace kms::lab {

namespace {

using json = nlohmann::json;
using ojson = nlohmann::ordered_json;

constexpr std::string_view kApi = "/sti-pa/api/v1";
constexpr std::string_view kDownload = "/sti-pa/download/v1";
constexpr std::chrono::seconds kCrlValidity{24 * 3600};
constexpr std::int64_t kCaListLifetime = std::int64_t{24} * 3600;

LabReply failed(int status, const std::string& message) {
  return LabReply::json(status, json{{"status", "failed"}, {"message", message}});
}

bool isFingerprint(const std::string& s) {
  static const std::regex re("^SHA256 ([0-9A-F]{2}:){31}[0-9A-F]{2}$");
  return std::regex_match(s, re);
}

}  // namespace

LabReply StiPaService::handle(const LabRequest& request) {
  if (ctx_.options.failStiPa) {
    return failed(500, "internal server error (kms-lab --fail-sti-pa)");
  }
  const std::string& path = request.path;
  if (path.starts_with(kDownload)) {
    std::string_view rest = std::string_view(path).substr(kDownload.size());
    if (request.method != "GET" && request.method != "HEAD") {
      return failed(405, "method not allowed");
    }
    if (rest == "/crl") {
      auto der = crl();
      if (!der) {
        return failed(500, der.error().toString());
      }
      return LabReply::bytes(200, std::string(der->begin(), der->end()), "application/pkix-crl");
    }
    if (rest == "/certificate/certificateId_1.crt") {
      return LabReply::bytes(200, ctx_.pki->stiPaSigner->cert.pem(), "application/x-pem-file");
    }
    return failed(404, "not found");
  }
  if (!path.starts_with(kApi)) {
    return failed(404, "not found");
  }
  const auto& allowed = ctx_.options.stiPaAllowedIps;
  if (!allowed.empty() && std::find(allowed.begin(), allowed.end(), request.remoteAddress) == allowed.end()) {
    return failed(403, "IP address not allowed");
  }
  std::string_view rest = std::string_view(path).substr(kApi.size());
  if (rest == "/auth/login") {
    return request.method == "POST" ? login(request) : failed(405, "method not allowed");
  }
  if (rest == "/ca-list") {
    if (request.method != "GET") {
      return failed(405, "method not allowed");
    }
    if (auto denied = checkAccess(request)) {
      return *denied;
    }
    return caList();
  }
  static const std::regex tokenPath("^/account/([^/]+)/token$");
  std::match_results<std::string_view::const_iterator> m;
  if (std::regex_match(rest.begin(), rest.end(), m, tokenPath)) {
    if (request.method != "POST") {
      return failed(405, "method not allowed");
    }
    if (auto denied = checkAccess(request)) {
      return *denied;
    }
    return token(request, m[1].str());
  }
  return failed(404, "not found");
}

std::optional<LabReply> StiPaService::checkAccess(const LabRequest& request) {
  std::string auth = request.header("authorization");
  if (auth.starts_with("Bearer ")) {
    return failed(401, "send the raw access token in Authorization, without 'Bearer'");
  }
  auto it = accessTokens_.find(auth);
  if (auth.empty() || it == accessTokens_.end() || it->second <= unixNow()) {
    return failed(401, "invalid or expired access token");
  }
  return std::nullopt;
}

LabReply StiPaService::login(const LabRequest& request) {
  json body = json::parse(request.body, nullptr, false);
  if (body.is_discarded() || !body.is_object() || !body.contains("userId") || !body["userId"].is_string() ||
      !body.contains("password") || !body["password"].is_string()) {
    return failed(400, "request must be {\"userId\":..., \"password\":...}");
  }
  if (body["userId"] != kStiPaUserId || body["password"] != ctx_.stiPaPassword) {
    return failed(401, "invalid credentials");
  }
  std::int64_t now = unixNow();
  std::erase_if(accessTokens_, [now](const auto& entry) { return entry.second <= now; });
  std::string access = randomToken(24);
  accessTokens_[access] = now + ctx_.options.accessTokenLifetime;
  return LabReply::json(200, json{{"status", "success"},
                                  {"accessToken", access},
                                  {"refreshToken", randomToken(24)},
                                  {"message", "login successful"}});
}

LabReply StiPaService::token(const LabRequest& request, const std::string& spc) {
  ojson body = ojson::parse(request.body, nullptr, false);
  if (body.is_discarded() || !body.is_object() || !body.contains("atc") || !body["atc"].is_object()) {
    return failed(400, "request must be {\"atc\":{...}}");
  }
  const ojson& atc = body["atc"];
  auto str = [&](const char* name) -> std::optional<std::string> {
    if (atc.contains(name) && atc[name].is_string()) {
      return atc[name].get<std::string>();
    }
    return std::nullopt;
  };
  auto tktype = str("tktype");
  if (!tktype || !iequals(*tktype, "TNAuthList")) {
    return failed(400, "atc.tktype must be TNAuthList");
  }
  auto tkvalue = str("tkvalue");
  auto der = tkvalue ? decodeEitherBase64(*tkvalue) : std::nullopt;
  if (!der) {
    return failed(400, "atc.tkvalue is not base64");
  }
  auto list = pki::TnAuthList::fromDer(*der);
  if (!list) {
    return failed(400, "atc.tkvalue is not a DER TNAuthList: " + list.error().message);
  }
  auto tokenSpc = list->singleSpc();
  if (!tokenSpc || *tokenSpc != spc) {
    return failed(400, "atc.tkvalue must hold exactly one SPC equal to the SPC in the path (" + spc + ")");
  }
  if (atc.contains("ca") && !atc["ca"].is_boolean()) {
    return failed(400, "atc.ca must be a boolean");
  }
  auto fingerprint = str("fingerprint");
  if (!fingerprint || !isFingerprint(*fingerprint)) {
    return failed(400, "atc.fingerprint must be \"SHA256 \" followed by 32 upper-case hex pairs joined by ':'");
  }
  const auto& owned = ctx_.options.spcs;
  if (std::find(owned.begin(), owned.end(), spc) == owned.end()) {
    return failed(403, "SPC " + spc + " is not assigned to this account");
  }
  auto foreign = [this](std::string url) {
    if (ctx_.options.foreignUrls) {
      url.replace(url.find("127.0.0.1"), 9, "127.0.0.2");
    }
    return url;
  };
  ojson header{{"alg", "ES256"}, {"typ", "JWT"}, {"x5u", foreign(ctx_.tokenSignerUrl())}};
  ojson payload{{"exp", unixNow() + ctx_.options.tokenLifetime}, {"jti", uuid4()}, {"atc", atc}};
  auto jwt = signCompactEs256(*ctx_.pki->stiPaSigner->key, header.dump(), payload.dump());
  if (!jwt) {
    return failed(500, jwt.error().toString());
  }
  if (ctx_.options.tamperToken) {
    // Flip one bit in the middle of the signature: the token no longer verifies.
    std::size_t at = jwt->rfind('.') + 10;
    (*jwt)[at] = (*jwt)[at] == 'A' ? 'B' : 'A';
  }
  return LabReply::json(200, json{{"status", "success"},
                                  {"message", "SPC token for spc: " + spc + " is created successfully"},
                                  {"token", *jwt},
                                  {"crl", foreign(ctx_.crlUrl())}});
}

LabReply StiPaService::caList() {
  const TrustSwitches& t = ctx_.trust;
  ojson header{{"alg", "ES256"}, {"typ", "JWT"}, {"x5u", ctx_.tokenSignerUrl()}};
  ojson payload{{"version", "1"},
                {"sequence", t.caListSequence},
                {"exp", t.caListMode == "expired" ? unixNow() - 60 : unixNow() + kCaListLifetime},
                {"trustList", t.caListMode == "empty"     ? ojson::array()
                              : t.caListMode == "foreign" ? ojson::array({ctx_.pki->stiPaRoot->cert.pem()})
                                                          : ojson::array({ctx_.pki->stiCaRoot->cert.pem()})}};
  auto jws = signCompactEs256(*ctx_.pki->stiPaSigner->key, header.dump(), payload.dump());
  if (!jws) {
    return failed(500, jws.error().toString());
  }
  if (t.caListMode == "tampered") {
    std::size_t at = jws->rfind('.') + 10;
    (*jws)[at] = (*jws)[at] == 'A' ? 'B' : 'A';
  }
  return LabReply::json(200, json{{"status", "success"}, {"caList", *jws}});
}

Result<pki::Bytes> StiPaService::crl() const {
  const std::string& mode = ctx_.trust.crlMode;
  if (mode == "garbage") {
    return pki::Bytes{'n', 'o', 't', ' ', 'a', ' ', 'C', 'R', 'L'};
  }
  std::vector<RevokedEntry> entries;
  for (const auto& [id, cert] : ctx_.store.certificates()) {
    if (!cert.revoked) {
      continue;
    }
    auto serial = pki::hexDecode(cert.id);
    auto leaf = pki::Certificate::fromPem(cert.leafPem);
    if (!serial || !leaf) {
      return fail(Errc::internal, "stored certificate " + cert.id + " does not parse");
    }
    entries.push_back({*serial, cert.revokedAt, cert.reason, *leaf});
  }
  const KeyedCert& signer = mode == "wrong-signer" ? *ctx_.pki->stiPaSigner : *ctx_.pki->stiPaCrl;
  pki::SoftwareKey& key = mode == "bad-signature" ? *ctx_.pki->stiPaSigner->key : *signer.key;
  if (mode == "stale") {
    return buildCrl(signer.cert, key, entries, ctx_.crlUrl(), -std::chrono::hours(24), std::chrono::hours(48));
  }
  return buildCrl(signer.cert, key, entries, ctx_.crlUrl(), kCrlValidity);
}

Result<void> StiPaService::loadTrustState(LabContext& ctx) {
  auto text = readFile(ctx.options.dir + "/trust-state.json");
  if (!text) {
    return ok();
  }
  json j = json::parse(*text, nullptr, false);
  if (!j.is_object() || !j.contains("ca_list_sequence") || !j["ca_list_sequence"].is_number_integer() ||
      !j.contains("ca_generation") || !j["ca_generation"].is_number_integer()) {
    return fail(Errc::invalidArgument, "malformed (delete it to start over)", ctx.options.dir + "/trust-state.json");
  }
  ctx.trust.caListSequence = j["ca_list_sequence"].get<std::int64_t>();
  ctx.trust.caGeneration = j["ca_generation"].get<int>();
  return ok();
}

Result<void> StiPaService::saveTrustState() const {
  json j{{"ca_list_sequence", ctx_.trust.caListSequence}, {"ca_generation", ctx_.trust.caGeneration}};
  return writeFileAtomic(ctx_.options.dir + "/trust-state.json", j.dump(2) + "\n");
}

LabReply StiPaService::trustState() const {
  const TrustSwitches& t = ctx_.trust;
  return LabReply::json(200, json{{"ca_list_sequence", t.caListSequence},
                                  {"ca_list_mode", t.caListMode},
                                  {"ca_generation", t.caGeneration},
                                  {"crl_mode", t.crlMode},
                                  {"sti_ca_root", ctx_.pki->stiCaRoot->cert.subject()}});
}

LabReply StiPaService::admin(const LabRequest& request) {
  if (request.method != "POST") {
    return failed(405, "method not allowed");
  }
  json body = request.body.empty() ? json::object() : json::parse(request.body, nullptr, false);
  if (!body.is_object()) {
    return failed(400, "the body must be a JSON object");
  }
  const std::string& path = request.path;
  if (path == "/lab/revoke") {
    if (!body.contains("serial") || !body["serial"].is_string()) {
      return failed(400, "request must be {\"serial\": \"<hex>\", \"reason\": <code>}");
    }
    std::string serial = body["serial"].get<std::string>();
    std::transform(serial.begin(), serial.end(), serial.begin(), [](unsigned char c) { return std::toupper(c); });
    StoredCertificate* cert = ctx_.store.certificate(serial);
    if (cert == nullptr) {
      return failed(404, "no certificate with serial " + serial);
    }
    cert->revoked = true;
    cert->reason = body.value("reason", 1);
    cert->revokedAt = unixNow();
    if (auto w = ctx_.store.save(); !w) {
      return failed(500, w.error().toString());
    }
    return LabReply::json(200, json{{"revoked", serial}, {"reason", cert->reason}});
  }
  if (path == "/lab/ari") {
    static const std::set<std::string> windows{"lifetime", "now", "every"};
    if (!body.contains("window") || !body["window"].is_string() ||
        windows.count(body["window"].get<std::string>()) == 0) {
      return failed(400, "window must be lifetime, now or every");
    }
    ctx_.ariWindow = body["window"].get<std::string>();
    ctx_.ariNowFor.clear();
    for (const auto& [serial, cert] : ctx_.store.certificates()) {
      ctx_.ariNowFor.insert(serial);
    }
    return LabReply::json(200, json{{"ari_window", ctx_.ariWindow}});
  }
  if (path == "/lab/expire-access-tokens") {
    const std::size_t n = accessTokens_.size();
    accessTokens_.clear();  // every login token the STI-PA handed out is now refused (401)
    return LabReply::json(200, json{{"expired", n}});
  }
  if (path == "/lab/hostile") {
    for (const char* what : {"nonce", "location"}) {
      if (!body.contains(what)) {
        continue;
      }
      if (!body[what].is_string() || (body[what] != "good" && body[what] != "not-utf8")) {
        return failed(400, std::string(what) + " must be good or not-utf8");
      }
      (std::string(what) == "nonce" ? ctx_.hostile.nonce : ctx_.hostile.location) = body[what].get<std::string>();
    }
    if (body.contains("ari_retry_after")) {
      if (body["ari_retry_after"].is_null()) {
        ctx_.hostile.ariRetryAfter.reset();
      } else if (body["ari_retry_after"].is_string()) {
        ctx_.hostile.ariRetryAfter = body["ari_retry_after"].get<std::string>();
      } else {
        return failed(400, "ari_retry_after must be a string (the Retry-After value) or null");
      }
    }
    if (body.contains("acme_hold")) {
      if (!body["acme_hold"].is_boolean()) {
        return failed(400, "acme_hold must be true or false");
      }
      ctx_.hostile.acmeHold = body["acme_hold"].get<bool>();
    }
    if (body.contains("fail_sti_pa")) {
      if (!body["fail_sti_pa"].is_boolean()) {
        return failed(400, "fail_sti_pa must be true or false");
      }
      ctx_.options.failStiPa = body["fail_sti_pa"].get<bool>();
    }
    if (body.contains("fingerprint")) {
      if (!body["fingerprint"].is_string() || (body["fingerprint"] != "spki" && body["fingerprint"] != "jwk-thumbprint")) {
        return failed(400, "fingerprint must be spki or jwk-thumbprint");
      }
      ctx_.options.fingerprint = body["fingerprint"] == "spki" ? FingerprintFlavour::spki
                                                                : FingerprintFlavour::jwkThumbprint;
    }
    return LabReply::json(200, json{{"nonce", ctx_.hostile.nonce},
                                    {"fingerprint", toString(ctx_.options.fingerprint)},
                                    {"location", ctx_.hostile.location},
                                    {"acme_hold", ctx_.hostile.acmeHold.load()},
                                    {"fail_sti_pa", ctx_.options.failStiPa},
                                    {"ari_retry_after", ctx_.hostile.ariRetryAfter.value_or("")}});
  }
  if (path == "/lab/rotate-root") {
    if (auto r = ctx_.pki->rotateStiCa(ctx_.options.dir, ctx_.trust.caGeneration + 1); !r) {
      return failed(500, r.error().toString());
    }
    ++ctx_.trust.caGeneration;
    ++ctx_.trust.caListSequence;
  } else if (path == "/lab/ca-list") {
    if (body.contains("sequence")) {
      if (!body["sequence"].is_number_integer()) {
        return failed(400, "sequence must be an integer");
      }
      ctx_.trust.caListSequence = body["sequence"].get<std::int64_t>();
    }
    if (body.contains("mode")) {
      static const std::set<std::string> modes{"good", "tampered", "expired", "empty", "foreign"};
      if (!body["mode"].is_string() || modes.count(body["mode"].get<std::string>()) == 0) {
        return failed(400, "mode must be good, tampered, expired, empty or foreign");
      }
      ctx_.trust.caListMode = body["mode"].get<std::string>();
    }
  } else if (path == "/lab/crl") {
    static const std::set<std::string> modes{"good", "garbage", "wrong-signer", "bad-signature", "stale"};
    if (!body.contains("mode") || !body["mode"].is_string() || modes.count(body["mode"].get<std::string>()) == 0) {
      return failed(400, "mode must be good, garbage, wrong-signer, bad-signature or stale");
    }
    ctx_.trust.crlMode = body["mode"].get<std::string>();
  } else {
    return failed(404, "not found");
  }
  if (auto w = saveTrustState(); !w) {
    return failed(500, w.error().toString());
  }
  return trustState();
}

}  // namespace kms::lab
