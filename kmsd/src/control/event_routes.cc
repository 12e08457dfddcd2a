// GET /v1/events?since=ID: the event log after an event id (at most 1,000 at a time).
#include <nlohmann/json.hpp>

#include "common/time_format.h"
#include "control/control_context.h"

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

}  // namespace

void addEventRoutes(RouteTable& routes, ControlContext& ctx) {
  routes.add("GET", "/v1/events", [&ctx](const ControlRequest&, const RouteMatch& m, const http::Reply& reply) {
    std::int64_t since = 0;
    if (!m.query.empty()) {
      auto v = queryInt(m.query, "since");
      if (!v || *v < 0) {
        return reply(problem(400, "bad request", "since must be a non-negative event id"));
      }
      since = *v;
    }
    replyFromWorker(ctx, reply, "a control API read", [&ctx, since] {
      auto events = ctx.store.with([&](storage::Store& s) { return s.listEventsAfter(since, 1000); });
      if (!events) {
        return problem(500, "state DB", events.error().toString());
      }
      nlohmann::json arr = nlohmann::json::array();
      for (const auto& e : *events) {
        arr.push_back({{"id", e.id},
                       {"time", isoTime(e.time)},
                       {"level", storage::toString(e.level)},
                       {"event", e.eventId},
                       {"cert", e.certName.value_or("")},
                       {"message", sanitize(e.message)}});
      }
      return jsonResponse(200, {{"events", arr}});
    });
  });
}

}  // namespace kms::daemon
