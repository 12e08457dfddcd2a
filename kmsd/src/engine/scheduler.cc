#include "engine/scheduler.h"

namespace kms::daemon {

Scheduler::Scheduler(Executor& executor, const Clock& clock, std::function<void(std::uint64_t, std::uint64_t)> due)
    : clock_(clock), timer_(executor.timer()), due_(std::move(due)) {}

void Scheduler::schedule(std::uint64_t key, std::uint64_t gen, TimePoint at) {
  heap_.push(Entry{at, seq_++, key, gen});
  arm();
}

void Scheduler::stop() {
  stopped_ = true;
  timer_->cancel();
}

void Scheduler::arm() {
  if (heap_.empty() || stopped_) {
    return;
  }
  const TimePoint head = heap_.top().at;
  if (armedFor_ && *armedFor_ <= head) {
    return;  // already armed as early
  }
  armedFor_ = head;
  timer_->at(head, [this] {
    armedFor_.reset();
    fire();
  });
}

void Scheduler::fire() {
  const TimePoint t = clock_.now();
  while (!heap_.empty() && heap_.top().at <= t && !stopped_) {
    const Entry e = heap_.top();
    heap_.pop();
    due_(e.key, e.gen);
  }
  arm();
}

}  // namespace kms::daemon
