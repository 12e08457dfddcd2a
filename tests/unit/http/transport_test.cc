// http::Transport (libcurl) against real servers: the http-01 responder, raw TCP listeners in
// this file, and `openssl s_server` for TLS.

#include <array>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "acme/http01_responder.h"
#include "http/transport.h"
#include "sandbox.h"

extern char** environ;

namespace kms::http {
using acme::Http01Responder;
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

/// A listening socket on 127.0.0.1 with an OS-chosen port; closed in the destructor.
class ListenSocket {
 public:
  explicit ListenSocket(bool listening = true) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), len) != 0 || (listening && ::listen(fd_, 64) != 0) ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      throw std::runtime_error(std::string("test listener: ") + std::strerror(errno));
    }
    port_ = ntohs(addr.sin_port);
  }
  ~ListenSocket() { ::close(fd_); }
  ListenSocket(const ListenSocket&) = delete;
  ListenSocket& operator=(const ListenSocket&) = delete;

  [[nodiscard]] int fd() const { return fd_; }
  [[nodiscard]] std::uint16_t port() const { return port_; }

 private:
  int fd_ = -1;
  std::uint16_t port_ = 0;
};

/// A raw TCP server on one thread. Silent: accepts and never answers. Canned: answers each
/// request (headers only) with `response`, keeping the connection open. Counts accepted
/// connections.
class RawServer {
 public:
  explicit RawServer(std::string response = {}) : response_(std::move(response)) {
    thread_ = std::thread([this] { loop(); });
  }
  ~RawServer() {
    stop_ = true;
    thread_.join();
  }
  RawServer(const RawServer&) = delete;
  RawServer& operator=(const RawServer&) = delete;

  [[nodiscard]] std::uint16_t port() const { return listener_.port(); }
  [[nodiscard]] int accepted() const { return accepted_.load(); }
  [[nodiscard]] std::string url(const std::string& path = "/") const {
    return "http://127.0.0.1:" + std::to_string(port()) + path;
  }

 private:
  struct Client {
    int fd;
    std::string pending;
  };

  void loop() {
    std::vector<Client> clients;
    while (!stop_) {
      std::vector<pollfd> fds{{listener_.fd(), POLLIN, 0}};
      for (const auto& c : clients) {
        fds.push_back({c.fd, POLLIN, 0});
      }
      if (::poll(fds.data(), fds.size(), 20) <= 0) {
        continue;
      }
      if ((fds[0].revents & POLLIN) != 0) {
        if (int fd = ::accept4(listener_.fd(), nullptr, nullptr, SOCK_CLOEXEC); fd >= 0) {
          clients.push_back({fd, {}});
          ++accepted_;
        }
      }
      for (std::size_t i = 1; i < fds.size(); ++i) {
        if ((fds[i].revents & (POLLIN | POLLHUP | POLLERR)) != 0 && !serve(clients[i - 1])) {
          ::close(clients[i - 1].fd);
          clients[i - 1].fd = -1;
        }
      }
      std::erase_if(clients, [](const Client& c) { return c.fd < 0; });
    }
    for (const auto& c : clients) {
      ::close(c.fd);
    }
  }

  /// Reads what is there; answers each complete request. False when the peer closed.
  bool serve(Client& client) {
    std::array<char, 4096> buf{};
    ssize_t n = ::read(client.fd, buf.data(), buf.size());
    if (n <= 0) {
      return false;
    }
    if (response_.empty()) {
      return true;  // silent
    }
    client.pending.append(buf.data(), static_cast<std::size_t>(n));
    for (auto end = client.pending.find("\r\n\r\n"); end != std::string::npos; end = client.pending.find("\r\n\r\n")) {
      client.pending.erase(0, end + 4);
      if (::write(client.fd, response_.data(), response_.size()) != static_cast<ssize_t>(response_.size())) {
        return false;
      }
    }
    return true;
  }

  ListenSocket listener_;
  std::string response_;
  std::atomic<bool> stop_{false};
  std::atomic<int> accepted_{0};
  std::thread thread_;
};

