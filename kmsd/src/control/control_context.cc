#include "control/control_context.h"

#include <nlohmann/json.hpp>

namespace kms::daemon {

ControlResponse jsonResponse(int status, const nlohmann::json& j) {
  return jsonBody(status, j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

void replyFromWorker(ControlContext& ctx, const http::Reply& reply, const std::string& what,
                     std::function<ControlResponse()> body) {
  ctx.executor.work([&ctx, reply, what, body = std::move(body)] {
    if (auto thrown = runReporting(ctx.events, what, [&] { reply(body()); })) {
      reply(problem(500, "internal error", *thrown));
    }
  });
}

RouteTable controlRoutes(ControlContext& ctx) {
  RouteTable routes;
  addProbeRoutes(routes, ctx);
  addHealthRoutes(routes, ctx);
  addCertificateRoutes(routes, ctx);
  addKeyRoutes(routes, ctx);
  addTrustRoutes(routes, ctx);
  addEventRoutes(routes, ctx);
  addSigningRoutes(routes, ctx);
  addBackupRoutes(routes, ctx);
  addAlertRoutes(routes, ctx);
  return routes;
}

RouteTable metricsRoutes(ControlContext& ctx) {
  RouteTable routes;
  addProbeRoutes(routes, ctx);
  return routes;
}

}  // namespace kms::daemon
