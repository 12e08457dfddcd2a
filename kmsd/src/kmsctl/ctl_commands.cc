#include "kmsctl/ctl_commands.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iomanip>
#include <limits>
#include <ostream>
#include <string_view>
#include <thread>

#include <nlohmann/json.hpp>

#include "daemon/commands.h"
#include "config/config.h"
#include "control/control_api.h"
#include "events/event_sink.h"
#include "pki/json_limits.h"

namespace kms::daemon {
namespace {

/// [daemon] control_socket read without parsing the whole file (a configuration with
/// 100,000 certificates takes a second to load; talking to the daemon needs one line).
/// KMSD_DAEMON_CONTROL_SOCKET wins as it does for kmsd. Empty when the simple scan cannot
/// tell (the caller then loads the file).
std::optional<std::string> quickControlSocket(const std::string& path) {
  if (const char* env = std::getenv("KMSD_DAEMON_CONTROL_SOCKET"); env != nullptr && *env == '/') {
    return std::string(env);
  }
  std::ifstream in(path);
  std::string line;
  bool inDaemon = false;
  while (std::getline(in, line)) {
    auto first = line.find_first_not_of(" \t");
    if (first == std::string::npos || line[first] == '#') {
      continue;
    }
    std::string_view l(line);
    l.remove_prefix(first);
    if (l.front() == '[') {
      if (inDaemon) {
        return std::nullopt;  // [daemon] without control_socket: the default applies
      }
      inDaemon = l.rfind("[daemon]", 0) == 0;
      continue;
    }
    if (inDaemon && l.rfind("control_socket", 0) == 0) {
      auto open = l.find('"');
      auto close = open == std::string_view::npos ? open : l.find('"', open + 1);
      if (close == std::string_view::npos ||
          l.substr(open + 1, close - open - 1).find('\\') != std::string_view::npos) {
        return std::nullopt;
      }
      return std::string(l.substr(open + 1, close - open - 1));
    }
  }
  return std::nullopt;
}

/// The daemon's JSON answer; nullopt when it does not run (err says nothing then).
std::optional<nlohmann::json> ask(const config::Config& cfg, const std::string& method, const std::string& target,
                                  const std::string& body, std::ostream& err, int* status = nullptr) {
  auto r = controlRequest(cfg.daemon.controlSocket, method, target, body);
  if (!r) {
    if (r.error().code == Errc::timeout) {  // running but not answering: say so
      err << "kmsctl: " << sanitize(r.error().toString()) << '\n';
    }
    return std::nullopt;
  }
  if (status != nullptr) {
    *status = r->status;
  }
  // The daemon's own answer: deep nesting is still refused, size is not (100,000 certificates).
  const bool shallow = pki::checkJsonLimits(r->body, pki::kMaxJsonDepth, std::numeric_limits<std::size_t>::max())
                           .has_value();
  auto j = shallow ? nlohmann::json::parse(r->body, nullptr, false)
                   : nlohmann::json(nlohmann::json::value_t::discarded);
  if (j.is_discarded()) {
    err << "kmsctl: the daemon answered HTTP " << r->status << " with a body that is not JSON\n";
    return nlohmann::json::object();
  }
  return j;
}

std::string str(const nlohmann::json& j, const char* key, const char* dflt = "-") {
  auto it = j.find(key);
  return it != j.end() && it->is_string() && !it->get<std::string>().empty() ? it->get<std::string>()
                                                                             : std::string(dflt);
}

void printTable(const nlohmann::json& certs, std::ostream& out) {
  out << std::left << std::setw(20) << "NAME" << std::setw(14) << "STATE" << std::setw(22) << "NOT AFTER"
      << std::setw(22) << "NEXT RENEWAL"
      << "X5U\n";
  for (const auto& c : certs) {
    std::string next = str(c, "renew_at");
    if (c.contains("next_attempt_at") && c.value("failures", 0) > 0) {
      next = str(c, "next_attempt_at") + " (retry)";
    }
    out << std::setw(20) << str(c, "name") << std::setw(14) << str(c, "state") << std::setw(22) << str(c, "not_after")
        << std::setw(22) << next << str(c, "x5u") << '\n';
    if (c.contains("last_error")) {
      out << "    last error: " << sanitize(str(c, "last_error")) << '\n';
    }
  }
}

}  // namespace

int ctlStatus(const std::string& configPath, bool json, std::ostream& out, std::ostream& err) {
  if (json) {
    if (auto socket = quickControlSocket(configPath)) {
      // The daemon's JSON as it is (no parse and re-dump: 100,000 certificates are 30 MB).
      if (auto raw = controlRequest(*socket, "GET", "/v1/status")) {
        out << raw->body << '\n';
        return raw->status == 200 ? kExitOk : kExitRuntime;
      }
    }
  }
  auto cfg = loadConfig(configPath, err);
  if (!cfg) {
    return kExitCheckFailed;
  }
  if (json) {
    auto raw = controlRequest(cfg->daemon.controlSocket, "GET", "/v1/status");
    if (!raw) {
      return showStatus(configPath, json, out, err);
    }
    out << raw->body << '\n';
    return raw->status == 200 ? kExitOk : kExitRuntime;
  }
  auto status = ask(*cfg, "GET", "/v1/status", "", err);
  if (!status) {
    out << "kmsd is not running; read from the state DB\n";
    return showStatus(configPath, json, out, err);
  }
  const auto& d = (*status)["daemon"];
  out << "kmsd running (pid " << d.value("pid", 0) << "), " << d.value("open_orders", 0) << " order(s) in flight\n";
  printTable((*status)["certificates"], out);
  return kExitOk;
}

int ctlRenew(const std::string& configPath, const std::string& name, bool wait, std::ostream& out, std::ostream& err) {
  auto cfg = loadConfig(configPath, err);
  if (!cfg) {
    return kExitCheckFailed;
  }
  auto before = ask(*cfg, "GET", "/v1/certificates/" + name, "", err);
  int code = 0;
  auto r = ask(*cfg, "POST", "/v1/certificates/" + name + "/renew", "", err, &code);
  if (!r) {
    err << "kmsctl: kmsd is not running (" << cfg->daemon.controlSocket << "); nothing renewed\n";
    return kExitCheckFailed;
  }
  if (code != 202) {
    err << "kmsctl: " << str(*r, "detail", "renewal refused") << '\n';
    return kExitCheckFailed;
  }
  out << name << ": renewal requested";
  if (auto overrides = str(*r, "overrides", ""); !overrides.empty()) {
    out << " (overrides " << overrides << ")";
  }
  out << '\n';
  if (!wait) {
    return kExitOk;
  }
  const std::string oldSerial = before ? str(*before, "serial", "") : "";
  const std::int64_t oldFailures = before ? before->value("failures", 0) : 0;
  for (;;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    auto now = ask(*cfg, "GET", "/v1/certificates/" + name, "", err);
    if (!now) {
      err << "kmsctl: kmsd stopped while renewing " << name << '\n';
      return kExitRuntime;
    }
    const std::string serial = str(*now, "serial", "");
    if (!serial.empty() && serial != oldSerial && str(*now, "state") == "active") {
      out << name << ": active serial " << serial << ", not after " << str(*now, "not_after") << ", x5u "
          << str(*now, "x5u") << '\n';
      return kExitOk;
    }
    if (now->value("failures", 0) > oldFailures) {
      err << name << ": renewal failed: " << sanitize(str(*now, "last_error")) << '\n';
      return kExitRuntime;
    }
  }
}

namespace {

/// RFC 5280 5.3.1 CRLReason names by code (7 is not used).
constexpr std::array<const char*, 11> kReasonNames{
    "unspecified",          "keyCompromise",   "cACompromise", "affiliationChanged", "superseded",        "cessationOfOperation",
    "certificateHold",      nullptr,           "removeFromCRL", "privilegeWithdrawn", "aACompromise"};

std::string lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(), [](unsigned char c) { return std::tolower(c); });
  return text;
}

}  // namespace

