#pragma once
// The step functions: one per lifecycle action, each performing one side effect and
// recording its result in the state DB before anything relies on it.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/clock.h"
#include "config/config.h"
#include "events/event_sink.h"
#include "kms/process.h"
#include "engine/planner.h"
#include "services/services.h"

namespace kms::daemon {

/// What a successful step asks for next.
struct StepOutcome {
  std::optional<Millis> wait;                    ///< run the same action again after this (polling)
  std::optional<storage::IssuedCert> activated;  ///< the certificate this step made active
  bool orderClosed = false;                      ///< the order was closed (activated or abandoned)
  /// Run the same action again when this child exits (an operator hook), or after `wait`.
  std::shared_ptr<ChildProcess> waitFor;
};

/// Polling state of one certificate's current step, kept in memory by the engine.
struct PollState {
  int round = 0;                   ///< polls so far in this step
  std::optional<TimePoint> since;  ///< when this step started polling
  Action action = Action::wait;
};

class Steps {
 public:
  Steps(Services& services, const Clock& clock, Random& random, EventSink& events)
      : s_(services), clock_(clock), random_(random), events_(events) {}
  /// Waits up to 2 s for cleanup hooks still running, then kills them.
  ~Steps();
  Steps(const Steps&) = delete;
  Steps& operator=(const Steps&) = delete;

  /// Performs `action` for certificate `c` as planned from `snap`.
  [[nodiscard]] Result<StepOutcome> run(Action action, const CertSnapshot& snap, const config::CertificateConfig& c,
                                        PollState& poll);

  /// Reads what the planner needs for `c` from the DB (and whether the active key is on
  /// the token, checked once per process per certificate).
  [[nodiscard]] Result<CertSnapshot> snapshot(const config::CertificateConfig& c, bool renewRequested);

  /// Destroys keys nothing needs any more: keys of abandoned or superseded orders (after
  /// [publisher] retain), of expired or revoked certificates, and recorded keys the token
  /// lacks. Returns how many were destroyed.
  [[nodiscard]] Result<int> retireKeys();

  /// Withdraws the challenge answers this process presented for an order (http-01 token
  /// removed, dns-01 cleanup hook started): called when the order leaves authorization.
  void withdraw(std::int64_t orderId);

  /// Revokes the active certificate of `c` at the CA and records it.
  /// `caller`: fields naming who asked (the control API's uid), added to KMS_CERT_REVOKED.
  [[nodiscard]] Result<std::string> revoke(const config::CertificateConfig& c, int reason,
                                           const Fields& caller = {});

  /// Polling tuning (tests shorten it).
  Millis pollFirst{250};
  Millis pollMax{5000};
  Millis pollDeadline{std::chrono::minutes(10)};
  /// How long a dns-01 hook may run before it is killed.
  Millis hookTimeout{std::chrono::minutes(10)};

 private:
  Result<StepOutcome> startOrder(const CertSnapshot& snap, const config::CertificateConfig& c);
  Result<StepOutcome> generateKey(const storage::Order& order, const config::CertificateConfig& c);
  Result<StepOutcome> fetchToken(const storage::Order& order, const config::CertificateConfig& c);
  Result<StepOutcome> newOrder(const CertSnapshot& snap, const config::CertificateConfig& c);
  Result<StepOutcome> authorize(const storage::Order& order, const config::CertificateConfig& c, PollState& poll);
  Result<StepOutcome> finalize(const storage::Order& order, const config::CertificateConfig& c, PollState& poll);
  Result<StepOutcome> awaitIssuance(const storage::Order& order, const config::CertificateConfig& c, PollState& poll);
  Result<StepOutcome> publish(const storage::Order& order, const config::CertificateConfig& c, PollState& poll);
  /// The publication check: nullopt when `url` serves exactly `expected`, else what was wrong.
  std::optional<std::string> checkServed(const std::string& url, const std::string& expected);
  Result<StepOutcome> activate(const storage::Order& order, const config::CertificateConfig& c);
  Result<StepOutcome> refreshRenewal(const CertSnapshot& snap, const config::CertificateConfig& c);
  /// Early renewals the CA may bring about for one certificate (an ARI window before kmsd's
  /// own time, a chain distrusted while its root is still approved) in any day and in any
  /// third of the lifetime. Revocation, a root that left the anchors and `kmsctl renew`
  /// are never counted or held back.
  static constexpr std::int64_t kEarlyRenewalBudget = 3;
  /// The CA-initiated early renewals of `c` in the budget's window (the longer of a day and
  /// a third of `active`'s lifetime), and that window in seconds.
  std::pair<std::int64_t, std::int64_t> earlyRenewalsUsed(const config::CertificateConfig& c,
                                                          const storage::IssuedCert& active);
  /// kmsd's own renewal time when the CA's ARI time `ariTime` is earlier than it and the
  /// budget is spent (KMS_ARI_IGNORED); else nullopt.
  std::optional<std::int64_t> holdAriRenewal(const storage::IssuedCert& active, const config::CertificateConfig& c,
                                             std::int64_t ariTime);
  /// Whether an order started now is an early renewal the CA brought about (an ARI time
  /// before kmsd's own, a chain distrusted while its root is still approved).
  bool earlyByTheCa(const CertSnapshot& snap, const config::CertificateConfig& c) const;
  /// Runs the deploy hook for the active certificate: started, then waited for on the loop
  /// (the step runs again when it exits); recorded when it exits 0.
  Result<StepOutcome> deploy(const CertSnapshot& snap, const config::CertificateConfig& c);
  /// The order's key is gone from the token (a lost object file): close the order so that
  /// the next plan starts a new one with a new key.
  Result<StepOutcome> abandonForMissingKey(const storage::Order& order, const config::CertificateConfig& c);

