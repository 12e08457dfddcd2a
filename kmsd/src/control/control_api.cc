// kmsctl's side of the control API, and its problem documents. The server side is
// http/'s server on a Unix socket.
#include "control/control_api.h"

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
                                       const std::string& target, const std::string& body,
                                       ControlTimeouts timeouts) {
  asio::io_context io;
  Local::socket socket(io);
  bhttp::request<bhttp::string_body> req(bhttp::string_to_verb(method), target, 11);
  req.set(bhttp::field::host, "kmsd");
  req.set(bhttp::field::content_type, "application/json");
  req.body() = body;
  req.prepare_payload();
  beast::flat_buffer buffer;
  bhttp::response_parser<bhttp::string_body> parser;
  parser.body_limit(std::uint64_t{64} * 1024 * 1024);

  // Connect, then write and read, each phase within its time; a phase left unfinished
  // leaves the loop (and the socket is closed with it).
  enum class Phase { connecting, asking, done };
  Phase phase = Phase::connecting;
  beast::error_code failure;
  const char* failedAt = "";
  socket.async_connect(Local::endpoint(socketPath), [&](beast::error_code ec) {
    if (ec) {
      failure = ec;
      failedAt = "connect";
      phase = Phase::done;
      return;
    }
    phase = Phase::asking;
    bhttp::async_write(socket, req, [&](beast::error_code wec, std::size_t) {
      if (wec) {
        failure = wec;
        failedAt = "write";
        phase = Phase::done;
        return;
      }
      bhttp::async_read(socket, buffer, parser, [&](beast::error_code rec, std::size_t) {
        failure = rec;
        failedAt = "read";
        phase = Phase::done;
      });
    });
  });
  io.run_for(timeouts.connect);
  if (phase == Phase::connecting) {
    return fail(Errc::timeout,
                "kmsd did not accept a connection within " + std::to_string(timeouts.connect.count()) + " s",
                socketPath);
  }
  if (phase == Phase::asking) {
    io.restart();
    io.run_for(timeouts.answer);
  }
  if (phase != Phase::done) {
    return fail(Errc::timeout,
                "kmsd did not answer " + method + " " + target + " within " + std::to_string(timeouts.answer.count()) +
                    " s",
                socketPath);
  }
  if (failure) {
    Error e;
    e.code = Errc::network;
    e.context = socketPath;
    e.message = std::string(failedAt) == "connect" ? "kmsd is not running (cannot connect: " + failure.message() + ")"
                                                   : "control API " + std::string(failedAt) +
                                                         " failed: " + failure.message();
    return fail(e);
  }
  auto res = parser.release();
  ControlResponse r = jsonBody(static_cast<int>(res.result_int()), res.body());
  r.contentType = std::string(res[bhttp::field::content_type]);
  return r;
}

}  // namespace kms::daemon
