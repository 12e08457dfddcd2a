// The Pebble fixture itself: a real Pebble + pebble-challtestsrv on loopback, HTTPS trust
// through the fixture CA, issuing roots from the management port, ports the processes bound
// themselves (port 0) and kept across stop/start, EAB, cleanup.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <nlohmann/json.hpp>

#include "pebble_server.h"

namespace kms::test {
namespace {

using X509Ptr = std::unique_ptr<X509, decltype(&X509_free)>;

X509Ptr parsePem(const std::string& pem) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), &BIO_free);
  return X509Ptr(bio ? PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr) : nullptr, &X509_free);
}

/// The directory as JSON; fails the test when it does not answer 200 over HTTPS.
nlohmann::json fetchDirectory(const PebbleServer& pebble) {
  auto response = httpsGet(pebble.directoryUrl(), pebble.tlsCaFile());
  EXPECT_TRUE(response.has_value()) << (response ? "" : response.error().toString());
  if (!response) {
    return {};
  }
  EXPECT_EQ(response->status, 200) << response->body;
  return nlohmann::json::parse(response->body, nullptr, false);
}

sockaddr_in loopbackAddress(uint16_t port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return addr;
}

/// True when a TCP connect to 127.0.0.1:port is refused.
bool connectionRefused(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return false;
  }
  sockaddr_in addr = loopbackAddress(port);
  int rc = ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
  int err = errno;
  ::close(fd);
  return rc != 0 && err == ECONNREFUSED;
}

/// A socket of `type` this process binds to 127.0.0.1:0, listening (TCP) when asked.
class LoopbackSocket {
 public:
  LoopbackSocket(int type, bool listening) : fd_(::socket(AF_INET, type | SOCK_CLOEXEC, 0)) {
    sockaddr_in addr = loopbackAddress(0);
    socklen_t len = sizeof addr;
    if (fd_ >= 0 && ::bind(fd_, reinterpret_cast<const sockaddr*>(&addr), len) == 0 &&
        (!listening || ::listen(fd_, 1) == 0) && ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
      port_ = ntohs(addr.sin_port);
    }
  }
  ~LoopbackSocket() { close(); }
  LoopbackSocket(const LoopbackSocket&) = delete;
  LoopbackSocket& operator=(const LoopbackSocket&) = delete;

  /// The bound port; 0 when the socket could not be set up.
  [[nodiscard]] uint16_t port() const { return port_; }
  void close() {
    if (fd_ >= 0) {
      ::close(fd_);
    }
    fd_ = -1;
  }

 private:
  int fd_;
  uint16_t port_ = 0;
};

bool contains(const std::vector<uint16_t>& ports, uint16_t port) {
  return std::find(ports.begin(), ports.end(), port) != ports.end();
}

std::set<uint16_t> portSet(const std::vector<uint16_t>& ports) {
  return {ports.begin(), ports.end()};
}

/// POSTs `body` to http://127.0.0.1:<port><path> over HTTP/1.0; returns the status line
/// ("" when nothing answered).
std::string httpPost(uint16_t port, const std::string& path, const std::string& body) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return "";
  }
  timeval timeout{2, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  sockaddr_in addr = loopbackAddress(port);
  const std::string request = "POST " + path +
                              " HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: " + std::to_string(body.size()) +
                              "\r\n\r\n" + body;
  std::string response;
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0 &&
      ::send(fd, request.data(), request.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(request.size())) {
    std::array<char, 512> buffer{};
    ssize_t n = 0;
    while ((n = ::recv(fd, buffer.data(), buffer.size(), 0)) > 0) {
      response.append(buffer.data(), static_cast<std::size_t>(n));
    }
  }
  ::close(fd);
  return response.substr(0, response.find("\r\n"));
}

/// The raw reply to a TXT query for `name` sent over UDP to 127.0.0.1:<port> ("" when none
/// came within a second).
std::string dnsTxtReply(uint16_t port, const std::string& name) {
  // id 0x1234, recursion desired, one question
  std::string query("\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00", 12);
  for (std::size_t start = 0; start < name.size();) {
    const std::size_t dot = std::min(name.find('.', start), name.size());
    query += static_cast<char>(dot - start);
    query.append(name, start, dot - start);
    start = dot + 1;
  }
  query.append("\x00\x00\x10\x00\x01", 5);  // root label, type TXT, class IN
  int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return "";
  }
  timeval timeout{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  sockaddr_in addr = loopbackAddress(port);
  std::array<char, 512> reply{};
  ssize_t n = -1;
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0 &&
      ::send(fd, query.data(), query.size(), 0) == static_cast<ssize_t>(query.size())) {
    n = ::recv(fd, reply.data(), reply.size(), 0);
  }
  ::close(fd);
  return n > 0 ? std::string(reply.data(), static_cast<std::size_t>(n)) : "";
}

