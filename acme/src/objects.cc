#include "objects.h"
#include "pki/json_limits.h"

#include <algorithm>
#include <cstdio>
#include <ctime>

#include <nlohmann/json.hpp>

namespace kms::acme::detail {
namespace {

using nlohmann::json;

Error malformed(const std::string& url, const std::string& what) {
  Error e;
  e.code = Errc::protocol;
  e.message = what;
  e.context = url;
  return e;
}

Result<json> parseObject(const std::string& body, const std::string& url, const char* what) {
  if (auto limits = pki::checkJsonLimits(body); !limits) {
    return fail(malformed(url, std::string(what) + ": " + limits.error().message));
  }
  json j = json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return fail(malformed(url, std::string(what) + " is not a JSON object"));
  }
  return j;
}

/// Required string member.
Result<std::string> str(const json& j, const char* member, const std::string& url, const char* what) {
  auto it = j.find(member);
  if (it == j.end() || !it->is_string()) {
    return fail(malformed(url, std::string(what) + " has no string member '" + member + "'"));
  }
  return it->get<std::string>();
}

std::optional<std::string> optStr(const json& j, const char* member) {
  auto it = j.find(member);
  if (it == j.end() || !it->is_string()) {
    return std::nullopt;
  }
  return it->get<std::string>();
}

Result<std::vector<std::string>> strArray(const json& j, const char* member, const std::string& url, const char* what,
                                          bool required) {
  std::vector<std::string> out;
  auto it = j.find(member);
  if (it == j.end()) {
    if (required) {
      return fail(malformed(url, std::string(what) + " has no member '" + member + "'"));
    }
    return out;
  }
  if (!it->is_array()) {
    return fail(malformed(url, std::string(what) + " member '" + member + "' is not an array"));
  }
  for (const auto& v : *it) {
    if (!v.is_string()) {
      return fail(malformed(url, std::string(what) + " member '" + member + "' holds a non-string"));
    }
    out.push_back(v.get<std::string>());
  }
  return out;
}

Result<Identifier> identifier(const json& j, const std::string& url, const char* what) {
  if (!j.is_object()) {
    return fail(malformed(url, std::string(what) + " identifier is not an object"));
  }
  auto type = str(j, "type", url, "identifier");
  auto value = str(j, "value", url, "identifier");
  if (!type || !value) {
    return fail(!type ? type.error() : value.error());
  }
  return Identifier{*type, *value};
}

std::optional<Error> embeddedProblem(const json& j, const std::string& url) {
  auto it = j.find("error");
  if (it == j.end() || !it->is_object()) {
    return std::nullopt;
  }
  HttpResponse fake;
  auto status = it->find("status");
  if (status != it->end() && status->is_number_integer()) {
    fake.status = std::clamp<std::int64_t>(status->get<std::int64_t>(), 0, 999);
  }
  fake.headers.emplace_back("content-type", "application/problem+json");
  fake.body = it->dump();
  return problemError(fake, url);
}

}  // namespace

std::optional<pki::SystemTime> parseRfc3339(const std::string& text) {
  int y = 0;
  int mo = 0;
  int d = 0;
  int h = 0;
  int mi = 0;
  int s = 0;
  int consumed = 0;
  if (std::sscanf(text.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &s, &consumed) != 6) {
    return std::nullopt;
  }
  std::size_t pos = static_cast<std::size_t>(consumed);
  if (pos < text.size() && text[pos] == '.') {
    ++pos;
    while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') {
      ++pos;
    }
  }
  long offset = 0;
  if (pos < text.size() && (text[pos] == 'Z' || text[pos] == 'z')) {
    ++pos;
  } else if (pos < text.size() && (text[pos] == '+' || text[pos] == '-')) {
    int oh = 0;
    int om = 0;
    if (std::sscanf(text.c_str() + pos + 1, "%2d:%2d", &oh, &om) != 2) {
      return std::nullopt;
    }
    offset = (text[pos] == '+' ? 1 : -1) * (oh * 3600L + om * 60L);
    pos += 6;
  } else {
    return std::nullopt;
  }
  // Years outside 1970..2200 are refused: they are no renewal window, and far dates would
  // overflow system_clock's nanoseconds.
  if (pos != text.size() || y < 1970 || y > 2200 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 ||
      s > 60) {
    return std::nullopt;
  }
  std::tm tm{};
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = s;
  return std::chrono::system_clock::from_time_t(timegm(&tm) - offset);
}

Result<Directory> parseDirectory(const std::string& body, const std::string& url) {
  auto j = parseObject(body, url, "ACME directory");
  if (!j) {
    return fail(j.error());
  }
  Directory d;
  for (auto [member, field] : {std::pair<const char*, std::string*>{"newNonce", &d.newNonce},
                               {"newAccount", &d.newAccount},
                               {"newOrder", &d.newOrder}}) {
    auto v = str(*j, member, url, "ACME directory");
    if (!v) {
      return fail(v.error());
    }
    *field = *v;
  }
  d.revokeCert = optStr(*j, "revokeCert").value_or("");
  d.keyChange = optStr(*j, "keyChange").value_or("");
  d.renewalInfo = optStr(*j, "renewalInfo");
  if (auto meta = j->find("meta"); meta != j->end() && meta->is_object()) {
    d.termsOfService = optStr(*meta, "termsOfService");
    auto ear = meta->find("externalAccountRequired");
    d.externalAccountRequired = ear != meta->end() && ear->is_boolean() && ear->get<bool>();
  }
  return d;
}

