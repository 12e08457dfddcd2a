// The Pebble fixture itself: a real Pebble + pebble-challtestsrv on loopback, HTTPS trust
// through the fixture CA, issuing roots from the management port, stop/start, EAB, cleanup.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <memory>
#include <set>
#include <string>

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

/// A TCP port free right now on 127.0.0.1 (0 if none could be bound).
uint16_t freePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr = loopbackAddress(0);
  socklen_t len = sizeof addr;
  uint16_t port = 0;
  if (fd >= 0 && ::bind(fd, reinterpret_cast<const sockaddr*>(&addr), len) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  ::close(fd);
  return port;
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

TEST(PebbleFixture, StopRefusesConnectionsAndStartServesAgainWithNewRoots) {
  PebbleServer pebble;
  const std::string url = pebble.directoryUrl();
  const std::string rootsBefore = pebble.issuingRootsPem();
  const pid_t pid = pebble.pid();
  const pid_t dnsPid = pebble.dnsServerPid();

  pebble.stop();
  EXPECT_FALSE(pebble.running());
  EXPECT_EQ(pebble.pid(), -1);
  EXPECT_TRUE(processGone(pid));
  EXPECT_TRUE(processGone(dnsPid));
  EXPECT_TRUE(connectionRefused(pebble.acmePort()));
  EXPECT_TRUE(connectionRefused(pebble.managementPort()));
  EXPECT_FALSE(httpsGet(url, pebble.tlsCaFile()).has_value());
  pebble.stop();  // idempotent

  pebble.start();
  EXPECT_TRUE(pebble.running());
  EXPECT_NE(pebble.pid(), pid);
  EXPECT_EQ(pebble.directoryUrl(), url);
  EXPECT_TRUE(fetchDirectory(pebble).contains("newOrder"));
  EXPECT_NE(pebble.issuingRootsPem(), rootsBefore);
}

TEST(PebbleFixture, RestartOnATakenPortFailsWithTheLogThenRecovers) {
  PebbleServer pebble;
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
  EXPECT_NE(log.find("Using custom DNS resolver for ACME challenges: 127.0.0.1:" + std::to_string(pebble.dnsPort())),
            std::string::npos)
      << log;
}

TEST(PebbleFixture, DefaultsAreDeterministic) {
  PebbleServer pebble;
  const std::string log = readFile(pebble.pebbleLogFile());
  EXPECT_NE(log.find("reject 0% of good nonces"), std::string::npos) << log;
  EXPECT_NE(log.find("authz reuse for each identifier 0%"), std::string::npos) << log;
  EXPECT_EQ(log.find("VA always returns valid"), std::string::npos) << log;
}

TEST(PebbleFixture, HttpPortOptionIsKept) {
  PebbleOptions options;
  options.httpPort = freePort();
  ASSERT_NE(options.httpPort, 0);
  PebbleServer pebble(options);
  EXPECT_EQ(pebble.httpPort(), options.httpPort);
  const auto config = nlohmann::json::parse(readFile(pebble.sandbox().file("pebble-config.json")));
  EXPECT_EQ(config["pebble"]["httpPort"], options.httpPort);
  for (uint16_t port : {pebble.acmePort(), pebble.managementPort(), pebble.dnsPort()}) {
    EXPECT_NE(port, options.httpPort);
  }
}

TEST(PebbleFixture, TwoServersUseDifferentPorts) {
  PebbleServer first;
  PebbleServer second;
  EXPECT_NE(first.directoryUrl(), second.directoryUrl());
  const std::set<uint16_t> ports = {first.acmePort(),  first.managementPort(),  first.httpPort(),  first.dnsPort(),
                                    second.acmePort(), second.managementPort(), second.httpPort(), second.dnsPort()};
  EXPECT_EQ(ports.size(), 8U);
  EXPECT_TRUE(fetchDirectory(first).contains("newAccount"));
  EXPECT_TRUE(fetchDirectory(second).contains("newAccount"));
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
