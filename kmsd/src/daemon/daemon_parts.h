#pragma once
// The parts a Daemon owns, in the order they are built (and the reverse of the order they
// go). Private to daemon/.

#include <atomic>
#include <memory>
#include <string>

#include "common/clock.h"
#include "alerts/notifier.h"
#include "control/control_context.h"
#include "daemon/daemon.h"
#include "daemon/maintenance.h"
#include "daemon/service_notify.h"
#include "daemon/signals.h"
#include "daemon/state_lock.h"
#include "engine/asio_executor.h"
#include "engine/engine.h"
#include "http/server.h"
#include "lifecycle/steps.h"
#include "metrics/metrics.h"
#include "services/services.h"
#include "signing/signing_keys.h"
#include "signing/signing_listener.h"
#include "signing/signing_service.h"
#include "trust/trust.h"
#include "trust/trust_state.h"

namespace kms::daemon {

struct Daemon::Parts {
  Parts(const config::Config& c, Logger& l, Options o)
      : config(settingsOf(c)),
        options(std::move(o)),
        log(l),
        clock(systemClock()),
        random(systemRandom()) {}
  ~Parts();

  std::shared_ptr<const config::Config> config;  ///< in force (a reload swaps it); certificates live in the engine
  Options options;
  Logger& log;
  std::unique_ptr<Clock> clock;
  std::unique_ptr<Random> random;
  std::uint64_t descriptorLimit = 0;  ///< RLIMIT_NOFILE after raising it to the hard limit
  std::unique_ptr<StateLock> lock;
  StateDb state;
  std::unique_ptr<StoreEventSink> sink;
  std::unique_ptr<Metrics> metrics;  ///< fed by the sink from its first event
  std::unique_ptr<AsioExecutor> executor;
  std::unique_ptr<TrustState> trustState;
  std::unique_ptr<Services> services;
  std::unique_ptr<SigningKeys> signingKeys;  ///< not with --once
  std::unique_ptr<SigningService> signing;   ///< its threads; not with --once
  std::unique_ptr<SigningListener> signingListener;  ///< [signing] listen; goes before `signing`
  std::unique_ptr<Steps> steps;
  std::unique_ptr<TrustKeeper> trust;
  std::unique_ptr<Engine> engine;
  std::unique_ptr<Maintenance> maintenance;
  std::unique_ptr<Notifier> notifier;  ///< kmsd's own alerts; not with --once
  std::unique_ptr<ControlContext> control;
  RouteTable routes;
  std::unique_ptr<http::Server> controlServer;
  RouteTable metricsRoutes;
  std::unique_ptr<http::Server> metricsServer;  ///< [daemon] metrics_listen
  std::unique_ptr<SignalWatcher> signals;
  std::unique_ptr<Timer> stopTimer;  ///< the grace before requests in flight are cancelled
  bool started = false;
  // systemd's notify protocol (daemon/supervision.cc)
  ServiceNotify notify;
  std::unique_ptr<Timer> watchdogTimer;
  std::unique_ptr<Timer> statusTimer;
  std::atomic<bool> statusDirty{true};  ///< an event since STATUS= was last computed
  std::string statusSent;
  std::int64_t statusAt = 0;            ///< when it was computed
  bool notifyWarned = false;            ///< a failed notification is said once
};

/// The start-up warnings: trust checks off, the descriptor limit holding the listeners
/// below their configured caps, no CRL signer.
void emitStartupWarnings(const Daemon::Parts& p);
/// systemd's notify protocol (daemon/supervision.cc): READY=1 with STATUS= and the
/// watchdog's keep-alives from the loop; RELOADING=1 … READY=1 around a reload; STOPPING=1.
void superviseStart(Daemon::Parts& p);
void superviseReloading(Daemon::Parts& p);
void superviseReloaded(Daemon::Parts& p);
void superviseStopping(Daemon::Parts& p);
/// SIGHUP: the configuration file read again and applied (daemon/reloader.cc).
void reload(Daemon::Parts& p);
/// [daemon] max_concurrent_orders, or two per core when it is 0.
[[nodiscard]] std::size_t defaultConcurrency(const config::Config& c);

}  // namespace kms::daemon
