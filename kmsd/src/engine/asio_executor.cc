#include "engine/asio_executor.h"

#include <fcntl.h>

#include <algorithm>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>

#include "kms/process.h"

namespace kms::daemon {

namespace asio = boost::asio;

struct AsioExecutor::Impl {
  Impl(const Clock& c, std::size_t workers, std::function<void(const std::string&, const std::string&)> report)
      : clock(c), pool(workers), internalError(std::move(report)) {}
  const Clock& clock;
  asio::io_context io;
  asio::thread_pool pool;
  std::function<void(const std::string&, const std::string&)> internalError;
};

namespace {

/// A steady timer armed for a wall-clock instant (the delay from the injected clock's now).
class AsioTimer final : public Timer {
 public:
  AsioTimer(asio::io_context& io, const Clock& clock) : timer_(io), clock_(clock) {}
  void at(TimePoint when, std::function<void()> fn) override {
    const auto delay = std::max(Millis(0), std::chrono::duration_cast<Millis>(when - clock_.now()));
    timer_.expires_after(delay);
    timer_.async_wait([fn = std::move(fn)](const boost::system::error_code& ec) {
      if (!ec) {
        fn();
      }
    });
  }
  void cancel() override { timer_.cancel(); }

 private:
  asio::steady_timer timer_;
  const Clock& clock_;
};

/// The child's pidfd (a duplicate) turns readable when it exits.
class AsioExitWatch final : public ExitWatch {
 public:
  AsioExitWatch(asio::io_context& io, int fd, std::function<void()> fn) : descriptor_(io, fd) {
    descriptor_.async_wait(asio::posix::stream_descriptor::wait_read,
                           [fn = std::move(fn)](const boost::system::error_code& ec) {
                             if (!ec) {
                               fn();
                             }
                           });
  }

 private:
  asio::posix::stream_descriptor descriptor_;
};

}  // namespace

AsioExecutor::AsioExecutor(const Clock& clock, std::size_t workers,
                           std::function<void(const std::string&, const std::string&)> internalError)
    : impl_(std::make_unique<Impl>(clock, workers, std::move(internalError))) {}

AsioExecutor::~AsioExecutor() {
  impl_->pool.join();
}

void AsioExecutor::post(std::function<void()> fn) {
  asio::post(impl_->io, std::move(fn));
}

void AsioExecutor::work(std::function<void()> fn) {
  asio::post(impl_->pool, std::move(fn));
}

std::unique_ptr<Timer> AsioExecutor::timer() {
  return std::make_unique<AsioTimer>(impl_->io, impl_->clock);
}

std::unique_ptr<ExitWatch> AsioExecutor::watchExit(const ChildProcess& child, std::function<void()> fn) {
  const int fd = ::fcntl(child.pidfd(), F_DUPFD_CLOEXEC, 0);
  if (fd < 0) {
    return nullptr;
  }
  return std::make_unique<AsioExitWatch>(impl_->io, fd, std::move(fn));
}

void AsioExecutor::stop() {
  impl_->io.stop();
}

void AsioExecutor::run() {
  // Steps run on the pool and post back: the loop must not run out of work meanwhile.
  auto guard = asio::make_work_guard(impl_->io);
  while (true) {
    try {
      impl_->io.run();
      break;
    } catch (const std::exception& e) {
      impl_->internalError("an event-loop handler", e.what());
    } catch (...) {
      impl_->internalError("an event-loop handler", "unknown exception");
    }
  }
  impl_->pool.join();
}

void AsioExecutor::join() {
  impl_->pool.join();
}

asio::io_context& AsioExecutor::io() {
  return impl_->io;
}

}  // namespace kms::daemon
