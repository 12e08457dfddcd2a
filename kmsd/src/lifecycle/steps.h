#pragma once
// The lifecycle as the engine sees it: one call per action, dispatched to the step that
// performs it (one side effect, its result recorded before anything relies on it), and the
// few things the engine asks outside an action (a snapshot, giving an order up,
// housekeeping, revocation). Owns the step objects and what they share.

#include <memory>
#include <optional>
#include <string>

#include "config/config.h"
#include "engine/lifecycle_port.h"
#include "lifecycle/step_context.h"

namespace kms::daemon {

class Authorizer;
class Deployment;
class HookRunner;
class Housekeeping;
class Issuance;
class OrderCloser;
class OrderSteps;
class PollTiming;
class Publication;
class RenewalTiming;
class Revocation;
class SnapshotReader;

class Steps final : public Lifecycle {
 public:
  Steps(Services& services, const TrustState& trust, const Clock& clock, Random& random, EventSink& events);
  ~Steps() override;
  Steps(const Steps&) = delete;
  Steps& operator=(const Steps&) = delete;

  /// Performs `action` for certificate `c` as planned from `snap`.
  [[nodiscard]] Result<StepOutcome> run(Action action, const CertSnapshot& snap, const config::CertificateConfig& c,
                                        PollState& poll) override;
  /// Reads what the planner needs for `c` (writes nothing).
  [[nodiscard]] Result<CertSnapshot> snapshot(const config::CertificateConfig& c, bool renewRequested) override;
  /// Gives `order` up (see OrderCloser::abandon).
  [[nodiscard]] Result<void> abandon(const storage::Order& order, const std::string& cert,
                                     const std::optional<std::string>& destroyKey, const std::string& why) override;
  /// Destroys keys and removes chains nothing needs any more; how many keys were destroyed.
  [[nodiscard]] Result<int> retireKeys();
  /// Revokes the active certificate of `c` at the CA and records it.
  [[nodiscard]] Result<std::string> revoke(const config::CertificateConfig& c, int reason, const Fields& caller = {});

  /// Polling tuning (tests and benchmarks read it).
  [[nodiscard]] PollTiming& polls() { return *polls_; }

 private:
  [[nodiscard]] Result<StepOutcome> runOrderStep(Action action, const CertSnapshot& snap,
                                                 const config::CertificateConfig& c, PollState& poll);

  StepContext ctx_;
  std::unique_ptr<PollTiming> polls_;
  std::unique_ptr<HookRunner> hooks_;
  std::unique_ptr<RenewalTiming> timing_;
  std::unique_ptr<SnapshotReader> snapshots_;
  std::unique_ptr<Authorizer> authorizer_;
  std::unique_ptr<OrderCloser> closer_;
  std::unique_ptr<OrderSteps> orders_;
  std::unique_ptr<Issuance> issuance_;
  std::unique_ptr<Publication> publication_;
  std::unique_ptr<Deployment> deployment_;
  std::unique_ptr<Housekeeping> housekeeping_;
  std::unique_ptr<Revocation> revocation_;
};

}  // namespace kms::daemon
