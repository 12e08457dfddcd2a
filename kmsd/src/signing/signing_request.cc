#include "signing/signing_request.h"

#include <set>

#include <nlohmann/json.hpp>

#include "pki/json_limits.h"

namespace kms::daemon {
namespace {

using nlohmann::json;

/// Nesting a signing request needs (signingRequest > dest > tn[]) with room to spare.
constexpr std::size_t kMaxDepth = 8;

AtisError make(int status, const char* id, std::string text, std::vector<std::string> variables) {
  return AtisError{status, id, std::move(text), std::move(variables)};
}

/// The request parsed; duplicate members (which nlohmann would silently resolve to the last)
/// are refused.
std::variant<json, AtisError> parseStrict(std::string_view body) {
  if (!pki::checkJsonLimits(body, kMaxDepth, body.size())) {
    return notJson("nested deeper than " + std::to_string(kMaxDepth) + " levels");
  }
  std::vector<std::set<std::string>> keys;
  std::string duplicate;
  auto callback = [&](int, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::object_start) {
      keys.emplace_back();
    } else if (event == json::parse_event_t::object_end && !keys.empty()) {
      keys.pop_back();
    } else if (event == json::parse_event_t::key && !keys.empty() && !keys.back().insert(parsed.get<std::string>()).second &&
               duplicate.empty()) {
      duplicate = parsed.get<std::string>();
    }
    return true;
  };
  json j = json::parse(body.begin(), body.end(), callback, false);
  if (j.is_discarded()) {
    return notJson("the body is not JSON");
  }
  if (!duplicate.empty()) {
    return notJson("member '" + duplicate + "' appears twice");
  }
  return j;
}

/// `obj.name.tn` as a string TN, canonical.
std::variant<std::string, AtisError> singleTn(const json& obj, const char* name) {
  auto it = obj.find(name);
  if (it == obj.end()) {
    return missingParameter(name);
  }
  const std::string field = std::string(name) + ".tn";
  if (!it->is_object() || it->size() != 1 || !it->contains("tn") || !(*it)["tn"].is_string()) {
    return invalidParameter(name, "must be {\"tn\":\"<telephone number>\"}");
  }
  auto tn = pki::canonicalTn((*it)["tn"].get<std::string>(), field);
  if (!tn) {
    return invalidParameter(field, tn.error().message);
  }
  return *tn;
}

std::variant<std::vector<std::string>, AtisError> destTns(const json& obj) {
  auto it = obj.find("dest");
  if (it == obj.end()) {
    return missingParameter("dest");
  }
  if (!it->is_object() || it->size() != 1 || !it->contains("tn") || !(*it)["tn"].is_array()) {
    return invalidParameter("dest", "must be {\"tn\":[\"<telephone number>\", ...]}");
  }
  const json& list = (*it)["tn"];
  if (list.empty()) {
    return invalidParameter("dest.tn", "at least one telephone number is needed");
  }
  if (list.size() > kMaxDestTns) {
    return invalidParameter("dest.tn", "at most " + std::to_string(kMaxDestTns) + " telephone numbers, got " +
                                           std::to_string(list.size()));
  }
  std::vector<std::string> out;
  for (std::size_t i = 0; i < list.size(); ++i) {
    const std::string field = "dest.tn[" + std::to_string(i) + "]";
    if (!list[i].is_string()) {
      return invalidParameter(field, "must be a string");
    }
    auto tn = pki::canonicalTn(list[i].get<std::string>(), field);
    if (!tn) {
      return invalidParameter(field, tn.error().message);
    }
    out.push_back(std::move(*tn));
  }
  return out;
}

/// The optional string member `name`: nullopt when absent, an error when not a non-empty string.
std::variant<std::optional<std::string>, AtisError> optionalString(const json& obj, const char* name) {
  auto it = obj.find(name);
  if (it == obj.end()) {
    return std::optional<std::string>();
  }
  if (!it->is_string() || it->get<std::string>().empty()) {
    return invalidParameter(name, "must be a non-empty string");
  }
  return std::optional<std::string>(it->get<std::string>());
}

/// Fills the members every PASSporT has: orig, dest, iat.
std::optional<AtisError> readCommon(const json& r, std::int64_t now, pki::PassportClaims& c) {
  auto orig = singleTn(r, "orig");
  if (auto* e = std::get_if<AtisError>(&orig)) {
    return *e;
  }
  c.orig = std::get<std::string>(orig);
  auto dest = destTns(r);
  if (auto* e = std::get_if<AtisError>(&dest)) {
    return *e;
  }
  c.dest = std::get<std::vector<std::string>>(dest);
  c.iat = now;
  if (auto it = r.find("iat"); it != r.end()) {
    if (!it->is_number_integer()) {
      return invalidParameter("iat", "must be an integer (seconds since the epoch)");
    }
    const auto iat = it->get<std::int64_t>();
    if (iat < now - kIatWindow || iat > now + kIatWindow) {
      return invalidParameter("iat", "must be within " + std::to_string(kIatWindow) + " s of now (" +
                                         std::to_string(now) + "), got " + std::to_string(iat));
    }
    c.iat = iat;
  }
  return std::nullopt;
}

/// attest, origid, rcd, crn of a SHAKEN PASSporT.
std::optional<AtisError> readShaken(const json& r, pki::PassportClaims& c) {
  auto attest = optionalString(r, "attest");
  if (auto* e = std::get_if<AtisError>(&attest)) {
    return *e;
  }
  if (!std::get<std::optional<std::string>>(attest)) {
    return missingParameter("attest");
  }
  c.attest = *std::get<std::optional<std::string>>(attest);
  if (c.attest != "A" && c.attest != "B" && c.attest != "C") {
    return invalidParameter("attest", "must be A, B or C");
  }
  auto origid = optionalString(r, "origid");
  if (auto* e = std::get_if<AtisError>(&origid)) {
    return *e;
  }
  c.origid = std::get<std::optional<std::string>>(origid).value_or(pki::randomUuid());
  if (!pki::isUuid(c.origid)) {
    return invalidParameter("origid", "must be a UUID");
  }
  if (auto it = r.find("rcd"); it != r.end()) {
    if (!it->is_object() || it->size() != 1 || !it->contains("nam") || !(*it)["nam"].is_string() ||
        (*it)["nam"].get<std::string>().empty()) {
      return invalidParameter("rcd", "must be {\"nam\":\"<display name>\"}");
    }
    c.rcd = pki::RichCallData{(*it)["nam"].get<std::string>(), std::nullopt};
  }
  auto crn = optionalString(r, "crn");
  if (auto* e = std::get_if<AtisError>(&crn)) {
    return *e;
  }
  if (std::get<std::optional<std::string>>(crn)) {
    if (!c.rcd) {
      return invalidParameter("crn", "a call reason goes with rcd");
    }
    c.rcd->reason = std::get<std::optional<std::string>>(crn);
  }
  return std::nullopt;
}

}  // namespace