std::optional<int> parseRevocationReason(const std::string& text) {
  if (!text.empty() && text.size() <= 2 && std::all_of(text.begin(), text.end(), [](unsigned char c) {
        return std::isdigit(c) != 0;
      })) {
    const int code = std::stoi(text);
    return code <= 10 && code != 7 ? std::optional<int>(code) : std::nullopt;
  }
  const std::string want = lower(text);
  for (std::size_t code = 0; code < kReasonNames.size(); ++code) {
    if (kReasonNames[code] != nullptr && lower(kReasonNames[code]) == want) {
      return static_cast<int>(code);
    }
  }
  return std::nullopt;
}

std::string revocationReasonName(int code) {
  if (code >= 0 && static_cast<std::size_t>(code) < kReasonNames.size() && kReasonNames[code] != nullptr) {
    return kReasonNames[code];
  }
  return std::to_string(code);
}

int ctlRevoke(const std::string& configPath, const std::string& name, int reason, std::ostream& out,
              std::ostream& err) {
  auto cfg = loadConfig(configPath, err);
  if (!cfg) {
    return kExitCheckFailed;
  }
  int code = 0;
  auto r =
      ask(*cfg, "POST", "/v1/certificates/" + name + "/revoke", nlohmann::json{{"reason", reason}}.dump(), err, &code);
  if (!r) {
    err << "kmsctl: kmsd is not running (" << cfg->daemon.controlSocket << "); nothing revoked\n";
    return kExitCheckFailed;
  }
  if (code != 200) {
    err << "kmsctl: " << sanitize(str(*r, "detail", "revocation refused")) << '\n';
    return kExitRuntime;
  }
  out << name << ": revoked serial " << str(*r, "revoked_serial") << " (reason " << reason << " "
      << revocationReasonName(reason) << "); a new certificate is being issued\n";
  return kExitOk;
}

