// kmsctl alerts [--json]: kmsd's own alerts, firing first, and what each channel was told.
#include <ostream>

#include <nlohmann/json.hpp>

#include "control/control_api.h"
#include "control/status_view.h"
#include "daemon/config_check.h"
#include "events/event_sink.h"
#include "kmsctl/client.h"
#include "kmsctl/commands.h"
#include "storage/alert_log.h"

namespace kms::daemon {
namespace {

/// "am sent firing", "hook failed 3x (next 12:05:00Z)": one channel's part of an alert.
std::string deliveryText(const nlohmann::json& d) {
  std::string text = str(d, "channel");
  if (d.value("failed_attempts", 0) > 0) {
    text += " failing (" + std::to_string(d.value("failed_attempts", 0)) + "x, next try " + str(d, "next_try_at") +
            ")";
  } else if (d.contains("sent") && d["sent"].is_string()) {
    text += " told " + d["sent"].get<std::string>();
  } else {
    text += " pending";
  }
  return text;
}

void printAlerts(const nlohmann::json& alerts, std::ostream& out) {
  if (!alerts.is_array() || alerts.empty()) {
    out << "no alerts firing or resolved in the last day\n";
    return;
  }
  for (const char* state : {"firing", "resolved"}) {
    for (const auto& a : alerts) {
      if (str(a, "state") != state) {
        continue;
      }
      out << sanitize(str(a, "name")) << "  " << str(a, "condition") << "  " << str(a, "severity") << "  " << state
          << " since " << str(a, "started_at");
      if (std::string(state) == "resolved") {
        out << ", resolved " << str(a, "resolved_at");
      }
      out << "\n  " << sanitize(str(a, "summary")) << '\n';
      if (a.contains("deliveries") && a["deliveries"].is_array() && !a["deliveries"].empty()) {
        std::string line;
        for (const auto& d : a["deliveries"]) {
          if (!line.empty()) {
            line += "; ";
          }
          line += deliveryText(d);
        }
        out << "  channels: " << sanitize(line) << '\n';
      }
    }
  }
}

/// With kmsd down: the same document from the state DB.
std::optional<nlohmann::json> readFromDb(Target& target, std::ostream& err) {
  auto db = openStateForReading(target, err);
  if (!db) {
    return std::nullopt;
  }
  if (!*db) {
    return nlohmann::json::array();
  }
  auto alerts = storage::readAlerts(**db);
  auto deliveries = storage::readDeliveries(**db);
  if (!alerts || !deliveries) {
    err << "kmsctl: " << (!alerts ? alerts.error() : deliveries.error()).toString() << '\n';
    return std::nullopt;
  }
  return alertsJson(*alerts, *deliveries);
}

}  // namespace

int ctlAlerts(Target& target, bool json, std::ostream& out, std::ostream& err) {
  std::optional<nlohmann::json> alerts;
  bool fromDb = false;
  if (auto r = ask(target.socket(), "GET", "/v1/alerts", "", err)) {
    alerts = (*r)["alerts"];
  } else {
    alerts = readFromDb(target, err);
    fromDb = true;
    if (!alerts) {
      return kExitCheckFailed;
    }
  }
  if (json) {
    out << nlohmann::json{{"alerts", *alerts}}.dump() << '\n';
    return kExitOk;
  }
  if (fromDb) {
    out << "kmsd is not running; read from the state DB\n";
  }
  printAlerts(*alerts, out);
  return kExitOk;
}

}  // namespace kms::daemon
