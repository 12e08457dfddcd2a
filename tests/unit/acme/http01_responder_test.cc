// Http01Responder spoken to over raw TCP sockets, so the exact bytes on the wire are checked.

#include <array>
#include <atomic>
#include <cstring>
#include <memory>
#include <string>
#include <thread>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "acme/http01_responder.h"

namespace kms::acme {
namespace {

/// A blocking TCP client with bounded waits.
class RawClient {
 public:
  explicit RawClient(std::uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = fd_ >= 0 && ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  }
  ~RawClient() { ::close(fd_); }
  RawClient(const RawClient&) = delete;
  RawClient& operator=(const RawClient&) = delete;

  [[nodiscard]] bool connected() const { return connected_; }

  bool send(const std::string& data) {
    return ::write(fd_, data.data(), data.size()) == static_cast<ssize_t>(data.size());
  }

  /// Reads one response: the header block, then Content-Length bytes unless `head`.
  /// Empty when the server closed the connection or nothing came within 2 s.
  std::string response(bool head = false) {
    std::size_t end = std::string::npos;
    while ((end = buffer_.find("\r\n\r\n")) == std::string::npos) {
      if (!fill()) {
        return {};
      }
    }
    std::size_t total = end + 4;
    if (!head) {
      auto at = buffer_.find("Content-Length: ");
      if (at != std::string::npos && at < end) {
        total += std::stoul(buffer_.substr(at + 16));
      }
    }
    while (buffer_.size() < total) {
      if (!fill()) {
        return {};
      }
    }
    std::string out = buffer_.substr(0, total);
    buffer_.erase(0, total);
    return out;
  }

  /// True when the server closes the connection (EOF) within 2 s.
  bool closedByPeer() {
    while (fill()) {
    }
    return eof_;
  }

  [[nodiscard]] const std::string& leftover() const { return buffer_; }

 private:
  bool fill() {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, 2000) <= 0) {
      return false;
    }
    std::array<char, 4096> chunk{};
    ssize_t n = ::read(fd_, chunk.data(), chunk.size());
    if (n <= 0) {
      eof_ = true;
      return false;
    }
    buffer_.append(chunk.data(), static_cast<std::size_t>(n));
    return true;
  }

  int fd_ = -1;
  bool connected_ = false;
  bool eof_ = false;
  std::string buffer_;
};

std::string request(const std::string& method, const std::string& target, const std::string& extra = {}) {
  return method + " " + target + " HTTP/1.1\r\nHost: example.test\r\n" + extra + "\r\n";
}

class AcmeHttp01ResponderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto started = Http01Responder::start("127.0.0.1", 0);
    ASSERT_TRUE(started.has_value()) << started.error().toString();
    responder_ = std::move(started.value());
    ASSERT_NE(responder_->port(), 0);
  }

  std::unique_ptr<Http01Responder> responder_;
};

TEST_F(AcmeHttp01ResponderTest, ServesKeyAuthorizationAndCounts) {
  responder_->put("tok_EN-1", "tok_EN-1.thumb");
  RawClient client(responder_->port());
  ASSERT_TRUE(client.connected());
  ASSERT_TRUE(client.send(request("GET", "/.well-known/acme-challenge/tok_EN-1")));
  std::string response = client.response();
  EXPECT_TRUE(response.starts_with("HTTP/1.1 200 OK\r\n")) << response;
  EXPECT_NE(response.find("\r\nContent-Type: text/plain\r\n"), std::string::npos) << response;
  EXPECT_NE(response.find("\r\nContent-Length: 14\r\n"), std::string::npos) << response;
  EXPECT_TRUE(response.ends_with("\r\n\r\ntok_EN-1.thumb")) << response;
  EXPECT_EQ(responder_->served(), 1U);
}

TEST_F(AcmeHttp01ResponderTest, UnknownTokensAndOtherPathsAre404) {
  responder_->put("tok", "tok.thumb");
  RawClient client(responder_->port());
  ASSERT_TRUE(client.connected());
  for (const char* target : {"/.well-known/acme-challenge/other", "/.well-known/acme-challenge/", "/",
                             "/.well-known/acme-challenge/tok/extra", "/.well-known/acme-challenge/tok?x=1"}) {
    ASSERT_TRUE(client.send(request("GET", target)));
    std::string response = client.response();
    EXPECT_TRUE(response.starts_with("HTTP/1.1 404 Not Found\r\n")) << target << ": " << response;
  }
  EXPECT_EQ(responder_->served(), 0U);
}

