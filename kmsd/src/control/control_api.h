#pragma once
// The control API's wire: HTTP/1.1 + JSON on a Unix socket. The server is http/'s; this
// holds the problem documents and kmsctl's client side.

#include <chrono>
#include <string>

#include "http/server.h"
#include "kms/error.h"

namespace kms::daemon {

using ControlRequest = http::ServerRequest;
using ControlResponse = http::ServerResponse;

/// A JSON response with this status.
[[nodiscard]] ControlResponse jsonBody(int status, std::string body);
/// A JSON problem document (RFC 9457) with this status.
[[nodiscard]] ControlResponse problem(int status, const std::string& title, const std::string& detail);

/// How long kmsctl waits for the daemon to accept its connection, then for the answer.
struct ControlTimeouts {
  std::chrono::seconds connect{5};
  std::chrono::seconds answer{120};  ///< a trust refresh reads the STI-PA first
};

/// kmsctl's side: one request to the daemon's socket. Errc::network when nothing listens,
/// Errc::timeout (naming the request) when the daemon does not accept or answer in time.
[[nodiscard]] Result<ControlResponse> controlRequest(const std::string& socketPath, const std::string& method,
                                                     const std::string& target, const std::string& body = {},
                                                     ControlTimeouts timeouts = {});

}  // namespace kms::daemon
