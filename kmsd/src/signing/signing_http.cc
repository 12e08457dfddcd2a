#include "signing/signing_http.h"

#include <algorithm>

#include "pki/passport.h"

namespace kms::daemon {
namespace {

http::ServerResponse atisResponse(int status, std::string body, const std::string& requestId) {
  http::ServerResponse r;
  r.status = status;
  r.contentType = "application/json";
  r.body = std::move(body);
  r.headers.emplace_back("X-RequestID", requestId);
  return r;
}

}  // namespace

std::string requestIdOf(const http::ServerRequest& request) {
  std::string id = request.header("X-RequestID").value_or("");
  const bool usable = !id.empty() && id.size() <= 128 &&
                      std::all_of(id.begin(), id.end(), [](char c) { return c > ' ' && c < 0x7F; });
  return usable ? id : pki::randomUuid();
}

http::ServerResponse atisErrorResponse(const AtisError& error, const std::string& requestId) {
  http::ServerResponse r = atisResponse(error.status, error.body(), requestId);
  if (error.status == 401) {
    r.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"kmsd\"");
  }
  if (error.status == 429) {
    r.headers.emplace_back("Retry-After", "1");
  }
  return r;
}

http::ServerResponse signedResponse(const std::string& identity, const std::string& requestId) {
  return atisResponse(200, signingResponseBody(identity), requestId);
}

}  // namespace kms::daemon
