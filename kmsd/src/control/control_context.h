#pragma once
// What the control API's handlers act on: the engine (on the loop), the worker pool (DB
// reads and anything slow), the state DB, the services, the trust keeper and the steps.
// One handler file per topic adds its routes to the table.

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "config/config.h"
#include "control/route_table.h"
#include "engine/engine.h"
#include "nlohmann/json_fwd.hpp"

namespace kms::daemon {

class Metrics;
class Notifier;
class Services;
class SigningService;
class Steps;
class TrustKeeper;
class TrustState;

struct ControlContext {
  Engine& engine;
  Executor& executor;
  LockedStore& store;
  const Clock& clock;
  EventSink& events;
  Services& services;
  TrustKeeper& trust;
  const TrustState& trustState;
  Steps& steps;
  /// The PASSporT signer (null with --once).
  SigningService* signing;
  /// The configuration in force (read on the loop; a reload swaps it).
  std::function<std::shared_ptr<const config::Config>()> config;
  /// Why kmsd is not ready ("starting", "stopping"), or empty.
  std::function<std::string()> notReady;
  /// Starts a CA list and CRL refresh; `done(affected)` runs on the loop after it. False
  /// when one is running already.
  std::function<bool(std::function<void(std::vector<std::string>)>)> refreshTrust;
  /// What GET /metrics renders (null: none kept).
  Metrics* metrics = nullptr;
  /// kmsd's own alerts (null with --once).
  Notifier* alerts = nullptr;
};

/// Runs `body` on a worker and replies with its response; an exception is a 500 problem and
/// KMS_INTERNAL_ERROR.
void replyFromWorker(ControlContext& ctx, const http::Reply& reply, const std::string& what,
                     std::function<ControlResponse()> body);
/// A JSON response of `j` (invalid UTF-8 replaced).
[[nodiscard]] ControlResponse jsonResponse(int status, const nlohmann::json& j);

/// The whole control API.
[[nodiscard]] RouteTable controlRoutes(ControlContext& ctx);
/// What [daemon] metrics_listen serves: the probe routes only.
[[nodiscard]] RouteTable metricsRoutes(ControlContext& ctx);
/// GET /healthz, /readyz and /metrics: the control socket's, and all [daemon] metrics_listen serves.
void addProbeRoutes(RouteTable& routes, ControlContext& ctx);
/// GET /v1/status.
void addHealthRoutes(RouteTable& routes, ControlContext& ctx);
void addCertificateRoutes(RouteTable& routes, ControlContext& ctx);
void addKeyRoutes(RouteTable& routes, ControlContext& ctx);
void addTrustRoutes(RouteTable& routes, ControlContext& ctx);
void addEventRoutes(RouteTable& routes, ControlContext& ctx);
/// POST /stir/v1/signing (ATIS-1000082; its own error bodies, not problem documents).
void addSigningRoutes(RouteTable& routes, ControlContext& ctx);
/// GET /v1/alerts: the alerts firing or resolved within a day, and what each channel was told.
void addAlertRoutes(RouteTable& routes, ControlContext& ctx);
/// POST /v1/backup: the state DB and the SoftHSM2 token store, consistent (kmsctl backup).
void addBackupRoutes(RouteTable& routes, ControlContext& ctx);

}  // namespace kms::daemon
