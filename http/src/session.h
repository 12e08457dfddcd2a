#pragma once
// The connection side of the HTTP/1.1 server, shared by server.cc (TCP and Unix sockets) and
// tls_server.cc (TLS over TCP): connection caps and one Session template over the stream.
// Private to kms_http; only those two translation units instantiate it (build time).

#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <type_traits>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

#include "http/server.h"

namespace kms::http::detail {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using Tcp = asio::ip::tcp;
using Local = asio::local::stream_protocol;

/// The socket under a stream: a TLS stream's next layer, or the socket itself.
template <class Stream>
auto& lowestLayer(Stream& s) {
  if constexpr (requires { s.next_layer(); }) {
    return s.next_layer();
  } else {
    return s;
  }
}

/// The connections a listener has open, in all and per peer address. Sessions end on any of
/// the io_context's threads, hence the lock.
class ConnectionCount {
 public:
  explicit ConnectionCount(ConnectionLimits limits) : limits_(limits) {}
  /// Counts a new connection from `peer` ("" for a Unix socket); false when over a cap.
  bool admit(const std::string& peer) {
    std::lock_guard lock(mutex_);
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
    std::lock_guard lock(mutex_);
    --total_;
    if (auto it = perPeer_.find(peer); it != perPeer_.end() && --it->second == 0) {
      perPeer_.erase(it);
    }
  }

 private:
  ConnectionLimits limits_;
  std::mutex mutex_;
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
/// `Stream` is a TCP or Unix socket, or a TLS stream over a TCP socket (tls_server.cc).
template <class Stream>
class Session : public std::enable_shared_from_this<Session<Stream>> {
 public:
  Session(Stream stream, std::shared_ptr<Handler> handler, const ServerOptions& options,
          std::unique_ptr<Admission> admission)
      : socket_(std::move(stream)),
        timer_(socket_.get_executor()),
        handler_(std::move(handler)),
        options_(options),
        admission_(std::move(admission)) {}

  /// The TLS client's certificate, as the handshake left it (TLS listeners only).
  void setTlsPeer(TlsPeer peer) { tls_ = std::move(peer); }
  [[nodiscard]] Stream& stream() { return socket_; }

  /// Closes the connection if it is not done within `timeout` (the TLS handshake).
  void armFor(std::chrono::seconds timeout) { arm(timeout); }
  void disarm() { timer_.cancel(); }
  /// Closes the connection now, unanswered.
  void abort() { close(); }
  /// Keeps `thing` alive as long as the connection (the TLS context it was accepted with).
  void hold(std::shared_ptr<const void> thing) { held_ = std::move(thing); }

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
    ServerRequest r;
    r.method = std::string(req.method_string());
    r.target = std::string(req.target());
    r.body = std::move(req.body());
    r.peer = peer();
    r.tls = tls_;
    r.remote = remote();
    for (const auto& field : req) {
      r.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
    }
    auto self = this->shared_from_this();
    auto executor = socket_.get_executor();
    auto replied = std::make_shared<std::atomic<bool>>(false);
    // A reply made by the handler itself, on this thread, is sent when the handler returns;
    // one from another thread (later) is posted to the connection's executor.
    const std::thread::id here = std::this_thread::get_id();
    Reply reply = [self, executor, replied, here](ServerResponse resp) {
      if (replied->exchange(true)) {
        return;  // once only
      }
      if (std::this_thread::get_id() == here && self->inHandler_.load()) {
        self->pending_ = std::move(resp);
        return;
      }
      asio::post(executor, [self, resp = std::move(resp)]() mutable { self->send(std::move(resp), self->keepAlive_); });
    };
    inHandler_ = true;
    try {
      (*handler_)(r, reply);
    } catch (const std::exception& e) {
      reply(textResponse(500, std::string("internal error: ") + e.what() + "\n"));
    }
    inHandler_ = false;
    if (pending_) {
      ServerResponse resp = std::move(*pending_);
      pending_.reset();
      send(std::move(resp), keepAlive_);
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
    lowestLayer(socket_).shutdown(asio::socket_base::shutdown_send, ignored);
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
    if constexpr (std::is_same_v<std::decay_t<decltype(lowestLayer(socket_))>, Local::socket>) {
      ucred cred{};
      socklen_t len = sizeof cred;
      if (::getsockopt(lowestLayer(socket_).native_handle(), SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
        return PeerCredentials{static_cast<std::uint32_t>(cred.uid), static_cast<std::uint32_t>(cred.gid)};
      }
    }
    return std::nullopt;
  }

  /// The peer's IP address on TCP, "" on a Unix socket (asked of the kernel once).
  const std::string& remote() {
    if constexpr (std::is_same_v<std::decay_t<decltype(lowestLayer(socket_))>, Tcp::socket>) {
      if (!remote_) {
        beast::error_code ec;
        auto endpoint = lowestLayer(socket_).remote_endpoint(ec);
        remote_ = ec ? std::string() : endpoint.address().to_string();
      }
      return *remote_;
    } else {
      static const std::string none;
      return none;
    }
  }

  void close() {
    beast::error_code ignored;
    auto& socket = lowestLayer(socket_);
    socket.shutdown(asio::socket_base::shutdown_send, ignored);
    socket.close(ignored);
  }

  std::shared_ptr<const void> held_;  // before socket_: outlives it
  Stream socket_;
  std::optional<TlsPeer> tls_;
  std::optional<std::string> remote_;
  std::atomic<bool> inHandler_{false};     ///< the handler runs (on the connection's thread)
  std::optional<ServerResponse> pending_;  ///< its own reply, sent when it returns
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

/// Serves one admitted TCP connection (plain HTTP, or a TLS handshake first).
using TcpStarter = std::function<void(Tcp::socket, std::unique_ptr<Admission>)>;

/// Listens on host:port and hands each admitted connection to `starter` (server.cc).
[[nodiscard]] Result<std::unique_ptr<Server>> listenTcp(asio::io_context& io, const std::string& host,
                                                        std::uint16_t port, const ConnectionLimits& limits,
                                                        TcpStarter starter,
                                                        std::function<asio::io_context&()> spread = {});

}  // namespace kms::http::detail
