#include "lifecycle/hook_runner.h"

#include <algorithm>

namespace kms::daemon {

Result<HookRunner::Run> HookRunner::await(const std::string& key, Millis timeout,
                                          const std::function<Result<std::unique_ptr<ChildProcess>>()>& start) {
  Running hook;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = hooks_.find(key);
    if (it == hooks_.end()) {
      auto child = start();
      if (!child) {
        return fail(child.error());
      }
      hook = Running{std::shared_ptr<ChildProcess>(std::move(*child)), clock_.now()};
      hooks_.emplace(key, hook);
      return Run{hook, std::nullopt};
    }
    hook = it->second;
    if (!hook.child->exitStatus() && clock_.now() - hook.started <= timeout) {
      return Run{hook, std::nullopt};  // woken early: still running
    }
    hooks_.erase(it);
  }
  auto status = hook.child->exitStatus();
  if (!status) {
    hook.child->kill();
    (void)hook.child->wait(Millis(1000));
  }
  return Run{std::nullopt, status};
}

StepOutcome HookRunner::waitFor(const Running& hook, Millis timeout) const {
  const auto elapsed = std::chrono::duration_cast<Millis>(clock_.now() - hook.started);
  StepOutcome waiting;
  waiting.wait = std::max(Millis(1000), timeout - elapsed + Millis(1000));
  waiting.waitFor = hook.child;
  return waiting;
}

void HookRunner::keepCleanup(std::unique_ptr<ChildProcess> child, std::string domain) {
  std::lock_guard<std::mutex> lock(mutex_);
  cleanups_.push_back(Cleanup{std::move(child), clock_.now(), std::move(domain)});
}

void HookRunner::reapCleanups() {
  std::vector<Cleanup> done;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    const TimePoint t = clock_.now();
    for (auto it = cleanups_.begin(); it != cleanups_.end();) {
      if (it->child->exitStatus() || t - it->started > dnsHookTimeout) {
        done.push_back(std::move(*it));
        it = cleanups_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (Cleanup& c : done) {
    auto status = c.child->exitStatus();
    if (!status || !exitedCleanly(*status)) {
      events_.emit({"KMS_DNS01_CLEANUP_FAILED", storage::EventLevel::warning, std::nullopt,
                    "dns-01 hook 'cleanup' for " + c.domain + " " +
                        (status ? "failed with " + describeExit(*status) : std::string("ran too long and was killed")) +
                        " (the TXT record may stay)",
                    {{"domain", c.domain}}});
    }
  }
}

HookRunner::~HookRunner() {
  // The stop must be over within 10 s: cleanup hooks get 2 s in all.
  std::lock_guard<std::mutex> lock(mutex_);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  for (Cleanup& c : cleanups_) {
    auto left = std::chrono::duration_cast<Millis>(deadline - std::chrono::steady_clock::now());
    (void)c.child->wait(std::max(left, Millis(0)));
  }
}

}  // namespace kms::daemon
