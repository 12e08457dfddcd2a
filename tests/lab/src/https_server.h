#pragma once
/// @file The lab's HTTPS listener (Boost.Beast, all templates in https_server.cc):
/// 127.0.0.1 only, one thread per connection, keep-alive, HTTP/1.1.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "http_types.h"
#include "kms/error.h"

namespace kms::lab {

/// Called on a connection thread for every request; must be thread-safe.
using RequestHandler = std::function<LabReply(const LabRequest&)>;

class HttpsServer {
 public:
  /// Binds 127.0.0.1:port (0: any free port) with the PEM certificate chain and key.
  /// Errors: Errc::io when the port is taken ("address in use"), Errc::crypto for TLS files.
  [[nodiscard]] static Result<std::unique_ptr<HttpsServer>> create(const std::string& certChainFile,
                                                                   const std::string& keyFile, std::uint16_t port,
                                                                   RequestHandler handler);
  ~HttpsServer();
  HttpsServer(const HttpsServer&) = delete;
  HttpsServer& operator=(const HttpsServer&) = delete;

  /// The bound port.
  [[nodiscard]] std::uint16_t port() const;
  /// Accepts connections until the process ends.
  void run();

 private:
  struct Impl;
  explicit HttpsServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kms::lab
