#pragma once
// The scheduler: a heap of (instant, certificate) and one timer armed for the earliest.
// Entries are never removed: a certificate scheduled again gets a new generation and the
// engine skips entries of older ones when they come due.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <queue>
#include <vector>

#include "common/clock.h"
#include "engine/executor.h"

namespace kms::daemon {

class Scheduler {
 public:
  /// `due(key, generation)` runs on the loop for each entry whose instant has come.
  Scheduler(Executor& executor, const Clock& clock, std::function<void(std::uint64_t, std::uint64_t)> due);

  /// Wakes `key` (generation `gen`) at `at`.
  void schedule(std::uint64_t key, std::uint64_t gen, TimePoint at);
  /// No more wake-ups (stopping).
  void stop();
  /// Entries waiting (stale ones included), for tests.
  [[nodiscard]] std::size_t size() const { return heap_.size(); }

 private:
  struct Entry {
    TimePoint at;
    std::uint64_t seq = 0;
    std::uint64_t key = 0;
    std::uint64_t gen = 0;
    bool operator>(const Entry& o) const { return at != o.at ? at > o.at : seq > o.seq; }
  };
  void arm();
  void fire();

  const Clock& clock_;
  std::unique_ptr<Timer> timer_;
  std::function<void(std::uint64_t, std::uint64_t)> due_;
  std::priority_queue<Entry, std::vector<Entry>, std::greater<>> heap_;
  std::uint64_t seq_ = 0;
  std::optional<TimePoint> armedFor_;
  bool stopped_ = false;
};

}  // namespace kms::daemon