std::unique_ptr<Transport> makeTransport(const http::TransportOptions& options = {}) {
  auto transport = http::makeCurlTransport(options);
  if (!transport.has_value()) {
    ADD_FAILURE() << transport.error().toString();
    return nullptr;
  }
  return std::move(transport.value());
}

HttpRequest get(const std::string& url, const std::string& method = "GET") {
  HttpRequest request;
  request.method = method;
  request.url = url;
  return request;
}

class AcmeTransportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto started = Http01Responder::start("127.0.0.1", 0);
    ASSERT_TRUE(started.has_value()) << started.error().toString();
    responder_ = std::move(started.value());
    responder_->put("tok", "tok.thumbprint");
  }

  [[nodiscard]] std::string url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(responder_->port()) + path;
  }

  std::unique_ptr<Http01Responder> responder_;
};

TEST_F(AcmeTransportTest, GetReturnsStatusBodyAndLowerCasedHeaders) {
  auto transport = makeTransport();
  ASSERT_NE(transport, nullptr);
  auto response = transport->send(get(url("/.well-known/acme-challenge/tok")));
  ASSERT_TRUE(response.has_value()) << response.error().toString();
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->body, "tok.thumbprint");
  EXPECT_EQ(response->header("Content-Type"), "text/plain");
  EXPECT_EQ(response->header("content-length"), "14");
  for (const auto& [name, value] : response->headers) {
    for (char c : name) {
      EXPECT_FALSE(c >= 'A' && c <= 'Z') << name;
    }
  }
}

TEST_F(AcmeTransportTest, AnyHttpStatusIsASuccessfulSend) {
  auto transport = makeTransport();
  ASSERT_NE(transport, nullptr);
  auto missing = transport->send(get(url("/.well-known/acme-challenge/other")));
  ASSERT_TRUE(missing.has_value()) << missing.error().toString();
  EXPECT_EQ(missing->status, 404);

  HttpRequest post = get(url("/.well-known/acme-challenge/tok"), "POST");
  post.headers = {{"Content-Type", "application/jose+json"}};
  post.body = "{}";
  auto rejected = transport->send(post);
  ASSERT_TRUE(rejected.has_value()) << rejected.error().toString();
  EXPECT_EQ(rejected->status, 405);
  EXPECT_EQ(rejected->header("allow"), "GET, HEAD");
}

TEST_F(AcmeTransportTest, HeadReturnsHeadersWithoutBody) {
  auto transport = makeTransport();
  ASSERT_NE(transport, nullptr);
  auto response = transport->send(get(url("/.well-known/acme-challenge/tok"), "HEAD"));
  ASSERT_TRUE(response.has_value()) << response.error().toString();
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->body, "");
  EXPECT_EQ(response->header("content-length"), "14");
}

TEST_F(AcmeTransportTest, ConcurrentSendsFromEightThreads) {
  auto transport = makeTransport();
  ASSERT_NE(transport, nullptr);
  constexpr int kThreads = 8;
  constexpr int kPerThread = 25;
  std::atomic<int> good{0};
  std::vector<std::thread> threads;
  threads.reserve(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kPerThread; ++i) {
        auto response = transport->send(get(url("/.well-known/acme-challenge/tok")));
        if (response.has_value() && response->status == 200 && response->body == "tok.thumbprint") {
          ++good;
        }
      }
    });
  }
  for (auto& thread : threads) {
    thread.join();
  }
  EXPECT_EQ(good.load(), kThreads * kPerThread);
  EXPECT_EQ(responder_->served(), static_cast<std::uint64_t>(kThreads * kPerThread));
}

TEST_F(AcmeTransportTest, BodyOverLimitIsProtocolErrorNotRetryable) {
  responder_->put("big", std::string(4096, 'k'));
  responder_->put("exact", std::string(1000, 'k'));
  http::TransportOptions options;
  options.maxBodyBytes = 1000;
  auto transport = makeTransport(options);
  ASSERT_NE(transport, nullptr);
  std::string bigUrl = url("/.well-known/acme-challenge/big");
  auto response = transport->send(get(bigUrl));
  ASSERT_FALSE(response.has_value());
  EXPECT_EQ(response.error().code, Errc::protocol);
  EXPECT_EQ(response.error().disposition, Disposition::retry);
  EXPECT_EQ(response.error().message, "response body exceeds the limit of 1000 bytes (GET " + bigUrl + ")");
  EXPECT_EQ(response.error().context, bigUrl);

  auto exact = transport->send(get(url("/.well-known/acme-challenge/exact")));
  ASSERT_TRUE(exact.has_value()) << exact.error().toString();
  EXPECT_EQ(exact->body.size(), 1000U);
}

