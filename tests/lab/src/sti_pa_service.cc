#include "sti_pa_service.h"

#include <algorithm>
#include <chrono>
#include <regex>

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
  ojson header{{"alg", "ES256"}, {"typ", "JWT"}, {"x5u", ctx_.tokenSignerUrl()}};
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
                                  {"crl", ctx_.crlUrl()}});
}

LabReply StiPaService::caList() {
  ojson header{{"alg", "ES256"}, {"typ", "JWT"}, {"x5u", ctx_.tokenSignerUrl()}};
  ojson payload{{"version", "1"},
                {"sequence", 1},
                {"exp", unixNow() + kCaListLifetime},
                {"trustList", ojson::array({ctx_.pki->stiCaRoot->cert.pem()})}};
  auto jws = signCompactEs256(*ctx_.pki->stiPaSigner->key, header.dump(), payload.dump());
  if (!jws) {
    return failed(500, jws.error().toString());
  }
  return LabReply::json(200, json{{"status", "success"}, {"caList", *jws}});
}

Result<pki::Bytes> StiPaService::crl() const {
  std::vector<RevokedEntry> entries;
  for (const auto& [id, cert] : ctx_.store.certificates()) {
    if (!cert.revoked) {
      continue;
    }
    auto serial = pki::hexDecode(cert.id);
    if (!serial) {
      return fail(serial.error());
    }
    entries.push_back({*serial, cert.revokedAt, cert.reason, &ctx_.pki->stiCaIntermediate->cert});
  }
  return buildCrl(ctx_.pki->stiPaCrl->cert, *ctx_.pki->stiPaCrl->key, entries, ctx_.crlUrl(), kCrlValidity);
}

}  // namespace kms::lab
