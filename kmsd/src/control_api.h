#pragma once
// The control API's transport: HTTP/1.1 on a Unix socket (Boost.Beast), one request at a
// time per connection, answered by a handler that may reply from any thread.

#include <functional>
#include <memory>
#include <string>

#include "kms/error.h"

namespace boost::asio {
class io_context;
}

namespace kms::daemon {

struct ControlRequest {
  std::string method;  ///< "GET", "POST"
  std::string target;  ///< "/v1/status?x=y"
  std::string body;
};

struct ControlResponse {
  int status = 200;
  std::string body;  ///< JSON
  std::string contentType = "application/json";
};

/// Called on the loop thread; `reply` may be called once, from any thread.
using ControlHandler = std::function<void(const ControlRequest&, std::function<void(ControlResponse)> reply)>;

class ControlServer {
 public:
  /// Binds `path` (a stale socket file is replaced; another kind of file is an error),
  /// mode 0660. Errors name the path.
  [[nodiscard]] static Result<std::unique_ptr<ControlServer>> start(boost::asio::io_context& io,
                                                                    const std::string& path, ControlHandler handler);
  virtual ~ControlServer() = default;
  /// Stops accepting and removes the socket file.
  virtual void stop() = 0;
};

/// A JSON problem document (RFC 9457) with this status.
[[nodiscard]] ControlResponse problem(int status, const std::string& title, const std::string& detail);

/// kmsctl's side: one request to the daemon's socket. Errc::network when nothing listens.
[[nodiscard]] Result<ControlResponse> controlRequest(const std::string& socketPath, const std::string& method,
                                                     const std::string& target, const std::string& body = {});

}  // namespace kms::daemon
