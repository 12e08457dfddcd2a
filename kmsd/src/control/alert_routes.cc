// GET /v1/alerts: kmsd's own alerts (firing, and resolved within the last day) with what
// each channel was last told of them.
#include <nlohmann/json.hpp>

#include "alerts/notifier.h"
#include "common/time_format.h"
#include "control/control_context.h"
#include "control/status_view.h"

namespace kms::daemon {
namespace {

nlohmann::json optTime(const std::optional<std::int64_t>& t) {
  return t ? nlohmann::json(isoTime(*t)) : nlohmann::json(nullptr);
}

}  // namespace

nlohmann::json alertsJson(const Notifier::View& view) {
  nlohmann::json out = nlohmann::json::array();
  for (const storage::AlertRow& a : view.alerts) {
    nlohmann::json deliveries = nlohmann::json::array();
    for (const storage::DeliveryRow& d : view.deliveries) {
      if (d.certName != a.certName || d.condition != a.condition || d.startedAt != a.startedAt) {
        continue;
      }
      deliveries.push_back({{"channel", d.channel},
                            {"sent", d.sent ? nlohmann::json(*d.sent) : nlohmann::json(nullptr)},
                            {"sent_at", optTime(d.sentAt)},
                            {"failed_attempts", d.attempts},
                            {"next_try_at", optTime(d.nextTryAt)},
                            {"last_error", d.lastError ? nlohmann::json(*d.lastError) : nlohmann::json(nullptr)}});
    }
    out.push_back({{"name", a.certName},
                   {"condition", a.condition},
                   {"severity", a.severity},
                   {"state", a.resolvedAt ? "resolved" : "firing"},
                   {"summary", a.summary},
                   {"started_at", isoTime(a.startedAt)},
                   {"resolved_at", optTime(a.resolvedAt)},
                   {"deliveries", std::move(deliveries)}});
  }
  return out;
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
      return jsonResponse(200, {{"alerts", alertsJson(*view)}});
    });
  });
}

}  // namespace kms::daemon