/// Publishes a TXT record through pebble-challtestsrv's management port and reads it back
/// from its DNS port: both belong to the one server Pebble was started with.
void expectTxtServed(const PebbleServer& pebble, const std::string& value) {
  const std::string name = "_acme-challenge.fixture.test";
  EXPECT_EQ(
      httpPost(pebble.dnsManagementPort(), "/set-txt", R"({"host":")" + name + R"(.","value":")" + value + R"("})"),
      "HTTP/1.0 200 OK");
  EXPECT_NE(dnsTxtReply(pebble.dnsPort(), name).find(value), std::string::npos)
      << "no TXT " << value << " on UDP port " << pebble.dnsPort();
}

/// Pebble's log names the DNS server it was started with.
bool pebbleQueries(const PebbleServer& pebble, uint16_t dnsPort) {
  return readFile(pebble.pebbleLogFile())
             .find("Using custom DNS resolver for ACME challenges: 127.0.0.1:" + std::to_string(dnsPort)) !=
         std::string::npos;
}

bool processGone(pid_t pid) {
  return ::kill(pid, 0) != 0 && errno == ESRCH;
}

TEST(PebbleFixture, DirectoryAnswersOverHttpsTrustingTheFixtureCa) {
  PebbleServer pebble;
  EXPECT_EQ(pebble.directoryUrl(), "https://127.0.0.1:" + std::to_string(pebble.acmePort()) + "/dir");
  nlohmann::json dir = fetchDirectory(pebble);
  ASSERT_TRUE(dir.is_object()) << dir.dump();
  for (const char* member : {"newNonce", "newAccount", "newOrder"}) {
    ASSERT_TRUE(dir.contains(member)) << member << " missing in " << dir.dump();
    EXPECT_EQ(dir[member].get<std::string>().rfind("https://127.0.0.1:", 0), 0U) << dir[member];
  }
  EXPECT_EQ(dir["meta"]["externalAccountRequired"], false);
  EXPECT_GT(pebble.pid(), 0);
  EXPECT_GT(pebble.dnsServerPid(), 0);
}

TEST(PebbleFixture, ApiIsNotTrustedThroughAnotherCa) {
  PebbleServer pebble;
  const std::string otherCa = pebble.writeIssuingRoots(pebble.sandbox().file("pebble-roots.pem"));
  auto response = httpsGet(pebble.directoryUrl(), otherCa);
  ASSERT_FALSE(response.has_value());
  EXPECT_EQ(response.error().code, Errc::network);
}

TEST(PebbleFixture, IssuingRootAndIntermediateArePemCertificates) {
  PebbleServer pebble;
  const std::string rootPem = pebble.issuingRootsPem();
  const std::string intermediatePem = pebble.intermediatesPem();
  EXPECT_EQ(rootPem.rfind("-----BEGIN CERTIFICATE-----", 0), 0U) << rootPem;
  X509Ptr root = parsePem(rootPem);
  X509Ptr intermediate = parsePem(intermediatePem);
  ASSERT_TRUE(root);
  ASSERT_TRUE(intermediate);
  EXPECT_EQ(X509_check_issued(root.get(), intermediate.get()), X509_V_OK);

  const std::string path = pebble.sandbox().file("trust-anchors.pem");
  EXPECT_EQ(pebble.writeIssuingRoots(path), path);
  EXPECT_EQ(readFile(path), rootPem);
}

TEST(PebbleFixture, LoopbackListenersReadsTheKernelForOneProcess) {
  LoopbackSocket listening(SOCK_STREAM, true);
  LoopbackSocket boundOnly(SOCK_STREAM, false);
  LoopbackSocket udp(SOCK_DGRAM, false);
  ASSERT_NE(listening.port(), 0);
  ASSERT_NE(boundOnly.port(), 0);
  ASSERT_NE(udp.port(), 0);
  LoopbackListeners found = loopbackListeners(::getpid());
  EXPECT_TRUE(contains(found.tcp, listening.port()));
  EXPECT_FALSE(contains(found.tcp, boundOnly.port()));  // bound, not listening
  EXPECT_TRUE(contains(found.udp, udp.port()));

  listening.close();
  udp.close();
  found = loopbackListeners(::getpid());
  EXPECT_FALSE(contains(found.tcp, listening.port()));
  EXPECT_FALSE(contains(found.udp, udp.port()));

  const LoopbackListeners none = loopbackListeners(-1);
  EXPECT_TRUE(none.tcp.empty());
  EXPECT_TRUE(none.udp.empty());
}

