#pragma once
// Carries out the failure policy's decision (engine/failure_policy.h) for a failed step:
// the failure recorded with its retry time, the order given up when it decided so, the CA
// paused for every order. Runs on the worker that ran the step.

#include <atomic>
#include <cstdint>
#include <string>

#include "common/clock.h"
#include "engine/failure_policy.h"
#include "engine/lifecycle_port.h"
#include "events/event_sink.h"

namespace kms::daemon {

/// Until when every request to the CA waits (Unix seconds; 0: none).
class CaPause {
 public:
  /// Extends the pause to `until`; true when that made it longer.
  bool extend(std::int64_t until) {
    std::int64_t prev = until_.load();
    while (prev < until && !until_.compare_exchange_weak(prev, until)) {
    }
    return prev < until;
  }
  [[nodiscard]] std::int64_t until() const { return until_.load(); }

 private:
  std::atomic<std::int64_t> until_{0};
};

class FailureRecorder {
 public:
  FailureRecorder(Lifecycle& lifecycle, LockedStore& store, EventSink& events, const Clock& clock, Random& random,
                  CaPause& pause)
      : lifecycle_(lifecycle), store_(store), events_(events), clock_(clock), random_(random), pause_(pause) {}

  /// When to try again and why (for status).
  struct Retry {
    std::int64_t at = 0;
    std::string why;
  };
  /// Decides and carries out what `error` in `action` of `c` leads to; `snap` is nullptr when
  /// even the snapshot could not be read. `definition`: the hash of what `c` is issued under,
  /// recorded with the failure (a changed configuration releases kmsd's own backoff).
  Retry record(const config::CertificateConfig& c, const std::string& definition, const Error& error, Action action,
               const CertSnapshot* snap);

  /// Backoff tuning ([daemon] retry_first, retry_max), swapped on reload from the loop.
  void setPolicy(RetryPolicy policy) {
    first_ = policy.firstSeconds;
    max_ = policy.maxSeconds;
  }

 private:
  Lifecycle& lifecycle_;
  LockedStore& store_;
  EventSink& events_;
  const Clock& clock_;
  Random& random_;
  CaPause& pause_;
  std::atomic<std::int64_t> first_{60};
  std::atomic<std::int64_t> max_{3600};
};

}  // namespace kms::daemon
