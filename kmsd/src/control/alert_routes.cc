// GET /v1/alerts: kmsd's own alerts (firing, and resolved within the last day) with what
// each channel was last told of them.
#include <nlohmann/json.hpp>

#include "alerts/notifier.h"
#include "common/time_format.h"
#include "control/control_context.h"
#include "control/status_view.h"

namespace kms::daemon {

nlohmann::json alertsJson(const std::vector<storage::AlertRow>& alerts,
                          const std::vector<storage::DeliveryRow>& deliveries) {
  auto time = [](const std::optional<std::int64_t>& t) {
    return t ? nlohmann::json(isoTime(*t)) : nlohmann::json(nullptr);
  };
  auto text = [](const std::optional<std::string>& t) { return t ? nlohmann::json(*t) : nlohmann::json(nullptr); };
  nlohmann::json out = nlohmann::json::array();
  for (const storage::AlertRow& a : alerts) {
    nlohmann::json told = nlohmann::json::array();
    for (const storage::DeliveryRow& d : deliveries) {
      if (d.certName == a.certName && d.condition == a.condition && d.startedAt == a.startedAt) {
        told.push_back({{"channel", d.channel},
                        {"sent", text(d.sent)},
                        {"sent_at", time(d.sentAt)},
                        {"failed_attempts", d.attempts},
                        {"next_try_at", time(d.nextTryAt)},
                        {"last_error", text(d.lastError)}});
      }
    }
    out.push_back({{"name", a.certName},
                   {"condition", a.condition},
                   {"severity", a.severity},
                   {"state", a.resolvedAt ? "resolved" : "firing"},
                   {"summary", a.summary},
                   {"started_at", isoTime(a.startedAt)},
                   {"resolved_at", time(a.resolvedAt)},
                   {"deliveries", std::move(told)}});
  }
  return out;
}

nlohmann::json firingJson(const std::vector<storage::AlertRow>& alerts) {
  nlohmann::json firing = nlohmann::json::object();
  for (const storage::AlertRow& a : alerts) {
    if (!a.resolvedAt) {
      firing[a.certName].push_back(a.condition);
    }
  }
  return firing;
}

void addAlertRoutes(RouteTable& routes, ControlContext& ctx) {
  routes.add("GET", "/v1/alerts", [&ctx](const ControlRequest&, const RouteMatch&, const http::Reply& reply) {
    if (ctx.alerts == nullptr) {
      return reply(problem(503, "not available", "kmsd --once keeps no alerts"));
    }
    replyFromWorker(ctx, reply, "a control API read", [&ctx] {
      auto view = ctx.alerts->view();
      if (!view) {
        return problem(500, "state DB", view.error().toString());
      }
      return jsonResponse(200, {{"alerts", alertsJson(view->alerts, view->deliveries)}});
    });
  });
}

}  // namespace kms::daemon
