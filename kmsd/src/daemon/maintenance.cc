#include "daemon/maintenance.h"

#include "lifecycle/steps.h"
#include "trust/trust.h"

namespace kms::daemon {

Maintenance::Maintenance(Executor& executor, Engine& engine, TrustKeeper& trust, Steps& steps, LockedStore& store,
                         EventSink& events, const Clock& clock,
                         std::function<std::shared_ptr<const config::Config>()> settings)
    : executor_(executor),
      engine_(engine),
      trust_(trust),
      steps_(steps),
      store_(store),
      events_(events),
      clock_(clock),
      timer_(executor.timer()),
      settings_(std::move(settings)) {}

void Maintenance::guarded(const std::string& where, std::function<void()> job) {
  executor_.work([this, where, job = std::move(job)] { (void)runReporting(events_, where, job); });
}

bool Maintenance::refreshTrust(bool first, std::function<void(std::vector<std::string>)> done) {
  if (running_ || stopped_) {
    return false;
  }
  running_ = true;
  engine_.jobStarted();
  executor_.work([this, first, done = std::move(done)]() mutable {
    std::vector<std::string> affected;
    (void)runReporting(events_, "the trust refresh", [&] { affected = trust_.refresh(); });
    executor_.post([this, first, done = std::move(done), affected = std::move(affected)] {
      refreshed(first, affected, done);
    });
  });
  return true;
}

void Maintenance::refreshed(bool first, const std::vector<std::string>& affected,
                            const std::function<void(std::vector<std::string>)>& done) {
  running_ = false;
  engine_.jobDone();
  if (engine_.stopping()) {
    return;
  }
  if (first) {
    engine_.start();
  } else {
    for (const auto& name : affected) {
      engine_.wake(name);
    }
  }
  armNextRefresh();
  if (done) {
    done(affected);
  }
}

void Maintenance::armNextRefresh() {
  if (!interval_ || stopped_) {
    return;
  }
  timer_->at(clock_.now() + *interval_, [this] {
    if (!stopped_ && !running_ && refreshTrust(false)) {
      housekeeping();
    }
  });
}

void Maintenance::housekeeping() {
  const auto settings = settings_();  // read on the loop, which reloads swap
  const std::chrono::seconds keep = settings->daemon.eventsKeep;
  const std::int64_t most = settings->daemon.eventsMax;
  guarded("event log housekeeping", [this, keep, most] {
    const std::int64_t now = unixSeconds(clock_.now());
    auto pruned = store_.with([&](storage::Store& s) { return s.pruneEvents(now - keep.count(), most); });
    if (!pruned) {
      storeWriteFailed(events_, std::nullopt, "bound the event log", pruned.error());
    }
  });
  guarded("key housekeeping", [this] {
    auto r = steps_.retireKeys();
    if (!r) {
      events_.emit({"KMS_KEY_DESTROY_FAILED", storage::EventLevel::warning, std::nullopt,
                    "key housekeeping failed: " + r.error().toString(), {}});
    }
  });
}

void Maintenance::stop() {
  stopped_ = true;
  timer_->cancel();
}

}  // namespace kms::daemon
