// SIGHUP: the whole configuration file read again and swapped in as one value (the settings
// for services, engine, log and maintenance; the certificates for the engine and the DB).
#include "daemon/reloader.h"

#include <algorithm>
#include <set>

#include "daemon/daemon_parts.h"
#include "daemon/registration.h"

namespace kms::daemon {
namespace {

using storage::EventLevel;

/// Restores `field` of `next` from `running` when they differ, naming it in `out`.
template <class T>
void keep(const T& running, T& next, const char* name, std::vector<std::string>& out) {
  if (!(running == next)) {
    next = running;
    out.emplace_back(name);
  }
}

/// Certificates that need what only a restart starts (an http-01 responder when none runs):
/// named in KMS_RELOAD_NEEDS_RESTART and left out, their old definition (if any) stays.
std::vector<config::CertificateConfig> withoutRestartNeeds(Daemon::Parts& p,
                                                           std::vector<config::CertificateConfig> certs) {
  if (p.services->http01Running()) {
    return certs;
  }
  std::string names;
  std::vector<config::CertificateConfig> kept;
  for (auto& c : certs) {
    auto current = p.engine->definition(c.name);
    const bool needsResponder = c.challenge == config::Challenge::http01 && !(current && *current == c);
    if (needsResponder) {
      names += (names.empty() ? "" : ", ") + c.name;
      if (current) {
        kept.push_back(*current);
      }
    } else {
      kept.push_back(std::move(c));
    }
  }
  if (!names.empty()) {
    p.sink->emit({"KMS_RELOAD_NEEDS_RESTART", EventLevel::warning, std::nullopt,
                  "[[certificate]] " + names + ": http-01 needs the http-01 responder, which starts only at a "
                  "restart; their previous definition (if any) stays until then",
                  {{"settings", "[[certificate]] " + names}}});
  }
  return kept;
}

/// Adds and updates; the number added and changed.
std::pair<int, int> applyCertificates(Daemon::Parts& p, const std::vector<config::CertificateConfig>& certs,
                                      const DefinitionHasher& hash) {
  auto registered = registerCertificates(*p.state.locked, certs, hash);
  if (!registered) {
    p.sink->emit({"KMS_RELOAD_FAILED", EventLevel::error, std::nullopt,
                  "certificates not recorded, the previous ones stay: " + registered.error().toString(), {}});
    return {0, 0};
  }
  announceReleased(*p.sink, registered->released);
  int added = 0;
  int changed = 0;
  for (const auto& c : certs) {
    auto current = p.engine->definition(c.name);
    if (!current) {
      p.engine->add(c, hash(c));
      ++added;
      continue;
    }
    const bool redefined = !(*current == c);
    p.engine->update(c, hash(c));  // the settings' part of the hash may have changed too
    if (redefined) {
      // Renewed with its new definition at once; the active certificate stays until the new
      // one is published.
      p.engine->requestRenewal(c.name);
      ++changed;
    }
  }
  // Failed under the old configuration: tried again now, not at the backoff's time. The
  // rest keeps its place in the schedule (a reload does not replan every certificate).
  for (const auto& name : registered->released) {
    p.engine->wake(name);
  }
  return {added, changed};
}

int removeMissing(Daemon::Parts& p, const std::vector<config::CertificateConfig>& certs) {
  int removed = 0;
  const std::vector<std::string> names = p.engine->names();  // a copy: removal changes it
  for (const auto& name : names) {
    if (std::none_of(certs.begin(), certs.end(), [&](const auto& c) { return c.name == name; })) {
      p.engine->remove(name);
      ++removed;
      p.sink->emit({"KMS_CERT_REMOVED", EventLevel::warning, name,
                    "no longer in the configuration: renewal stopped, published files kept", {}});
    }
  }
  return removed;
}

/// The live settings of `next` put to work.
void applySettings(Daemon::Parts& p, const std::shared_ptr<const config::Config>& next) {
  p.config = next;
  p.services->setConfig(next);
  p.log.setFormat(next->daemon.logFormat);
  p.engine->setRetryPolicy(RetryPolicy{next->daemon.retryFirst.count(), next->daemon.retryMax.count()});
  p.engine->setMaxOrders(defaultConcurrency(*next));
  if (next->stiPa && !p.options.once) {
    p.maintenance->setTrustInterval(next->stiPa->trustRefresh);
  }
}

/// The signing listener's TLS files and clients read again: a client removed from the file
/// is refused from the next request on. On an error the listener keeps what it had.
void reloadSigning(Daemon::Parts& p, const config::Config& next) {
  if (!p.signingListener) {
    return;
  }
  if (auto r = p.signingListener->reload(next.signing); !r) {
    p.sink->emit({"KMS_SIGNING_RELOAD_FAILED", EventLevel::error, std::nullopt,
                  "signing clients and TLS files not reloaded, the previous ones stay: " + r.error().toString(),
                  {{"file", r.error().context}}});
    return;
  }
  p.sink->emit({"KMS_SIGNING_RELOADED", EventLevel::info, std::nullopt,
                "signing clients and TLS files reloaded: " + std::to_string(p.signingListener->clients()) +
                    " client(s)",
                {}});
}

}  // namespace

std::vector<std::string> keepRestartSettings(const config::Config& running, config::Config& next) {
  std::vector<std::string> out;
  keep(running.daemon.stateDir, next.daemon.stateDir, "[daemon] state_dir", out);
  keep(running.daemon.controlSocket, next.daemon.controlSocket, "[daemon] control_socket", out);
  keep(running.daemon.metricsListen, next.daemon.metricsListen, "[daemon] metrics_listen", out);
  keep(running.daemon.metricsTlsCertificate, next.daemon.metricsTlsCertificate, "[daemon] metrics_tls_certificate",
       out);
  keep(running.daemon.metricsTlsKey, next.daemon.metricsTlsKey, "[daemon] metrics_tls_key", out);
  keep(running.daemon.metricsBasicAuthFile, next.daemon.metricsBasicAuthFile, "[daemon] metrics_basic_auth_file",
       out);
  keep(running.daemon.listenerMaxConnections, next.daemon.listenerMaxConnections,
       "[daemon] listener_max_connections", out);
  keep(running.daemon.listenerMaxPerPeer, next.daemon.listenerMaxPerPeer, "[daemon] listener_max_per_peer", out);
  keep(running.daemon.listenerHeaderTimeout, next.daemon.listenerHeaderTimeout, "[daemon] listener_header_timeout",
       out);
  keep(running.hsm, next.hsm, "[hsm]", out);
  keep(running.alerts, next.alerts, "[alerts]", out);
  keep(running.acme, next.acme, "[acme]", out);
  // [sti_pa]: the connection and its trust; only trust_refresh changes live.
  if (running.stiPa && next.stiPa) {
    config::StiPaConfig live = *running.stiPa;
    live.trustRefresh = next.stiPa->trustRefresh;
    keep(live, *next.stiPa, "[sti_pa]", out);
  } else {
    keep(running.stiPa, next.stiPa, "[sti_pa]", out);
  }
  keep(running.publisher.webRoot, next.publisher.webRoot, "[publisher] web_root", out);
  keep(running.publisher.baseUrl, next.publisher.baseUrl, "[publisher] base_url", out);
  keep(running.publisher.caBundle, next.publisher.caBundle, "[publisher] ca_bundle", out);
  keep(running.publisher.checkTimeout, next.publisher.checkTimeout, "[publisher] check_timeout", out);
  keep(running.signing.threads, next.signing.threads, "[signing] threads", out);
  keep(running.signing.listen, next.signing.listen, "[signing] listen", out);
  if (running.signing.tlsCertificate.has_value() != next.signing.tlsCertificate.has_value()) {
    // TLS switched on or off: a restart; the files of a TLS listener change live.
    keep(running.signing.tlsCertificate, next.signing.tlsCertificate, "[signing] tls_certificate", out);
    keep(running.signing.tlsKey, next.signing.tlsKey, "[signing] tls_key", out);
    keep(running.signing.clientCa, next.signing.clientCa, "[signing] client_ca", out);
  }
  keep(running.signing.record, next.signing.record, "[signing] record", out);
  keep(running.signing.recordMaxBytes, next.signing.recordMaxBytes, "[signing] record_max_size", out);
  keep(running.signing.recordKeep, next.signing.recordKeep, "[signing] record_keep", out);
  return out;
}

void reload(Daemon::Parts& p) {
  const std::string& path = p.options.configPath;
  auto cfg = config::loadConfigFile(path, config::environmentSnapshot());
  if (!cfg) {
    std::string text = config::formatErrors(cfg.error());
    if (!text.empty() && text.back() == '\n') {
      text.pop_back();
    }
    p.sink->emit({"KMS_RELOAD_FAILED", EventLevel::error, std::nullopt,
                  "configuration not reloaded, the previous one stays: " + text, {{"file", path}}});
    return;
  }
  std::vector<config::CertificateConfig> certs = withoutRestartNeeds(p, std::move(cfg->certificates));
  cfg->certificates.clear();
  const std::vector<std::string> kept = keepRestartSettings(*p.config, *cfg);
  if (!kept.empty()) {
    std::string names;
    for (const auto& k : kept) {
      names += (names.empty() ? "" : ", ") + k;
    }
    p.sink->emit({"KMS_RELOAD_NEEDS_RESTART", EventLevel::warning, std::nullopt,
                  "changed settings that apply only at a restart keep their old value until then: " + names,
                  {{"settings", names}, {"file", path}}});
  }
  auto next = std::make_shared<const config::Config>(std::move(*cfg));
  applySettings(p, next);
  reloadSigning(p, *next);
  const DefinitionHasher hash(*next);
  const auto [added, changed] = applyCertificates(p, certs, hash);
  const int removed = removeMissing(p, certs);
  if (p.notifier) {
    const std::vector<std::string> names = p.engine->names();
    p.notifier->setCertificates(std::set<std::string>(names.begin(), names.end()));
  }
  p.sink->emit({"KMS_RELOADED", EventLevel::info, std::nullopt,
                "configuration reloaded: " + std::to_string(added) + " added, " + std::to_string(changed) +
                    " changed, " + std::to_string(removed) + " removed",
                {{"file", path}}});
}

}  // namespace kms::daemon
