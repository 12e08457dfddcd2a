#pragma once
// What the engine asks of the lifecycle (lifecycle/steps.h implements it): a snapshot to
// plan from, one action performed, an order given up. Unit tests of the engine put an
// in-memory lifecycle behind it.

#include <optional>
#include <string>

#include "config/config.h"
#include "engine/planner.h"
#include "engine/step_outcome.h"

namespace kms::daemon {

class Lifecycle {
 public:
  virtual ~Lifecycle() = default;
  /// What the planner needs for `c` (writes nothing).
  [[nodiscard]] virtual Result<CertSnapshot> snapshot(const config::CertificateConfig& c, bool renewRequested) = 0;
  /// Performs `action` for `c` as planned from `snap`.
  [[nodiscard]] virtual Result<StepOutcome> run(Action action, const CertSnapshot& snap,
                                                const config::CertificateConfig& c, PollState& poll) = 0;
  /// Gives `order` up: closed, its answers withdrawn, `destroyKey` destroyed when set.
  [[nodiscard]] virtual Result<void> abandon(const storage::Order& order, const std::string& cert,
                                             const std::optional<std::string>& destroyKey, const std::string& why) = 0;
};

}  // namespace kms::daemon