TEST(AcmeTransport, RepeatedHeadersKeepEveryValueInOrder) {
  RawServer server(
      "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nLink: <https://ca/dir>;rel=\"index\"\r\n"
      "X-Mixed-Case:  padded value \r\nLINK: <https://ca/alt>;rel=\"alternate\"\r\n\r\n");
  auto transport = makeTransport();
  ASSERT_NE(transport, nullptr);
  auto response = transport->send(get(server.url()));
  ASSERT_TRUE(response.has_value()) << response.error().toString();
  EXPECT_EQ(response->headerValues("link"),
            (std::vector<std::string>{"<https://ca/dir>;rel=\"index\"", "<https://ca/alt>;rel=\"alternate\""}));
  EXPECT_EQ(response->header("x-mixed-case"), "padded value");
  EXPECT_EQ(response->header("absent"), std::nullopt);
}

TEST(AcmeTransport, KeepAliveReusesConnections) {
  RawServer server("HTTP/1.1 204 No Content\r\n\r\n");
  auto transport = makeTransport();
  ASSERT_NE(transport, nullptr);
  for (int i = 0; i < 50; ++i) {
    auto response = transport->send(get(server.url()));
    ASSERT_TRUE(response.has_value()) << response.error().toString();
    ASSERT_EQ(response->status, 204);
  }
  EXPECT_EQ(server.accepted(), 1);

  // Threads borrow pooled handles: at most one connection per concurrent sender.
  std::vector<std::thread> threads;
  threads.reserve(4);
  std::atomic<int> good{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 25; ++i) {
        if (auto r = transport->send(get(server.url())); r.has_value() && r->status == 204) {
          ++good;
        }
      }
    });
  }
  for (auto& thread : threads) {
    thread.join();
  }
  EXPECT_EQ(good.load(), 100);
  EXPECT_LE(server.accepted(), 4);
}

TEST(AcmeTransport, RedirectIsReturnedNotFollowed) {
  RawServer server("HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\nContent-Length: 0\r\n\r\n");
  auto transport = makeTransport();
  ASSERT_NE(transport, nullptr);
  auto response = transport->send(get(server.url()));
  ASSERT_TRUE(response.has_value()) << response.error().toString();
  EXPECT_EQ(response->status, 302);
  EXPECT_EQ(response->header("location"), "/elsewhere");
}

TEST(AcmeTransport, ConnectionRefusedIsRetryableNetworkError) {
  std::uint16_t port = 0;
  {
    ListenSocket bound(false);  // bound, never listening: connects are refused
    port = bound.port();
  }
  std::string url = "http://127.0.0.1:" + std::to_string(port) + "/directory";
  auto transport = makeTransport();
  ASSERT_NE(transport, nullptr);
  auto response = transport->send(get(url));
  ASSERT_FALSE(response.has_value());
  const Error& error = response.error();
  EXPECT_EQ(error.code, Errc::network);
  EXPECT_EQ(error.disposition, Disposition::retry);
  EXPECT_EQ(error.context, url);
  EXPECT_EQ(error.nativeName, "CURLE_COULDNT_CONNECT");
  EXPECT_EQ(error.native, 7);
  EXPECT_TRUE(error.message.starts_with("GET failed: Failed to connect to 127.0.0.1 port " + std::to_string(port)))
      << error.message;
}

