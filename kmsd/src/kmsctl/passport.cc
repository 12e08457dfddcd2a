// kmsctl passport sign: a PASSporT signed by the daemon (through its ATIS-1000082 route),
// printed as the SIP Identity header value.
#include <ostream>

#include <nlohmann/json.hpp>

#include "control/control_api.h"
#include "daemon/config_check.h"
#include "events/event_sink.h"
#include "kmsctl/client.h"
#include "kmsctl/commands.h"
#include "signing/signing_request.h"

namespace kms::daemon {
namespace {

/// The request body ATIS-1000082 defines, with kmsd's `cert`, `div` and `rcd` members.
nlohmann::json requestOf(const PassportOptions& o) {
  nlohmann::json r{{"orig", {{"tn", o.orig}}}, {"dest", {{"tn", o.dest}}}};
  if (!o.cert.empty()) {
    r["cert"] = o.cert;
  }
  if (!o.div.empty()) {
    r["div"] = {{"tn", o.div}};
    return {{"signingRequest", r}};
  }
  r["attest"] = o.attest;
  if (!o.origid.empty()) {
    r["origid"] = o.origid;
  }
  if (!o.rcdName.empty()) {
    r["rcd"] = {{"nam", o.rcdName}};
  }
  return {{"signingRequest", r}};
}

/// An ATIS-1000082 error body as one line: "SVC4005: " and the text with its variables.
std::string describeError(const std::string& body) {
  auto j = nlohmann::json::parse(body, nullptr, false);
  if (!j.is_object() || !j.contains("requestError") || !j["requestError"].is_object() || j["requestError"].empty() ||
      !j["requestError"].begin()->is_object()) {
    return body;
  }
  const auto& e = *j["requestError"].begin();
  AtisError error;
  error.messageId = e.value("messageId", std::string("?"));
  error.text = e.value("text", std::string("refused"));
  if (e.contains("variables") && e["variables"].is_array()) {
    for (const auto& v : e["variables"]) {
      error.variables.push_back(v.is_string() ? v.get<std::string>() : v.dump());
    }
  }
  return error.messageId + ": " + error.describe();
}

}  // namespace

int ctlPassportSign(Target& target, const PassportOptions& o, std::ostream& out, std::ostream& err) {
  const std::string socket = target.socket();
  auto r = controlRequest(socket, "POST", "/stir/v1/signing", requestOf(o).dump());
  if (!r) {
    checkSocketAccess(socket, err);
    err << "kmsctl: kmsd is not running (no answer on " << socket << "); signing needs the daemon\n";
    return kExitCheckFailed;
  }
  if (r->status != 200) {
    err << "kmsctl: kmsd did not sign (HTTP " << r->status << "): " << sanitize(describeError(r->body)) << '\n';
    return kExitCheckFailed;
  }
  auto j = nlohmann::json::parse(r->body, nullptr, false);
  const std::string identity =
      j.is_object() && j.contains("signingResponse") ? j["signingResponse"].value("identity", "") : "";
  if (identity.empty()) {
    err << "kmsctl: kmsd answered 200 without an identity\n";
    return kExitRuntime;
  }
  out << identity << '\n';
  return kExitOk;
}

}  // namespace kms::daemon