TEST(PebbleFixture, ReportedPortsAreTheOnesTheProcessesListenOn) {
  PebbleServer pebble;
  EXPECT_EQ(portSet(loopbackListeners(pebble.pid()).tcp),
            (std::set<uint16_t>{pebble.acmePort(), pebble.managementPort()}));
  const LoopbackListeners dns = loopbackListeners(pebble.dnsServerPid());
  EXPECT_EQ(dns.udp, std::vector<uint16_t>{pebble.dnsPort()});
  EXPECT_EQ(dns.tcp.size(), 2U) << "management and DNS over TCP";
  EXPECT_TRUE(contains(dns.tcp, pebble.dnsManagementPort()));
  EXPECT_FALSE(contains(loopbackListeners(::getpid()).tcp, pebble.acmePort()));  // theirs, not ours

  // And each port answers as what it is said to be.
  EXPECT_TRUE(fetchDirectory(pebble).contains("newOrder"));
  EXPECT_FALSE(pebble.issuingRootsPem().empty());  // management port /roots/0
  expectTxtServed(pebble, "fixture-first-start");
  EXPECT_TRUE(pebbleQueries(pebble, pebble.dnsPort()));
}

TEST(PebbleFixture, StopRefusesConnectionsAndStartServesAgainOnTheSamePortsWithNewRoots) {
  PebbleServer pebble;
  const std::string url = pebble.directoryUrl();
  const std::string rootsBefore = pebble.issuingRootsPem();
  const pid_t pid = pebble.pid();
  const pid_t dnsPid = pebble.dnsServerPid();
  const uint16_t acmePort = pebble.acmePort();
  const uint16_t managementPort = pebble.managementPort();
  const uint16_t dnsManagementPort = pebble.dnsManagementPort();

  pebble.stop();
  EXPECT_FALSE(pebble.running());
  EXPECT_EQ(pebble.pid(), -1);
  EXPECT_TRUE(processGone(pid));
  EXPECT_TRUE(processGone(dnsPid));
  EXPECT_TRUE(connectionRefused(acmePort));
  EXPECT_TRUE(connectionRefused(managementPort));
  EXPECT_TRUE(connectionRefused(dnsManagementPort));
  EXPECT_FALSE(httpsGet(url, pebble.tlsCaFile()).has_value());
  pebble.stop();  // idempotent

  pebble.start();
  EXPECT_TRUE(pebble.running());
  EXPECT_NE(pebble.pid(), pid);
  EXPECT_EQ(pebble.directoryUrl(), url);
  EXPECT_EQ(pebble.acmePort(), acmePort);
  EXPECT_EQ(pebble.managementPort(), managementPort);
  EXPECT_EQ(pebble.dnsManagementPort(), dnsManagementPort);
  EXPECT_EQ(portSet(loopbackListeners(pebble.pid()).tcp), (std::set<uint16_t>{acmePort, managementPort}));
  EXPECT_TRUE(contains(loopbackListeners(pebble.dnsServerPid()).tcp, dnsManagementPort));
  EXPECT_TRUE(fetchDirectory(pebble).contains("newOrder"));
  EXPECT_NE(pebble.issuingRootsPem(), rootsBefore);
  // The DNS port was bound anew; the restarted Pebble queries that one.
  expectTxtServed(pebble, "fixture-restart");
  EXPECT_TRUE(pebbleQueries(pebble, pebble.dnsPort()));
}