  /// A failed write to the web root: named as such, retryable, and KMS_PUBLISH_FAILED.
  Error publishFailed(const std::string& cert, Error e);
  /// The certificate an order produced (found by the order's key).
  Result<storage::IssuedCert> orderCertificate(const storage::Order& order, const config::CertificateConfig& c,
                                               const char* step);
  Result<void> advance(const storage::Order& order, const storage::OrderUpdate& update);
  /// The wait before the next poll: Retry-After when given, else doubling from pollFirst.
  Result<Millis> pollWait(PollState& poll, std::optional<std::chrono::seconds> retryAfter, const std::string& what,
                          const std::string& url);
  /// An operator hook run with no worker waiting for it.
  struct RunningHook {
    std::shared_ptr<ChildProcess> child;
    TimePoint started;
  };
  /// How a hook stands: `running` while it runs within its timeout, else `status` (its
  /// wait status; nullopt when it ran over the timeout and was killed).
  struct HookRun {
    std::optional<RunningHook> running;
    std::optional<int> status;
  };
  /// The first call starts the hook (`start`) and keeps it under `key`; later calls read
  /// how it stands. A hook over `timeout` is killed and reaped.
  Result<HookRun> awaitHook(const std::string& key, Millis timeout,
                            const std::function<Result<std::unique_ptr<ChildProcess>>()>& start);
  /// The outcome while a hook runs: the step runs again when it exits, at the latest
  /// just after its timeout.
  StepOutcome waitForHook(const RunningHook& hook, Millis timeout) const;
  /// dns-01: starts the present hook, or reads how it ended: a waiting outcome while it
  /// runs, nullopt once it exited with status 0.
  Result<std::optional<StepOutcome>> dnsPresent(const acme::Authorization& authz, const acme::Challenge& challenge,
                                                const std::string& keyAuth);
  /// Records an answer to withdraw later; false when it was already recorded.
  bool remember(std::int64_t orderId, const acme::Authorization& authz, const acme::Challenge& challenge,
                const std::string& keyAuth, const std::string& type);
  bool wasAnswered(std::int64_t orderId, const std::string& challengeUrl);
  void markAnswered(std::int64_t orderId, const std::string& challengeUrl);
  /// Reaps finished cleanup hooks (and kills those over hookTimeout), logging failures.
  void reapCleanups();
  Result<acme::IssueRequest> requestFor(const config::CertificateConfig& c, pki::Signer* certKey);
  std::int64_t now() const { return unixSeconds(clock_.now()); }

  Services& s_;
  const Clock& clock_;
  Random& random_;
  EventSink& events_;
  std::mutex checkedMutex_;
  std::set<std::string> keyChecked_;   ///< active keys already found on the token
  bool tokenListed_ = false;           ///< keyChecked_ was seeded from one listing of the token
  std::set<std::string> plannedHere_;  ///< order keys this process recorded and not yet generated
  std::set<std::int64_t> distrustHeld_;  ///< distrusted certificates the spent budget holds (reported once)

  struct Presented {
    acme::Authorization authz;
    acme::Challenge challenge;
    std::string keyAuth;
    std::string type;
    bool answered = false;  ///< POSTed to the CA by this process
  };
  struct Cleanup {
    std::unique_ptr<ChildProcess> child;
    TimePoint started;
    std::string domain;
  };
  std::mutex hooksMutex_;  // guards the members below
  /// Hooks running: "present <challenge URL>", "deploy <name>/<serial>".
  std::map<std::string, RunningHook> hooks_;
  std::map<std::int64_t, std::vector<Presented>> presented_;  ///< answers to withdraw, by order id
  std::vector<Cleanup> cleanups_;                              ///< cleanup hooks not yet reaped
};

}  // namespace kms::daemon
