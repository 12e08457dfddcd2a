#include "common/clock.h"

#include <mutex>
#include <random>

namespace kms::daemon {
namespace {

class SystemClock final : public Clock {
 public:
  [[nodiscard]] TimePoint now() const override { return std::chrono::system_clock::now(); }
};

class SystemRandom final : public Random {
 public:
  SystemRandom() : rng_(std::random_device{}()) {}
  [[nodiscard]] std::uint64_t next() override {
    std::lock_guard<std::mutex> lock(mutex_);
    return rng_();
  }

 private:
  std::mutex mutex_;
  std::mt19937_64 rng_;
};

}  // namespace

std::unique_ptr<Clock> systemClock() {
  return std::make_unique<SystemClock>();
}

std::unique_ptr<Random> systemRandom() {
  return std::make_unique<SystemRandom>();
}

}  // namespace kms::daemon
