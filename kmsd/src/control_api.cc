// The control API over a Unix socket: the one translation unit that instantiates Beast
// for kmsd (the http-01 responder has its own in acme/).
#include "control_api.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

namespace kms::daemon {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using Local = asio::local::stream_protocol;

constexpr std::size_t kMaxBody = 64 * 1024;

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(Local::socket socket, ControlHandler& handler) : socket_(std::move(socket)), handler_(handler) {}

  void read() {
    parser_.emplace();
    parser_->body_limit(kMaxBody);
    parser_->header_limit(16 * 1024);
    http::async_read(socket_, buffer_, *parser_,
                     [self = shared_from_this()](beast::error_code ec, std::size_t) { self->onRead(ec); });
  }

 private:
  void onRead(beast::error_code ec) {
    if (ec == http::error::end_of_stream || ec == asio::error::eof) {
      beast::error_code ignored;
      socket_.shutdown(Local::socket::shutdown_send, ignored);
      return;
    }
    if (ec) {
      if (ec == http::error::body_limit) {
        send(problem(413, "body too large", "request bodies are limited to 64 KiB"), false);
      } else if (ec != asio::error::operation_aborted) {
        send(problem(400, "bad request", ec.message()), false);
      }
      return;
    }
    auto req = parser_->release();
    keepAlive_ = req.keep_alive();
    ControlRequest r{std::string(req.method_string()), std::string(req.target()), std::move(req.body())};
    auto self = shared_from_this();
    auto executor = socket_.get_executor();
    try {
      handler_(r, [self, executor](ControlResponse resp) {
        asio::post(executor,
                   [self, resp = std::move(resp)]() mutable { self->send(std::move(resp), self->keepAlive_); });
      });
    } catch (const std::exception& e) {
      send(problem(500, "internal error", e.what()), false);
    }
  }

  void send(ControlResponse resp, bool keepAlive) {
    auto res = std::make_shared<http::response<http::string_body>>(static_cast<http::status>(resp.status), 11);
    res->set(http::field::server, "kmsd");
    res->set(http::field::content_type, resp.contentType);
    res->keep_alive(keepAlive);
    res->body() = std::move(resp.body);
    res->prepare_payload();
    http::async_write(socket_, *res, [self = shared_from_this(), res, keepAlive](beast::error_code ec, std::size_t) {
      if (!ec && keepAlive) {
        self->read();
      } else {
        beast::error_code ignored;
        self->socket_.shutdown(Local::socket::shutdown_send, ignored);
      }
    });
  }

  Local::socket socket_;
  ControlHandler& handler_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  bool keepAlive_ = false;
};

class ServerImpl final : public ControlServer, public std::enable_shared_from_this<ServerImpl> {
 public:
  ServerImpl(asio::io_context& io, std::string path, ControlHandler handler)
      : acceptor_(io), path_(std::move(path)), handler_(std::move(handler)) {}

  Result<void> listen() {
    struct stat st {};
    if (::lstat(path_.c_str(), &st) == 0) {
      if (!S_ISSOCK(st.st_mode)) {
        return fail(Errc::io, "[daemon] control_socket: exists and is not a socket", path_);
      }
      ::unlink(path_.c_str());  // stale: the directory lock says no other kmsd runs
    }
    beast::error_code ec;
    acceptor_.open(Local(), ec);
    if (!ec) {
      // Created 0660 at once: no window in which others could connect.
      mode_t old = ::umask(0117);
      acceptor_.bind(Local::endpoint(path_), ec);
      ::umask(old);
    }
    if (!ec) {
      acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    }
    if (ec) {
      return fail(Errc::io, "[daemon] control_socket: cannot listen: " + ec.message(), path_);
    }
    return ok();
  }

  void accept() {
    acceptor_.async_accept([self = shared_from_this()](beast::error_code ec, Local::socket socket) {
      if (ec) {
        return;  // stopped
      }
      std::make_shared<Session>(std::move(socket), self->handler_)->read();
      self->accept();
    });
  }

  void stop() override {
    if (stopped_) {
      return;
    }
    stopped_ = true;
    beast::error_code ignored;
    acceptor_.close(ignored);
    ::unlink(path_.c_str());
  }

 private:
  Local::acceptor acceptor_;
  std::string path_;
  ControlHandler handler_;
  bool stopped_ = false;
};

/// Holds the shared server so the unique_ptr owner controls its lifetime.
class ServerHandle final : public ControlServer {
 public:
  explicit ServerHandle(std::shared_ptr<ServerImpl> impl) : impl_(std::move(impl)) {}
  ~ServerHandle() override { impl_->stop(); }
  void stop() override { impl_->stop(); }

 private:
  std::shared_ptr<ServerImpl> impl_;
};

}  // namespace

ControlResponse problem(int status, const std::string& title, const std::string& detail) {
  nlohmann::json j{{"type", "about:blank"}, {"title", title}, {"status", status}, {"detail", detail}};
  return ControlResponse{status, j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
                         "application/problem+json"};
}

Result<std::unique_ptr<ControlServer>> ControlServer::start(asio::io_context& io, const std::string& path,
                                                            ControlHandler handler) {
  auto impl = std::make_shared<ServerImpl>(io, path, std::move(handler));
  if (auto r = impl->listen(); !r) {
    return fail(r.error());
  }
  impl->accept();
  return std::unique_ptr<ControlServer>(new ServerHandle(std::move(impl)));
}

Result<ControlResponse> controlRequest(const std::string& socketPath, const std::string& method,
                                       const std::string& target, const std::string& body) {
  asio::io_context io;
  Local::socket socket(io);
  beast::error_code ec;
  socket.connect(Local::endpoint(socketPath), ec);
  if (ec) {
    Error e;
    e.code = Errc::network;
    e.message = "kmsd is not running (cannot connect: " + ec.message() + ")";
    e.context = socketPath;
    return fail(e);
  }
  http::request<http::string_body> req(http::string_to_verb(method), target, 11);
  req.set(http::field::host, "kmsd");
  req.set(http::field::content_type, "application/json");
  req.body() = body;
  req.prepare_payload();
  http::write(socket, req, ec);
  if (ec) {
    return fail(Errc::network, "control API write failed: " + ec.message(), socketPath);
  }
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(64 * 1024 * 1024);
  http::read(socket, buffer, parser, ec);
  if (ec) {
    return fail(Errc::network, "control API read failed: " + ec.message(), socketPath);
  }
  auto res = parser.release();
  return ControlResponse{static_cast<int>(res.result_int()), res.body(), std::string(res[http::field::content_type])};
}

}  // namespace kms::daemon
