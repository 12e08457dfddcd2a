#include "daemon/signals.h"

#include <csignal>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>

#include "engine/asio_executor.h"

namespace kms::daemon {

struct SignalWatcher::Impl {
  Impl(boost::asio::io_context& io, std::function<void(int)> fn) : signals(io, SIGTERM, SIGINT, SIGHUP), onSignal(std::move(fn)) {}
  void wait() {
    signals.async_wait([this](const boost::system::error_code& ec, int sig) {
      if (ec) {
        return;
      }
      onSignal(sig);
      if (!cancelled) {
        wait();
      }
    });
  }
  boost::asio::signal_set signals;
  std::function<void(int)> onSignal;
  bool cancelled = false;
};

SignalWatcher::SignalWatcher(AsioExecutor& executor, std::function<void(int)> onSignal)
    : impl_(std::make_unique<Impl>(executor.io(), std::move(onSignal))) {
  impl_->wait();
}

SignalWatcher::~SignalWatcher() = default;

void SignalWatcher::cancel() {
  impl_->cancelled = true;
  impl_->signals.cancel();
}

}  // namespace kms::daemon
