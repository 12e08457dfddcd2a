// Http01Responder on http/'s server, with an io_context on a thread of its own.
#include "acme/http01_responder.h"

#include <atomic>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "http/server.h"

namespace kms::acme {

namespace {

constexpr std::string_view kChallengePrefix = "/.well-known/acme-challenge/";

/// Tokens and counters shared by the responder object and the server's handler.
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

http::ServerResponse answer(const http::ServerRequest& request, ChallengeStore& store) {
  if (request.method != "GET" && request.method != "HEAD") {
    http::ServerResponse r = http::textResponse(405, "method not allowed\n");
    r.headers.emplace_back("Allow", "GET, HEAD");
    return r;
  }
  std::string_view target = request.target;
  if (!target.starts_with(kChallengePrefix) || target.size() == kChallengePrefix.size()) {
    return http::textResponse(404, "not found\n");
  }
  auto keyAuthorization = store.find(target.substr(kChallengePrefix.size()));
  if (!keyAuthorization.has_value()) {
    return http::textResponse(404, "not found\n");
  }
  store.countServed();
  return http::textResponse(200, std::move(*keyAuthorization));
}

class ServerResponder final : public Http01Responder {
 public:
  ServerResponder() : store_(std::make_shared<ChallengeStore>()) {}
  ServerResponder(const ServerResponder&) = delete;
  ServerResponder& operator=(const ServerResponder&) = delete;

  ~ServerResponder() override {
    thread_.stop();   // no handler runs any more ...
    server_.reset();  // ... so the listener can go while its io_context still exists
  }

  Result<void> listen(const std::string& host, std::uint16_t port, http::ConnectionLimits caps) {
    return serve(http::Server::listenTcp(thread_.io(), host, port, handler(), limits(caps)));
  }

  Result<void> adopt(int fd, http::ConnectionLimits caps) {
    return serve(http::Server::adoptTcp(thread_.io(), fd, handler(), limits(caps)));
  }

  [[nodiscard]] std::uint16_t port() const override { return server_->port(); }
  void put(const std::string& token, const std::string& keyAuthorization) override {
    store_->put(token, keyAuthorization);
  }
  void remove(const std::string& token) override { store_->remove(token); }
  [[nodiscard]] std::uint64_t served() const override { return store_->served(); }

 private:
  /// Answers from the challenge store; the handler holds its own reference to the store.
  [[nodiscard]] http::Handler handler() const {
    return [store = store_](const http::ServerRequest& request, const http::Reply& reply) {
      reply(answer(request, *store));
    };
  }

  static http::ServerOptions limits(http::ConnectionLimits caps) {
    http::ServerOptions options;
    options.headerLimit = 8192;
    options.bodyLimit = 8192;
    options.limits = caps;
    return options;
  }

  Result<void> serve(Result<std::unique_ptr<http::Server>> server) {
    if (!server) {
      Error e = server.error();
      e.context = "http-01 responder";  // the message names the address or the socket
      return fail(e);
    }
    server_ = std::move(*server);
    thread_.start();
    return ok();
  }

  std::shared_ptr<ChallengeStore> store_;
  http::ServerThread thread_;
  std::unique_ptr<http::Server> server_;
};

}  // namespace

Result<std::unique_ptr<Http01Responder>> Http01Responder::start(const std::string& host, std::uint16_t port,
                                                                http::ConnectionLimits limits) {
  auto responder = std::make_unique<ServerResponder>();
  if (auto listening = responder->listen(host, port, limits); !listening.has_value()) {
    return fail(listening.error());
  }
  return std::unique_ptr<Http01Responder>(std::move(responder));
}

Result<std::unique_ptr<Http01Responder>> Http01Responder::adopt(int fd, http::ConnectionLimits limits) {
  auto responder = std::make_unique<ServerResponder>();
  if (auto serving = responder->adopt(fd, limits); !serving.has_value()) {
    return fail(serving.error());
  }
  return std::unique_ptr<Http01Responder>(std::move(responder));
}

}  // namespace kms::acme
