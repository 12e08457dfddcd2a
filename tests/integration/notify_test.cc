// systemd's notify protocol as kmsd speaks it, read on a NOTIFY_SOCKET the test listens on
// (the datagrams systemd would get): READY=1 with STATUS=, STATUS= kept current, WATCHDOG=1
// keep-alives, RELOADING=1 with MONOTONIC_USEC then READY=1 around SIGHUP, STOPPING=1 at
// SIGTERM, in that order; and a socket that is gone or a WATCHDOG_USEC that is not a number
// said once in the log while kmsd runs on.
#include <gtest/gtest.h>

#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "daemon_process.h"
#include "lab_process.h"
#include "sandbox.h"

namespace kms {
namespace {

using namespace std::chrono_literals;

/// A datagram socket where systemd would listen; collects what kmsd sends.
class NotifySocket {
 public:
  explicit NotifySocket(const std::string& path) : path_(path) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      ADD_FAILURE() << "bind " << path << ": " << std::strerror(errno);
    }
  }
  ~NotifySocket() { ::close(fd_); }
  NotifySocket(const NotifySocket&) = delete;
  NotifySocket& operator=(const NotifySocket&) = delete;

  /// Reads datagrams until one holds `text` (bounded); every one read is kept.
  bool waitFor(const std::string& text, std::chrono::seconds limit = 60s) {
    for (auto end = std::chrono::steady_clock::now() + limit; std::chrono::steady_clock::now() < end;) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 200) != 1) {
        continue;
      }
      char buf[4096];
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n > 0) {
        messages_.emplace_back(buf, static_cast<std::size_t>(n));
        if (messages_.back().find(text) != std::string::npos) {
          return true;
        }
      }
    }
    return false;
  }
  [[nodiscard]] const std::vector<std::string>& messages() const { return messages_; }
  [[nodiscard]] std::string all() const {
    std::string out;
    for (const auto& m : messages_) {
      out += "[" + m + "]\n";
    }
    return out;
  }

 private:
  std::string path_;
  int fd_ = -1;
  std::vector<std::string> messages_;
};

