#pragma once
// The pure half of the engine: from what the DB says about one certificate and the time,
// the next action and when to take it. No I/O, no clock, no randomness: unit-tested with
// plain values.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "storage/store.h"

namespace kms::daemon {

/// One step of the lifecycle (docs/architecture.md). Each is performed by one step function.
enum class Action {
  wait,            ///< nothing to do before `Plan::at`
  startOrder,      ///< record a new key and an order for it (planned)
  generateKey,     ///< generate the recorded key on the token (-> key_ready)
  fetchToken,      ///< SHAKEN: obtain an SPC token for the account (-> token_ready)
  newOrder,        ///< ACME newOrder (-> order_pending)
  authorize,       ///< answer and poll the challenges (-> authorized)
  finalize,        ///< CSR signed in the HSM, finalize (-> finalizing)
  awaitIssuance,   ///< poll the order, download and check the chain, record it (-> issued)
  publish,         ///< write the chain to the STI-CR web root (-> published)
  activate,        ///< close the order, make the certificate active, plan its renewal
  refreshRenewal,  ///< read the CA's renewalInfo (ARI) and choose the renewal instant
  deploy,          ///< run the certificate's deploy hook for the active certificate
};
[[nodiscard]] const char* toString(Action action) noexcept;
/// Whether the action talks to the ACME CA (held back while the CA asked to wait).
[[nodiscard]] bool needsCa(Action action) noexcept;
/// Whether the action is order work up to issuance, which needs one of the
/// `max_concurrent_orders` slots; publishing, activation, deployment and renewal timing
/// need none.
[[nodiscard]] bool needsSlot(Action action) noexcept;

/// Everything the planner looks at for one certificate.
struct CertSnapshot {
  storage::ManagedCert cert;
  std::optional<storage::Order> order;  ///< the open order
  /// The certificate verifiers get now: the newest published one, when it is neither revoked
  /// nor expired (then there is none: a superseded certificate never becomes active again).
  std::optional<storage::IssuedCert> active;
  bool shaken = false;            ///< needs an SPC token before newOrder
  bool activeKeyMissing = false;  ///< the active certificate's key is gone from the token
  bool activeDistrusted = false;  ///< the active chain's root left the STI-PA CA list
  bool renewRequested = false;    ///< an operator asked for a renewal (kmsctl renew)
  bool deployHook = false;        ///< a deploy hook is configured
  double renewBeforeFraction = 0.333;
};

struct Plan {
  Action action = Action::wait;
  std::int64_t at = 0;  ///< Unix seconds; <= now means at once
  std::string why;      ///< for status and logs: "renewal due 2026-…", "backing off …"
};

/// The next action for `s` at `now` (Unix seconds).
///
/// - An open order continues at its step, no earlier than the certificate's next attempt
///   (backoff, polling, Retry-After).
/// - Without an order: no valid certificate, a missing key, a root dropped from the CA
///   list or an operator request start an order (after backoff); an active certificate its deploy hook has not yet succeeded
///   for runs the hook (after backoff); one without a chosen renewal instant
///   gets one (refreshRenewal); otherwise the renewal starts at `cert.renewAt`, and the
///   renewalInfo is read again at `cert.ariNextCheck`, whichever comes first.
[[nodiscard]] Plan plan(const CertSnapshot& s, std::int64_t now);

/// The renewal instant without ARI: when `fraction` of the lifetime is left, moved earlier
/// by up to 10% of that share (jitter in [0, 1)) so that certificates issued together do
/// not all renew in the same second.
[[nodiscard]] std::int64_t fractionRenewalTime(std::int64_t notBefore, std::int64_t notAfter, double fraction,
                                               double jitter);

/// Retry policy after failures: first wait, doubling, capped; +-20% jitter.
struct RetryPolicy {
  std::int64_t firstSeconds = 60;
  std::int64_t maxSeconds = 3600;
};
/// The wait after `failures` consecutive failures (1 = the first), jitter in [0, 1).
[[nodiscard]] std::int64_t backoffSeconds(const RetryPolicy& policy, std::int64_t failures, double jitter);

}  // namespace kms::daemon