TEST(AcmeTransport, SilentServerTimesOutRetryable) {
  RawServer silent;
  http::TransportOptions options;
  options.requestTimeout = 400ms;
  auto transport = makeTransport(options);
  ASSERT_NE(transport, nullptr);
  auto started = Clock::now();
  auto response = transport->send(get(silent.url("/new-nonce"), "HEAD"));
  auto elapsed = Clock::now() - started;
  ASSERT_FALSE(response.has_value());
  EXPECT_EQ(response.error().code, Errc::timeout);
  EXPECT_EQ(response.error().disposition, Disposition::retry);
  EXPECT_EQ(response.error().nativeName, "CURLE_OPERATION_TIMEDOUT");
  EXPECT_EQ(response.error().context, silent.url("/new-nonce"));
  // Not before the timeout (a lower bound cannot race); how soon after is a speed question.
  EXPECT_GE(elapsed, 350ms);
}

TEST(AcmeTransport, RejectsBadRequestsAndOptions) {
  auto transport = makeTransport();
  ASSERT_NE(transport, nullptr);
  auto put = transport->send(get("http://127.0.0.1:1/", "GET /x HTTP/1.1\r\nX: y"));
  ASSERT_FALSE(put.has_value());
  EXPECT_EQ(put.error().code, Errc::invalidArgument);
  EXPECT_EQ(put.error().message, "unsupported HTTP method \"GET /x HTTP/1.1\r\nX: y\"");
  EXPECT_FALSE(transport->send(get("http://127.0.0.1:1/", "get")).has_value());

  HttpRequest injected = get("http://127.0.0.1:1/");
  injected.headers = {{"X-Evil", "a\r\nHost: other"}};
  auto bad = transport->send(injected);
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().code, Errc::invalidArgument);

  auto ftp = transport->send(get("ftp://127.0.0.1/"));
  ASSERT_FALSE(ftp.has_value());
  EXPECT_EQ(ftp.error().nativeName, "CURLE_UNSUPPORTED_PROTOCOL");
  EXPECT_EQ(ftp.error().disposition, Disposition::retry);

  http::TransportOptions missing;
  missing.caBundle = "/nonexistent/ca.pem";
  auto noBundle = http::makeCurlTransport(missing);
  ASSERT_FALSE(noBundle.has_value());
  EXPECT_EQ(noBundle.error().code, Errc::config);
  EXPECT_EQ(noBundle.error().toString(), "/nonexistent/ca.pem: cannot read CA bundle: No such file or directory");
}

// ---------------------------------------------------------------------------------------------
// TLS against `openssl s_server -www` with a CA and a leaf for 127.0.0.1 made in a sandbox.

/// Runs `openssl s_server` on 127.0.0.1 (port chosen by the OS, read from its "ACCEPT" line).
class TlsServer {
 public:
  explicit TlsServer(const test::Sandbox& box) {
    std::string log = box.file("s_server.log");
    std::string cert = box.file("leaf.pem");
    std::string key = box.file("leaf.key");
    std::vector<std::string> args{"openssl", "s_server", "-accept", "127.0.0.1:0", "-cert", cert, "-key", key, "-www"};
    std::vector<char*> argv;
    argv.reserve(args.size() + 1);
    for (auto& arg : args) {
      argv.push_back(arg.data());
    }
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
    posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    int rc = posix_spawnp(&pid_, "openssl", &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) {
      throw std::runtime_error(std::string("posix_spawnp openssl: ") + std::strerror(rc));
    }
    auto deadline = Clock::now() + 3s;
    while (port_ == 0 && Clock::now() < deadline) {
      std::ifstream in(log);
      std::string line;
      while (std::getline(in, line)) {
        if (auto colon = line.rfind(':'); line.starts_with("ACCEPT ") && colon != std::string::npos) {
          port_ = static_cast<std::uint16_t>(std::stoi(line.substr(colon + 1)));
        }
      }
      std::this_thread::sleep_for(10ms);
    }
    if (port_ == 0) {
      stop();
      throw std::runtime_error("openssl s_server did not start: " + test::readFile(log));
    }
  }
  ~TlsServer() { stop(); }
  TlsServer(const TlsServer&) = delete;
  TlsServer& operator=(const TlsServer&) = delete;

  [[nodiscard]] std::string url() const { return "https://127.0.0.1:" + std::to_string(port_) + "/"; }

