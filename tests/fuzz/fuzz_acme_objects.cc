// Fuzzes what the ACME client reads from a CA: the first byte selects which object parser
// (directory, account, order, authorization, challenge, renewalInfo) gets the rest as its
// body. The rest is also fed to problemError (as an error response body, its first line as
// the Retry-After header), parseRetryAfter and parseRfc3339.
//
// Round trip: an object that parses, written back as the JSON a CA would send (by the
// writers below, members named as in RFC 8555/9447), parses again to the same values.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "acme/client.h"
#include "http/transport.h"
#include "fuzz_check.h"
#include "objects.h"

namespace {

using nlohmann::json;
namespace acme = kms::acme;
namespace detail = kms::acme::detail;

constexpr const char* kUrl = "https://ca.example/acme/fuzz";

void optional(json& j, const char* member, const std::optional<std::string>& value) {
  if (value) {
    j[member] = *value;
  }
}

json identifierJson(const acme::Identifier& id) { return {{"type", id.type}, {"value", id.value}}; }

/// A problem document for an embedded error: only what the parser keeps as its name.
json problemJson(const kms::Error& e) { return {{"type", "urn:ietf:params:acme:error:" + e.nativeName}}; }

json challengeJson(const acme::Challenge& c) {
  json j{{"type", c.type}, {"url", c.url}, {"status", c.status}};
  if (!c.token.empty()) {
    j["token"] = c.token;
  }
  optional(j, "tkauth-type", c.tkauthType);
  optional(j, "token-authority", c.tokenAuthority);
  if (c.error) {
    j["error"] = problemJson(*c.error);
  }
  return j;
}

bool sameChallenge(const acme::Challenge& a, const acme::Challenge& b) {
  return a.type == b.type && a.url == b.url && a.status == b.status && a.token == b.token &&
         a.tkauthType == b.tkauthType && a.tokenAuthority == b.tokenAuthority &&
         a.error.has_value() == b.error.has_value();
}

void roundTripDirectory(const acme::Directory& d) {
  json j{{"newNonce", d.newNonce},     {"newAccount", d.newAccount}, {"newOrder", d.newOrder},
         {"revokeCert", d.revokeCert}, {"keyChange", d.keyChange}};
  optional(j, "renewalInfo", d.renewalInfo);
  json meta{{"externalAccountRequired", d.externalAccountRequired}};
  optional(meta, "termsOfService", d.termsOfService);
  j["meta"] = meta;
  auto again = detail::parseDirectory(j.dump(), kUrl);
  KMS_FUZZ_CHECK(again.has_value(), "a directory written back must parse");
  KMS_FUZZ_CHECK(again->newNonce == d.newNonce && again->newAccount == d.newAccount && again->newOrder == d.newOrder &&
                     again->revokeCert == d.revokeCert && again->keyChange == d.keyChange &&
                     again->renewalInfo == d.renewalInfo && again->termsOfService == d.termsOfService &&
                     again->externalAccountRequired == d.externalAccountRequired,
                 "a directory written back must parse to the same URLs");
}

void roundTripOrder(const acme::Order& o) {
  json ids = json::array();
  for (const auto& id : o.identifiers) {
    ids.push_back(identifierJson(id));
  }
  json j{{"status", o.status}, {"identifiers", ids}, {"authorizations", o.authorizations}, {"finalize", o.finalize}};
  optional(j, "certificate", o.certificate);
  if (o.error) {
    j["error"] = problemJson(*o.error);
  }
  auto again = detail::parseOrder(j.dump(), kUrl);
  KMS_FUZZ_CHECK(again.has_value(), "an order written back must parse");
  KMS_FUZZ_CHECK(again->status == o.status && again->identifiers == o.identifiers &&
                     again->authorizations == o.authorizations && again->finalize == o.finalize &&
                     again->certificate == o.certificate && again->error.has_value() == o.error.has_value(),
                 "an order written back must parse to the same order");
  if (o.error) {
    KMS_FUZZ_CHECK(again->error->nativeName == o.error->nativeName, "an order's problem keeps its name");
  }
}

void roundTripAuthorization(const acme::Authorization& a) {
  json chs = json::array();
  for (const auto& c : a.challenges) {
    chs.push_back(challengeJson(c));
  }
  json j{{"status", a.status}, {"identifier", identifierJson(a.identifier)}, {"challenges", chs},
         {"wildcard", a.wildcard}};
  auto again = detail::parseAuthorization(j.dump(), kUrl);
  KMS_FUZZ_CHECK(again.has_value(), "an authorization written back must parse");
  bool same = again->status == a.status && again->identifier == a.identifier && again->wildcard == a.wildcard &&
              again->challenges.size() == a.challenges.size();
  for (std::size_t i = 0; same && i < a.challenges.size(); ++i) {
    same = sameChallenge(again->challenges[i], a.challenges[i]);
  }
  KMS_FUZZ_CHECK(same, "an authorization written back must parse to the same authorization");
}

void roundTripChallenge(const acme::Challenge& c) {
  auto again = detail::parseChallenge(challengeJson(c).dump(), kUrl);
  KMS_FUZZ_CHECK(again.has_value(), "a challenge written back must parse");
  KMS_FUZZ_CHECK(sameChallenge(*again, c), "a challenge written back must parse to the same challenge");
}

void parseObject(std::uint8_t selector, const std::string& body) {
  switch (selector % 6) {
    case 0:
      if (auto d = detail::parseDirectory(body, kUrl)) {
        roundTripDirectory(*d);
      }
      break;
    case 1:
      (void)detail::parseAccount(body, kUrl);
      break;
    case 2:
      if (auto o = detail::parseOrder(body, kUrl)) {
        roundTripOrder(*o);
      }
      break;
    case 3:
      if (auto a = detail::parseAuthorization(body, kUrl)) {
        roundTripAuthorization(*a);
      }
      break;
    case 4:
      if (auto c = detail::parseChallenge(body, kUrl)) {
        roundTripChallenge(*c);
      }
      break;
    default:
      if (auto info = detail::parseRenewalInfo(body, kUrl)) {
        KMS_FUZZ_CHECK(info->windowStart < info->windowEnd, "a renewal window must end after it starts");
      }
      break;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) {
    return 0;
  }
  const std::uint8_t selector = data[0];
  std::string body(reinterpret_cast<const char*>(data + 1), size - 1);

  parseObject(selector, body);

  kms::http::HttpResponse response;
  response.status = 400 + (selector >> 3) * 3;  // 400 .. 493, including 429
  response.headers.emplace_back("content-type", "application/problem+json");
  response.headers.emplace_back("retry-after", body.substr(0, body.find('\n')));
  response.body = body;
  kms::Error error = kms::acme::problemError(response, kUrl);
  KMS_FUZZ_CHECK(!error.nativeName.empty(), "a problem must name its type or HTTP status");
  (void)error.toString();

  const auto now = std::chrono::system_clock::now();
  if (auto delay = kms::acme::parseRetryAfter(body, now)) {
    KMS_FUZZ_CHECK(delay->count() >= 0, "Retry-After must not be negative");
  }
  (void)kms::acme::detail::parseRfc3339(body);
  return 0;
}
