// Http01Responder on Boost.Beast. All Beast templates stay in this file (build time).
//
// Lifetime: one io_context runs on one thread. Every pending handler holds a shared_ptr to the
// object it works on (Listener, Session), so nothing calls back into freed memory; the
// destructor stops the io_context and joins the thread, and the io_context destructor then
// destroys the handlers that never ran (and with them the last references to sessions).

#include <atomic>
#include <chrono>
#include <cstring>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>

#include "acme/http01_responder.h"

namespace kms::acme {

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using Tcp = asio::ip::tcp;

constexpr std::string_view kChallengePrefix = "/.well-known/acme-challenge/";
constexpr std::chrono::seconds kReadTimeout{10};
constexpr std::chrono::seconds kWriteTimeout{10};
constexpr std::uint32_t kHeaderLimit = 8192;
constexpr std::uint64_t kBodyLimit = 8192;
constexpr std::chrono::milliseconds kAcceptRetryDelay{100};

/// Tokens and counters shared by the responder object and its sessions.
class ChallengeStore {
 public:
  void put(const std::string& token, const std::string& keyAuthorization) {
    std::lock_guard lock(mutex_);
    tokens_[token] = keyAuthorization;
  }

  void remove(const std::string& token) {
    std::lock_guard lock(mutex_);
    tokens_.erase(token);
  }

  [[nodiscard]] std::optional<std::string> find(std::string_view token) const {
    std::lock_guard lock(mutex_);
    auto it = tokens_.find(std::string(token));
    if (it == tokens_.end()) {
      return std::nullopt;
    }
    return it->second;
  }

  void countServed() { served_.fetch_add(1, std::memory_order_relaxed); }
  [[nodiscard]] std::uint64_t served() const { return served_.load(std::memory_order_relaxed); }

 private:
  mutable std::mutex mutex_;
  std::unordered_map<std::string, std::string> tokens_;
  std::atomic<std::uint64_t> served_{0};
};

using Request = http::request<http::string_body>;
using Response = http::response<http::string_body>;

Response makeResponse(const Request& request, http::status status, std::string body) {
  Response response(status, request.version());
  response.set(http::field::content_type, "text/plain");
  response.keep_alive(request.keep_alive());
  if (request.method() == http::verb::head) {
    response.content_length(body.size());  // headers of the GET answer, no body
  } else {
    response.body() = std::move(body);
    response.prepare_payload();
  }
  return response;
}

Response answer(const Request& request, ChallengeStore& store) {
  if (request.method() != http::verb::get && request.method() != http::verb::head) {
    Response response = makeResponse(request, http::status::method_not_allowed, "method not allowed\n");
    response.set(http::field::allow, "GET, HEAD");
    return response;
  }
  std::string_view target(request.target().data(), request.target().size());
  if (!target.starts_with(kChallengePrefix) || target.size() == kChallengePrefix.size()) {
    return makeResponse(request, http::status::not_found, "not found\n");
  }
  auto keyAuthorization = store.find(target.substr(kChallengePrefix.size()));
  if (!keyAuthorization.has_value()) {
    return makeResponse(request, http::status::not_found, "not found\n");
  }
  store.countServed();
  return makeResponse(request, http::status::ok, std::move(*keyAuthorization));
}

/// One client connection: read a request, answer, repeat while keep-alive.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(Tcp::socket socket, std::shared_ptr<ChallengeStore> store)
      : stream_(std::move(socket)), store_(std::move(store)) {}

  void read() {
    parser_.emplace();
    parser_->header_limit(kHeaderLimit);
    parser_->body_limit(kBodyLimit);
    stream_.expires_after(kReadTimeout);
    http::async_read(stream_, buffer_, *parser_,
                     [self = shared_from_this()](beast::error_code ec, std::size_t) { self->onRead(ec); });
  }

 private:
  void onRead(beast::error_code ec) {
    if (ec) {
      close();  // end of stream, timeout, oversized or malformed request: drop the connection
      return;
    }
    response_ = answer(parser_->get(), *store_);
    stream_.expires_after(kWriteTimeout);
    http::async_write(stream_, response_,
                      [self = shared_from_this()](beast::error_code writeEc, std::size_t) { self->onWrite(writeEc); });
  }

  void onWrite(beast::error_code ec) {
    if (ec || response_.need_eof()) {
      close();
      return;
    }
    read();
  }

  void close() {
    beast::error_code ignored;
    stream_.socket().shutdown(Tcp::socket::shutdown_send, ignored);
    stream_.close();
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  Response response_;
  std::shared_ptr<ChallengeStore> store_;
};

/// Accept loop.
class Listener : public std::enable_shared_from_this<Listener> {
 public:
  Listener(asio::io_context& io, std::shared_ptr<ChallengeStore> store)
      : io_(io), acceptor_(io), retryTimer_(io), store_(std::move(store)) {}

