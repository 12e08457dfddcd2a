// POST /stir/v1/signing: ATIS-1000082 PASSporT signing on the control socket, for root,
// kmsd's user and the members of [daemon] control_admin_group. Its bodies and errors are
// ATIS-1000082's (the documented exception to the problem documents), X-RequestID echoed.
#include <algorithm>

#include <nlohmann/json.hpp>

#include "control/admin.h"
#include "control/control_context.h"
#include "pki/passport.h"
#include "signing/signing_service.h"

namespace kms::daemon {
namespace {

http::ServerResponse atisResponse(int status, std::string body, const std::string& requestId) {
  http::ServerResponse r;
  r.status = status;
  r.contentType = "application/json";
  r.body = std::move(body);
  r.headers.emplace_back("X-RequestID", requestId);
  return r;
}

/// An X-RequestID worth echoing: 1..128 printable ASCII characters (no header injection).
bool usableRequestId(const std::string& id) {
  return !id.empty() && id.size() <= 128 &&
         std::all_of(id.begin(), id.end(), [](char c) { return c > ' ' && c < 0x7F; });
}

}  // namespace

void addSigningRoutes(RouteTable& routes, ControlContext& ctx) {
  routes.add("POST", "/stir/v1/signing", [&ctx](const ControlRequest& req, const RouteMatch&, const http::Reply& reply) {
    std::string requestId = req.header("X-RequestID").value_or("");
    if (!usableRequestId(requestId)) {
      requestId = pki::randomUuid();
    }
    if (ctx.signing == nullptr) {
      const AtisError e = unavailable("kmsd runs --once: nothing signs");
      return reply(atisResponse(e.status, e.body(), requestId));
    }
    // Read on the loop (a reload swaps the configuration there).
    const auto group = ctx.config()->daemon.controlAdminGroup;
    ctx.signing->post([&ctx, body = req.body, peer = req.peer, group, requestId, reply] {
      if (auto refusal = adminRefusal(peer, group)) {
        const AtisError e = forbidden(*refusal);
        return reply(atisResponse(e.status, e.body(), requestId));
      }
      const SigningClient client{peer ? "uid " + std::to_string(peer->uid) : "the control socket", {}};
      auto signedOrNot = ctx.signing->sign(body, client);
      if (const auto* e = std::get_if<AtisError>(&signedOrNot)) {
        return reply(atisResponse(e->status, e->body(), requestId));
      }
      reply(atisResponse(200, signingResponseBody(std::get<Signed>(signedOrNot).identity), requestId));
    });
  });
}

}  // namespace kms::daemon
