#pragma once
// The daemon's Executor: one Boost.Asio io_context run on the main thread and a thread
// pool for the steps. The one translation unit of the engine that instantiates Asio.

#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "engine/executor.h"

namespace boost::asio {
class io_context;
}

namespace kms::daemon {

class AsioExecutor final : public Executor {
 public:
  /// `internalError(where, what)` reports an exception a loop handler let through.
  AsioExecutor(const Clock& clock, std::size_t workers,
               std::function<void(const std::string&, const std::string&)> internalError);
  ~AsioExecutor() override;
  AsioExecutor(const AsioExecutor&) = delete;
  AsioExecutor& operator=(const AsioExecutor&) = delete;

  void post(std::function<void()> fn) override;
  void work(std::function<void()> fn) override;
  [[nodiscard]] std::unique_ptr<Timer> timer() override;
  [[nodiscard]] std::unique_ptr<ExitWatch> watchExit(const ChildProcess& child, std::function<void()> fn) override;
  void stop() override;

  /// Runs the loop until stop(); an exception from a handler is reported and the loop goes
  /// on. Then waits for the workers.
  void run();
  /// Waits for the workers to finish what they run (before what they use goes).
  void join();
  /// For the listeners and the signal set, which live on the same loop.
  [[nodiscard]] boost::asio::io_context& io();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kms::daemon
