// kmsctl's side of the control API (http/'s transport on a Unix socket), and its problem
// documents. The server side is http/'s server.
#include "control/control_api.h"

#include <nlohmann/json.hpp>

#include "http/transport.h"

namespace kms::daemon {

ControlResponse jsonBody(int status, std::string body) {
  ControlResponse r;
  r.status = status;
  r.contentType = "application/json";
  r.body = std::move(body);
  return r;
}

ControlResponse problem(int status, const std::string& title, const std::string& detail) {
  nlohmann::json j{{"type", "about:blank"}, {"title", title}, {"status", status}, {"detail", detail}};
  ControlResponse r = jsonBody(status, j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  r.contentType = "application/problem+json";
  return r;
}

Result<ControlResponse> controlRequest(const std::string& socketPath, const std::string& method,
                                       const std::string& target, const std::string& body,
                                       ControlTimeouts timeouts) {
  http::TransportOptions options;
  options.unixSocket = socketPath;
  options.connectTimeout = timeouts.connect;
  options.requestTimeout = timeouts.connect + timeouts.answer;
  options.maxBodyBytes = std::size_t{256} * 1024 * 1024;  // the status of 100,000 certificates is ~30 MB
  options.userAgent = "kmsctl";
  auto transport = http::makeCurlTransport(options);
  if (!transport) {
    return fail(transport.error());
  }
  http::HttpRequest req;
  req.method = method;
  req.url = "http://kmsd" + target;
  req.body = body;
  if (!body.empty()) {
    req.headers.emplace_back("Content-Type", "application/json");
  }
  auto answer = (*transport)->send(req);
  if (!answer) {
    Error e = answer.error();
    e.context = socketPath;
    if (e.code == Errc::timeout) {
      e.message = "kmsd did not answer " + method + " " + target + " within " +
                  std::to_string((timeouts.connect + timeouts.answer).count()) + " s";
    } else if (e.code == Errc::network) {
      e.message = "kmsd is not running (cannot connect: " + e.message + ")";
    }
    return fail(e);
  }
  ControlResponse r = jsonBody(static_cast<int>(answer->status), std::move(answer->body));
  r.contentType = answer->header("content-type").value_or("");
  return r;
}

}  // namespace kms::daemon
