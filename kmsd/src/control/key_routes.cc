// GET /v1/keys: every key on the token and what the state DB says it is for.
#include "control/control_context.h"
#include "daemon/config_check.h"
#include "services/key_report.h"
#include "services/services.h"

namespace kms::daemon {

void addKeyRoutes(RouteTable& routes, ControlContext& ctx) {
  routes.add("GET", "/v1/keys", [&ctx](const ControlRequest&, const RouteMatch&, const http::Reply& reply) {
    const std::int64_t retain = ctx.config()->publisher.retain.count();
    replyFromWorker(ctx, reply, "a control API read", [&ctx, retain] {
      auto known = ctx.store.with([](storage::Store& s) { return s.listKeys(false); });
      if (!known) {
        return problem(500, "state DB", known.error().toString());
      }
      const std::int64_t now = unixSeconds(ctx.clock.now());
      auto usage = ctx.store.with([&](storage::Store& s) { return s.listKeyUsage(now, retain); });
      if (!usage) {
        return problem(500, "state DB", usage.error().toString());
      }
      auto report = keysJson(ctx.services.keys().token(), *known, *usage);
      if (!report) {
        return problem(503, "HSM token", report.error().toString());
      }
      return jsonBody(200, "{\"keys\":" + *report + "}");
    });
  });
}

}  // namespace kms::daemon
