#pragma once
// Operator hooks (deploy, dns-01 present and cleanup) run without a worker waiting for
// them: a step starts its hook and runs again when it exits; cleanup hooks are reaped by
// whichever step passes by next.

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/clock.h"
#include "events/event_sink.h"
#include "kms/process.h"
#include "engine/step_outcome.h"

namespace kms::daemon {

class HookRunner {
 public:
  HookRunner(const Clock& clock, EventSink& events) : clock_(clock), events_(events) {}
  /// Waits up to 2 s in all for cleanup hooks still running, then leaves them.
  ~HookRunner();
  HookRunner(const HookRunner&) = delete;
  HookRunner& operator=(const HookRunner&) = delete;

  /// A hook that runs with no worker waiting for it.
  struct Running {
    std::shared_ptr<ChildProcess> child;
    TimePoint started;
  };
  /// How a hook stands: `running` while it runs within its timeout, else `status` (its
  /// wait status; nullopt when it ran over the timeout and was killed).
  struct Run {
    std::optional<Running> running;
    std::optional<int> status;
  };
  /// The first call starts the hook (`start`) and keeps it under `key`; later calls read
  /// how it stands. A hook over `timeout` is killed and reaped.
  [[nodiscard]] Result<Run> await(const std::string& key, Millis timeout,
                                  const std::function<Result<std::unique_ptr<ChildProcess>>()>& start);
  /// The outcome while a hook runs: the step runs again when it exits, at the latest just
  /// after its timeout.
  [[nodiscard]] StepOutcome waitFor(const Running& hook, Millis timeout) const;

  /// Keeps a started cleanup hook to reap later; `domain` names it in KMS_DNS01_CLEANUP_FAILED.
  void keepCleanup(std::unique_ptr<ChildProcess> child, std::string domain);
  /// Reaps finished cleanup hooks (and kills those over `dnsHookTimeout`), logging failures.
  void reapCleanups();

  /// How long a dns-01 hook (present or cleanup) may run before it is killed.
  Millis dnsHookTimeout{std::chrono::minutes(10)};

 private:
  struct Cleanup {
    std::unique_ptr<ChildProcess> child;
    TimePoint started;
    std::string domain;
  };
  const Clock& clock_;
  EventSink& events_;
  std::mutex mutex_;  // guards the members below
  /// Hooks running: "present <challenge URL>", "deploy <name>/<serial>".
  std::map<std::string, Running> hooks_;
  std::vector<Cleanup> cleanups_;  ///< cleanup hooks not yet reaped
};

}  // namespace kms::daemon
