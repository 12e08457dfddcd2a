// GET /healthz, /readyz, /v1/status and /metrics: is kmsd alive, ready, and how its
// certificates stand (as JSON, and in Prometheus' text format).
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "alerts/notifier.h"
#include "common/time_format.h"
#include "common/version.h"
#include "control/control_context.h"
#include "control/status_view.h"
#include "metrics/exposition.h"
#include "metrics/metrics.h"
#include "services/services.h"
#include "signing/signing_service.h"

namespace kms::daemon {

void addProbeRoutes(RouteTable& routes, ControlContext& ctx) {
  routes.add("GET", "/healthz", [](const ControlRequest&, const RouteMatch&, const http::Reply& reply) {
    reply(jsonResponse(200, {{"status", "ok"}}));
  });
  // Ready: the state loaded and the schedule armed (not starting or stopping), the token
  // logged in, and with an STI-PA a CA list kept (the anchors of every issued chain).
  routes.add("GET", "/readyz", [&ctx](const ControlRequest&, const RouteMatch&, const http::Reply& reply) {
    if (const std::string why = ctx.notReady(); !why.empty()) {
      return reply(jsonResponse(503, {{"status", why}}));
    }
    const bool shaken = ctx.config()->stiPa.has_value();
    replyFromWorker(ctx, reply, "a readiness probe", [&ctx, shaken] {
      if (auto login = ctx.services.keys().token().checkLogin(); !login) {
        return jsonResponse(503, {{"status", "HSM token not logged in: " + login.error().toString()}});
      }
      if (shaken) {
        auto list = ctx.store.with([](storage::Store& s) { return s.getTrust(storage::TrustKind::caList); });
        if (!list || !*list) {
          return jsonResponse(503, {{"status", list ? "no STI-PA CA list kept yet"
                                                    : "state DB: " + list.error().toString()}});
        }
      }
      return jsonResponse(200, {{"status", "ok"}});
    });
  });
  routes.add("GET", "/metrics", [&ctx](const ControlRequest&, const RouteMatch&, const http::Reply& reply) {
    if (ctx.metrics == nullptr) {
      return reply(problem(404, "no metrics", "this kmsd keeps no metrics"));
    }
    const auto limit = static_cast<std::size_t>(ctx.config()->metrics.perCertificateLimit);
    replyFromWorker(ctx, reply, "a metrics scrape", [&ctx, limit] {
      auto text = ctx.metrics->render(ctx.store, unixSeconds(ctx.clock.now()), limit);
      if (!text) {
        return problem(500, "state DB", text.error().toString());
      }
      ControlResponse r;
      r.status = 200;
      r.contentType = Exposition::kContentType;
      r.body = std::move(*text);
      return r;
    });
  });
}

void addHealthRoutes(RouteTable& routes, ControlContext& ctx) {
  routes.add("GET", "/v1/status", [&ctx](const ControlRequest&, const RouteMatch&, const http::Reply& reply) {
    const Engine::Counters n = ctx.engine.counters();
    nlohmann::json daemon{{"pid", ::getpid()},
                          {"version", kmsVersion()},
                          {"certificates", n.certificates},
                          {"open_orders", n.openOrders},
                          {"max_concurrent_orders", n.maxOrders},
                          {"steps_running", n.stepsRunning},
                          {"ca_paused_until", n.caPausedUntil > 0 ? isoTime(n.caPausedUntil) : ""}};
    if (ctx.signing != nullptr) {
      const auto s = ctx.signing->counters().snapshot();
      daemon["signing"] = {{"signed", s.signedCount},
                           {"refused", s.refused},
                           {"latency_seconds_sum", s.latencySumSeconds},
                           {"latency_buckets", s.latency}};
    }
    replyFromWorker(ctx, reply, "a control API read", [&ctx, daemon, rt = ctx.engine.runtimeInfo()] {
      auto list = certificatesJson(ctx.store, unixSeconds(ctx.clock.now()), rt);
      if (!list) {
        return problem(500, "state DB", list.error().toString());
      }
      // The conditions firing for each certificate (kmsctl status' ALERTS column).
      nlohmann::json firing = nlohmann::json::object();
      if (ctx.alerts != nullptr) {
        auto view = ctx.alerts->view();
        if (!view) {
          return problem(500, "state DB", view.error().toString());
        }
        firing = firingJson(view->alerts);
      }
      return jsonBody(200, "{\"daemon\":" + daemon.dump() + ",\"certificates\":" + *list +
                               ",\"alerts_firing\":" + firing.dump() + "}");
    });
  });
}

}  // namespace kms::daemon