/// Sets environment variables for the kmsd the test forks next; unsets them when it goes.
class ScopedEnv {
 public:
  ScopedEnv(std::vector<std::pair<std::string, std::string>> vars) : vars_(std::move(vars)) {
    for (const auto& [k, v] : vars_) {
      ::setenv(k.c_str(), v.c_str(), 1);
    }
  }
  ~ScopedEnv() {
    for (const auto& [k, v] : vars_) {
      ::unsetenv(k.c_str());
    }
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  std::vector<std::pair<std::string, std::string>> vars_;
};

TEST(Notify, ReadyStatusWatchdogReloadingAndStoppingInOrder) {
  test::Sandbox sandbox;
  test::LabProcess lab(sandbox.file("lab"));
  NotifySocket notify(sandbox.file("notify.sock"));
  std::unique_ptr<test::DaemonProcess> kmsd;
  {
    ScopedEnv env({{"NOTIFY_SOCKET", sandbox.file("notify.sock")}, {"WATCHDOG_USEC", "2000000"}});
    kmsd = std::make_unique<test::DaemonProcess>(lab.file("softhsm2.conf"), lab.file("kmsd.toml"),
                                                 sandbox.file("kmsd.log"));
  }
  ASSERT_TRUE(notify.waitFor("READY=1")) << notify.all() << kmsd->log();
  const std::string ready = notify.messages().back();
  EXPECT_NE(ready.find("STATUS="), std::string::npos) << ready;
  EXPECT_NE(ready.find("certificate"), std::string::npos) << ready;
  // The certificate is issued: the status says so within its refresh (bounded wait).
  ASSERT_TRUE(notify.waitFor("STATUS=1 certificate active; next renewal main in ")) << notify.all() << kmsd->log();
  EXPECT_NE(notify.messages().back().find("; last error none"), std::string::npos) << notify.messages().back();
  // Keep-alives at half of WATCHDOG_USEC, from the loop.
  ASSERT_TRUE(notify.waitFor("WATCHDOG=1")) << notify.all();
  ASSERT_TRUE(notify.waitFor("WATCHDOG=1")) << notify.all();

  kmsd->signal(SIGHUP);
  ASSERT_TRUE(notify.waitFor("RELOADING=1")) << notify.all();
  EXPECT_NE(notify.messages().back().find("MONOTONIC_USEC="), std::string::npos) << notify.messages().back();
  ASSERT_TRUE(notify.waitFor("READY=1")) << notify.all();
  ASSERT_TRUE(kmsd->waitFor("KMS_RELOADED")) << kmsd->log();

  EXPECT_EQ(kmsd->stop(SIGTERM), 0);
  ASSERT_TRUE(notify.waitFor("STOPPING=1", 5s)) << notify.all();
  EXPECT_EQ(kmsd->log().find("KMS_NOTIFY_FAILED"), std::string::npos) << kmsd->log();
}

TEST(Notify, AGoneSocketAFileOrABadWatchdogIsSaidOncePerCauseAndKmsdRunsOn) {
  test::Sandbox sandbox;
  test::LabProcess lab(sandbox.file("lab"));
  {
    ScopedEnv env({{"NOTIFY_SOCKET", sandbox.file("nobody-listens.sock")}, {"WATCHDOG_USEC", "soon"}});
    test::DaemonProcess kmsd(lab.file("softhsm2.conf"), lab.file("kmsd.toml"), sandbox.file("kmsd.log"));
    ASSERT_TRUE(kmsd.waitFor("KMS_CERT_ACTIVATED cert=main")) << kmsd.log();
    const std::string log = kmsd.log();
    EXPECT_NE(log.find("WATCHDOG_USEC is not a usable number"), std::string::npos) << log;
    // Two warnings in all, one per cause: the next failures to notify are not said again.
    const auto first = log.find("KMS_NOTIFY_FAILED");
    ASSERT_NE(first, std::string::npos) << log;
    const auto second = log.find("KMS_NOTIFY_FAILED", first + 1);
    ASSERT_NE(second, std::string::npos) << log;
    EXPECT_NE(log.find("cannot notify systemd at " + sandbox.file("nobody-listens.sock")), std::string::npos) << log;
    EXPECT_EQ(log.find("KMS_NOTIFY_FAILED", second + 1), std::string::npos) << log;
    EXPECT_EQ(kmsd.stop(SIGTERM), 0);
  }
  {
    ScopedEnv env({{"NOTIFY_SOCKET", sandbox.file("nobody-listens.sock")}});
    test::DaemonProcess kmsd(lab.file("softhsm2.conf"), lab.file("kmsd.toml"), sandbox.file("kmsd2.log"));
    ASSERT_TRUE(kmsd.waitFor("KMS_NOTIFY_FAILED")) << kmsd.log();
    EXPECT_NE(kmsd.log().find("cannot notify systemd at " + sandbox.file("nobody-listens.sock")), std::string::npos)
        << kmsd.log();
    std::string out;
    EXPECT_EQ(test::runCommand("curl -sf --unix-socket " + lab.file("kmsd.sock") + " http://kmsd/readyz", &out), 0)
        << out;
    EXPECT_EQ(kmsd.stop(SIGTERM), 0);
  }
  {
    // NOTIFY_SOCKET naming a regular file, and a watchdog of 0 (systemd never sets that):
    // each said, the file left as it was, kmsd ready.
    const std::string file = sandbox.write("not-a-socket", "keep me\n");
    ScopedEnv env({{"NOTIFY_SOCKET", file}, {"WATCHDOG_USEC", "0"}});
    test::DaemonProcess kmsd(lab.file("softhsm2.conf"), lab.file("kmsd.toml"), sandbox.file("kmsd3.log"));
    ASSERT_TRUE(kmsd.waitFor("KMS_NOTIFY_FAILED")) << kmsd.log();
    const std::string log = kmsd.log();
    EXPECT_NE(log.find("WATCHDOG_USEC is not a usable number"), std::string::npos) << log;
    std::string out;
    EXPECT_EQ(test::runCommand("curl -sf --unix-socket " + lab.file("kmsd.sock") + " http://kmsd/readyz", &out), 0)
        << out;
    EXPECT_EQ(kmsd.stop(SIGTERM), 0);
    EXPECT_NE(kmsd.log().find("cannot notify systemd at " + file), std::string::npos) << kmsd.log();
    EXPECT_EQ(test::readFile(file), "keep me\n");
  }
}

}  // namespace
}  // namespace kms
