// kmsctl status [--json]
#include <iomanip>
#include <ostream>

#include <nlohmann/json.hpp>

#include "daemon/config_check.h"
#include "events/event_sink.h"
#include "kmsctl/client.h"
#include "kmsctl/commands.h"
#include "control/control_api.h"
#include "control/status_view.h"
#include "common/clock.h"
#include "services/state_reader.h"

namespace kms::daemon {
namespace {

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
      return showStatus(*cfg, json, out, err);
    }
    out << raw->body << '\n';
    return raw->status == 200 ? kExitOk : kExitRuntime;
  }
  auto status = ask(*cfg, "GET", "/v1/status", "", err);
  if (!status) {
    out << "kmsd is not running; read from the state DB\n";
    return showStatus(*cfg, json, out, err);
  }
  const auto& d = (*status)["daemon"];
  out << "kmsd running (pid " << d.value("pid", 0) << "), " << d.value("open_orders", 0) << " order(s) in flight\n";
  printTable((*status)["certificates"], out);
  return kExitOk;
}

int showStatus(const config::Config& cfg, bool json, std::ostream& out, std::ostream& err) {
  std::string list = "[]";
  if (pathExists(dbPath(cfg))) {
    auto db = openExistingDb(cfg);
    if (!db) {
      err << "kmsctl: " << db.error().toString() << '\n';
      return kExitRuntime;
    }
    auto store = storage::makeSqliteStore(**db);
    LockedStore locked(*store);
    // The daemon's view, as far as the configuration tells it: which certificates it manages.
    RuntimeViews runtime;
    for (const auto& c : cfg.certificates) {
      runtime.emplace(c.name, RuntimeView{"", "kmsd is not running", false});
    }
    auto rows = certificatesJson(locked, unixSeconds(systemClock()->now()), runtime);
    if (!rows) {
      err << "kmsctl: " << rows.error().toString() << '\n';
      return kExitRuntime;
    }
    list = std::move(*rows);
  }
  const auto certs = nlohmann::json::parse(list, nullptr, false);
  if (json) {
    // The daemon's shape; no daemon.
    out << nlohmann::json{{"daemon", nullptr}, {"certificates", certs}}.dump(2) << '\n';
    return kExitOk;
  }
  if (!certs.is_array() || certs.empty()) {
    out << "no managed certificates yet (state: " << dbPath(cfg) << ")\n";
    return kExitOk;
  }
  printTable(certs, out);
  return kExitOk;
}

}  // namespace kms::daemon
