// HttpsServer on Boost.Beast. All Beast/Asio templates of kms-lab stay in this file.
//
// Model: the main thread accepts; each connection gets a detached thread doing synchronous
// TLS + HTTP/1.1 with keep-alive. A receive timeout on the socket ends idle connections.
// Simple and good enough for a test lab with a handful of clients.

#include "https_server.h"

#include <sys/socket.h>
#include <sys/time.h>

#include <cctype>
#include <iostream>
#include <thread>
#include <utility>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

namespace kms::lab {

namespace {

namespace asio = boost::asio;
namespace ssl = asio::ssl;
namespace beast = boost::beast;
namespace http = beast::http;
using Tcp = asio::ip::tcp;

constexpr int kIdleTimeoutSeconds = 60;
constexpr std::uint64_t kBodyLimit = 1 << 20;

void setReceiveTimeout(Tcp::socket& socket) {
  timeval tv{};
  tv.tv_sec = kIdleTimeoutSeconds;
  ::setsockopt(socket.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(socket.native_handle(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return out;
}

LabRequest toLabRequest(const http::request<http::string_body>& req, const std::string& remote) {
  LabRequest out;
  out.method = std::string(req.method_string());
  std::string target(req.target());
  auto q = target.find('?');
  out.path = target.substr(0, q);
  out.query = q == std::string::npos ? "" : target.substr(q + 1);
  for (const auto& field : req) {
    out.headers[lower(std::string(field.name_string()))] = std::string(field.value());
  }
  out.body = req.body();
  out.remoteAddress = remote;
  return out;
}

void serveConnection(Tcp::socket socket, ssl::context& tls, const RequestHandler& handler) {
  std::string remote;
  try {
    remote = socket.remote_endpoint().address().to_string();
    setReceiveTimeout(socket);
    ssl::stream<Tcp::socket> stream(std::move(socket), tls);
    stream.handshake(ssl::stream_base::server);
    beast::flat_buffer buffer;
    for (;;) {
      http::request_parser<http::string_body> parser;
      parser.body_limit(kBodyLimit);
      beast::error_code ec;
      http::read(stream, buffer, parser, ec);
      if (ec == http::error::end_of_stream || ec == asio::ssl::error::stream_truncated || ec == asio::error::eof) {
        break;
      }
      if (ec) {
        if (ec != asio::error::would_block && ec != asio::error::timed_out && ec != asio::error::connection_reset) {
          std::cerr << "kms-lab: " << remote << ": read: " << ec.message() << "\n";
        }
        break;
      }
      const auto& req = parser.get();
      LabReply reply = handler(toLabRequest(req, remote));
      http::response<http::string_body> res{static_cast<http::status>(reply.status), req.version()};
      res.set(http::field::server, "kms-lab");
      for (const auto& [name, value] : reply.headers) {
        res.insert(name, value);
      }
      bool head = req.method() == http::verb::head;
      std::size_t length = reply.body.size();
      if (!head) {
        res.body() = std::move(reply.body);
      }
      res.keep_alive(req.keep_alive());
      if (reply.status != 204 && reply.status != 304) {
        res.content_length(length);
      }
      if (head) {
        http::response_serializer<http::string_body> sr{res};
        sr.split(true);
        http::write_header(stream, sr);
      } else {
        http::write(stream, res);
      }
      if (!req.keep_alive()) {
        break;
      }
    }
    beast::error_code ignored;
    stream.shutdown(ignored);
  } catch (const std::exception& e) {
    std::cerr << "kms-lab: connection " << remote << ": " << e.what() << "\n";
  }
}

}  // namespace

struct HttpsServer::Impl {
  asio::io_context io;
  ssl::context tls{ssl::context::tls_server};
  Tcp::acceptor acceptor{io};
  RequestHandler handler;
};

HttpsServer::HttpsServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
HttpsServer::~HttpsServer() = default;

Result<std::unique_ptr<HttpsServer>> HttpsServer::create(const std::string& certChainFile, const std::string& keyFile,
                                                         std::uint16_t port, RequestHandler handler) {
  auto impl = std::make_unique<Impl>();
  impl->handler = std::move(handler);
  beast::error_code ec;
  impl->tls.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                        ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
  impl->tls.use_certificate_chain_file(certChainFile, ec);
  if (!ec) {
    impl->tls.use_private_key_file(keyFile, ssl::context::pem, ec);
  }
  if (ec) {
    return fail(Errc::crypto, "cannot load the TLS certificate or key: " + ec.message(), certChainFile);
  }
  Tcp::endpoint endpoint(asio::ip::make_address_v4("127.0.0.1"), port);
  impl->acceptor.open(endpoint.protocol(), ec);
  if (!ec) {
    impl->acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  }
  if (!ec) {
    impl->acceptor.bind(endpoint, ec);
  }
  if (!ec) {
    impl->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  }
  if (ec) {
    return fail(Errc::io, "cannot listen on 127.0.0.1:" + std::to_string(port) + ": " + ec.message());
  }
  return std::unique_ptr<HttpsServer>(new HttpsServer(std::move(impl)));
}

std::uint16_t HttpsServer::port() const {
  return impl_->acceptor.local_endpoint().port();
}

void HttpsServer::run() {
  for (;;) {
    beast::error_code ec;
    Tcp::socket socket(impl_->io);
    impl_->acceptor.accept(socket, ec);
    if (ec) {
      std::cerr << "kms-lab: accept: " << ec.message() << "\n";
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      continue;
    }
    std::thread([this, s = std::move(socket)]() mutable {
      serveConnection(std::move(s), impl_->tls, impl_->handler);
    }).detach();
  }
}

}  // namespace kms::lab
