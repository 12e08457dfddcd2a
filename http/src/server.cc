// The HTTP/1.1 server on Boost.Beast: the one translation unit that instantiates Beast's
// server side (build time). Every pending handler holds a shared_ptr to what it works on,
// so nothing calls back into freed memory.
#include "http/server.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <thread>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include "session.h"

namespace kms::http {

std::optional<std::string> ServerRequest::header(std::string_view name) const {
  auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; };
  for (const auto& [key, value] : headers) {
    if (key.size() == name.size() &&
        std::equal(key.begin(), key.end(), name.begin(), [&](char a, char b) { return lower(a) == lower(b); })) {
      return value;
    }
  }
  return std::nullopt;
}
namespace {

using namespace detail;  // NOLINT(google-build-using-namespace): this file's own detail

constexpr std::chrono::milliseconds kAcceptRetryDelay{100};

Error ioError(const std::string& what, const std::string& where, const beast::error_code& ec) {
  Error e;
  e.code = Errc::io;
  e.message = "cannot " + what + ": " + ec.message();
  e.context = where;
  e.native = ec.value();
  if (ec.category() == boost::system::system_category()) {
    if (const char* name = ::strerrorname_np(ec.value()); name != nullptr) {
      e.nativeName = name;
    }
  }
  return e;
}

template <class Protocol>
class Listener final : public Server, public std::enable_shared_from_this<Listener<Protocol>> {
 public:
  /// Serves one admitted connection.
  using Starter = std::function<void(typename Protocol::socket, std::unique_ptr<Admission>)>;
  Listener(asio::io_context& io, const ConnectionLimits& limits, Starter starter)
      : acceptor_(io), retry_(io), starter_(std::move(starter)), count_(std::make_shared<ConnectionCount>(limits)) {}

  typename Protocol::acceptor& acceptor() { return acceptor_; }
  void setPort(std::uint16_t port) { port_ = port; }
  void setPath(std::string path) { path_ = std::move(path); }

  /// A connection lives on the io_context `spread` picks (the listener's own without it).
  void accept() {
    auto done = [self = this->shared_from_this()](beast::error_code ec, typename Protocol::socket socket) {
      self->onAccept(ec, std::move(socket));
    };
    if (spread_) {
      acceptor_.async_accept(spread_(), std::move(done));
    } else {
      acceptor_.async_accept(std::move(done));
    }
  }
  void setSpread(std::function<asio::io_context&()> spread) { spread_ = std::move(spread); }

  [[nodiscard]] std::uint16_t port() const override { return port_; }

  void stop() override {
    if (stopped_) {
      return;
    }
    stopped_ = true;
    beast::error_code ignored;
    acceptor_.close(ignored);
    retry_.cancel();
    if (!path_.empty()) {
      ::unlink(path_.c_str());
    }
  }

 private:
  void onAccept(beast::error_code ec, typename Protocol::socket socket) {
    if (ec == asio::error::operation_aborted || stopped_) {
      return;
    }
    if (ec) {
      // Out of descriptors or a similar transient failure: pause instead of spinning.
      retry_.expires_after(kAcceptRetryDelay);
      retry_.async_wait([self = this->shared_from_this()](beast::error_code timerEc) {
        if (!timerEc) {
          self->accept();
        }
      });
      return;
    }
    const std::string peer = peerOf(socket);
    if (!count_->admit(peer)) {
      beast::error_code ignored;
      socket.close(ignored);  // over a cap: the descriptor is given back at once
    } else {
      starter_(std::move(socket), std::make_unique<Admission>(count_, peer));
    }
    accept();
  }

  /// The peer's address for the per-peer cap; "" on a Unix socket (one local user).
  static std::string peerOf(typename Protocol::socket& socket) {
    if constexpr (std::is_same_v<Protocol, Tcp>) {
      beast::error_code ec;
      auto endpoint = socket.remote_endpoint(ec);
      return ec ? std::string("?") : endpoint.address().to_string();
    } else {
      (void)socket;
      return {};
    }
  }

