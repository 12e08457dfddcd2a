#pragma once
// The HTTP side of the ATIS-1000082 routes, shared by the control socket and the TCP
// listener: X-RequestID taken or made up, and the answers in ATIS-1000082's bodies.

#include <string>

#include "http/server.h"
#include "signing/signing_request.h"

namespace kms::daemon {

/// The request's X-RequestID when it is 1..128 printable ASCII characters (echoing anything
/// else would be header injection), else a new UUID.
[[nodiscard]] std::string requestIdOf(const http::ServerRequest& request);

/// The error as ATIS-1000082's body with its status; 401 carries WWW-Authenticate.
[[nodiscard]] http::ServerResponse atisErrorResponse(const AtisError& error, const std::string& requestId);
/// 200 with {"signingResponse":{"identity":…}}.
[[nodiscard]] http::ServerResponse signedResponse(const std::string& identity, const std::string& requestId);

}  // namespace kms::daemon
