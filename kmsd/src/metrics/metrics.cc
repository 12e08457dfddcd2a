#include "metrics/metrics.h"

#include <sys/timex.h>
#include <systemd/sd-bus.h>

#include <algorithm>
#include <array>
#include <set>
#include <string_view>
#include <optional>

#include "common/version.h"
#include "metrics/exposition.h"

namespace kms::daemon {
namespace {

std::string field(const EventRecord& e, std::string_view key) {
  for (const auto& [k, v] : e.fields) {
    if (k == key) {
      return v;
    }
  }
  return {};
}

/// A step name as a label value: kmsd's own words only (a field could in principle carry
/// something else); anything unexpected becomes "other".
std::string stageLabel(const std::string& step) {
  const bool plain = !step.empty() && step.size() <= 32 && std::all_of(step.begin(), step.end(), [](unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
  });
  return plain ? step : "other";
}

/// Request duration buckets (seconds): a CA answers in milliseconds, a slow one in seconds.
constexpr std::array<double, 12> kDurationBounds{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};

/// A status as a label value: the HTTP code, or "error" when no answer came.
std::string statusLabel(long status) {
  return status > 0 && status < 1000 ? std::to_string(status) : "error";
}

/// An action name as a label value: a client's constant, checked like a step name.
std::string actionLabel(const char* action) {
  const std::string_view a(action);
  const bool plain = !a.empty() && a.size() <= 32 && std::all_of(a.begin(), a.end(), [](unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
  });
  return plain ? std::string(a) : "other";
}

/// Whether the kernel clock is NTP-synchronized: adjtimex (read only), or, where kmsd.service
/// refuses that call (ProtectClock=, SystemCallFilter=), systemd-timedated's NTPSynchronized;
/// nullopt when neither can say (no series then, rather than a false 0).
std::optional<bool> clockSynchronized() {
  timex tx{};
  tx.modes = 0;
  const int state = ::adjtimex(&tx);
  if (state >= 0) {
    return state != TIME_ERROR && (tx.status & STA_UNSYNC) == 0;
  }
  sd_bus* bus = nullptr;
  if (sd_bus_open_system(&bus) < 0) {
    return std::nullopt;
  }
  (void)sd_bus_set_method_call_timeout(bus, 2'000'000);  // microseconds: a scrape must not hang on it
  sd_bus_error error = SD_BUS_ERROR_NULL;
  int value = 0;
  const int r = sd_bus_get_property_trivial(bus, "org.freedesktop.timedate1", "/org/freedesktop/timedate1",
                                            "org.freedesktop.timedate1", "NTPSynchronized", &error, 'b', &value);
  sd_bus_error_free(&error);
  sd_bus_flush_close_unref(bus);
  if (r < 0) {
    return std::nullopt;
  }
  return value != 0;
}

}  // namespace

void Metrics::observeRequest(const char* peer, const char* action, long status, double seconds) {
  std::lock_guard<std::mutex> lock(mutex_);
  ++requests_[{peer, actionLabel(action), statusLabel(status)}];
  Histogram& h = durations_[peer];
  if (h.buckets.empty()) {
    h.buckets.assign(kDurationBounds.size(), 0);
  }
  for (std::size_t i = 0; i < kDurationBounds.size(); ++i) {
    if (seconds <= kDurationBounds[i]) {
      ++h.buckets[i];
      break;
    }
  }
  ++h.count;
  h.sum += seconds;
}

void Metrics::count(const EventRecord& event) {
  std::lock_guard<std::mutex> lock(mutex_);
  ++events_[event.id];
  if (!event.cert) {
    return;
  }
  const std::string_view id = event.id;
  if (id == "KMS_CERT_ACTIVATED") {
    ++attempts_[{*event.cert, "success", "activate"}];
  } else if (id == "KMS_RENEW_FAILED") {
    ++attempts_[{*event.cert, "retry", stageLabel(field(event, "step"))}];
  } else if (id == "KMS_ISSUE_FAILED") {
    ++attempts_[{*event.cert, "failed", stageLabel(field(event, "step"))}];
  } else if (id == "KMS_CERT_PUBLISHED") {
    ++publicationChecks_[{*event.cert, "success"}];  // written, and (publication_check = "fetch") served back
  } else if (id == "KMS_PUBLICATION_CHECK_FAILED") {
    ++publicationChecks_[{*event.cert, "failure"}];
  }
}

Result<std::string> Metrics::render(LockedStore& store, std::int64_t now, std::size_t perCertificateLimit) const {
  auto rows = store.with([&](storage::Store& s) { return s.listStatus(now); });
  if (!rows) {
    return fail(rows.error());
  }
  auto open = store.with([](storage::Store& s) { return s.countOpenOrders(); });
  if (!open) {
    return fail(open.error());
  }
  Exposition x;
  x.family("kms_build_info", "gauge", "kmsd's version (the value is always 1)");
  x.sample("kms_build_info", {{"version", kmsVersion()}}, std::int64_t{1});

  if (const auto synced = clockSynchronized()) {
    x.family("kms_clock_synchronized", "gauge",
             "1 when the system clock is NTP-synchronized (PASSporT iat checks fail when it drifts)");
    x.sample("kms_clock_synchronized", {}, std::int64_t{*synced ? 1 : 0});
  }

  x.family("kms_orders_in_flight", "gauge", "ACME orders started and not yet closed");
  x.sample("kms_orders_in_flight", {}, *open);

  // Aggregates, whatever the number of certificates.
  std::map<std::string, std::int64_t> byState;
  std::int64_t ready = 0;
  std::optional<std::pair<std::string, std::int64_t>> soonest;
  auto isReady = [now](const storage::CertStatus& c) {
    return c.state == storage::CertState::active && c.serial && c.notAfter && *c.notAfter > now;
  };
  for (const auto& c : *rows) {
    ++byState[storage::toString(c.state)];
    ready += isReady(c) ? 1 : 0;
    if (c.notAfter && (!soonest || *c.notAfter < soonest->second)) {
      soonest = std::pair{c.name, *c.notAfter};
    }
  }
  x.family("kms_certificates", "gauge", "configured certificates by lifecycle state");
  for (const auto& [state, n] : byState) {
    x.sample("kms_certificates", {{"state", state}}, n);
  }
  x.family("kms_certificates_ready", "gauge", "certificates with a current, unexpired certificate");
  x.sample("kms_certificates_ready", {}, ready);
  if (soonest) {
    x.family("kms_certificate_soonest_expiration_timestamp_seconds", "gauge",
             "the earliest notAfter of any current certificate (Unix seconds), and its name");
    x.sample("kms_certificate_soonest_expiration_timestamp_seconds", {{"name", soonest->first}}, soonest->second);
  }

  // Per certificate, up to the limit (by name, so the same ones each scrape).
  const std::size_t shown = std::min(rows->size(), perCertificateLimit);
  x.family("kms_certificate_per_certificate_series_omitted", "gauge",
           "certificates beyond [metrics] per_certificate_limit, shown only in the aggregates");
  x.sample("kms_certificate_per_certificate_series_omitted", {}, static_cast<std::int64_t>(rows->size() - shown));
  // One gauge family over the certificates shown: `value` nullopt leaves a certificate out.
  auto perCertificate = [&](const char* name, const char* help, auto value) {
    x.family(name, "gauge", help);
    for (std::size_t i = 0; i < shown; ++i) {
      const auto& c = (*rows)[i];
      if (const std::optional<std::int64_t> v = value(c)) {
        x.sample(name, {{"name", c.name}}, *v);
      }
    }
  };
  // The certificate in use's times (only when there is one).
  auto inUse = [](const std::optional<std::int64_t> storage::CertStatus::*field) {
    return [field](const storage::CertStatus& c) { return c.serial ? c.*field : std::nullopt; };
  };
  perCertificate("kms_certificate_expiration_timestamp_seconds", "notAfter of the certificate in use (Unix seconds)",
                 inUse(&storage::CertStatus::notAfter));
  perCertificate("kms_certificate_not_before_timestamp_seconds", "notBefore of the certificate in use (Unix seconds)",
                 inUse(&storage::CertStatus::notBefore));
  perCertificate("kms_certificate_last_success_timestamp_seconds",
                 "when the certificate in use was published: the last renewal that succeeded (Unix seconds)",
                 inUse(&storage::CertStatus::publishedAt));
  perCertificate("kms_certificate_renewal_timestamp_seconds", "when kmsd plans to renew (Unix seconds)",
                 [](const storage::CertStatus& c) { return c.renewAt; });
  x.family("kms_certificate_ready_status", "gauge",
           "1 on the certificate's readiness condition (True: a current certificate is in use), 0 on the others");
  for (std::size_t i = 0; i < shown; ++i) {
    const auto& c = (*rows)[i];
    const bool r = isReady(c);
    x.sample("kms_certificate_ready_status", {{"name", c.name}, {"condition", "True"}}, std::int64_t{r ? 1 : 0});
    x.sample("kms_certificate_ready_status", {{"name", c.name}, {"condition", "False"}}, std::int64_t{r ? 0 : 1});
    x.sample("kms_certificate_ready_status", {{"name", c.name}, {"condition", "Unknown"}}, std::int64_t{0});
  }
  perCertificate("kms_certificate_consecutive_failures", "failed attempts since the last success",
                 [](const storage::CertStatus& c) { return std::optional<std::int64_t>(c.failureCount); });

  // The SPC tokens kept: the latest expiry per SPC (an SPC code from the configuration).
  auto tokens = store.with([](storage::Store& s) { return s.listSpcTokens(); });
  if (!tokens) {
    return fail(tokens.error());
  }
  std::map<std::string, std::int64_t> tokenExp;
  for (const auto& t : *tokens) {
    auto& exp = tokenExp[t.spc];
    exp = std::max(exp, t.exp);
  }
  x.family("kms_spc_token_expiration_timestamp_seconds", "gauge",
           "when the SPC token kept for each SPC expires (Unix seconds)");
  for (const auto& [spc, exp] : tokenExp) {
    x.sample("kms_spc_token_expiration_timestamp_seconds", {{"spc", spc}}, exp);
  }

  // The STI-PA documents kmsd keeps (SHAKEN): how old, and when the CRL is due again.
  x.family("kms_trust_document_age_seconds", "gauge",
           "seconds since the kept STI-PA CA list or CRL was fetched and verified");
  std::optional<std::int64_t> crlNext;
  for (auto kind : {storage::TrustKind::caList, storage::TrustKind::crl}) {
    auto doc = store.with([kind](storage::Store& s) { return s.getTrust(kind); });
    if (!doc) {
      return fail(doc.error());
    }
    if (*doc) {
      const char* label = kind == storage::TrustKind::caList ? "ca_list" : "crl";
      x.sample("kms_trust_document_age_seconds", {{"kind", label}}, now - (*doc)->fetchedAt);
      if (kind == storage::TrustKind::crl) {
        crlNext = (*doc)->nextUpdate;
      }
    }
  }
  if (crlNext) {
    x.family("kms_crl_next_update_timestamp_seconds", "gauge", "nextUpdate of the kept STI-PA CRL (Unix seconds)");
    x.sample("kms_crl_next_update_timestamp_seconds", {}, *crlNext);
  }

  for (const auto& write : collectors_) {
    write(x);
  }

  std::lock_guard<std::mutex> lock(mutex_);
  x.family("kms_renewal_attempts_total", "counter",
           "renewal outcomes since kmsd started: success (activated), retry (a step failed, retried), failed "
           "(the order was abandoned), by step");
  // The per-name counters follow the limit too: the certificates beyond it (or no longer
  // configured) are summed into series without a name.
  std::set<std::string_view> named;
  for (std::size_t i = 0; i < shown; ++i) {
    named.insert((*rows)[i].name);
  }
  std::map<std::pair<std::string, std::string>, std::uint64_t> otherAttempts;
  for (const auto& [key, n] : attempts_) {
    const auto& [name, result, stage] = key;
    if (named.count(name) == 0) {
      otherAttempts[{result, stage}] += n;
      continue;
    }
    x.sample("kms_renewal_attempts_total", {{"name", name}, {"result", result}, {"stage", stage}},
             static_cast<std::int64_t>(n));
  }
  for (const auto& [key, n] : otherAttempts) {
    x.sample("kms_renewal_attempts_total", {{"result", key.first}, {"stage", key.second}},
             static_cast<std::int64_t>(n));
  }
  for (const char* peer : {"acme", "sti_pa"}) {
    const std::string total = std::string("kms_") + peer + "_requests_total";
    x.family(total, "counter",
             std::string("HTTP requests to the ") + (peer == std::string_view("acme") ? "ACME CA" : "STI-PA") +
                 " by action and status (\"error\": no answer)");
    for (const auto& [key, n] : requests_) {
      const auto& [p, action, status] = key;
      if (p == peer) {
        x.sample(total, {{"action", action}, {"status", status}}, static_cast<std::int64_t>(n));
      }
    }
    const std::string duration = std::string("kms_") + peer + "_request_duration_seconds";
    x.family(duration, "histogram", "how long the requests took, answered or not");
    const auto it = durations_.find(peer);
    const Histogram none{std::vector<std::uint64_t>(kDurationBounds.size(), 0), 0, 0};
    const Histogram& h = it != durations_.end() ? it->second : none;
    std::array<std::uint64_t, kDurationBounds.size()> cumulative{};
    for (std::size_t i = 0; i < kDurationBounds.size(); ++i) {
      cumulative[i] = h.buckets[i] + (i > 0 ? cumulative[i - 1] : 0);
    }
    x.histogram(duration, {}, kDurationBounds, cumulative, h.count, h.sum);
  }
  x.family("kms_publication_checks_total", "counter",
           "chains published and checked at their x5u URL (success), or not served back (failure)");
  std::map<std::string, std::uint64_t> otherChecks;
  for (const auto& [key, n] : publicationChecks_) {
    if (named.count(key.first) == 0) {
      otherChecks[key.second] += n;
      continue;
    }
    x.sample("kms_publication_checks_total", {{"name", key.first}, {"result", key.second}},
             static_cast<std::int64_t>(n));
  }
  for (const auto& [result, n] : otherChecks) {
    x.sample("kms_publication_checks_total", {{"result", result}}, static_cast<std::int64_t>(n));
  }
  x.family("kms_events_total", "counter", "events kmsd emitted since it started, by event ID (kmsd/EVENTS.md)");
  for (const auto& [id, n] : events_) {
    x.sample("kms_events_total", {{"id", id}}, static_cast<std::int64_t>(n));
  }
  return x.text();
}

void writeHsmMetrics(const hsm::TokenStats& stats, Exposition& out) {
  out.family("kms_hsm_operations_total", "counter",
             "PKCS#11 operations on the token since kmsd started: sign, generate (a key), find (a key), destroy");
  for (const auto& op : stats.ops) {
    out.sample("kms_hsm_operations_total", {{"op", op.name}, {"result", "ok"}}, static_cast<std::int64_t>(op.ok));
    out.sample("kms_hsm_operations_total", {{"op", op.name}, {"result", "error"}}, static_cast<std::int64_t>(op.failed));
  }
  out.family("kms_hsm_operation_duration_seconds", "histogram", "how long the token's operations took");
  for (const auto& op : stats.ops) {
    out.histogram("kms_hsm_operation_duration_seconds", {{"op", op.name}}, hsm::TokenStats::kBoundsSeconds,
                  op.buckets, op.ok + op.failed, op.sumSeconds);
  }
}

}  // namespace kms::daemon