TEST_F(AcmeHttp01ResponderTest, OtherMethodsAre405WithAllow) {
  responder_->put("tok", "tok.thumb");
  RawClient client(responder_->port());
  ASSERT_TRUE(client.connected());
  ASSERT_TRUE(client.send(request("POST", "/.well-known/acme-challenge/tok", "Content-Length: 2\r\n") + "{}"));
  std::string post = client.response();
  EXPECT_TRUE(post.starts_with("HTTP/1.1 405 Method Not Allowed\r\n")) << post;
  EXPECT_NE(post.find("\r\nAllow: GET, HEAD\r\n"), std::string::npos) << post;
  ASSERT_TRUE(client.send(request("DELETE", "/.well-known/acme-challenge/tok")));
  EXPECT_TRUE(client.response().starts_with("HTTP/1.1 405 ")) << post;
  EXPECT_EQ(responder_->served(), 0U);
}

TEST_F(AcmeHttp01ResponderTest, HeadSendsLengthWithoutBody) {
  responder_->put("tok", "tok.thumb");
  RawClient client(responder_->port());
  ASSERT_TRUE(client.connected());
  ASSERT_TRUE(client.send(request("HEAD", "/.well-known/acme-challenge/tok")));
  std::string head = client.response(true);
  EXPECT_TRUE(head.starts_with("HTTP/1.1 200 OK\r\n")) << head;
  EXPECT_NE(head.find("\r\nContent-Length: 9\r\n"), std::string::npos) << head;
  EXPECT_TRUE(head.ends_with("\r\n\r\n")) << head;
  // No body followed: the next response starts right away on the same connection.
  ASSERT_TRUE(client.send(request("GET", "/.well-known/acme-challenge/tok")));
  EXPECT_TRUE(client.response().ends_with("\r\n\r\ntok.thumb"));
  EXPECT_EQ(responder_->served(), 2U);
}

TEST_F(AcmeHttp01ResponderTest, KeepAliveAndPipelining) {
  responder_->put("a", "a.thumb");
  responder_->put("b", "b.thumb");
  RawClient client(responder_->port());
  ASSERT_TRUE(client.connected());
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(client.send(request("GET", "/.well-known/acme-challenge/a")));
    ASSERT_TRUE(client.response().ends_with("a.thumb")) << i;
  }
  // Two requests in one write are answered in order.
  ASSERT_TRUE(
      client.send(request("GET", "/.well-known/acme-challenge/b") + request("GET", "/.well-known/acme-challenge/a")));
  EXPECT_TRUE(client.response().ends_with("b.thumb"));
  EXPECT_TRUE(client.response().ends_with("a.thumb"));
  EXPECT_EQ(responder_->served(), 22U);
}

TEST_F(AcmeHttp01ResponderTest, ConnectionCloseIsHonoured) {
  responder_->put("tok", "tok.thumb");
  RawClient client(responder_->port());
  ASSERT_TRUE(client.connected());
  ASSERT_TRUE(client.send(request("GET", "/.well-known/acme-challenge/tok", "Connection: close\r\n")));
  std::string response = client.response();
  EXPECT_NE(response.find("\r\nConnection: close\r\n"), std::string::npos) << response;
  EXPECT_TRUE(client.closedByPeer());

  RawClient http10(responder_->port());
  ASSERT_TRUE(http10.send("GET /.well-known/acme-challenge/tok HTTP/1.0\r\n\r\n"));
  EXPECT_TRUE(http10.response().starts_with("HTTP/1.0 200 OK\r\n"));
  EXPECT_TRUE(http10.closedByPeer());
}

TEST_F(AcmeHttp01ResponderTest, PutReplacesAndRemoveStopsServing) {
  responder_->put("tok", "first");
  responder_->put("tok", "second");
  RawClient client(responder_->port());
  ASSERT_TRUE(client.connected());
  ASSERT_TRUE(client.send(request("GET", "/.well-known/acme-challenge/tok")));
  EXPECT_TRUE(client.response().ends_with("\r\n\r\nsecond"));
  responder_->remove("tok");
  responder_->remove("never-added");
  ASSERT_TRUE(client.send(request("GET", "/.well-known/acme-challenge/tok")));
  EXPECT_TRUE(client.response().starts_with("HTTP/1.1 404 "));
  EXPECT_EQ(responder_->served(), 1U);
}

TEST_F(AcmeHttp01ResponderTest, OversizedOrMalformedRequestsDropTheConnection) {
  RawClient huge(responder_->port());
  ASSERT_TRUE(huge.connected());
  ASSERT_TRUE(huge.send(request("GET", "/", "X-Pad: " + std::string(16384, 'p') + "\r\n")));
  EXPECT_TRUE(huge.closedByPeer());
  EXPECT_EQ(huge.leftover(), "");

  RawClient garbage(responder_->port());
  ASSERT_TRUE(garbage.connected());
  ASSERT_TRUE(garbage.send("\x01\x02 not http\r\n\r\n"));
  EXPECT_TRUE(garbage.closedByPeer());
}

