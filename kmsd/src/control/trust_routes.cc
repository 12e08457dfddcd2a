// GET /v1/trust and POST /v1/trust/refresh: the STI-PA CA list and CRL kmsd keeps.
#include <nlohmann/json.hpp>

#include "control/control_context.h"
#include "services/services.h"
#include "trust/trust.h"
#include "trust/trust_state.h"

namespace kms::daemon {
namespace {

/// The kept documents with what the daemon adds (runs on a worker).
nlohmann::json trustJson(ControlContext& ctx) {
  auto docs = ctx.store.with([](storage::Store& s) { return readKeptTrust(s); });
  if (!docs) {
    throw std::runtime_error(docs.error().toString());
  }
  nlohmann::json j = trustReport(*docs, unixSeconds(ctx.clock.now()));
  j["daemon"] = ctx.trust.status();
  j["anchors"] = ctx.trustState.anchorsConfigured() ? "[acme] trust_anchors" : "ca_list";
  j["crl_checked"] = ctx.services.crlSigner().has_value();
  return j;
}

}  // namespace

void addTrustRoutes(RouteTable& routes, ControlContext& ctx) {
  routes.add("GET", "/v1/trust", [&ctx](const ControlRequest&, const RouteMatch&, const http::Reply& reply) {
    replyFromWorker(ctx, reply, "a control API read", [&ctx] { return jsonResponse(200, trustJson(ctx)); });
  });
  routes.add("POST", "/v1/trust/refresh", [&ctx](const ControlRequest&, const RouteMatch&, const http::Reply& reply) {
    if (ctx.services.stiPa() == nullptr) {
      return reply(problem(409, "no STI-PA", "[sti_pa] is not configured: there is no CA list or CRL to read"));
    }
    const bool started = ctx.refreshTrust([&ctx, reply](const std::vector<std::string>& affected) {
      replyFromWorker(ctx, reply, "a control API read", [&ctx, affected] {
        nlohmann::json j = trustJson(ctx);
        j["affected"] = affected;
        return jsonResponse(200, j);
      });
    });
    if (!started) {
      reply(problem(409, "refresh running", "a CA list and CRL refresh is running; ask again shortly"));
    }
  });
}

}  // namespace kms::daemon