  Tcp::acceptor& acceptor() { return acceptor_; }

  void accept() {
    acceptor_.async_accept(io_, [self = shared_from_this()](beast::error_code ec, Tcp::socket socket) {
      self->onAccept(ec, std::move(socket));
    });
  }

 private:
  void onAccept(beast::error_code ec, Tcp::socket socket) {
    if (ec == asio::error::operation_aborted) {
      return;
    }
    if (ec) {
      // Out of descriptors or a similar transient failure: pause instead of spinning.
      retryTimer_.expires_after(kAcceptRetryDelay);
      retryTimer_.async_wait([self = shared_from_this()](beast::error_code timerEc) {
        if (!timerEc) {
          self->accept();
        }
      });
      return;
    }
    std::make_shared<Session>(std::move(socket), store_)->read();
    accept();
  }

  asio::io_context& io_;
  Tcp::acceptor acceptor_;
  asio::steady_timer retryTimer_;
  std::shared_ptr<ChallengeStore> store_;
};

std::string hostPort(const std::string& host, std::uint16_t port) {
  bool ipv6 = host.find(':') != std::string::npos;
  return (ipv6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

Error bindError(const std::string& what, const std::string& address, const beast::error_code& ec) {
  Error error;
  error.code = Errc::io;
  error.message = "cannot " + what + " " + address + ": " + ec.message();
  error.context = "http-01 responder";
  error.native = ec.value();
  if (ec.category() == boost::system::system_category()) {
    if (const char* name = ::strerrorname_np(ec.value()); name != nullptr) {
      error.nativeName = name;
    }
  }
  return error;
}

class BeastResponder final : public Http01Responder {
 public:
  BeastResponder() : io_(1), store_(std::make_shared<ChallengeStore>()) {}

  BeastResponder(const BeastResponder&) = delete;
  BeastResponder& operator=(const BeastResponder&) = delete;

  ~BeastResponder() override {
    io_.stop();
    if (thread_.joinable()) {
      thread_.join();
    }
  }

  Result<void> listen(const std::string& host, std::uint16_t port) {
    const std::string address = hostPort(host, port);
    beast::error_code ec;
    Tcp::endpoint endpoint;
    if (auto ip = asio::ip::make_address(host, ec); !ec) {
      endpoint = Tcp::endpoint(ip, port);
    } else {
      Tcp::resolver resolver(io_);
      auto results = resolver.resolve(host, std::to_string(port), Tcp::resolver::passive, ec);
      if (ec || results.empty()) {
        return fail(bindError("resolve", address, ec));
      }
      endpoint = results.begin()->endpoint();
    }
    listener_ = std::make_shared<Listener>(io_, store_);
    Tcp::acceptor& acceptor = listener_->acceptor();
    if (acceptor.open(endpoint.protocol(), ec); ec) {
      return fail(bindError("open a socket for", address, ec));
    }
    // Lets a restarted daemon bind while old connections sit in TIME_WAIT; on Linux it does
    // not let two live listeners share the port.
    if (acceptor.set_option(asio::socket_base::reuse_address(true), ec); ec) {
      return fail(bindError("set SO_REUSEADDR on", address, ec));
    }
    if (acceptor.bind(endpoint, ec); ec) {
      return fail(bindError("bind", address, ec));
    }
    if (acceptor.listen(asio::socket_base::max_listen_connections, ec); ec) {
      return fail(bindError("listen on", address, ec));
    }
    port_ = acceptor.local_endpoint(ec).port();
    if (ec) {
      return fail(bindError("read the local address of", address, ec));
    }
    listener_->accept();
    thread_ = std::thread([this] { run(); });
    return ok();
  }

  [[nodiscard]] std::uint16_t port() const override { return port_; }
  void put(const std::string& token, const std::string& keyAuthorization) override {
    store_->put(token, keyAuthorization);
  }
  void remove(const std::string& token) override { store_->remove(token); }
  [[nodiscard]] std::uint64_t served() const override { return store_->served(); }

 private:
  void run() {
    // Handlers report failures through error codes; only allocation failures can throw. Keep
    // serving rather than let an exception end the thread.
    while (!io_.stopped()) {
      try {
        io_.run();
      } catch (const std::exception&) {
        continue;
      }
    }
  }

  asio::io_context io_;
  std::shared_ptr<ChallengeStore> store_;
  std::shared_ptr<Listener> listener_;
  std::uint16_t port_ = 0;
  std::thread thread_;
};

}  // namespace

Result<std::unique_ptr<Http01Responder>> Http01Responder::start(const std::string& host, std::uint16_t port) {
  auto responder = std::make_unique<BeastResponder>();
  if (auto listening = responder->listen(host, port); !listening.has_value()) {
    return fail(listening.error());
  }
  return std::unique_ptr<Http01Responder>(std::move(responder));
}

}  // namespace kms::acme