TEST_F(AcmeHttp01ResponderTest, PutAndRemoveWhileServing) {
  // While another thread churns tokens t0..t49, a token that is never touched must always be
  // served with its own value and one that was never put must always be 404; a churned token
  // is either served with the value it was put with or 404, never anything else.
  responder_->put("stable", "stable.thumb");
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    for (int i = 0; !stop; ++i) {
      responder_->put("t" + std::to_string(i % 50), "t" + std::to_string(i % 50) + ".thumb");
      responder_->remove("t" + std::to_string((i + 25) % 50));
    }
  });
  RawClient client(responder_->port());
  ASSERT_TRUE(client.connected());
  int stableServed = 0;
  int neverPut404 = 0;
  int churnedAnswered = 0;
  for (int i = 0; i < 200; ++i) {
    const std::string churned = "t" + std::to_string(i % 50);
    ASSERT_TRUE(client.send(request("GET", "/.well-known/acme-challenge/" + churned)));
    std::string response = client.response();
    if ((response.starts_with("HTTP/1.1 200 ") && response.ends_with("\r\n\r\n" + churned + ".thumb")) ||
        response.starts_with("HTTP/1.1 404 ")) {
      ++churnedAnswered;
    } else {
      ADD_FAILURE() << churned << ": " << response;
    }
    ASSERT_TRUE(client.send(request("GET", "/.well-known/acme-challenge/stable")));
    response = client.response();
    stableServed += response.starts_with("HTTP/1.1 200 ") && response.ends_with("\r\n\r\nstable.thumb") ? 1 : 0;
    ASSERT_TRUE(client.send(request("GET", "/.well-known/acme-challenge/never")));
    neverPut404 += client.response().starts_with("HTTP/1.1 404 ") ? 1 : 0;
  }
  stop = true;
  writer.join();
  EXPECT_EQ(churnedAnswered, 200);
  EXPECT_EQ(stableServed, 200);
  EXPECT_EQ(neverPut404, 200);
}

TEST_F(AcmeHttp01ResponderTest, DestructionClosesOpenConnections) {
  // One kept-alive connection that has been answered (its session is waiting for the next
  // request) and one with half a request: destruction returns (a hang would hit the ctest
  // timeout) and closes both; the port no longer accepts.
  RawClient idle(responder_->port());
  ASSERT_TRUE(idle.connected());
  ASSERT_TRUE(idle.send(request("GET", "/.well-known/acme-challenge/none")));
  ASSERT_TRUE(idle.response().starts_with("HTTP/1.1 404 "));
  RawClient halfSent(responder_->port());
  ASSERT_TRUE(halfSent.connected());
  ASSERT_TRUE(halfSent.send("GET /.well-known/acme-"));
  std::uint16_t port = responder_->port();
  responder_.reset();
  EXPECT_TRUE(idle.closedByPeer());
  EXPECT_TRUE(halfSent.closedByPeer());
  EXPECT_EQ(idle.leftover(), "");
  EXPECT_EQ(halfSent.leftover(), "");
  RawClient late(port);
  EXPECT_FALSE(late.connected());
}

TEST(AcmeHttp01Responder, BindConflictNamesAddressAndReason) {
  auto first = Http01Responder::start("127.0.0.1", 0);
  ASSERT_TRUE(first.has_value()) << first.error().toString();
  std::uint16_t port = first.value()->port();
  auto second = Http01Responder::start("127.0.0.1", port);
  ASSERT_FALSE(second.has_value());
  const Error& error = second.error();
  EXPECT_EQ(error.code, Errc::io);
  EXPECT_EQ(error.toString(), "http-01 responder: cannot bind 127.0.0.1:" + std::to_string(port) +
                                  ": Address already in use (EADDRINUSE)");
  EXPECT_EQ(error.disposition, Disposition::retry);
}

TEST(AcmeHttp01Responder, ListensOnIpv6Loopback) {
  auto started = Http01Responder::start("::1", 0);
  if (!started.has_value() && started.error().nativeName == "EADDRNOTAVAIL") {
    GTEST_SKIP() << "no IPv6 loopback here: " << started.error().toString();
  }
  ASSERT_TRUE(started.has_value()) << started.error().toString();
  EXPECT_NE(started.value()->port(), 0);
}

}  // namespace
}  // namespace kms::acme
