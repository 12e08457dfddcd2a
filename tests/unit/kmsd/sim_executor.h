#pragma once
// A simulated clock and Executor for the engine's unit tests: nothing waits for real time.
// post() and work() queue; run() drains both queues (work first, as a free worker would
// take it); advance() moves the clock to each armed timer in turn, fires it and drains.

#include <algorithm>
#include <deque>
#include <functional>
#include <memory>
#include <set>
#include <vector>

#include "engine/executor.h"

namespace kms::daemon::test {

class SimClock final : public Clock {
 public:
  explicit SimClock(std::int64_t unixStart) : now_(fromUnix(unixStart)) {}
  [[nodiscard]] TimePoint now() const override { return now_; }
  void set(TimePoint t) { now_ = t; }

 private:
  TimePoint now_;
};

/// Deterministic randomness: always the middle of the range.
class MidRandom final : public Random {
 public:
  std::uint64_t next() override { return std::uint64_t{1} << 63; }
};

class SimExecutor final : public Executor {
 public:
  explicit SimExecutor(SimClock& clock) : clock_(clock) {}

  void post(std::function<void()> fn) override { loop_.push_back(std::move(fn)); }
  void work(std::function<void()> fn) override { pool_.push_back(std::move(fn)); }
  std::unique_ptr<Timer> timer() override { return std::make_unique<SimTimer>(*this); }
  std::unique_ptr<ExitWatch> watchExit(const ChildProcess&, std::function<void()>) override { return nullptr; }
  void stop() override { stopped_ = true; }

  /// Runs queued work and loop handlers until none is left.
  void run() {
    while (!pool_.empty() || !loop_.empty()) {
      while (!pool_.empty()) {
        auto fn = std::move(pool_.front());
        pool_.pop_front();
        fn();
      }
      if (!loop_.empty()) {
        auto fn = std::move(loop_.front());
        loop_.pop_front();
        fn();
      }
    }
  }
  /// Moves the clock forward by `d`, firing every timer due on the way at its own instant.
  void advance(Millis d) {
    const TimePoint end = clock_.now() + d;
    run();
    while (true) {
      SimTimer* next = earliest();
      if (next == nullptr || *next->when > end) {
        break;
      }
      clock_.set(std::max(clock_.now(), *next->when));
      auto fn = std::move(next->fn);
      next->when.reset();
      fn();
      run();
    }
    clock_.set(end);
  }
  /// The instant of the earliest armed timer, if any.
  [[nodiscard]] std::optional<TimePoint> nextTimer() {
    SimTimer* t = earliest();
    return t != nullptr ? t->when : std::nullopt;
  }
  [[nodiscard]] bool stopped() const { return stopped_; }
  /// Work queued and not yet run (workers busy), for tests that look between steps.
  [[nodiscard]] std::size_t queuedWork() const { return pool_.size(); }
  /// Fires the timers due now, running their loop handlers but no work (workers busy).
  void fireDue() {
    while (SimTimer* t = earliest()) {
      if (*t->when > clock_.now()) {
        break;
      }
      auto fn = std::move(t->fn);
      t->when.reset();
      fn();
    }
    runLoop();
  }
  /// Runs one queued piece of work (a worker finishing), not the loop.
  void runOneWork() {
    auto fn = std::move(pool_.front());
    pool_.pop_front();
    fn();
  }
  void runLoop() {
    while (!loop_.empty()) {
      auto fn = std::move(loop_.front());
      loop_.pop_front();
      fn();
    }
  }

 private:
  struct SimTimer final : Timer {
    explicit SimTimer(SimExecutor& e) : exec(e) { exec.timers_.insert(this); }
    ~SimTimer() override { exec.timers_.erase(this); }
    void at(TimePoint t, std::function<void()> f) override {
      when = t;
      fn = std::move(f);
    }
    void cancel() override { when.reset(); }
    SimExecutor& exec;
    std::optional<TimePoint> when;
    std::function<void()> fn;
  };
  SimTimer* earliest() {
    SimTimer* best = nullptr;
    for (SimTimer* t : timers_) {
      if (t->when && (best == nullptr || *t->when < *best->when)) {
        best = t;
      }
    }
    return best;
  }

  SimClock& clock_;
  std::deque<std::function<void()>> loop_;
  std::deque<std::function<void()>> pool_;
  std::set<SimTimer*> timers_;
  bool stopped_ = false;
};

}  // namespace kms::daemon::test
