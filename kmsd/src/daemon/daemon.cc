#include "daemon/daemon.h"

#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <set>
#include <thread>

#include "common/time_format.h"
#include "daemon/basic_auth.h"
#include "daemon/config_check.h"
#include "daemon/daemon_parts.h"
#include "daemon/registration.h"
#include "services/state_reader.h"
#include "signing/signing_record.h"
#include "storage/alert_log.h"

namespace kms::daemon {
namespace {

using storage::EventLevel;

/// State dir checked (a second kmsd must not touch the DB at all), locked, DB opened.
Result<void> openState(Daemon::Parts& p) {
  const config::Config& cfg = *p.config;
  if (auto problems = trustSettingProblems(cfg); !problems.empty()) {
    return fail(Errc::config, problems.front(), p.options.configPath);
  }
  if (auto dir = checkStateDir(cfg.daemon.stateDir, true); !dir) {
    return fail(dir.error());
  }
  auto lock = StateLock::take(cfg.daemon.stateDir);
  if (!lock) {
    return fail(lock.error());
  }
  p.lock = std::move(*lock);
  auto state = openStateDb(cfg);
  if (!state) {
    return fail(state.error());
  }
  p.state = std::move(*state);
  p.sink = std::make_unique<StoreEventSink>(*p.state.locked, p.log);
  p.metrics = std::make_unique<Metrics>();
  p.sink->addListener([m = p.metrics.get()](const EventRecord& e) { m->count(e); });
  return ok();
}

/// The PASSporT signer: the current certificates' keys, kept current by the events that
/// change them, and the threads that sign.
Result<void> openSigning(Daemon::Parts& p) {
  p.signingKeys = std::make_unique<SigningKeys>(*p.state.locked, p.services->keys().token(), *p.trustState, *p.sink);
  if (auto r = p.signingKeys->reloadAll(unixSeconds(p.clock->now())); !r) {
    return fail(r.error());
  }
  p.sink->addListener([&p](const EventRecord& e) { p.signingKeys->follow(e, unixSeconds(p.clock->now())); });
  const config::SigningConfig& cfg = p.config->signing;
  p.signing = std::make_unique<SigningService>(*p.signingKeys, *p.clock, static_cast<std::size_t>(cfg.threads));
  p.metrics->addCollector([s = p.signing.get()](Exposition& out) { writeSigningMetrics(s->counters(), out); });
  p.metrics->addCollector([&token = p.services->keys().token()](Exposition& out) {
    writeHsmMetrics(token.stats(), out);
  });
  if (cfg.record) {
    auto record = SigningRecord::open(*cfg.record, cfg.recordMaxBytes, cfg.recordKeep);
    if (!record) {
      return fail(record.error());
    }
    p.signing->setRecord(std::move(*record));
  }
  if (cfg.listen) {
    auto listener = SigningListener::open(cfg, *p.signing, listenerLimits(p.config->daemon));
    if (!listener) {
      return fail(listener.error());
    }
    p.signingListener = std::move(*listener);
    p.sink->emit({"KMS_SIGNING_LISTENING", EventLevel::info, std::nullopt,
                  "signing API on " + cfg.listen->host + ":" + std::to_string(p.signingListener->port()) +
                      (p.signingListener->tls() ? " (TLS" + std::string(cfg.clientCa ? ", client certificates" : "") + ")"
                                                : " (clear text, loopback)") +
                      " for " + std::to_string(p.signingListener->clients()) + " client(s)",
                  {{"port", std::to_string(p.signingListener->port())}}});
  }
  return ok();
}

Result<void> openServices(Daemon::Parts& p, const config::Config& full) {
  const std::size_t workers = defaultConcurrency(full);
  p.executor = std::make_unique<AsioExecutor>(
      *p.clock, workers, [&p](const std::string& where, const std::string& what) { internalError(*p.sink, where, what); });
  auto trustState = TrustState::create(*p.config);
  if (!trustState) {
    return fail(trustState.error());
  }
  p.trustState = std::move(*trustState);
  auto services = Services::create(full, *p.clock, *p.sink, *p.state.locked,
                                    std::exchange(p.options.http01Socket, std::nullopt), {}, p.metrics.get());
  if (!services) {
    return fail(services.error());
  }
  p.services = std::move(*services);
  if (!p.options.once) {
    if (auto r = openSigning(p); !r) {
      return fail(r.error());
    }
  }
  p.steps = std::make_unique<Steps>(*p.services, *p.trustState, *p.clock, *p.random, *p.sink);
  p.trust = std::make_unique<TrustKeeper>(*p.services, *p.trustState, *p.clock, *p.sink);
  p.trust->load();  // the kept CA list's roots are the anchors until a newer one is read
  EngineSettings settings{workers, RetryPolicy{full.daemon.retryFirst.count(), full.daemon.retryMax.count()},
                          p.options.once};
  p.engine = std::make_unique<Engine>(*p.executor, *p.clock, *p.random, *p.steps, *p.state.locked, *p.sink, settings);
  p.maintenance = std::make_unique<Maintenance>(*p.executor, *p.engine, *p.trust, *p.steps, *p.state.locked,
                                                *p.sink, *p.clock, [&p] { return p.config; });
  if (full.stiPa && !p.options.once) {
    p.maintenance->setTrustInterval(full.stiPa->trustRefresh);
  }
  p.engine->onActivated = [&p] { p.maintenance->housekeeping(); };
  return ok();
}

/// kmsd's own alerts ([alerts]): the channels, and the alert tables over a connection of
/// their own; woken by the events that may change a condition. Started with the loop.
Result<void> openAlerts(Daemon::Parts& p, const config::Config& full) {
  auto channels = makeAlertChannels(full.alerts);
  if (!channels) {
    return fail(channels.error());
  }
  auto log = storage::AlertLog::open(dbPath(full));
  if (!log) {
    return fail(log.error());
  }
  std::set<std::string> names;
  for (const auto& c : full.certificates) {
    names.insert(c.name);
  }
  p.notifier = std::make_unique<Notifier>(std::move(*log), std::move(*channels), full.alerts, std::move(names),
                                          *p.sink, *p.clock);
  p.sink->addListener([n = p.notifier.get()](const EventRecord& e) {
    if (!Notifier::isOwnEvent(e.id)) {  // its own events change no condition
      n->wake();
    }
  });
  p.metrics->addCollector([n = p.notifier.get()](Exposition& out) { n->writeMetrics(out); });
  return ok();
}

/// The configured certificates recorded and handed to the engine (which keeps them from here
/// on: the configuration in force keeps none).
Result<void> addCertificates(Daemon::Parts& p, config::Config& full) {
  const DefinitionHasher hash(full);
  auto registered = registerCertificates(*p.state.locked, full.certificates, hash);
  if (!registered) {
    return fail(registered.error());
  }
  announceReleased(*p.sink, registered->released);
  for (auto& c : full.certificates) {
    std::string definition = hash(c);
    p.engine->add(std::move(c), std::move(definition));
  }
  full.certificates.clear();
  full.certificates.shrink_to_fit();
  return ok();
}

/// --once --force: the stored waits of the named certificates (all without names) cleared,
/// each said on its outcome line. A name that is not configured is an error.
Result<void> overrideWaits(Daemon::Parts& p) {
  const auto& names = p.options.forceNames;
  const std::int64_t now = unixSeconds(p.clock->now());
  for (const auto& name : names.empty() ? p.engine->names() : names) {
    std::string what;
    auto r = p.state.locked->with([&](storage::Store& s) -> Result<void> {
      auto cert = s.getCertificate(name);
      if (!cert || !*cert || !(*cert)->nextAttemptAt || *(*cert)->nextAttemptAt <= now) {
        return cert ? ok() : fail(cert.error());
      }
      const storage::ManagedCert& c = **cert;
      what = std::string(c.failureWait == "peer" ? "a wait the CA named" : "kmsd's backoff") + " until " +
             isoTime(*c.nextAttemptAt) +
             (c.failureCount > 0 ? " after " + std::to_string(c.failureCount) + " failure(s)" : std::string());
      return s.setNextAttempt(name, std::nullopt);
    });
    if (!r) {
      return fail(r.error());
    }
    if (!what.empty()) {
      p.engine->overrode(name, what);
    }
  }
  return ok();
}

void openControl(Daemon::Parts& p) {
  p.control = std::make_unique<ControlContext>(ControlContext{
      *p.engine, *p.executor, *p.state.locked, *p.clock, *p.sink, *p.services, *p.trust, *p.trustState, *p.steps,
      p.signing.get(),
      [&p] { return p.config; },
      [&p]() -> std::string {
        return p.engine->stopping() ? "stopping" : p.started ? "" : "starting";
      },
      [&p](std::function<void(std::vector<std::string>)> done) {
        return p.maintenance->refreshTrust(false, std::move(done));
      }});
  p.control->metrics = p.metrics.get();
  p.control->alerts = p.notifier.get();
  p.routes = controlRoutes(*p.control);
  http::ServerOptions options;
  options.limits = listenerLimits(p.config->daemon);
  options.refusal = [](int status, const std::string& why) { return problem(status, "request refused", why); };
  auto server = http::Server::listenUnix(
      p.executor->io(), p.config->daemon.controlSocket, 0660,
      [&p](const ControlRequest& r, const http::Reply& reply) { p.routes.dispatch(r, reply); }, options);
  if (!server) {
    // The control API is not essential to renewing: say so loudly and keep going.
    p.sink->emit({"KMS_CONTROL_API_FAILED", EventLevel::error, std::nullopt,
                  "[daemon] control_socket: " + server.error().toString(),
                  {{"socket", p.config->daemon.controlSocket}}});
    return;
  }
  p.controlServer = std::move(*server);
}

/// [daemon] metrics_listen: /metrics, /healthz and /readyz on TCP, on the loop; over HTTPS
/// with metrics_tls_certificate and metrics_tls_key, and behind HTTP basic authentication
/// with metrics_basic_auth_file (read here, once). Unlike the control socket, a start that
/// cannot listen fails, naming the setting: a scrape target that silently is not there is an
/// alert that never fires.
Result<void> openMetrics(Daemon::Parts& p) {
  const config::DaemonConfig& cfg = p.config->daemon;
  const auto& listen = cfg.metricsListen;
  if (!listen || !p.control) {
    return ok();
  }
  p.metricsRoutes = metricsRoutes(*p.control);
  http::Handler handler = [&p](const ControlRequest& r, const http::Reply& reply) {
    p.metricsRoutes.dispatch(r, reply);
  };
  if (cfg.metricsBasicAuthFile) {
    auto auth = BasicAuth::load(*cfg.metricsBasicAuthFile);
    if (!auth) {
      Error e = auth.error();
      e.message = "[daemon] metrics_basic_auth_file: " + e.message;
      return fail(e);
    }
    handler = BasicAuth::guard(std::move(*auth), std::move(handler));
  }
  http::ServerOptions options;
  options.limits = listenerLimits(cfg);
  options.refusal = [](int status, const std::string& why) { return problem(status, "request refused", why); };
  Result<std::unique_ptr<http::Server>> server;
  if (cfg.metricsTlsCertificate && cfg.metricsTlsKey) {
    auto identity = http::TlsIdentity::load({*cfg.metricsTlsCertificate, *cfg.metricsTlsKey, std::nullopt});
    if (!identity) {
      Error e = identity.error();
      e.message = "[daemon] metrics_tls_certificate, metrics_tls_key: " + e.message;
      return fail(e);
    }
    server = http::Server::listenTls(p.executor->io(), listen->host, listen->port, std::move(*identity),
                                     std::move(handler), options);
  } else {
    server = http::Server::listenTcp(p.executor->io(), listen->host, listen->port, std::move(handler), options);
  }
  if (!server) {
    Error e = server.error();
    e.message = "[daemon] metrics_listen " + listen->toString() + ": " + e.message;
    return fail(e);
  }
  p.metricsServer = std::move(*server);
  return ok();
}

/// SIGTERM, SIGINT: the steps in flight finish (their requests cancelled after kStopGrace).
void beginStop(Daemon::Parts& p, int sig) {
  superviseStopping(p);
  p.sink->emit({"KMS_STOPPING", EventLevel::info, std::nullopt,
                std::string("signal ") + (sig == SIGTERM ? "TERM" : "INT") + ": finishing the steps in flight",
                {{"in_flight", std::to_string(p.engine->counters().stepsRunning)}}});
  p.maintenance->stop();
  if (p.controlServer) {
    p.controlServer->stop();
  }
  if (p.metricsServer) {
    p.metricsServer->stop();
  }
  if (p.signingListener) {
    p.signingListener->stopAccepting();
  }
  // A step waiting on a slow peer would hold the stop up for up to a request timeout:
  // after [daemon] stop_grace its request is cancelled (the order resumes at the next start).
  const std::chrono::seconds grace = p.config->daemon.stopGrace;
  p.stopTimer = p.executor->timer();
  p.stopTimer->at(p.clock->now() + grace, [&p, grace] {
    const int inFlight = p.engine->counters().stepsRunning;
    if (inFlight > 0) {
      p.sink->emit({"KMS_STOP_CANCELLING", EventLevel::info, std::nullopt,
                    "steps still in flight after " + std::to_string(grace.count()) +
                        " s ([daemon] stop_grace): cancelling their requests",
                    {{"in_flight", std::to_string(inFlight)}}});
      p.services->cancelTransfers();
    }
  });
  p.engine->stop([&p] {
    p.stopTimer->cancel();
    if (p.watchdogTimer) {
      p.watchdogTimer->cancel();
    }
    p.signals->cancel();
    p.executor->stop();
  });
}

}  // namespace

std::size_t defaultConcurrency(const config::Config& c) {
  if (c.daemon.maxConcurrentOrders > 0) {
    return static_cast<std::size_t>(c.daemon.maxConcurrentOrders);
  }
  return std::size_t{2} * std::max(1U, std::thread::hardware_concurrency());
}

Daemon::Parts::~Parts() {
  if (executor) {
    executor->join();  // nothing runs on a worker once the parts it uses go
  }
  if (notifier) {
    notifier->stop();  // its threads joined: nothing it sends or emits is left
  }
  signingListener.reset();  // its threads joined: nothing signs through it any more
  signing.reset();          // its threads joined
  if (sink) {
    sink->clearListeners();  // before the signing keys they update go
  }
}

Daemon::Daemon(std::unique_ptr<Parts> parts) : parts_(std::move(parts)) {}
Daemon::~Daemon() = default;

Result<std::unique_ptr<Daemon>> Daemon::open(config::Config config, Logger& log, Options options) {
  for (const auto& n : options.forceNames) {  // before anything is opened or written
    if (std::none_of(config.certificates.begin(), config.certificates.end(),
                     [&](const config::CertificateConfig& c) { return c.name == n; })) {
      return fail(Errc::config, "--force " + n + ": no [[certificate]] of that name", options.configPath);
    }
  }
  auto p = std::make_unique<Parts>(config, log, std::move(options));
  p->descriptorLimit = raiseDescriptorLimit();
  if (auto r = openState(*p); !r) {
    return fail(r.error());
  }
  if (auto r = openServices(*p, config); !r) {
    return fail(r.error());
  }
  if (!p->options.once) {
    if (auto r = openAlerts(*p, config); !r) {
      return fail(r.error());
    }
  }
  if (auto r = addCertificates(*p, config); !r) {
    return fail(r.error());
  }
  p->services->setConfig(p->config);  // one value from here on; a reload swaps it
  if (p->options.once && p->options.force) {
    if (auto r = overrideWaits(*p); !r) {
      return fail(r.error());
    }
  }
  if (p->options.controlApi && !p->options.once) {
    openControl(*p);
    if (auto r = openMetrics(*p); !r) {
      return fail(r.error());
    }
  }
  return std::unique_ptr<Daemon>(new Daemon(std::move(p)));
}

int Daemon::run() {
  Parts& p = *parts_;
  p.started = true;
  p.sink->emit({"KMS_STARTED", EventLevel::info, std::nullopt,
                std::string(p.options.once ? "kmsd --once" : "kmsd") + " started with " +
                    std::to_string(p.engine->names().size()) + " certificate(s)",
                {{"pid", std::to_string(::getpid())},
                 {"max_concurrent_orders", std::to_string(p.engine->counters().maxOrders)}}});
  emitStartupWarnings(p);
  if (!p.options.once) {
    p.signals = std::make_unique<SignalWatcher>(*p.executor, [&p](int sig) {
      if (sig == SIGHUP) {
        superviseReloading(p);
        reload(p);
        superviseReloaded(p);
      } else if (!p.engine->stopping()) {
        beginStop(p, sig);
      }
    });
  }
  if (p.services->stiPa() != nullptr) {
    // The CA list and the CRL first: a chain is checked against current anchors, and an
    // active certificate the CRL lists is replaced before anything else.
    p.maintenance->refreshTrust(true);
  } else {
    p.engine->start();
  }
  p.maintenance->housekeeping();
  if (p.engine->names().empty() && p.options.once) {
    return 0;
  }
  if (!p.options.once) {
    p.notifier->start();
    superviseStart(p);  // READY=1: the state, the token and the schedule are loaded
  }
  p.executor->run();
  if (!p.options.once) {
    p.sink->emit({"KMS_STOPPED", EventLevel::info, std::nullopt, "kmsd stopped", {}});
  }
  return 0;
}

std::vector<CertOutcome> Daemon::outcomes() const {
  return parts_->engine->outcomes();
}

}  // namespace kms::daemon
