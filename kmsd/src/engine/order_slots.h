#pragma once
// The `max_concurrent_orders` slots: an order being worked on at the CA holds one (not one
// waiting on backoff, the STI-CR, a hook or the CA's Retry-After). Taken on workers,
// counted atomically.

#include <atomic>
#include <cstddef>

namespace kms::daemon {

class OrderSlots {
 public:
  explicit OrderSlots(std::size_t max) : max_(max) {}
  /// Takes a slot; false when all are in use.
  [[nodiscard]] bool take() {
    if (inUse_.fetch_add(1) >= max_) {
      inUse_.fetch_sub(1);
      return false;
    }
    return true;
  }
  /// Gives back a slot when `held`; returns false (what the caller holds now).
  bool release(bool held) {
    if (held) {
      inUse_.fetch_sub(1);
    }
    return false;
  }
  [[nodiscard]] std::size_t inUse() const { return inUse_.load(); }
  [[nodiscard]] std::size_t free() const {
    const std::size_t used = inUse_.load();
    return used >= max_ ? 0 : max_ - used;
  }
  [[nodiscard]] std::size_t max() const { return max_; }
  /// A reload changed max_concurrent_orders; orders holding a slot keep it.
  void setMax(std::size_t max) { max_ = max; }

 private:
  std::atomic<std::size_t> max_;
  std::atomic<std::size_t> inUse_{0};
};

}  // namespace kms::daemon
