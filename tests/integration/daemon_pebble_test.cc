// kmsd as a daemon against a real Pebble (with pebble-challtestsrv as the DNS server): the
// dns-01 hook runs on its own while the daemon keeps serving, and is cleaned up afterwards.
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <thread>

#include "cli.h"
#include "control/control_api.h"
#include "daemon_process.h"
#include "kmsd_toml.h"
#include "pebble_server.h"
#include "pki/x509.h"
#include "sandbox.h"
#include "softhsm_token.h"

namespace kms {
namespace {

using namespace std::chrono_literals;
using test::DaemonProcess;
using test::PebbleServer;
using test::SoftHsmToken;

class DaemonPebble : public ::testing::Test {
 protected:
  void SetUp() override {
    pebble_ = std::make_unique<PebbleServer>(test::PebbleOptions{});
    roots_ = pebble_->writeIssuingRoots(sandbox().file("pebble-roots.pem"));
  }
  const test::Sandbox& sandbox() const { return softhsm_.sandbox(); }

  /// One dns-01 certificate, one order at a time (so one worker thread).
  void writeConfig(const std::string& hook) {
    const auto& sb = sandbox();
    test::KmsdToml toml;
    toml.stateDir = sb.file("state");
    toml.controlSocket = socket();
    toml.daemonExtra = "max_concurrent_orders = 1\n";
    toml.pinFile = softhsm_.pinFile();
    toml.directoryUrl = pebble_->directoryUrl();
    toml.caBundle = pebble_->tlsCaFile();
    toml.trustAnchors = roots_;
    toml.http01Listen.clear();
    toml.acmeExtra = "dns01_hook = \"" + hook + "\"\n";
    toml.webRoot = sb.file("www");
    toml.dns("dns", {"dns.example.com"}, "challenge = \"dns-01\"\n");
    config_ = sb.write("kmsd.toml", toml.text());
  }
  std::string socket() const { return sandbox().file("kmsd.sock"); }

  SoftHsmToken softhsm_{"kms-test"};
  std::unique_ptr<PebbleServer> pebble_;
  std::string roots_;
  std::string config_;
};

TEST_F(DaemonPebble, Dns01HookRunsOnItsOwnWhileTheDaemonKeepsServing) {
  // The operator's hook waits for a gate file before it publishes the TXT record (as a hook
  // waiting for DNS propagation would), and logs each call.
  const std::string hookLog = sandbox().file("hook.log");
  const std::string gate = sandbox().file("gate");
  const std::string hook = sandbox().write(
      "hook.sh", "#!/bin/sh\nset -eu\nexport CHALLTESTSRV=http://127.0.0.1:" +
                     std::to_string(pebble_->dnsManagementPort()) + "\necho \"$1 $KMS_DOMAIN\" >> '" + hookLog +
                     "'\nif [ \"$1\" = present ]; then\n  i=0\n  while [ ! -e '" + gate +
                     "' ]; do i=$((i+1)); [ $i -lt 1200 ] || exit 9; sleep 0.1; done\nfi\nexec '" KMS_TEST_DATA_DIR
                     "/dns01-hook.sh' \"$@\"\n");
  ::chmod(hook.c_str(), 0700);
  writeConfig(hook);
  auto kmsd = std::make_unique<DaemonProcess>(softhsm_.confPath(), config_, sandbox().file("kmsd.log"));

  auto waitForFile = [](const std::string& path, const std::string& text) {
    for (auto end = std::chrono::steady_clock::now() + 60s; std::chrono::steady_clock::now() < end;) {
      if (test::fileExists(path) && test::readFile(path).find(text) != std::string::npos) {
        return true;
      }
      std::this_thread::sleep_for(100ms);
    }
    return false;
  };
  ASSERT_TRUE(waitForFile(hookLog, "present dns.example.com")) << kmsd->log();

  // The hook is running and the only worker is free: the control API answers. (A worker
  // blocked on the hook would hold the reply until the gate opens; it opens on its own
  // after 20 s so such a failure is reported, not hung.)
  std::atomic<bool> gateOpened{false};
  std::thread opener([&] {
    for (int i = 0; i < 200 && !gateOpened.load(); ++i) {
      std::this_thread::sleep_for(100ms);
    }
    if (!gateOpened.exchange(true)) {
      std::ofstream(gate).flush();
    }
  });
  auto status = daemon::controlRequest(socket(), "GET", "/v1/certificates/dns");
  const bool answeredWhileHookWaited = !gateOpened.exchange(true);
  std::ofstream(gate).flush();
  opener.join();
  ASSERT_TRUE(status.has_value()) << status.error().toString();
  EXPECT_EQ(status->status, 200) << status->body;
  EXPECT_TRUE(answeredWhileHookWaited) << "the control API answered only after the hook was let go";

  ASSERT_TRUE(kmsd->waitFor("KMS_CERT_ACTIVATED cert=dns")) << kmsd->log();
  auto chain = pki::parsePemChain(test::readFile(sandbox().file("www/dns.pem")));
  ASSERT_TRUE(chain.has_value());
  EXPECT_EQ(chain->front().dnsNames(), std::vector<std::string>{"dns.example.com"});
  // The record is withdrawn once the order is past authorization.
  EXPECT_TRUE(waitForFile(hookLog, "cleanup dns.example.com")) << test::readFile(hookLog);
  EXPECT_EQ(kmsd->stop(), 0) << kmsd->log();
  EXPECT_EQ(kmsd->log().find("KMS_DNS01_CLEANUP_FAILED"), std::string::npos) << kmsd->log();
}

TEST_F(DaemonPebble, FailingDns01HookIsAFailureWithItsExitStatusAndBackoff) {
  const std::string hook = sandbox().write("hook.sh", "#!/bin/sh\nexit 7\n");
  ::chmod(hook.c_str(), 0700);
  writeConfig(hook);
  auto kmsd = std::make_unique<DaemonProcess>(softhsm_.confPath(), config_, sandbox().file("kmsd.log"));
  ASSERT_TRUE(kmsd->waitFor("KMS_RENEW_FAILED cert=dns")) << kmsd->log();
  const std::string log = kmsd->log();
  EXPECT_NE(log.find("dns-01 hook 'present' failed with exit status 7 for dns.example.com"), std::string::npos)
      << log;
  EXPECT_NE(log.find("failures=1"), std::string::npos) << log;
  EXPECT_EQ(kmsd->stop(), 0) << log;
}

}  // namespace
}  // namespace kms
