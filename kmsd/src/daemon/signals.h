#pragma once
// SIGTERM, SIGINT and SIGHUP delivered on the daemon's loop.

#include <functional>
#include <memory>

namespace kms::daemon {

class AsioExecutor;

class SignalWatcher {
 public:
  /// `onSignal(signo)` runs on the loop for each signal, until cancel().
  SignalWatcher(AsioExecutor& executor, std::function<void(int)> onSignal);
  ~SignalWatcher();
  SignalWatcher(const SignalWatcher&) = delete;
  SignalWatcher& operator=(const SignalWatcher&) = delete;
  void cancel();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kms::daemon