Result<Account> parseAccount(const std::string& body, const std::string& url) {
  auto j = parseObject(body, url, "ACME account");
  if (!j) {
    return fail(j.error());
  }
  Account a;
  auto status = str(*j, "status", url, "ACME account");
  if (!status) {
    return fail(status.error());
  }
  a.status = *status;
  auto contact = strArray(*j, "contact", url, "ACME account", false);
  if (!contact) {
    return fail(contact.error());
  }
  a.contact = std::move(*contact);
  return a;
}

Result<Order> parseOrder(const std::string& body, const std::string& url) {
  auto j = parseObject(body, url, "ACME order");
  if (!j) {
    return fail(j.error());
  }
  Order o;
  o.url = url;
  auto status = str(*j, "status", url, "ACME order");
  if (!status) {
    return fail(status.error());
  }
  o.status = *status;
  auto ids = j->find("identifiers");
  if (ids == j->end() || !ids->is_array()) {
    return fail(malformed(url, "ACME order has no array member 'identifiers'"));
  }
  for (const auto& id : *ids) {
    auto parsed = identifier(id, url, "ACME order");
    if (!parsed) {
      return fail(parsed.error());
    }
    o.identifiers.push_back(std::move(*parsed));
  }
  auto authz = strArray(*j, "authorizations", url, "ACME order", true);
  if (!authz) {
    return fail(authz.error());
  }
  o.authorizations = std::move(*authz);
  auto fin = str(*j, "finalize", url, "ACME order");
  if (!fin) {
    return fail(fin.error());
  }
  o.finalize = *fin;
  o.certificate = optStr(*j, "certificate");
  o.error = embeddedProblem(*j, url);
  return o;
}

Result<Challenge> challengeFrom(const json& j, const std::string& url) {
  if (!j.is_object()) {
    return fail(malformed(url, "ACME challenge is not an object"));
  }
  Challenge c;
  auto type = str(j, "type", url, "ACME challenge");
  auto curl = str(j, "url", url, "ACME challenge");
  auto status = str(j, "status", url, "ACME challenge");
  if (!type || !curl || !status) {
    return fail(!type ? type.error() : (!curl ? curl.error() : status.error()));
  }
  c.type = *type;
  c.url = *curl;
  c.status = *status;
  c.token = optStr(j, "token").value_or("");
  c.tkauthType = optStr(j, "tkauth-type");
  c.tokenAuthority = optStr(j, "token-authority");
  c.error = embeddedProblem(j, url);
  return c;
}

Result<Challenge> parseChallenge(const std::string& body, const std::string& url) {
  auto j = parseObject(body, url, "ACME challenge");
  if (!j) {
    return fail(j.error());
  }
  return challengeFrom(*j, url);
}

Result<Authorization> parseAuthorization(const std::string& body, const std::string& url) {
  auto j = parseObject(body, url, "ACME authorization");
  if (!j) {
    return fail(j.error());
  }
  Authorization a;
  a.url = url;
  auto status = str(*j, "status", url, "ACME authorization");
  if (!status) {
    return fail(status.error());
  }
  a.status = *status;
  auto idIt = j->find("identifier");
  if (idIt == j->end()) {
    return fail(malformed(url, "ACME authorization has no member 'identifier'"));
  }
  auto id = identifier(*idIt, url, "ACME authorization");
  if (!id) {
    return fail(id.error());
  }
  a.identifier = std::move(*id);
  auto chs = j->find("challenges");
  if (chs == j->end() || !chs->is_array()) {
    return fail(malformed(url, "ACME authorization has no array member 'challenges'"));
  }
  for (const auto& c : *chs) {
    auto parsed = challengeFrom(c, url);
    if (!parsed) {
      return fail(parsed.error());
    }
    a.challenges.push_back(std::move(*parsed));
  }
  auto wc = j->find("wildcard");
  a.wildcard = wc != j->end() && wc->is_boolean() && wc->get<bool>();
  return a;
}

Result<RenewalInfo> parseRenewalInfo(const std::string& body, const std::string& url) {
  auto j = parseObject(body, url, "ACME renewalInfo");
  if (!j) {
    return fail(j.error());
  }
  auto window = j->find("suggestedWindow");
  if (window == j->end() || !window->is_object()) {
    return fail(malformed(url, "ACME renewalInfo has no object member 'suggestedWindow'"));
  }
  auto start = str(*window, "start", url, "suggestedWindow");
  auto end = str(*window, "end", url, "suggestedWindow");
  if (!start || !end) {
    return fail(!start ? start.error() : end.error());
  }
  auto s = parseRfc3339(*start);
  auto e = parseRfc3339(*end);
  if (!s || !e) {
    return fail(malformed(url, "suggestedWindow start/end are not RFC 3339 timestamps"));
  }
  if (*e <= *s) {
    return fail(malformed(url, "suggestedWindow end is not after its start"));
  }
  RenewalInfo info;
  info.windowStart = *s;
  info.windowEnd = *e;
  info.explanationUrl = optStr(*j, "explanationURL");
  return info;
}

}  // namespace kms::acme::detail
