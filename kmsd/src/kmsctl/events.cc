// kmsctl events [-n N] [--follow | --reverse]: always oldest first unless reversed, so the
// newest line is the last one printed, as with `--follow`.
#include <algorithm>
#include <chrono>
#include <ostream>
#include <thread>

#include <nlohmann/json.hpp>

#include "daemon/config_check.h"
#include "events/event_sink.h"
#include "kmsctl/client.h"
#include "kmsctl/commands.h"
#include "common/time_format.h"
#include "services/state_reader.h"

namespace kms::daemon {

int ctlEvents(const std::string& configPath, int limit, bool follow, bool reverse, std::ostream& out,
              std::ostream& err) {
  auto cfg = loadConfig(configPath, err);
  if (!cfg) {
    return kExitCheckFailed;
  }
  if (!follow) {
    return showEvents(*cfg, limit, reverse, out, err);
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

int showEvents(const config::Config& config, int limit, bool reverse, std::ostream& out, std::ostream& err) {
  const config::Config* cfg = &config;
  if (!pathExists(dbPath(*cfg))) {
    out << "no events yet (state: " << dbPath(*cfg) << ")\n";
    return kExitOk;
  }
  auto db = openExistingDb(*cfg);
  if (!db) {
    err << "kmsctl: " << db.error().toString() << '\n';
    return kExitRuntime;
  }
  auto store = storage::makeSqliteStore(**db);
  auto events = store->listEvents(std::nullopt, limit);
  if (!events) {
    err << "kmsctl: " << events.error().toString() << '\n';
    return kExitRuntime;
  }
  if (!reverse) {
    std::reverse(events->begin(), events->end());  // the store gives the newest first
  }
  for (const auto& e : *events) {
    out << isoTime(e.time) << ' ' << storage::toString(e.level) << ' ' << e.eventId << ' ' << e.certName.value_or("-")
        << ' ' << sanitize(e.message) << '\n';
  }
  return kExitOk;
}

}  // namespace kms::daemon
