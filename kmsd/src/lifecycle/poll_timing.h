#pragma once
// How soon an order or authorization is read again. Quick at first (a CA often decides in
// milliseconds), never more than once a second after the first second, and a Retry-After
// the CA names is a minimum.

#include <chrono>
#include <optional>
#include <string>

#include "common/clock.h"
#include "kms/error.h"
#include "engine/step_outcome.h"

namespace kms::daemon {

class PollTiming {
 public:
  PollTiming(const Clock& clock, Random& random) : clock_(clock), random_(random) {}

  /// The wait before the next read of `what` at `url`: Retry-After when the CA named one,
  /// else doubling from `first`, at least `floor` once the step has polled for `floor`, at
  /// most `max`. Errc::timeout (retried later) once the step has polled for `deadline`.
  [[nodiscard]] Result<Millis> next(PollState& poll, std::optional<std::chrono::seconds> retryAfter,
                                    const std::string& what, const std::string& url);

  Millis first{20};
  Millis floor{1000};
  Millis max{5000};
  Millis deadline{std::chrono::minutes(10)};

 private:
  const Clock& clock_;
  Random& random_;
};

}  // namespace kms::daemon
