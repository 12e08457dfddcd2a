#include "control/control_context.h"

#include <nlohmann/json.hpp>

namespace kms::daemon {

ControlResponse jsonResponse(int status, const nlohmann::json& j) {
  return jsonBody(status, j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

void replyFromWorker(ControlContext& ctx, const http::Reply& reply, const std::string& what,
                     std::function<ControlResponse()> body) {
  ctx.executor.work([&ctx, reply, what, body = std::move(body)] {
    std::string error;
    try {
      reply(body());
      return;
    } catch (const std::exception& e) {
      error = e.what();
    } catch (...) {
      error = "unknown exception";
    }
    ctx.events.emit({"KMS_INTERNAL_ERROR", storage::EventLevel::error, std::nullopt,
                     "internal error in " + what + ": " + error + "; kmsd goes on", {}});
    reply(problem(500, "internal error", error));
  });
}

RouteTable controlRoutes(ControlContext& ctx) {
  RouteTable routes;
  addHealthRoutes(routes, ctx);
  addCertificateRoutes(routes, ctx);
  addKeyRoutes(routes, ctx);
  addTrustRoutes(routes, ctx);
  addEventRoutes(routes, ctx);
  return routes;
}

}  // namespace kms::daemon