  typename Protocol::acceptor acceptor_;
  asio::steady_timer retry_;
  Starter starter_;
  std::function<asio::io_context&()> spread_;
  std::shared_ptr<ConnectionCount> count_;
  std::uint16_t port_ = 0;
  std::string path_;
  bool stopped_ = false;
};

/// Owned by the caller; the listener itself is shared with its pending handlers.
class ServerHandle final : public Server {
 public:
  explicit ServerHandle(std::shared_ptr<Server> impl) : impl_(std::move(impl)) {}
  ~ServerHandle() override { impl_->stop(); }
  [[nodiscard]] std::uint16_t port() const override { return impl_->port(); }
  void stop() override { impl_->stop(); }

 private:
  std::shared_ptr<Server> impl_;
};

/// Plain HTTP on each admitted connection.
template <class Protocol>
typename Listener<Protocol>::Starter plainHttp(Handler handler, const ServerOptions& options) {
  auto shared = std::make_shared<Handler>(std::move(handler));
  return [shared, options](typename Protocol::socket socket, std::unique_ptr<Admission> admission) {
    std::make_shared<Session<typename Protocol::socket>>(std::move(socket), shared, options, std::move(admission))
        ->read();
  };
}

std::string hostPort(const std::string& host, std::uint16_t port) {
  bool ipv6 = host.find(':') != std::string::npos;
  return (ipv6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

}  // namespace

ServerResponse textResponse(int status, std::string body) {
  ServerResponse r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

Result<std::unique_ptr<Server>> detail::listenTcp(asio::io_context& io, const std::string& host, std::uint16_t port,
                                                  const ConnectionLimits& limits, TcpStarter starter,
                                                  std::function<asio::io_context&()> spread) {
  const std::string address = hostPort(host, port);
  beast::error_code ec;
  Tcp::endpoint endpoint;
  if (auto ip = asio::ip::make_address(host, ec); !ec) {
    endpoint = Tcp::endpoint(ip, port);
  } else {
    Tcp::resolver resolver(io);
    auto results = resolver.resolve(host, std::to_string(port), Tcp::resolver::passive, ec);
    if (ec || results.empty()) {
      return fail(ioError("resolve " + address, address, ec));
    }
    endpoint = results.begin()->endpoint();
  }
  auto listener = std::make_shared<Listener<Tcp>>(io, limits, std::move(starter));
  listener->setSpread(std::move(spread));
  auto& acceptor = listener->acceptor();
  if (acceptor.open(endpoint.protocol(), ec); ec) {
    return fail(ioError("open a socket for " + address, address, ec));
  }
  // A restarted daemon may bind while old connections sit in TIME_WAIT; on Linux this does
  // not let two live listeners share the port.
  if (acceptor.set_option(asio::socket_base::reuse_address(true), ec); ec) {
    return fail(ioError("set SO_REUSEADDR on " + address, address, ec));
  }
  if (acceptor.bind(endpoint, ec); ec) {
    return fail(ioError("bind " + address, address, ec));
  }
  if (acceptor.listen(asio::socket_base::max_listen_connections, ec); ec) {
    return fail(ioError("listen on " + address, address, ec));
  }
  listener->setPort(acceptor.local_endpoint(ec).port());
  listener->accept();
  return std::unique_ptr<Server>(new ServerHandle(std::move(listener)));
}

Result<std::unique_ptr<Server>> Server::listenTcp(asio::io_context& io, const std::string& host, std::uint16_t port,
                                                  Handler handler, const ServerOptions& options) {
  const ConnectionLimits limits = options.limits;
  auto spread = options.spread;
  return detail::listenTcp(io, host, port, limits, plainHttp<Tcp>(std::move(handler), options), std::move(spread));
}

Result<std::unique_ptr<Server>> Server::adoptTcp(asio::io_context& io, int fd, Handler handler,
                                                 const ServerOptions& options) {
  const std::string what = "passed socket (fd " + std::to_string(fd) + ")";
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  int listening = 0;
  socklen_t optLen = sizeof listening;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0 ||
      (addr.ss_family != AF_INET && addr.ss_family != AF_INET6) ||
      ::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &optLen) != 0 || listening == 0) {
    ::close(fd);
    return fail(Errc::io, what + " is not a listening TCP socket", what);
  }
  auto listener = std::make_shared<Listener<Tcp>>(io, options.limits, plainHttp<Tcp>(std::move(handler), options));
  auto& acceptor = listener->acceptor();
  beast::error_code ec;
  if (acceptor.assign(addr.ss_family == AF_INET ? Tcp::v4() : Tcp::v6(), fd, ec); ec) {
    ::close(fd);
    return fail(ioError("take over " + what, what, ec));
  }
  listener->setPort(acceptor.local_endpoint(ec).port());
  listener->accept();
  return std::unique_ptr<Server>(new ServerHandle(std::move(listener)));
}

Result<std::unique_ptr<Server>> Server::listenUnix(asio::io_context& io, const std::string& path, unsigned mode,
                                                   Handler handler, const ServerOptions& options) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return fail(Errc::io, "exists and is not a socket", path);
    }
    ::unlink(path.c_str());  // stale (the caller makes sure no other owner is alive)
  }
  auto listener = std::make_shared<Listener<Local>>(io, options.limits, plainHttp<Local>(std::move(handler), options));
  auto& acceptor = listener->acceptor();
  beast::error_code ec;
  if (acceptor.open(Local(), ec); ec) {
    return fail(ioError("open a socket", path, ec));
  }
  // Created with its final mode at once: no window in which others could connect.
  mode_t old = ::umask(static_cast<mode_t>(~mode & 0777));
  acceptor.bind(Local::endpoint(path), ec);
  ::umask(old);
  if (ec) {
    return fail(ioError("bind", path, ec));
  }
  if (acceptor.listen(asio::socket_base::max_listen_connections, ec); ec) {
    return fail(ioError("listen", path, ec));
  }
  listener->setPath(path);
  listener->accept();
  return std::unique_ptr<Server>(new ServerHandle(std::move(listener)));
}

