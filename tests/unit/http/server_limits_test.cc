// The listeners' connection caps and header timeout, against the real server on real
// sockets: slow clients (slowloris) from one address and from many, on TCP and on a Unix
// socket. No assertion depends on how fast the machine is: a cap closes a connection long
// before the (long) header timeout could, and the timeout is awaited without an upper bound
// tighter than the test's patience.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <string>
#include <vector>

#include "http/server.h"
#include "sandbox.h"

namespace kms::http {
namespace {

using namespace std::chrono_literals;

/// A raw client socket, closed on destruction.
class Client {
 public:
  explicit Client(int fd) : fd_(fd) {}
  ~Client() {
    if (fd_ >= 0) {
      ::close(fd_);
    }
  }
  Client(Client&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;
  Client& operator=(Client&&) = delete;

  static Client tcp(const char* from, std::uint16_t port) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in local{};
    local.sin_family = AF_INET;
    ::inet_pton(AF_INET, from, &local.sin_addr);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&local), sizeof local) != 0) {
      ADD_FAILURE() << "bind " << from << ": " << std::strerror(errno);
    }
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(port);
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof to) != 0) {
      ADD_FAILURE() << "connect: " << std::strerror(errno);
    }
    return Client(fd);
  }
  static Client local(const std::string& path) {
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un to{};
    to.sun_family = AF_UNIX;
    std::strncpy(to.sun_path, path.c_str(), sizeof to.sun_path - 1);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof to) != 0) {
      ADD_FAILURE() << "connect " << path << ": " << std::strerror(errno);
    }
    return Client(fd);
  }

  void send(const std::string& text) const { (void)::send(fd_, text.data(), text.size(), MSG_NOSIGNAL); }
  /// Whether the server closed the connection (EOF or reset) within `limit`.
  [[nodiscard]] bool closedWithin(std::chrono::milliseconds limit) const {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(limit.count())) != 1) {
      return false;
    }
    char c = 0;
    return ::recv(fd_, &c, 1, MSG_DONTWAIT) <= 0;
  }
  /// The answer's first line to a full request, "" when the connection closed instead.
  [[nodiscard]] std::string ask() const {
    send("GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    std::string out;
    char buf[512];
    for (;;) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 30000) != 1) {
        break;
      }
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) {
        break;
      }
      out.append(buf, static_cast<std::size_t>(n));
    }
    return out.substr(0, out.find("\r\n"));
  }

 private:
  int fd_;
};

/// A partial request: the headers never end.
const std::string kSlow = "GET /x HTTP/1.1\r\nHost: a\r\nX-Slow: ";

class ServerLimits : public ::testing::Test {
 protected:
  void start(ConnectionLimits limits, bool unixSocket = false) {
    ServerOptions o;
    o.limits = limits;
    o.readTimeout = 120s;
    auto handler = [](const ServerRequest&, const Reply& reply) { reply(textResponse(200, "ok\n")); };
    auto s = unixSocket ? Server::listenUnix(thread_.io(), sandbox_.file("s.sock"), 0600, handler, o)
                        : Server::listenTcp(thread_.io(), "127.0.0.1", 0, handler, o);
    ASSERT_TRUE(s.has_value()) << s.error().toString();
    server_ = std::move(*s);
    thread_.start();
  }
  void TearDown() override {
    thread_.stop();
    server_.reset();
  }
  Client tcp(const char* from) { return Client::tcp(from, server_->port()); }

  test::Sandbox sandbox_;
  ServerThread thread_;
  std::unique_ptr<Server> server_;
};

TEST_F(ServerLimits, OnePeerGetsAtMostItsShareOthersAreStillAnswered) {
  start({.maxConnections = 64, .maxPerPeer = 4, .headerTimeout = 600s});
  std::vector<Client> slow;
  for (int i = 0; i < 4; ++i) {
    slow.push_back(tcp("127.0.0.5"));
    slow.back().send(kSlow);
  }
  // The fifth from the same address is closed at once (the header timeout is ten minutes).
  Client fifth = tcp("127.0.0.5");
  EXPECT_TRUE(fifth.closedWithin(20s));
  for (const auto& c : slow) {
    EXPECT_FALSE(c.closedWithin(10ms));  // still held open, waiting for headers
  }
  // Another address is answered.
  EXPECT_EQ(tcp("127.0.0.6").ask(), "HTTP/1.1 200 OK");
  // A slot given back is usable again.
  slow.pop_back();
  std::string answer;
  for (int i = 0; i < 200 && answer.empty(); ++i) {  // the close reaches the server's loop
    answer = tcp("127.0.0.5").ask();
  }
  EXPECT_EQ(answer, "HTTP/1.1 200 OK");
}

TEST_F(ServerLimits, ManyAddressesFillTheListenerCapAndNoMore) {
  start({.maxConnections = 20, .maxPerPeer = 16, .headerTimeout = 600s});
  std::vector<Client> slow;
  for (int i = 0; i < 20; ++i) {
    const std::string from = "127.0.1." + std::to_string(1 + i % 10);
    slow.push_back(tcp(from.c_str()));
    slow.back().send(kSlow);
  }
  for (const char* from : {"127.0.2.1", "127.0.2.2", "127.0.2.3"}) {
    Client over = tcp(from);
    EXPECT_TRUE(over.closedWithin(20s)) << from;
  }
  slow.clear();
  std::string answer;
  for (int i = 0; i < 200 && answer.empty(); ++i) {
    answer = tcp("127.0.2.4").ask();
  }
  EXPECT_EQ(answer, "HTTP/1.1 200 OK");
}

TEST_F(ServerLimits, HeadersThatDoNotArriveInTimeCloseTheConnection) {
  start({.maxConnections = 64, .maxPerPeer = 16, .headerTimeout = 1s});
  Client slow = tcp("127.0.0.7");
  slow.send(kSlow);
  Client silent = tcp("127.0.0.7");
  EXPECT_TRUE(slow.closedWithin(60s));
  EXPECT_TRUE(silent.closedWithin(60s));
  EXPECT_EQ(tcp("127.0.0.7").ask(), "HTTP/1.1 200 OK");  // a prompt client is answered
}

TEST_F(ServerLimits, TheUnixSocketListenerHasItsCapAndHeaderTimeoutToo) {
  start({.maxConnections = 8, .maxPerPeer = 1, .headerTimeout = 2s}, true);  // no per-peer cap on a Unix socket
  std::vector<Client> slow;
  for (int i = 0; i < 8; ++i) {
    slow.push_back(Client::local(sandbox_.file("s.sock")));
    slow.back().send(kSlow);
  }
  Client over = Client::local(sandbox_.file("s.sock"));
  EXPECT_TRUE(over.closedWithin(60s));
  // The header timeout gives the slots back: a prompt client is then answered.
  for (const auto& c : slow) {
    EXPECT_TRUE(c.closedWithin(60s));
  }
  std::string answer;
  for (int i = 0; i < 200 && answer.empty(); ++i) {
    answer = Client::local(sandbox_.file("s.sock")).ask();
  }
  EXPECT_EQ(answer, "HTTP/1.1 200 OK");
}

}  // namespace
}  // namespace kms::http
