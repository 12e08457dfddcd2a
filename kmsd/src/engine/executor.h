#pragma once
// Where the engine's work runs, behind an interface so that unit tests drive it with a
// simulated clock: the loop (one thread; the engine's state is touched only there), the
// worker pool (steps, DB reads), timers at a wall-clock instant, and waiting for a child
// process to exit. The daemon's implementation is AsioExecutor.

#include <functional>
#include <memory>

#include "common/clock.h"

namespace kms {
class ChildProcess;
}

namespace kms::daemon {

/// One timer: armed for an instant (re-arming replaces the previous one), or cancelled.
class Timer {
 public:
  virtual ~Timer() = default;
  virtual void at(TimePoint when, std::function<void()> fn) = 0;
  virtual void cancel() = 0;
};

/// Cancels its wait when destroyed.
class ExitWatch {
 public:
  virtual ~ExitWatch() = default;
};

class Executor {
 public:
  virtual ~Executor() = default;
  /// Runs `fn` on the loop thread.
  virtual void post(std::function<void()> fn) = 0;
  /// Runs `fn` on a worker. It must not throw (wrap it in runReporting, events/event_sink.h).
  virtual void work(std::function<void()> fn) = 0;
  [[nodiscard]] virtual std::unique_ptr<Timer> timer() = 0;
  /// Runs `fn` on the loop once `child` has exited; nullptr when that cannot be watched
  /// (the caller's own timeout still applies).
  [[nodiscard]] virtual std::unique_ptr<ExitWatch> watchExit(const ChildProcess& child, std::function<void()> fn) = 0;
  /// Makes the loop return (the daemon stops, or `--once` settled).
  virtual void stop() = 0;
};

}  // namespace kms::daemon
