#pragma once
// Injected time and randomness: the planner, the backoff policy and the scheduler read
// these, never the system directly, so tests drive them with a simulated clock.

#include <chrono>
#include <cstdint>
#include <memory>

namespace kms::daemon {

using TimePoint = std::chrono::system_clock::time_point;
using Millis = std::chrono::milliseconds;

/// Wall-clock time (certificate validity, ARI windows, the DB's Unix seconds).
class Clock {
 public:
  virtual ~Clock() = default;
  [[nodiscard]] virtual TimePoint now() const = 0;
};

/// Uniform random numbers (jitter, the instant picked in an ARI window).
class Random {
 public:
  virtual ~Random() = default;
  /// Uniform over all 64-bit values.
  [[nodiscard]] virtual std::uint64_t next() = 0;
  /// Uniform in [0, 1).
  [[nodiscard]] double unit() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
};

[[nodiscard]] std::unique_ptr<Clock> systemClock();
/// Seeded from the OS; thread-safe.
[[nodiscard]] std::unique_ptr<Random> systemRandom();

/// Unix seconds of a time point (rounded down).
[[nodiscard]] inline std::int64_t unixSeconds(TimePoint t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}
[[nodiscard]] inline TimePoint fromUnix(std::int64_t seconds) {
  return TimePoint(std::chrono::seconds(seconds));
}

}  // namespace kms::daemon
