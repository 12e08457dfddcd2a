// POST /stir/v1/signing: ATIS-1000082 PASSporT signing on the control socket, for root,
// kmsd's user and the members of [daemon] control_admin_group. Its bodies and errors are
// ATIS-1000082's (the documented exception to the problem documents), X-RequestID echoed.
#include "control/admin.h"
#include "control/control_context.h"
#include "signing/signing_http.h"
#include "signing/signing_service.h"

namespace kms::daemon {

void addSigningRoutes(RouteTable& routes, ControlContext& ctx) {
  routes.add("POST", "/stir/v1/signing", [&ctx](const ControlRequest& req, const RouteMatch&, const http::Reply& reply) {
    const std::string requestId = requestIdOf(req);
    if (ctx.signing == nullptr) {
      return reply(atisErrorResponse(unavailable("kmsd runs --once: nothing signs"), requestId));
    }
    // Read on the loop (a reload swaps the configuration there).
    const auto group = ctx.config()->daemon.controlAdminGroup;
    ctx.signing->post([&ctx, body = req.body, peer = req.peer, group, requestId, reply] {
      if (auto refusal = adminRefusal(peer, group)) {
        const AtisError e = forbidden(*refusal);
        ctx.signing->countRefusal(e);
        return reply(atisErrorResponse(e, requestId));
      }
      const SigningClient client{peer ? "uid " + std::to_string(peer->uid) : "the control socket", {}, {}};
      auto signedOrNot = ctx.signing->sign(body, client);
      if (const auto* e = std::get_if<AtisError>(&signedOrNot)) {
        return reply(atisErrorResponse(*e, requestId));
      }
      reply(signedResponse(std::get<Signed>(signedOrNot).identity, requestId));
    });
  });
}

}  // namespace kms::daemon
