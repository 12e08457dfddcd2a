// [daemon]: where kmsd keeps its state, its listeners and their limits, the metrics listener
// with its TLS and basic authentication.
#include "daemon_reader.h"

#include <grp.h>

#include "checks.h"
#include "kms/secret.h"

namespace kms::config::detail {
namespace {

constexpr std::size_t kMaxSocketPath = 107;  // sizeof(sockaddr_un::sun_path) - 1

/// [daemon] metrics_tls_certificate, metrics_tls_key and metrics_basic_auth_file: HTTPS and
/// basic authentication on metrics_listen. The basic auth file's form is checked here; its
/// content is wiped at once and never appears in an error.
void readMetricsAccess(SectionReader& r, DaemonConfig& out) {
  out.metricsTlsCertificate = r.pemFile("metrics_tls_certificate", Need::optional);
  out.metricsTlsKey = r.secretFile("metrics_tls_key", Need::optional);
  out.metricsBasicAuthFile = r.secretFile("metrics_basic_auth_file", Need::optional);
  if (out.metricsBasicAuthFile && r.checksFiles()) {
    const Result<SecretBytes> secret = readSecretFile(*out.metricsBasicAuthFile);  // secretFile() just read it
    const std::string_view line = secret.has_value() ? secret->view() : std::string_view();
    const std::size_t colon = line.find(':');
    if (colon == 0 || colon == std::string_view::npos || colon + 1 == line.size() ||
        line.find_first_of("\r\n") != std::string_view::npos) {
      r.fail("metrics_basic_auth_file", quoted(*out.metricsBasicAuthFile) +
                                            " must hold one line user:password (neither part empty)");
      out.metricsBasicAuthFile.reset();
    }
  }
  const bool tls = r.has("metrics_tls_certificate") && r.has("metrics_tls_key");
  if (r.has("metrics_tls_certificate") != r.has("metrics_tls_key")) {
    r.fail(r.has("metrics_tls_key") ? "metrics_tls_certificate" : "metrics_tls_key",
           "set metrics_tls_certificate and metrics_tls_key together");
  }
  for (const char* key : {"metrics_tls_certificate", "metrics_tls_key", "metrics_basic_auth_file"}) {
    if (r.has(key) && !r.has("metrics_listen")) {
      r.fail(key, "needs metrics_listen");
    }
  }
  if (out.metricsListen && r.has("metrics_basic_auth_file") && !tls && !isLoopbackHost(out.metricsListen->host)) {
    r.fail("metrics_basic_auth_file", "would send the password in clear text to " + out.metricsListen->toString() +
                                          ": set metrics_tls_certificate and metrics_tls_key, or a loopback "
                                          "metrics_listen");
  }
}

}  // namespace

void readDaemon(SectionReader& r, DaemonConfig& out) {
  out.stateDir = r.absolutePath("state_dir", Need::required).value_or("");
  if (auto socket = r.absolutePath("control_socket", Need::optional)) {
    if (socket->size() > kMaxSocketPath) {
      r.fail("control_socket", "must be at most 107 bytes (the AF_UNIX path limit)");
    }
    out.controlSocket = *socket;
  }
  if (auto listen = r.nonEmpty("metrics_listen", Need::optional)) {
    if (auto parsed = parseHostPort(*listen)) {
      out.metricsListen = *parsed;
    } else {
      r.fail("metrics_listen", parsed.error());
    }
  }
  readMetricsAccess(r, out);
  readChoice(r, "log_format", {{"text", LogFormat::text}, {"json", LogFormat::json}}, R"(must be "text" or "json")",
             out.logFormat);
  if (auto orders = r.integer("max_concurrent_orders", Need::optional)) {
    if (*orders < 0 || *orders > 1024) {
      r.fail("max_concurrent_orders", "must be between 1 and 1024 (0: two per core), got " + std::to_string(*orders));
    } else {
      out.maxConcurrentOrders = static_cast<int>(*orders);
    }
  }
  readDuration(r, "retry_first", std::chrono::seconds(0), std::chrono::seconds(86400), "must be at most 1d",
               out.retryFirst);
  readDuration(r, "retry_max", std::chrono::seconds(0), std::chrono::seconds(86400), "must be at most 1d",
               out.retryMax);
  if (out.retryMax < out.retryFirst) {
    r.fail("retry_max", "must be at least retry_first (" + formatDuration(out.retryFirst) + ")");
  }
  for (auto [key, value] : {std::pair{"listener_max_connections", &out.listenerMaxConnections},
                            std::pair{"listener_max_per_peer", &out.listenerMaxPerPeer}}) {
    readInteger(r, key, 1, 65536, *value);
  }
  readDuration(r, "listener_header_timeout", std::chrono::seconds(1), std::chrono::seconds(300),
               "must be between 1s and 5m", out.listenerHeaderTimeout);
  // kmsd must be gone within 10 s of SIGTERM: the grace, then cancellation and the exit.
  readDuration(r, "stop_grace", std::chrono::seconds(1), std::chrono::seconds(8), "must be between 1s and 8s",
               out.stopGrace);
  if (auto group = r.nonEmpty("control_admin_group", Need::optional)) {
    if (::getgrnam(group->c_str()) == nullptr) {
      r.fail("control_admin_group", "no group named " + *group + " on this system");
    } else {
      out.controlAdminGroup = *group;
    }
  }
  readDuration(r, "events_keep", std::chrono::seconds(3600), std::chrono::seconds(10L * 365 * 86400),
               "must be between 1h and 10 years", out.eventsKeep);
  readInteger(r, "events_max", 100, 100000000, out.eventsMax);
}

}  // namespace kms::config::detail
