#include "lifecycle/poll_timing.h"

#include <algorithm>

namespace kms::daemon {

Result<Millis> PollTiming::next(PollState& poll, std::optional<std::chrono::seconds> retryAfter,
                                const std::string& what, const std::string& url) {
  const TimePoint t = clock_.now();
  if (!poll.since) {
    poll.since = t;
  }
  const auto polling = std::chrono::duration_cast<Millis>(t - *poll.since);
  if (polling > deadline) {
    Error e;
    e.code = Errc::timeout;
    e.message = what + " still not final after polling for " +
                std::to_string(std::chrono::duration_cast<std::chrono::seconds>(deadline).count()) + " s";
    e.context = url;
    poll = PollState{0, std::nullopt, poll.action};
    return fail(e);
  }
  ++poll.round;
  if (retryAfter) {
    // The CA's Retry-After is a minimum: jitter only adds to it.
    const auto wait = std::chrono::duration_cast<Millis>(*retryAfter);
    return Millis(static_cast<Millis::rep>(static_cast<double>(wait.count()) * (1.0 + 0.1 * random_.unit())));
  }
  Millis wait = std::min(first * (1 << std::min(poll.round - 1, 16)), max);
  wait = Millis(static_cast<Millis::rep>(static_cast<double>(wait.count()) * (0.9 + 0.2 * random_.unit())));
  if (polling + wait >= floor) {
    wait = std::max(wait, floor);  // a CA that takes its time is not read more than once a second
  }
  return std::min(wait, std::max(max, floor));
}

}  // namespace kms::daemon
