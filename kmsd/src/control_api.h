#pragma once
// The control API's wire: HTTP/1.1 + JSON on a Unix socket. The server is http/'s; this
// holds the problem documents and kmsctl's client side.

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

/// kmsctl's side: one request to the daemon's socket. Errc::network when nothing listens.
[[nodiscard]] Result<ControlResponse> controlRequest(const std::string& socketPath, const std::string& method,
                                                     const std::string& target, const std::string& body = {});

}  // namespace kms::daemon
