// The HTTP/1.1 server on Boost.Beast: the one translation unit that instantiates Beast's
// server side (build time). Every pending handler holds a shared_ptr to what it works on,
// so nothing calls back into freed memory.
#include "http/server.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstring>
#include <map>
#include <optional>
#include <thread>
#include <type_traits>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

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

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using Tcp = asio::ip::tcp;
using Local = asio::local::stream_protocol;

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

/// The connections a listener has open, in all and per peer address. Lives on the
/// listener's io_context thread only.
class ConnectionCount {
 public:
  explicit ConnectionCount(ConnectionLimits limits) : limits_(limits) {}
  /// Counts a new connection from `peer` ("" for a Unix socket); false when over a cap.
  bool admit(const std::string& peer) {
    if (total_ >= limits_.maxConnections) {
      return false;
    }
    if (!peer.empty()) {
      auto& n = perPeer_[peer];
      if (n >= limits_.maxPerPeer) {
        return false;
      }
      ++n;
    }
    ++total_;
    return true;
  }
  void release(const std::string& peer) {
    --total_;
    if (auto it = perPeer_.find(peer); it != perPeer_.end() && --it->second == 0) {
      perPeer_.erase(it);
    }
  }

 private:
  ConnectionLimits limits_;
  std::size_t total_ = 0;
  std::map<std::string, std::size_t> perPeer_;
};

/// A counted connection, released when its session goes.
class Admission {
 public:
  Admission(std::shared_ptr<ConnectionCount> count, std::string peer)
      : count_(std::move(count)), peer_(std::move(peer)) {}
  ~Admission() { count_->release(peer_); }
  Admission(const Admission&) = delete;
  Admission& operator=(const Admission&) = delete;

 private:
  std::shared_ptr<ConnectionCount> count_;
  std::string peer_;
};

/// One connection: read a request (headers within the header timeout, all of it within the
/// read timeout), hand it to the handler, write the reply, repeat while keep-alive.
template <class Protocol>
class Session : public std::enable_shared_from_this<Session<Protocol>> {
 public:
  using Socket = typename Protocol::socket;
  Session(Socket socket, std::shared_ptr<Handler> handler, const ServerOptions& options,
          std::unique_ptr<Admission> admission)
      : socket_(std::move(socket)),
        timer_(socket_.get_executor()),
        handler_(std::move(handler)),
        options_(options),
        admission_(std::move(admission)) {}

  void read() {
    parser_.emplace();
    parser_->header_limit(options_.headerLimit);
    parser_->body_limit(options_.bodyLimit);
    arm(std::min(options_.limits.headerTimeout, options_.readTimeout));
    bhttp::async_read_header(socket_, buffer_, *parser_,
                             [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
                               self->onHeader(ec);
                             });
  }

 private:
  void onHeader(beast::error_code ec) {
    if (ec == bhttp::error::body_limit) {  // a Content-Length over the limit
      timer_.cancel();
      return refuseOversized();
    }
    if (ec) {
      timer_.cancel();
      close();
      return;
    }
    arm(options_.readTimeout);
    bhttp::async_read(socket_, buffer_, *parser_,
                      [self = this->shared_from_this()](beast::error_code e, std::size_t) { self->onRead(e); });
  }

  /// 413 for a body over bodyLimit; the rest of it is read away (drain) before closing.
  void refuseOversized() {
    const std::string why = "the request body is over " + std::to_string(options_.bodyLimit) + " bytes";
    version_ = parser_->get().version();
    drain_ = true;  // the client is still sending: read it away, so that it gets the answer
    send(options_.refusal ? options_.refusal(413, why) : textResponse(413, why + "\n"), false);
  }

  void arm(std::chrono::seconds timeout) {
    timer_.expires_after(timeout);
    timer_.async_wait([self = this->shared_from_this()](beast::error_code ec) {
      if (!ec) {
        self->close();  // too slow: drop the connection
      }
    });
  }

  void onRead(beast::error_code ec) {
    timer_.cancel();
    if (ec == bhttp::error::body_limit) {
      return refuseOversized();
    }
    if (ec) {
      close();  // end of stream, timeout, oversized or malformed request: drop the connection
      return;
    }
    auto& req = parser_->get();
    keepAlive_ = req.keep_alive();
    version_ = req.version();
    head_ = req.method() == bhttp::verb::head;
    ServerRequest r{std::string(req.method_string()), std::string(req.target()), std::move(req.body()), peer(), {}};
    for (const auto& field : req) {
      r.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
    }
    auto self = this->shared_from_this();
    auto executor = socket_.get_executor();
    auto replied = std::make_shared<std::atomic<bool>>(false);
    Reply reply = [self, executor, replied](ServerResponse resp) {
      if (replied->exchange(true)) {
        return;  // once only
      }
      asio::post(executor, [self, resp = std::move(resp)]() mutable { self->send(std::move(resp), self->keepAlive_); });
    };
    try {
      (*handler_)(r, reply);
    } catch (const std::exception& e) {
      reply(textResponse(500, std::string("internal error: ") + e.what() + "\n"));
    }
  }

