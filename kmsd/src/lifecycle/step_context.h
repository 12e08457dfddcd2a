#pragma once
// What every lifecycle step uses: the daemon's services, injected time and randomness, and
// the event sink. Passed by reference; owned by the engine.

#include <cstdint>

#include "common/clock.h"
#include "events/event_sink.h"
#include "services/services.h"
#include "trust/trust_state.h"

namespace kms::daemon {

struct StepContext {
  Services& services;
  const TrustState& trust;
  const Clock& clock;
  Random& random;
  EventSink& events;

  [[nodiscard]] std::int64_t now() const { return unixSeconds(clock.now()); }
  [[nodiscard]] LockedStore& store() const { return services.store(); }
};

}  // namespace kms::daemon
