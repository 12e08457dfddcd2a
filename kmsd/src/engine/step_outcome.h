#pragma once
// What a step reports back to the engine, and the polling state the engine keeps for it.

#include <memory>
#include <optional>

#include "common/clock.h"
#include "engine/planner.h"
#include "kms/process.h"
#include "storage/store.h"

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

[[nodiscard]] inline StepOutcome pollAgainAfter(Millis wait) {
  StepOutcome out;
  out.wait = wait;
  return out;
}

}  // namespace kms::daemon