int ctlKeys(const std::string& configPath, bool json, std::ostream& out, std::ostream& err) {
  auto cfg = loadConfig(configPath, err);
  if (!cfg) {
    return kExitCheckFailed;
  }
  // The daemon holds the token: a second process logging in would rewrite SoftHSM2's
  // token file under it, so the daemon is asked when it runs.
  int status = 0;
  if (auto r = ask(*cfg, "GET", "/v1/keys", "", err, &status)) {
    if (status != 200 || !r->is_object() || !(*r)["keys"].is_array()) {
      err << "kmsctl: kmsd answered HTTP " << status << ": " << sanitize(str(*r, "detail", "")) << '\n';
      return kExitRuntime;
    }
    if (json) {
      out << (*r)["keys"].dump(2) << '\n';
    } else {
      printKeys((*r)["keys"], cfg->hsm.tokenLabel, out);
    }
    return kExitOk;
  }
  if (!json) {
    out << "kmsd is not running; read from the token and the state DB\n";
  }
  return listKeys(*cfg, json, out, err);
}

int ctlTrust(const std::string& configPath, bool refresh, bool json, std::ostream& out, std::ostream& err) {
  auto cfg = loadConfig(configPath, err);
  if (!cfg) {
    return kExitCheckFailed;
  }
  int status = 0;
  auto r = ask(*cfg, refresh ? "POST" : "GET", refresh ? "/v1/trust/refresh" : "/v1/trust", "", err, &status);
  if (!r) {
    if (refresh) {
      err << "kmsctl: kmsd is not running (" << cfg->daemon.controlSocket << "); a refresh needs the daemon\n";
      return kExitRuntime;
    }
    if (!json) {
      out << "kmsd is not running; read from the state DB\n";
    }
    return showTrust(configPath, json, out, err);
  }
  if (status != 200 || !r->is_object()) {
    err << "kmsctl: kmsd answered HTTP " << status << ": " << sanitize(str(*r, "detail", "")) << '\n';
    return kExitRuntime;
  }
  if (json) {
    out << r->dump(2) << '\n';
  } else {
    printTrust(*r, out);
    if (refresh && r->contains("affected") && !(*r)["affected"].empty()) {
      out << "renewing at once:";
      for (const auto& n : (*r)["affected"]) {
        out << ' ' << sanitize(n.get<std::string>());
      }
      out << '\n';
    }
  }
  return kExitOk;
}

int ctlEvents(const std::string& configPath, int limit, bool follow, std::ostream& out, std::ostream& err) {
  auto cfg = loadConfig(configPath, err);
  if (!cfg) {
    return kExitCheckFailed;
  }
  if (!follow) {
    return showEvents(configPath, limit, out, err);
  }
  std::int64_t since = 0;
  bool first = true;
  for (;;) {
    auto r = ask(*cfg, "GET", "/v1/events?since=" + std::to_string(since), "", err);
    if (!r) {
      err << "kmsctl: kmsd is not running (" << cfg->daemon.controlSocket << ")\n";
      return kExitCheckFailed;
    }
    const auto& events = (*r)["events"];
    std::size_t skip = first && events.size() > static_cast<std::size_t>(limit) ? events.size() - limit : 0;
    for (std::size_t i = 0; i < events.size(); ++i) {
      const auto& e = events[i];
      since = std::max<std::int64_t>(since, e.value("id", std::int64_t{0}));
      if (i < skip) {
        continue;
      }
      out << str(e, "time") << ' ' << str(e, "level") << ' ' << str(e, "event") << ' ' << str(e, "cert") << ' '
          << sanitize(str(e, "message")) << std::endl;
    }
    if (events.size() < 1000) {  // caught up
      first = false;
      std::this_thread::sleep_for(std::chrono::seconds(1));
    }
  }
}

}  // namespace kms::daemon
