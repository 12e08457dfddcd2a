#pragma once
/// @file Built-in http-01 responder (RFC 8555 §8.3): serves
/// GET /.well-known/acme-challenge/<token> with the key authorization, nothing else.

#include <cstdint>
#include <memory>
#include <string>

#include "http/server.h"
#include "kms/error.h"

namespace kms::acme {

/// A small HTTP/1.1 server (Boost.Beast) on its own thread. Thread-safe put/remove.
class Http01Responder {
 public:
  /// Binds host:port (port 0 picks a free one) and starts serving. Errc::io naming the
  /// address when it cannot bind.
  /// `limits` caps its connections ([daemon] listener_*).
  [[nodiscard]] static Result<std::unique_ptr<Http01Responder>> start(const std::string& host, std::uint16_t port,
                                                                      http::ConnectionLimits limits = {});
  /// Serves on a listening TCP socket bound by someone else (systemd socket activation);
  /// takes `fd` over. Errc::io when it is not a listening TCP socket.
  [[nodiscard]] static Result<std::unique_ptr<Http01Responder>> adopt(int fd, http::ConnectionLimits limits = {});
  virtual ~Http01Responder() = default;

  /// The port actually bound.
  [[nodiscard]] virtual std::uint16_t port() const = 0;
  /// Serves keyAuthorization for token until removed.
  virtual void put(const std::string& token, const std::string& keyAuthorization) = 0;
  virtual void remove(const std::string& token) = 0;
  /// Number of challenge requests answered (for tests and metrics).
  [[nodiscard]] virtual std::uint64_t served() const = 0;
};

}  // namespace kms::acme
