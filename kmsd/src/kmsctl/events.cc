// kmsctl events [-n N] [--follow | --reverse]: always oldest first unless reversed, so the
// newest line is the last one printed, as with `--follow`.
#include <algorithm>
#include <chrono>
#include <ostream>
#include <thread>

#include <nlohmann/json.hpp>

#include "control/status_view.h"
#include "daemon/config_check.h"
#include "events/event_sink.h"
#include "kmsctl/client.h"
#include "kmsctl/commands.h"

namespace kms::daemon {
namespace {

void printEvents(const nlohmann::json& events, std::ostream& out) {
  for (const auto& e : events) {
    out << str(e, "time") << ' ' << str(e, "level") << ' ' << str(e, "event") << ' ' << str(e, "cert") << ' '
        << sanitize(str(e, "message")) << '\n';
  }
  out.flush();
}

/// The newest `limit` events from the state DB, oldest first; nullopt after an error line.
std::optional<nlohmann::json> readEvents(Target& target, int limit, std::ostream& err) {
  auto db = openStateForReading(target, err);
  if (!db) {
    return std::nullopt;
  }
  if (!*db) {
    return nlohmann::json::array();
  }
  auto store = storage::makeSqliteStore(**db);
  auto events = store->listEvents(std::nullopt, limit);
  if (!events) {
    err << "kmsctl: " << events.error().toString() << '\n';
    return std::nullopt;
  }
  std::reverse(events->begin(), events->end());  // the store gives the newest first
  return eventsJson(*events);
}

/// New events as they come, after the event `since`.
int follow(const std::string& socket, std::int64_t since, std::ostream& out, std::ostream& err) {
  for (;;) {
    auto r = ask(socket, "GET", "/v1/events?since=" + std::to_string(since), "", err);
    if (!r) {
      err << "kmsctl: kmsd stopped (" << socket << ")\n";
      return kExitRuntime;
    }
    const auto& events = (*r)["events"];
    printEvents(events, out);
    for (const auto& e : events) {
      since = std::max<std::int64_t>(since, e.value("id", std::int64_t{0}));
    }
    if (events.size() < 1000) {  // caught up
      std::this_thread::sleep_for(std::chrono::seconds(1));
    }
  }
}

}  // namespace

int ctlEvents(Target& target, int limit, bool follows, bool reverse, std::ostream& out, std::ostream& err) {
  const std::string socket = target.socket();
  auto events = ask(socket, "GET", "/v1/events?last=" + std::to_string(limit), "", err);
  if (!events && follows) {
    err << "kmsctl: kmsd is not running (no answer on " << socket << "); following needs the daemon\n";
    return kExitCheckFailed;
  }
  std::optional<nlohmann::json> list;
  if (events) {
    list = (*events)["events"];
  } else {
    list = readEvents(target, limit, err);
  }
  if (!list || !list->is_array()) {
    return list ? kExitRuntime : kExitCheckFailed;
  }
  if (list->empty() && !follows) {
    out << "no events yet\n";
    return kExitOk;
  }
  if (reverse) {
    std::reverse(list->begin(), list->end());
  }
  printEvents(*list, out);
  if (!follows) {
    return kExitOk;
  }
  const std::int64_t since = list->empty() ? 0 : list->back().value("id", std::int64_t{0});
  return follow(socket, since, out, err);
}

}  // namespace kms::daemon
