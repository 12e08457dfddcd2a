#pragma once
// kmsd's Prometheus metrics: counters fed by the event sink (every event by ID, renewal
// attempts by result and stage) and gauges read from the state DB when scraped (each
// certificate's expiry, renewal time and readiness, up to a limit; counts by state; orders in
// flight). Label values come from the configuration (certificate names) and from kmsd's own
// constants (event IDs, step names), never from a peer's text.

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "events/event_sink.h"
#include "hsm/token.h"

namespace kms::daemon {

class Exposition;

/// The HSM token's operations: kms_hsm_operations_total{op,result} and
/// kms_hsm_operation_duration_seconds{op} (a Metrics collector).
void writeHsmMetrics(const hsm::TokenStats& stats, Exposition& out);

class Metrics {
 public:
  /// Counts one event (the sink's listener; any thread).
  void count(const EventRecord& event);
  /// One request to a peer ("acme", "sti_pa"): `action` a client's constant, `status` the
  /// HTTP status (0: no answer), `seconds` how long it took (MeteredTransport; any thread).
  void observeRequest(const char* peer, const char* action, long status, double seconds);
  /// Adds families written at each scrape by their owner (the signing service's counters).
  /// Before the first scrape; `write` must be thread-safe.
  void addCollector(std::function<void(Exposition&)> write) { collectors_.push_back(std::move(write)); }

  /// The whole exposition at `now`: the counters, and the gauges read from the state DB;
  /// per-certificate series for the first `perCertificateLimit` certificates by name, beyond
  /// them only the aggregates (a scrape of 100,000 certificates stays small). Runs on a
  /// worker (it reads every certificate's status row).
  [[nodiscard]] Result<std::string> render(LockedStore& store, std::int64_t now,
                                           std::size_t perCertificateLimit = 1000) const;

 private:
  mutable std::mutex mutex_;
  std::map<std::string, std::uint64_t> events_;
  /// (name, result, stage) -> count
  std::map<std::tuple<std::string, std::string, std::string>, std::uint64_t> attempts_;
  /// (name, result) -> count
  std::map<std::pair<std::string, std::string>, std::uint64_t> publicationChecks_;
  /// (peer, action, status) -> count
  std::map<std::tuple<std::string, std::string, std::string>, std::uint64_t> requests_;
  /// A duration histogram: counts per bucket (not cumulative), the sum.
  struct Histogram {
    std::vector<std::uint64_t> buckets;
    std::uint64_t count = 0;
    double sum = 0;
  };
  std::map<std::string, Histogram> durations_;  ///< by peer
  std::vector<std::function<void(Exposition&)>> collectors_;
};

}  // namespace kms::daemon
