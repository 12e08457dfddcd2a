// GET /v1/events?since=ID: the event log after an event id (at most 1,000 at a time);
// GET /v1/events?last=N: the newest N events (at most 100,000), oldest first.
#include <algorithm>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/time_format.h"
#include "control/control_context.h"
#include "control/status_view.h"

namespace kms::daemon {
namespace {

/// The integer value of `name` in a query string; nullopt when absent or not an integer.
std::optional<std::int64_t> queryInt(const std::string& query, const std::string& name) {
  std::size_t pos = 0;
  while (pos < query.size()) {
    const std::size_t end = query.find('&', pos);
    const std::string kv = query.substr(pos, end == std::string::npos ? std::string::npos : end - pos);
    if (kv.rfind(name + "=", 0) == 0) {
      try {
        std::size_t used = 0;
        const std::int64_t v = std::stoll(kv.substr(name.size() + 1), &used);
        if (used == kv.size() - name.size() - 1) {
          return v;
        }
      } catch (const std::exception&) {
      }
      return std::nullopt;
    }
    if (end == std::string::npos) {
      break;
    }
    pos = end + 1;
  }
  return std::nullopt;
}

constexpr std::int64_t kMaxLast = 100000;

}  // namespace

void addEventRoutes(RouteTable& routes, ControlContext& ctx) {
  routes.add("GET", "/v1/events", [&ctx](const ControlRequest&, const RouteMatch& m, const http::Reply& reply) {
    std::int64_t since = 0;
    std::int64_t last = 0;
    if (m.query.find("last=") != std::string::npos) {
      auto v = queryInt(m.query, "last");
      if (!v || *v < 1 || *v > kMaxLast) {
        return reply(problem(400, "bad request", "last must be a number of events from 1 to 100000"));
      }
      last = *v;
    } else if (!m.query.empty()) {
      auto v = queryInt(m.query, "since");
      if (!v || *v < 0) {
        return reply(problem(400, "bad request", "since must be a non-negative event id"));
      }
      since = *v;
    }
    replyFromWorker(ctx, reply, "a control API read", [&ctx, since, last] {
      auto events = ctx.store.with([&](storage::Store& s) {
        return last > 0 ? s.listEvents(std::nullopt, static_cast<int>(last)) : s.listEventsAfter(since, 1000);
      });
      if (!events) {
        return problem(500, "state DB", events.error().toString());
      }
      if (last > 0) {
        std::reverse(events->begin(), events->end());  // the store gives the newest first
      }
      return jsonResponse(200, {{"events", eventsJson(*events)}});
    });
  });
}

}  // namespace kms::daemon
