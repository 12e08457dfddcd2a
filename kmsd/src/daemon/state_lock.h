#pragma once
// One kmsd per state directory: an exclusive flock on state_dir/kmsd.lock, held while the
// daemon (or `kmsd --once`) runs.

#include <memory>
#include <string>

#include "kms/error.h"

namespace kms::daemon {

class StateLock {
 public:
  /// Errc::alreadyExists when another kmsd holds `dir`; errors name the field and path.
  [[nodiscard]] static Result<std::unique_ptr<StateLock>> take(const std::string& dir);
  ~StateLock();
  StateLock(const StateLock&) = delete;
  StateLock& operator=(const StateLock&) = delete;

 private:
  explicit StateLock(int fd) : fd_(fd) {}
  int fd_;
};

}  // namespace kms::daemon