  void send(ServerResponse resp, bool keepAlive) {
    auto res = std::make_shared<bhttp::response<bhttp::string_body>>(static_cast<bhttp::status>(resp.status), version_);
    res->set(bhttp::field::server, "kms");
    res->set(bhttp::field::content_type, resp.contentType);
    for (auto& [name, value] : resp.headers) {
      res->set(name, value);
    }
    res->keep_alive(keepAlive);
    if (head_) {
      res->content_length(resp.body.size());  // the GET answer's headers, no body
    } else {
      res->body() = std::move(resp.body);
      res->prepare_payload();
    }
    arm(options_.writeTimeout);
    bhttp::async_write(socket_, *res, [self = this->shared_from_this(), res](beast::error_code ec, std::size_t) {
      self->timer_.cancel();
      if (!ec && self->drain_) {
        self->drain();
        return;
      }
      if (ec || res->need_eof()) {
        self->close();
        return;
      }
      self->read();
    });
  }

  /// After refusing an oversized body: stops sending, reads and discards what the client
  /// still sends (bounded in bytes and time), then closes. A client that is still writing
  /// when the connection closes never reads the answer.
  void drain() {
    beast::error_code ignored;
    socket_.shutdown(Socket::shutdown_send, ignored);
    arm(options_.readTimeout);
    drainSome();
  }

  void drainSome() {
    auto chunk = std::make_shared<std::array<char, 16384>>();
    socket_.async_read_some(asio::buffer(*chunk), [self = this->shared_from_this(), chunk](beast::error_code ec,
                                                                                          std::size_t n) {
      self->drained_ += n;
      if (ec || self->drained_ > kMaxDrainBytes) {
        self->timer_.cancel();
        self->close();
        return;
      }
      self->drainSome();
    });
  }

  /// Who is on the other end of a Unix socket (the kernel's word, not the client's).
  std::optional<PeerCredentials> peer() {
    if constexpr (std::is_same_v<Protocol, Local>) {
      ucred cred{};
      socklen_t len = sizeof cred;
      if (::getsockopt(socket_.native_handle(), SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
        return PeerCredentials{static_cast<std::uint32_t>(cred.uid), static_cast<std::uint32_t>(cred.gid)};
      }
    }
    return std::nullopt;
  }

  void close() {
    beast::error_code ignored;
    socket_.shutdown(Socket::shutdown_send, ignored);
    socket_.close(ignored);
  }

  Socket socket_;
  asio::steady_timer timer_;
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  std::shared_ptr<Handler> handler_;
  ServerOptions options_;
  std::unique_ptr<Admission> admission_;
  bool keepAlive_ = false;
  bool head_ = false;
  bool drain_ = false;            ///< refused an oversized body: drain, then close
  std::uint64_t drained_ = 0;
  static constexpr std::uint64_t kMaxDrainBytes = std::uint64_t{8} * 1024 * 1024;
  unsigned version_ = 11;  ///< answered in the request's HTTP version
};

template <class Protocol>
class Listener final : public Server, public std::enable_shared_from_this<Listener<Protocol>> {
 public:
  Listener(asio::io_context& io, Handler handler, ServerOptions options)
      : acceptor_(io),
        retry_(io),
        handler_(std::make_shared<Handler>(std::move(handler))),
        options_(std::move(options)),
        count_(std::make_shared<ConnectionCount>(options.limits)) {}

  typename Protocol::acceptor& acceptor() { return acceptor_; }
  void setPort(std::uint16_t port) { port_ = port; }
  void setPath(std::string path) { path_ = std::move(path); }

  void accept() {
    acceptor_.async_accept([self = this->shared_from_this()](beast::error_code ec, typename Protocol::socket socket) {
      self->onAccept(ec, std::move(socket));
    });
  }

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
      auto admission = std::make_unique<Admission>(count_, peer);
      std::make_shared<Session<Protocol>>(std::move(socket), handler_, options_, std::move(admission))->read();
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
  std::shared_ptr<Handler> handler_;
  ServerOptions options_;
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

Result<std::unique_ptr<Server>> Server::listenTcp(asio::io_context& io, const std::string& host, std::uint16_t port,
                                                  Handler handler, ServerOptions options) {
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
  auto listener = std::make_shared<Listener<Tcp>>(io, std::move(handler), std::move(options));
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

Result<std::unique_ptr<Server>> Server::adoptTcp(asio::io_context& io, int fd, Handler handler,
                                                 ServerOptions options) {
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
  auto listener = std::make_shared<Listener<Tcp>>(io, std::move(handler), std::move(options));
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
                                                   Handler handler, ServerOptions options) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return fail(Errc::io, "exists and is not a socket", path);
    }
    ::unlink(path.c_str());  // stale (the caller makes sure no other owner is alive)
  }
  auto listener = std::make_shared<Listener<Local>>(io, std::move(handler), std::move(options));
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

struct ServerThread::Impl {
  asio::io_context io{1};
  std::thread thread;
};

ServerThread::ServerThread() : impl_(std::make_unique<Impl>()) {}

ServerThread::~ServerThread() {
  stop();
}

void ServerThread::stop() {
  impl_->io.stop();
  if (impl_->thread.joinable()) {
    impl_->thread.join();
  }
}

asio::io_context& ServerThread::io() {
  return impl_->io;
}

void ServerThread::start() {
  impl_->thread = std::thread([this] {
    auto guard = asio::make_work_guard(impl_->io);
    // Handlers report failures through error codes; only allocation failures can throw.
    while (!impl_->io.stopped()) {
      try {
        impl_->io.run();
      } catch (const std::exception&) {
        continue;
      }
    }
  });
}

}  // namespace kms::http
