// kmsctl's side of the control API, and its problem documents. The server side is
// http/'s server on a Unix socket.
#include "control_api.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

namespace kms::daemon {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using Local = asio::local::stream_protocol;

}  // namespace

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
                                       const std::string& target, const std::string& body) {
  asio::io_context io;
  Local::socket socket(io);
  beast::error_code ec;
  socket.connect(Local::endpoint(socketPath), ec);
  if (ec) {
    Error e;
    e.code = Errc::network;
    e.message = "kmsd is not running (cannot connect: " + ec.message() + ")";
    e.context = socketPath;
    return fail(e);
  }
  bhttp::request<bhttp::string_body> req(bhttp::string_to_verb(method), target, 11);
  req.set(bhttp::field::host, "kmsd");
  req.set(bhttp::field::content_type, "application/json");
  req.body() = body;
  req.prepare_payload();
  bhttp::write(socket, req, ec);
  if (ec) {
    return fail(Errc::network, "control API write failed: " + ec.message(), socketPath);
  }
  beast::flat_buffer buffer;
  bhttp::response_parser<bhttp::string_body> parser;
  parser.body_limit(64 * 1024 * 1024);
  bhttp::read(socket, buffer, parser, ec);
  if (ec) {
    return fail(Errc::network, "control API read failed: " + ec.message(), socketPath);
  }
  auto res = parser.release();
  ControlResponse r = jsonBody(static_cast<int>(res.result_int()), res.body());
  r.contentType = std::string(res[bhttp::field::content_type]);
  return r;
}

}  // namespace kms::daemon