/// One io_context per thread (each run by its thread alone): a connection lives on one
/// thread from accept to close, with no lock or hand-over between threads.
struct ServerThread::Impl {
  explicit Impl(std::size_t n) {
    for (std::size_t i = 0; i < std::max<std::size_t>(n, 1); ++i) {
      contexts.push_back(std::make_unique<asio::io_context>(1));
    }
  }
  std::vector<std::unique_ptr<asio::io_context>> contexts;
  std::atomic<std::size_t> next{0};
  std::vector<std::thread> running;
};

ServerThread::ServerThread(std::size_t threads) : impl_(std::make_unique<Impl>(threads)) {}

ServerThread::~ServerThread() {
  stop();
}

void ServerThread::stop() {
  for (auto& io : impl_->contexts) {
    io->stop();
  }
  for (auto& t : impl_->running) {
    t.join();
  }
  impl_->running.clear();
}

asio::io_context& ServerThread::io() {
  return *impl_->contexts.front();
}

std::function<asio::io_context&()> ServerThread::spread() {
  return [impl = impl_.get()]() -> asio::io_context& {
    return *impl->contexts[impl->next.fetch_add(1, std::memory_order_relaxed) % impl->contexts.size()];
  };
}

void ServerThread::post(std::function<void()> job) {
  asio::post(io(), std::move(job));
}

void ServerThread::start() {
  for (auto& context : impl_->contexts) {
    impl_->running.emplace_back([io = context.get()] {
      auto guard = asio::make_work_guard(*io);
      // Handlers report failures through error codes; only allocation failures can throw.
      while (!io->stopped()) {
        try {
          io->run();
        } catch (const std::exception&) {
          continue;
        }
      }
    });
  }
}

}  // namespace kms::http