std::string AtisError::body() const {
  const char* kind = messageId.starts_with("POL") ? "policyException" : "serviceException";
  json exception{{"messageId", messageId}, {"text", text}, {"variables", variables}};
  return json{{"requestError", {{kind, exception}}}}.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string AtisError::describe() const {
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    std::size_t end = i + 1;
    while (text[i] == '%' && end < text.size() && text[end] >= '0' && text[end] <= '9') {
      ++end;
    }
    const std::size_t n = end > i + 1 ? std::stoul(text.substr(i + 1, end - i - 1)) : 0;
    if (n >= 1 && n <= variables.size()) {
      out += variables[n - 1];
      i = end - 1;
    } else {
      out += text[i];
    }
  }
  return out;
}

AtisError missingBody() {
  return make(400, "SVC4000", "Invalid service request: missing request body", {});
}
AtisError missingParameter(std::string name) {
  return make(400, "SVC4001", "Missing mandatory parameter %1", {std::move(name)});
}
AtisError invalidParameter(std::string name, std::string why) {
  return make(400, "SVC4005", "Invalid value for parameter %1: %2", {std::move(name), std::move(why)});
}
AtisError notJson(std::string why) {
  return make(400, "SVC4006", "Failed to parse message body: %1", {std::move(why)});
}
AtisError unauthorized(std::string why) {
  return make(401, "POL4001", "Unauthorized client: %1", {std::move(why)});
}
AtisError forbidden(std::string why) {
  return make(403, "POL4002", "Not allowed: %1", {std::move(why)});
}
AtisError rateLimited(std::string client, int perSecond) {
  return make(429, "POL4003", "Rate limit exceeded: %1 may send %2 requests per second",
              {std::move(client), std::to_string(perSecond)});
}
AtisError notFound(std::string target) {
  return make(404, "SVC4004", "Resource not found: %1", {std::move(target)});
}
AtisError unavailable(std::string why) {
  return make(503, "SVC5000", "Service unavailable: %1", {std::move(why)});
}
AtisError internalError(std::string why) {
  return make(500, "POL5000", "Internal server error: %1", {std::move(why)});
}

std::variant<SigningRequest, AtisError> parseSigningRequest(std::string_view body, std::int64_t now) {
  if (body.find_first_not_of(" \t\r\n") == std::string_view::npos) {
    return missingBody();
  }
  auto parsed = parseStrict(body);
  if (auto* e = std::get_if<AtisError>(&parsed)) {
    return *e;
  }
  const json& doc = std::get<json>(parsed);
  if (!doc.is_object() || !doc.contains("signingRequest")) {
    return missingParameter("signingRequest");
  }
  if (doc.size() != 1 || !doc["signingRequest"].is_object()) {
    return invalidParameter("signingRequest", "the body must be {\"signingRequest\":{...}} and nothing else");
  }
  const json& r = doc["signingRequest"];
  static const std::set<std::string> kKnown{"attest", "dest", "iat", "orig", "origid", "cert", "div", "rcd", "crn"};
  for (auto it = r.begin(); it != r.end(); ++it) {
    if (!kKnown.contains(it.key())) {
      return invalidParameter(it.key(), "not a member of a signing request");
    }
  }
  SigningRequest out;
  auto cert = optionalString(r, "cert");
  if (auto* e = std::get_if<AtisError>(&cert)) {
    return *e;
  }
  out.cert = std::get<std::optional<std::string>>(cert);
  if (auto e = readCommon(r, now, out.claims)) {
    return *e;
  }
  if (r.contains("div")) {
    for (const char* shakenOnly : {"attest", "origid", "rcd", "crn"}) {
      if (r.contains(shakenOnly)) {
        return invalidParameter(shakenOnly, "a diversion (div) PASSporT does not carry it");
      }
    }
    auto div = singleTn(r, "div");
    if (auto* e = std::get_if<AtisError>(&div)) {
      return *e;
    }
    out.claims.type = pki::PassportType::div;
    out.claims.div = std::get<std::string>(div);
  } else if (auto e = readShaken(r, out.claims)) {
    return *e;
  }
  if (auto checked = pki::checkClaims(out.claims); !checked) {
    return invalidParameter("signingRequest", checked.error().message);
  }
  return out;
}

std::string signingResponseBody(const std::string& identity) {
  return json{{"signingResponse", {{"identity", identity}}}}.dump();
}

}  // namespace kms::daemon
