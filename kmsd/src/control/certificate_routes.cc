// /v1/certificates: the list, one certificate, and the operator's renew and revoke.
#include <nlohmann/json.hpp>

#include "common/time_format.h"
#include "control/admin.h"
#include "control/control_context.h"
#include "control/status_view.h"
#include "lifecycle/steps.h"
#include "pki/json_limits.h"

namespace kms::daemon {
namespace {

/// An operator's renewal is not held back by a stored wait (backoff, a CA's Retry-After for
/// this certificate): it is cleared, and the answer says what it overrode. Runs on a worker.
Result<std::string> clearStoredWait(ControlContext& ctx, const std::string& name) {
  std::string overrode;
  const std::int64_t now = unixSeconds(ctx.clock.now());
  auto cleared = ctx.store.with([&](storage::Store& st) -> Result<void> {
    auto cert = st.getCertificate(name);
    if (!cert) {
      return fail(cert.error());
    }
    if (*cert && (*cert)->nextAttemptAt && *(*cert)->nextAttemptAt > now) {
      overrode = "a wait until " + isoTime(*(*cert)->nextAttemptAt) +
                 ((*cert)->failureCount > 0 ? " after " + std::to_string((*cert)->failureCount) + " failure(s)"
                                            : std::string());
      return st.setNextAttempt(name, std::nullopt);
    }
    return ok();
  });
  if (!cleared) {
    return fail(cleared.error());
  }
  return overrode;
}

void renew(ControlContext& ctx, const ControlRequest& req, const std::string& name, const http::Reply& reply) {
  replyFromWorker(ctx, reply, "the renewal request of '" + name + "'", [&ctx, name, caller = callerFields(req)] {
    auto overrode = clearStoredWait(ctx, name);
    if (!overrode) {
      return problem(500, "renewal not requested", overrode.error().toString());
    }
    ctx.events.emit({"KMS_RENEW_REQUESTED", storage::EventLevel::info, name,
                     "renewal requested through the control API" +
                         (overrode->empty() ? "" : "; overrides " + *overrode),
                     caller});
    nlohmann::json body{{"name", name}, {"renewal_requested", true}};
    if (!overrode->empty()) {
      body["overrides"] = *overrode;
    }
    ctx.executor.post([&ctx, name] { ctx.engine.requestRenewal(name); });
    return jsonResponse(202, body);
  });
}

/// The body's RFC 5280 reason code (0 when there is no body), or nullopt when it is not one.
std::optional<int> revocationReason(const std::string& body) {
  if (body.empty()) {
    return 0;
  }
  auto j = pki::checkJsonLimits(body) ? nlohmann::json::parse(body, nullptr, false)
                                      : nlohmann::json(nlohmann::json::value_t::discarded);
  if (j.is_discarded() || !j.is_object() || (j.contains("reason") && !j["reason"].is_number_integer())) {
    return std::nullopt;
  }
  const int reason = j.value("reason", 0);
  if (reason < 0 || reason > 10 || reason == 7) {
    return std::nullopt;
  }
  return reason;
}

void revoke(ControlContext& ctx, const ControlRequest& req, const std::string& name, const http::Reply& reply) {
  const auto reason = revocationReason(req.body);
  if (!reason) {
    return reply(problem(400, "bad request",
                         R"(body must be {"reason": <RFC 5280 reason code 0..10 other than 7>})"));
  }
  auto cfg = ctx.engine.definition(name);
  auto group = ctx.config()->daemon.controlAdminGroup;
  replyFromWorker(ctx, reply, "the revocation of '" + name + "'",
                  [&ctx, cfg, reason = *reason, caller = callerFields(req), peer = req.peer, group] {
                    if (auto refusal = adminRefusal(peer, group)) {
                      return problem(403, "revocation not allowed", *refusal);
                    }
                    auto serial = ctx.steps.revoke(*cfg, reason, caller);
                    if (!serial) {
                      const int status = serial.error().code == Errc::notFound ? 409 : 502;
                      return problem(status, "revocation failed", serial.error().toString());
                    }
                    // No valid certificate now: the planner starts a new order.
                    ctx.executor.post([&ctx, name = cfg->name] { ctx.engine.wake(name); });
                    return jsonResponse(200, {{"name", cfg->name}, {"revoked_serial", *serial}, {"reason", reason}});
                  });
}

}  // namespace

void addCertificateRoutes(RouteTable& routes, ControlContext& ctx) {
  routes.add("GET", "/v1/certificates", [&ctx](const ControlRequest&, const RouteMatch&, const http::Reply& reply) {
    replyFromWorker(ctx, reply, "a control API read", [&ctx, rt = ctx.engine.runtimeInfo()] {
      auto list = certificatesJson(ctx.store, unixSeconds(ctx.clock.now()), rt);
      if (!list) {
        return problem(500, "state DB", list.error().toString());
      }
      return jsonBody(200, "{\"certificates\":" + *list + "}");
    });
  });
  routes.add("GET", "/v1/certificates/{name}",
             [&ctx](const ControlRequest&, const RouteMatch& m, const http::Reply& reply) {
               const std::string name = m.param("name");
               replyFromWorker(ctx, reply, "a control API read", [&ctx, name, rt = ctx.engine.runtimeInfo(name)] {
                 auto list = certificatesJson(ctx.store, unixSeconds(ctx.clock.now()), rt, name);  // "[{...}]", "[]"
                 if (!list) {
                   return problem(500, "state DB", list.error().toString());
                 }
                 if (list->size() <= 2) {
                   return problem(404, "no such certificate", name);
                 }
                 return jsonBody(200, list->substr(1, list->size() - 2));
               });
             });
  auto action = [&ctx](void (*handler)(ControlContext&, const ControlRequest&, const std::string&,
                                        const http::Reply&)) {
    return [&ctx, handler](const ControlRequest& req, const RouteMatch& m, const http::Reply& reply) {
      const std::string& name = m.param("name");
      if (!ctx.engine.manages(name)) {
        return reply(problem(404, "no such certificate", "'" + name + "' is not a configured certificate"));
      }
      handler(ctx, req, name, reply);
    };
  };
  routes.add("POST", "/v1/certificates/{name}/renew", action(renew));
  routes.add("POST", "/v1/certificates/{name}/revoke", action(revoke));
}

}  // namespace kms::daemon
