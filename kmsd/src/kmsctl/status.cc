// kmsctl status [--json] [--wide]: the same table with kmsd up and down; an ALERTS column while
// one of kmsd's own alerts fires (always with --wide).
#include <algorithm>
#include <array>
#include <ostream>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/clock.h"
#include "control/control_api.h"
#include "control/status_view.h"
#include "daemon/config_check.h"
#include "events/event_sink.h"
#include "kmsctl/client.h"
#include "kmsctl/commands.h"
#include "storage/alert_log.h"

namespace kms::daemon {
namespace {

/// The table fits this many columns unless `--wide` (with names of up to ~12 characters;
/// longer ones push the line past it rather than cut LAST ERROR below kMinErrorWidth).
constexpr std::size_t kTableWidth = 100;
constexpr std::size_t kMinErrorWidth = 20;
constexpr std::size_t kGap = 2;

using Row = std::array<std::string, 7>;

/// Characters as a terminal shows them (UTF-8 continuation bytes take no column).
std::size_t columns(std::string_view text) {
  return static_cast<std::size_t>(
      std::count_if(text.begin(), text.end(), [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; }));
}

/// `text` cut to `width` columns, ending in "…" when cut.
std::string fit(const std::string& text, std::size_t width) {
  if (columns(text) <= width || width == 0) {
    return text;
  }
  std::string out;
  std::size_t used = 0;
  for (char c : text) {
    const bool starts = (static_cast<unsigned char>(c) & 0xC0) != 0x80;
    if (starts && ++used > width - 1) {
      break;
    }
    out += c;
  }
  return out + "…";
}

/// An x5u as its file under the web root with the serial cut to 8 digits ("…/7DF6A28F….pem"):
/// the NAME column already says whose it is; `--wide` shows the URL.
std::string shortX5u(const std::string& url) {
  const auto slash = url.rfind('/');
  std::string file = slash == std::string::npos ? url : url.substr(slash + 1);
  const auto dot = file.rfind('.');
  if (dot != std::string::npos && dot > 8) {
    file = file.substr(0, 8) + "…" + file.substr(dot);
  }
  return slash == std::string::npos ? file : "…/" + file;
}

/// An error that starts with the URL it concerns ("https://ca:443/acme/authz/Xy…: what")
/// as "ca:443: what": the peer stays named, the column shows what happened. `--wide` keeps it.
std::string shortError(const std::string& text) {
  const std::size_t scheme = text.starts_with("https://") ? 8 : text.starts_with("http://") ? 7 : 0;
  const std::size_t end = text.find(": ");
  if (scheme == 0 || end == std::string::npos || text.find(' ') < end) {
    return text;
  }
  const std::size_t path = text.find('/', scheme);
  return text.substr(scheme, std::min(path, end) - scheme) + text.substr(end);
}

/// "2027-03-05T03:24:57Z" as "2027-03-05T03:24Z" (`--wide` keeps the seconds).
std::string toMinute(std::string iso, bool wide) {
  if (!wide && iso.size() == 20 && iso[16] == ':') {
    iso.erase(16, 3);
  }
  return iso;
}

/// The conditions firing for `name` ("expiring,renewal_failing"), or "-".
std::string alertsOf(const nlohmann::json& firing, const std::string& name) {
  std::string out;
  if (firing.is_object() && firing.contains(name) && firing[name].is_array()) {
    for (const auto& condition : firing[name]) {
      if (condition.is_string()) {
        if (!out.empty()) {
          out += ',';
        }
        out += condition.get<std::string>();
      }
    }
  }
  return out.empty() ? "-" : out;
}

/// NEXT RENEWAL is the next attempt while a failure is retried (LAST ERROR then says why).
Row rowOf(const nlohmann::json& c, const nlohmann::json& firing, bool wide) {
  std::string next = str(c, "renew_at");
  if (c.contains("next_attempt_at") && c.value("failures", 0) > 0) {
    next = str(c, "next_attempt_at");
  }
  const std::string x5u = str(c, "x5u");
  const std::string error = sanitize(str(c, "last_error"));
  return Row{sanitize(str(c, "name")), str(c, "state"), toMinute(str(c, "not_after"), wide), toMinute(next, wide),
             wide || x5u == "-" ? x5u : shortX5u(x5u), sanitize(alertsOf(firing, str(c, "name"))),
             wide ? error : shortError(error)};
}

/// `firing`: the conditions firing by certificate name. The ALERTS column is there when one
/// fires (or with `wide`): the rest of the time its width goes to LAST ERROR.
void printTable(const nlohmann::json& certs, const nlohmann::json& firing, bool wide, std::ostream& out) {
  constexpr std::size_t kAlerts = 5;
  std::vector<Row> rows{Row{"NAME", "STATE", "NOT AFTER", "NEXT RENEWAL", "X5U", "ALERTS", "LAST ERROR"}};
  bool anyFiring = false;
  for (const auto& c : certs) {
    rows.push_back(rowOf(c, firing, wide));
    anyFiring = anyFiring || rows.back()[kAlerts] != "-";
  }
  const bool showAlerts = wide || anyFiring;
  std::array<std::size_t, 6> width{};
  for (const Row& r : rows) {
    for (std::size_t i = 0; i < width.size(); ++i) {
      width[i] = std::max(width[i], columns(r[i]));
    }
  }
  std::size_t used = 0;
  for (std::size_t i = 0; i < width.size(); ++i) {
    used += i == kAlerts && !showAlerts ? 0 : width[i] + kGap;
  }
  const std::size_t errorWidth = wide ? 0 : std::max(kMinErrorWidth, used < kTableWidth ? kTableWidth - used : 0);
  for (const Row& r : rows) {
    for (std::size_t i = 0; i < width.size(); ++i) {
      if (i != kAlerts || showAlerts) {
        out << r[i] << std::string(width[i] + kGap - columns(r[i]), ' ');
      }
    }
    out << fit(r[6], errorWidth) << '\n';
  }
}

/// The daemon's JSON as it came, or indented for a terminal.
void printJson(const std::string& body, bool terminal, std::ostream& out) {
  if (terminal) {
    auto j = nlohmann::json::parse(body, nullptr, false);
    if (!j.is_discarded()) {
      out << j.dump(2) << '\n';
      return;
    }
  }
  out << body << '\n';
}

}  // namespace

int ctlStatus(Target& target, const StatusOptions& o, std::ostream& out, std::ostream& err) {
  if (o.json) {
    // The daemon's JSON without loading the configuration (100,000 certificates: a second)
    // and without a parse and re-dump when piped (30 MB).
    const auto quick = target.quickSocket();
    const std::string socket = quick ? *quick : target.socket();
    if (auto raw = controlRequest(socket, "GET", "/v1/status")) {
      printJson(raw->body, o.terminal, out);
      return raw->status == 200 ? kExitOk : kExitRuntime;
    }
    checkSocketAccess(socket, err);
    return showStatus(target, o, out, err);
  }
  auto status = ask(target.socket(), "GET", "/v1/status", "", err);
  if (!status) {
    return showStatus(target, o, out, err);
  }
  const auto& d = (*status)["daemon"];
  out << "kmsd running (pid " << d.value("pid", 0) << "), " << d.value("open_orders", 0) << " order(s) in flight\n";
  printTable((*status)["certificates"], status->value("alerts_firing", nlohmann::json::object()), o.wide, out);
  return kExitOk;
}

int showStatus(Target& target, const StatusOptions& o, std::ostream& out, std::ostream& err) {
  auto db = openStateForReading(target, err);
  if (!db) {
    return kExitCheckFailed;
  }
  const config::Config& cfg = target.config();
  std::string list = "[]";
  nlohmann::json firing = nlohmann::json::object();
  if (*db) {
    // A state DB older than the alert tables has none firing.
    if (auto alerts = storage::readAlerts(**db)) {
      firing = firingJson(*alerts);
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
  if (o.json) {
    // The daemon's shape; no daemon.
    const nlohmann::json doc{{"daemon", nullptr}, {"certificates", certs}, {"alerts_firing", firing}};
    out << (o.terminal ? doc.dump(2) : doc.dump()) << '\n';
    return kExitOk;
  }
  out << "kmsd is not running; read from the state DB\n";
  if (!certs.is_array() || certs.empty()) {
    out << "no managed certificates yet (state: " << cfg.daemon.stateDir << "/kmsd.db)\n";
    return kExitOk;
  }
  printTable(certs, firing, o.wide, out);
  return kExitOk;
}

}  // namespace kms::daemon
