#pragma once
// The one failure policy: what a failed step leads to. A pure function of the error (and
// the disposition it was made with), what the DB said about the certificate, the step, the
// time and one random number; the engine carries the decision out (lifecycle/abandon.h
// closes an order, the engine schedules the retry it was given).

#include <cstdint>
#include <optional>
#include <string>

#include "engine/planner.h"
#include "events/event_sink.h"
#include "kms/error.h"

namespace kms::daemon {

struct FailureDecision {
  std::int64_t failures = 1;  ///< consecutive failures of the certificate, this one included
  std::int64_t retryAt = 0;   ///< Unix seconds of the next attempt (this certificate)
  /// Give the open order up: the CA declared it (or what it issued) unusable.
  bool abandonOrder = false;
  /// The abandoned order's key, to destroy: never the key of a certificate verifiers get.
  std::optional<std::string> destroyKey;
  /// No certificate verifiers can get and the order is given up: the certificate is `failed`.
  bool markFailed = false;
  /// Every request to the CA waits until then (the CA asked its clients to slow down).
  std::optional<std::int64_t> pauseCaUntil;
  EventRecord event;  ///< KMS_ISSUE_FAILED (order given up) or KMS_RENEW_FAILED
  std::string why;    ///< for status: "retry 2026-… after 2 failure(s)"
};

/// The decision after `error` in `action` for the certificate `snap` describes (nullptr when
/// even the snapshot could not be read), at `now` (Unix seconds), `random` in [0, 1).
///
/// - retry: backoff doubling from policy.firstSeconds to policy.maxSeconds (+-20 %), or the
///   peer's Retry-After when it named one; the order and its key stay.
/// - permanent, with an open order: the order is abandoned and its key destroyed (unless
///   the active certificate uses it, reuse_key); then as retry.
/// - caPause, in a step that talks to the CA: as retry, and every order to the CA waits
///   until the same instant.
[[nodiscard]] FailureDecision decideFailure(const Error& error, const std::string& certName,
                                            const CertSnapshot* snap, Action action, std::int64_t now,
                                            double random, const RetryPolicy& policy);

}  // namespace kms::daemon
