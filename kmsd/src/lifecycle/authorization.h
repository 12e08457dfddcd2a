#pragma once
// The authorize step: the order's authorizations read, each pending challenge answered
// (http-01 served, dns-01 hook run, tkauth-01 with the SPC token), the CA polled until the
// order is ready; and withdrawing the answers once the order leaves authorization.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "config/config.h"
#include "lifecycle/challenge_ledger.h"
#include "lifecycle/hook_runner.h"
#include "lifecycle/poll_timing.h"
#include "lifecycle/step_context.h"
#include "engine/step_outcome.h"

namespace kms::daemon {

class Authorizer {
 public:
  Authorizer(const StepContext& ctx, HookRunner& hooks, PollTiming& polls) : ctx_(ctx), hooks_(hooks), polls_(polls) {}

  /// One authorize step for `order` (at order_pending).
  [[nodiscard]] Result<StepOutcome> run(const storage::Order& order, const config::CertificateConfig& c,
                                        PollState& poll);
  /// Withdraws the answers this process presented for an order (http-01 token removed,
  /// dns-01 cleanup hook started): called when the order leaves authorization.
  void withdraw(std::int64_t orderId);

 private:
  /// What answering one authorization found.
  struct AuthzPass {
    std::optional<StepOutcome> waiting;  ///< a dns-01 hook runs: the step runs again when it exits
    bool answered = false;               ///< a challenge was answered now ...
    bool decided = true;                 ///< ... and the answer came back already decided
    std::optional<std::chrono::seconds> retryAfter;
  };
  [[nodiscard]] Result<AuthzPass> pass(const storage::Order& order, const config::CertificateConfig& c,
                                       const acme::Order& current, const std::string& authzUrl,
                                       CaSession& ca);
  [[nodiscard]] Result<AuthzPass> answer(const storage::Order& order, const config::CertificateConfig& c,
                                         const acme::Authorization& authz, const acme::Challenge& ch,
                                         const std::string& keyAuth, acme::ChallengeSolver* solver,
                                         CaSession& ca);
  /// dns-01: starts the present hook, or reads how it ended: a waiting outcome while it
  /// runs, nullopt once it exited with status 0.
  [[nodiscard]] Result<std::optional<StepOutcome>> dnsPresent(const acme::Authorization& authz,
                                                              const acme::Challenge& challenge,
                                                              const std::string& keyAuth);
  /// The order left authorization (ready, processing or valid): recorded at `step`.
  [[nodiscard]] Result<StepOutcome> moveOn(const storage::Order& order, const acme::Order& current,
                                           storage::CertState step);

  const StepContext& ctx_;
  HookRunner& hooks_;
  PollTiming& polls_;
  ChallengeLedger ledger_;
};

}  // namespace kms::daemon