 private:
  void stop() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      ::waitpid(pid_, nullptr, 0);
      pid_ = -1;
    }
  }

  pid_t pid_ = -1;
  std::uint16_t port_ = 0;
};

class AcmeTransportTlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    box_ = new test::Sandbox();
    box_->write("ca.cnf",
                "[req]\ndistinguished_name=dn\nx509_extensions=v3ca\nprompt=no\n[dn]\nCN=kms transport test CA\n"
                "[v3ca]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n"
                "subjectKeyIdentifier=hash\n");
    box_->write("leaf.cnf", "[req]\ndistinguished_name=dn\nprompt=no\n[dn]\nCN=127.0.0.1\n");
    box_->write("leaf.ext",
                "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                "extendedKeyUsage=serverAuth\nauthorityKeyIdentifier=keyid\n");
    std::string dir = box_->path();
    std::string newKey = " -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
    std::string output;
    // Parenthesised so runCommand's 2>&1 captures every step.
    int rc = test::runCommand("(cd " + dir + " && openssl req -x509 -config ca.cnf" + newKey +
                                  " -keyout ca.key -out ca.pem -days 2 && openssl req -new -config leaf.cnf" + newKey +
                                  " -keyout leaf.key -out leaf.csr && openssl x509 -req -in leaf.csr -CA ca.pem"
                                  " -CAkey ca.key -set_serial 2 -days 2 -extfile leaf.ext -out leaf.pem)",
                              &output);
    ASSERT_EQ(rc, 0) << output;
  }

  static void TearDownTestSuite() {
    delete box_;
    box_ = nullptr;
  }

  static test::Sandbox* box_;
};

test::Sandbox* AcmeTransportTlsTest::box_ = nullptr;

TEST_F(AcmeTransportTlsTest, CaBundleAddsTrust) {
  TlsServer server(*box_);
  http::TransportOptions options;
  options.caBundle = box_->file("ca.pem");
  auto transport = makeTransport(options);
  ASSERT_NE(transport, nullptr);
  for (int i = 0; i < 3; ++i) {  // s_server -www closes each connection: new handshakes
    auto response = transport->send(get(server.url()));
    ASSERT_TRUE(response.has_value()) << response.error().toString();
    EXPECT_EQ(response->status, 200);
    EXPECT_NE(response->body.find("<HTML>"), std::string::npos);
  }
}

TEST_F(AcmeTransportTlsTest, CaBundleAsInlinePem) {
  TlsServer server(*box_);
  http::TransportOptions options;
  options.caBundle = test::readFile(box_->file("ca.pem"));
  auto transport = makeTransport(options);
  ASSERT_NE(transport, nullptr);
  auto response = transport->send(get(server.url()));
  ASSERT_TRUE(response.has_value()) << response.error().toString();
  EXPECT_EQ(response->status, 200);
}

TEST_F(AcmeTransportTlsTest, UnknownIssuerFailsNotRetryable) {
  TlsServer server(*box_);
  auto transport = makeTransport();
  ASSERT_NE(transport, nullptr);
  auto response = transport->send(get(server.url()));
  ASSERT_FALSE(response.has_value());
  const Error& error = response.error();
  EXPECT_EQ(error.code, Errc::network);
  EXPECT_EQ(error.disposition, Disposition::retry);
  EXPECT_EQ(error.nativeName, "CURLE_PEER_FAILED_VERIFICATION");
  EXPECT_EQ(error.context, server.url());
  EXPECT_NE(error.message.find("unable to get local issuer certificate"), std::string::npos) << error.message;
}

TEST_F(AcmeTransportTlsTest, BundleWithoutCertificatesIsConfigError) {
  http::TransportOptions options;
  options.caBundle = box_->file("leaf.key");
  auto transport = http::makeCurlTransport(options);
  ASSERT_FALSE(transport.has_value());
  EXPECT_EQ(transport.error().code, Errc::config);
  EXPECT_EQ(transport.error().toString(), box_->file("leaf.key") + ": CA bundle holds no PEM certificate");
}

}  // namespace
}  // namespace kms::http