TEST(PebbleFixture, RestartOnATakenPortFailsWithTheLogThenRecovers) {
  PebbleServer pebble;
  const std::string url = pebble.directoryUrl();
  pebble.stop();
  int squatter = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(squatter, 0);
  sockaddr_in addr = loopbackAddress(pebble.acmePort());
  // Bound, not listening: Pebble's bind clashes, probes are refused at once.
  ASSERT_EQ(::bind(squatter, reinterpret_cast<const sockaddr*>(&addr), sizeof addr), 0);
  try {
    pebble.start();
    ADD_FAILURE() << "Pebble started on a port already in use";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("address already in use"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(pebble.running());
  EXPECT_EQ(pebble.dnsServerPid(), -1);
  ::close(squatter);

  pebble.start();
  EXPECT_EQ(pebble.directoryUrl(), url);
  EXPECT_TRUE(fetchDirectory(pebble).contains("newNonce"));
}

TEST(PebbleFixture, EabRequiredShowsInDirectoryMeta) {
  PebbleOptions options;
  options.eabRequired = true;
  options.eabKeys = {{"kid-1", "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"}};
  PebbleServer pebble(options);
  nlohmann::json dir = fetchDirectory(pebble);
  ASSERT_TRUE(dir.contains("meta")) << dir.dump();
  EXPECT_EQ(dir["meta"]["externalAccountRequired"], true);
}

TEST(PebbleFixture, EnvironmentKnobsReachPebble) {
  PebbleOptions options;
  options.nonceRejectPercent = 100;
  options.authzReusePercent = 100;
  options.alwaysValid = true;
  PebbleServer pebble(options);
  const std::string log = readFile(pebble.pebbleLogFile());
  EXPECT_NE(log.find("reject 100% of good nonces"), std::string::npos) << log;
  EXPECT_NE(log.find("authz reuse for each identifier 100%"), std::string::npos) << log;
  EXPECT_NE(log.find("VA always returns valid"), std::string::npos) << log;
  EXPECT_NE(log.find("Disabling random VA sleeps"), std::string::npos) << log;
  EXPECT_TRUE(pebbleQueries(pebble, pebble.dnsPort())) << log;
}

TEST(PebbleFixture, DefaultsAreDeterministic) {
  PebbleServer pebble;
  const std::string log = readFile(pebble.pebbleLogFile());
  EXPECT_NE(log.find("reject 0% of good nonces"), std::string::npos) << log;
  EXPECT_NE(log.find("authz reuse for each identifier 0%"), std::string::npos) << log;
  EXPECT_EQ(log.find("VA always returns valid"), std::string::npos) << log;
  // No port picked for validation: nothing the fixture chose free for somebody to bind later.
  EXPECT_EQ(pebble.httpPort(), 0);
  const auto config = nlohmann::json::parse(readFile(pebble.sandbox().file("pebble-config.json")));
  EXPECT_EQ(config["pebble"]["httpPort"], 0);
  EXPECT_EQ(config["pebble"]["tlsPort"], 0);
}

TEST(PebbleFixture, HttpPortOptionIsTheTestsOwnResponder) {
  // The test's responder binds first; Pebble is only told its port.
  LoopbackSocket responder(SOCK_STREAM, true);
  ASSERT_NE(responder.port(), 0);
  PebbleOptions options;
  options.httpPort = responder.port();
  PebbleServer pebble(options);
  EXPECT_EQ(pebble.httpPort(), responder.port());
  const auto config = nlohmann::json::parse(readFile(pebble.sandbox().file("pebble-config.json")));
  EXPECT_EQ(config["pebble"]["httpPort"], responder.port());
  EXPECT_TRUE(contains(loopbackListeners(::getpid()).tcp, responder.port()));
  EXPECT_FALSE(contains(loopbackListeners(pebble.pid()).tcp, responder.port()));
}

TEST(PebbleFixture, TwoServersAtOnceGetDistinctPorts) {
  PebbleServer first;
  PebbleServer second;
  // TCP and UDP ports are separate spaces: each is compared within its own.
  const std::set<uint16_t> tcp = {first.acmePort(),  first.managementPort(),  first.dnsManagementPort(),
                                  second.acmePort(), second.managementPort(), second.dnsManagementPort()};
  EXPECT_EQ(tcp.size(), 6U);
  EXPECT_FALSE(tcp.contains(0));
  EXPECT_NE(first.dnsPort(), second.dnsPort());
  for (const PebbleServer* pebble : {&first, &second}) {
    nlohmann::json dir = fetchDirectory(*pebble);
    ASSERT_TRUE(dir.is_object()) << dir.dump();
    const std::string prefix = "https://127.0.0.1:" + std::to_string(pebble->acmePort()) + "/";
    EXPECT_EQ(dir.value("newAccount", std::string()).rfind(prefix, 0), 0U) << dir.dump();
    expectTxtServed(*pebble, "fixture-" + std::to_string(pebble->acmePort()));
  }
  EXPECT_NE(first.tlsCaFile(), second.tlsCaFile());
}

TEST(PebbleFixture, DestructorLeavesNoProcessBehind) {
  pid_t pid = -1;
  pid_t dnsPid = -1;
  uint16_t port = 0;
  {
    PebbleServer pebble;
    pid = pebble.pid();
    dnsPid = pebble.dnsServerPid();
    port = pebble.acmePort();
    ASSERT_EQ(::kill(pid, 0), 0);
    ASSERT_EQ(::kill(dnsPid, 0), 0);
  }
  EXPECT_TRUE(processGone(pid));
  EXPECT_TRUE(processGone(dnsPid));
  EXPECT_TRUE(connectionRefused(port));
}

TEST(PebbleFixture, StartFailureReportsPebbleLogTail) {
  PebbleOptions options;
  options.eabRequired = true;
  options.eabKeys = {{"kid-1", "not base64!"}};
  try {
    PebbleServer pebble(options);
    FAIL() << "Pebble started with an undecodable EAB key";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("failed to decode base64 URL encoded key"), std::string::npos) << e.what();
  }
}

TEST(PebbleFixture, RejectsOutOfRangePercentages) {
  PebbleOptions options;
  options.nonceRejectPercent = 101;
  EXPECT_THROW(PebbleServer{options}, std::invalid_argument);
  options.nonceRejectPercent = 0;
  options.authzReusePercent = -1;
  EXPECT_THROW(PebbleServer{options}, std::invalid_argument);
}

}  // namespace
}  // namespace kms::test
