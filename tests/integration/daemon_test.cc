// kmsd as a daemon against kms-lab: renewal on its own through several rotations with no gap
// in what the web root serves, the control API and kmsctl, signals, and reload.
#include <gtest/gtest.h>

#include <signal.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "must.h"
#include "cli.h"
#include "control/control_api.h"
#include "daemon_process.h"
#include "lab_process.h"
#include "pki/x509.h"
#include "sandbox.h"

namespace kms {
namespace {

using namespace std::chrono_literals;
using test::CmdResult;
using test::kKmsctl;
using test::kKmsd;
using test::DaemonProcess;
using test::LabProcess;

class Daemon : public ::testing::Test {
 protected:
  void startLab(std::vector<std::string> switches = {}) {
    lab_ = std::make_unique<LabProcess>(sandbox_.file("lab"), std::move(switches));
    config_ = lab_->file("kmsd.toml");
  }
  std::unique_ptr<DaemonProcess> startDaemon() {
    return std::make_unique<DaemonProcess>(lab_->file("softhsm2.conf"), config_, sandbox_.file("kmsd.log"));
  }
  /// Adds `settings` (TOML lines) at the top of the lab config's [daemon] section, and
  /// `tail` at its end.
  void editConfig(const std::string& settings, const std::string& tail = "") {
    std::string toml = test::readFile(config_);
    toml.replace(toml.find("[daemon]\n"), 9, "[daemon]\n" + settings);
    std::ofstream(config_, std::ios::trunc) << toml << tail;
  }
  /// `[[certificate]]` tables for SHAKEN certificates of these names.
  static std::string shakenCertificates(const std::vector<std::string>& names) {
    std::string out;
    for (const auto& name : names) {
      out += "\n[[certificate]]\nname = \"" + name + "\"\nspc = \"1234\"\nsubject_o = \"More\"\n";
    }
    return out;
  }
  CmdResult run(const std::string& tool, const std::string& args) {
    return test::runTool("SOFTHSM2_CONF=" + lab_->file("softhsm2.conf"), tool, config_, args);
  }
  Result<daemon::ControlResponse> api(const std::string& method, const std::string& target,
                                      const std::string& body = "") {
    return daemon::controlRequest(lab_->file("kmsd.sock"), method, target, body);
  }
  /// The answer, or an exception that fails the test (never a dereference of an error).
  daemon::ControlResponse apiOk(const std::string& method, const std::string& target, const std::string& body = "") {
    return test::must(api(method, target, body));
  }

  test::Sandbox sandbox_;
  std::unique_ptr<LabProcess> lab_;
  std::string config_;
};

TEST_F(Daemon, RenewsThroughThreeRotationsWithoutAGap) {
  startLab({"--cert-lifetime", "60"});
  auto kmsd = startDaemon();
  const std::string current = lab_->file("www/main.pem");
  std::set<std::string> serials;
  bool sawGap = false;
  std::string gapAt;
  auto end = std::chrono::steady_clock::now() + 240s;
  while (serials.size() < 4 && std::chrono::steady_clock::now() < end) {
    if (test::fileExists(current)) {
      auto chain = pki::parsePemChain(test::readFile(current));
      auto now = std::chrono::system_clock::now();
      if (!chain || chain->front().notBefore() > now || chain->front().notAfter() <= now) {
        sawGap = true;
        gapAt = chain ? chain->front().serialHex() : "unparsable";
      } else {
        serials.insert(chain->front().serialHex());
      }
    } else if (!serials.empty()) {
      sawGap = true;
      gapAt = "missing";
    }
    std::this_thread::sleep_for(200ms);
  }
  EXPECT_GE(serials.size(), 4u) << kmsd->log();  // the first certificate and three renewals
  EXPECT_FALSE(sawGap) << gapAt;
  EXPECT_EQ(kmsd->stop(), 0) << kmsd->log();
  const std::string log = kmsd->log();
  EXPECT_NE(log.find("KMS_RENEWAL_PLANNED cert=main"), std::string::npos);
  EXPECT_NE(log.find("source=ari"), std::string::npos) << log;  // kms-lab serves renewalInfo
  EXPECT_EQ(log.find("KMS_RENEW_FAILED"), std::string::npos) << log;
}

TEST_F(Daemon, HealthReadinessAndStatusFromTheDaemon) {
  startLab();
  auto kmsd = startDaemon();
  ASSERT_TRUE(kmsd->waitFor("KMS_CERT_ACTIVATED cert=main")) << kmsd->log();
  EXPECT_EQ(apiOk("GET", "/healthz").status, 200);
  EXPECT_EQ(apiOk("GET", "/readyz").status, 200);
  CmdResult status = run(kKmsctl, "status");
  EXPECT_EQ(status.rc, 0) << status.output;
  EXPECT_NE(status.output.find("kmsd running (pid "), std::string::npos) << status.output;
  EXPECT_NE(status.output.find("\nmain  active  "), std::string::npos) << status.output;
  CmdResult json = run(kKmsctl, "status --json");
  auto j = nlohmann::json::parse(json.output.substr(json.output.find('{')));
  ASSERT_EQ(j["certificates"].size(), 1u);
  EXPECT_TRUE(j["certificates"][0].contains("renew_at"));
  auto events = apiOk("GET", "/v1/events?since=0");
  EXPECT_EQ(events.status, 200);
  EXPECT_NE(events.body.find("KMS_CERT_ACTIVATED"), std::string::npos);
}

TEST_F(Daemon, KmsctlRenewWaitEndsWithANewPublishedCertificate) {
  startLab();
  auto kmsd = startDaemon();
  ASSERT_TRUE(kmsd->waitFor("KMS_CERT_ACTIVATED cert=main")) << kmsd->log();
  const std::string firstSerial = nlohmann::json::parse(apiOk("GET", "/v1/certificates/main").body)["serial"];
  CmdResult renew = run(kKmsctl, "renew main --wait");
  EXPECT_EQ(renew.rc, 0) << renew.output << kmsd->log();
  EXPECT_NE(renew.output.find("main: active serial "), std::string::npos) << renew.output;
  EXPECT_EQ(renew.output.find(firstSerial), std::string::npos) << renew.output;
  auto served = pki::parsePemChain(test::readFile(lab_->file("www/main.pem")));
  ASSERT_TRUE(served.has_value());
  EXPECT_NE(served->front().serialHex(), firstSerial);
}

TEST_F(Daemon, KmsctlRevokeIsFollowedByAReplacementOnKmsdsOwn) {
  startLab();
  auto kmsd = startDaemon();
  ASSERT_TRUE(kmsd->waitFor("KMS_CERT_ACTIVATED cert=main")) << kmsd->log();
  CmdResult revoke = run(kKmsctl, "revoke main --reason 4");
  EXPECT_EQ(revoke.rc, 0) << revoke.output << kmsd->log();
  EXPECT_NE(revoke.output.find("revoked serial"), std::string::npos) << revoke.output;
  EXPECT_NE(revoke.output.find("(reason 4 superseded)"), std::string::npos) << revoke.output;
  // The replacement: a second activation of main.
  auto activations = [&] {
    const std::string log = kmsd->log();
    int n = 0;
    for (auto at = log.find("KMS_CERT_ACTIVATED cert=main"); at != std::string::npos;
         at = log.find("KMS_CERT_ACTIVATED cert=main", at + 1)) {
      ++n;
    }
    return n;
  };
  for (auto end = std::chrono::steady_clock::now() + 60s; activations() < 2 && std::chrono::steady_clock::now() < end;) {
    std::this_thread::sleep_for(100ms);
  }
  ASSERT_EQ(activations(), 2) << kmsd->log();
  // account and the replacement's key; the revoked one's key is destroyed after the
  // replacement is active.
  ASSERT_TRUE(kmsd->waitFor("KMS_KEY_DESTROYED")) << kmsd->log();
  CmdResult keys = test::runTool("SOFTHSM2_CONF=/nonexistent/softhsm2.conf", kKmsctl, config_, "keys");
  EXPECT_NE(keys.output.find("2 key(s) on token"), std::string::npos) << keys.output;
}

TEST_F(Daemon, ReloadWithABrokenFileKeepsTheOldOneAndAGoodOneAddsACertificate) {
  startLab();
  auto kmsd = startDaemon();
  ASSERT_TRUE(kmsd->waitFor("KMS_CERT_ACTIVATED cert=main")) << kmsd->log();
  std::string good = test::readFile(config_);
  { std::ofstream(config_) << good << "\n[[certificate]]\nname = \"second\"\nspc = \"1234\"\nsubject_o = 7\n"; }
  kmsd->signal(SIGHUP);
  ASSERT_TRUE(kmsd->waitFor("KMS_RELOAD_FAILED")) << kmsd->log();
  EXPECT_NE(kmsd->log().find("kmsd.toml:"), std::string::npos);
  EXPECT_EQ(apiOk("GET", "/healthz").status, 200);
  { std::ofstream(config_) << good << "\n[[certificate]]\nname = \"second\"\nspc = \"1234\"\nsubject_o = \"Two\"\n"; }
  kmsd->signal(SIGHUP);
  ASSERT_TRUE(kmsd->waitFor("KMS_RELOADED")) << kmsd->log();
  EXPECT_TRUE(kmsd->waitFor("KMS_CERT_ACTIVATED cert=second")) << kmsd->log();
}

TEST_F(Daemon, KeysComeFromTheDaemonWhichHoldsTheToken) {
  startLab();
  auto kmsd = startDaemon();
  ASSERT_TRUE(kmsd->waitFor("KMS_CERT_ACTIVATED cert=main")) << kmsd->log();
  EXPECT_EQ(apiOk("GET", "/v1/keys").status, 200);
  // kmsctl cannot even reach the token here: the daemon answers.
  CmdResult keys = test::runTool("SOFTHSM2_CONF=/nonexistent/softhsm2.conf", kKmsctl, config_, "keys");
  EXPECT_EQ(keys.rc, 0) << keys.output;
  EXPECT_NE(keys.output.find("2 key(s) on token"), std::string::npos) << keys.output;
  EXPECT_NE(keys.output.find("[certificate]"), std::string::npos) << keys.output;
  EXPECT_NE(keys.output.find("[account]"), std::string::npos) << keys.output;
  EXPECT_EQ(keys.output.find("not running"), std::string::npos) << keys.output;
}

TEST_F(Daemon, ASecondKmsdOnTheSameStateDirectoryRefusesToStart) {
  startLab();
  auto kmsd = startDaemon();
  ASSERT_TRUE(kmsd->waitFor("KMS_STARTED")) << kmsd->log();
  CmdResult second = run(kKmsd, "");
  EXPECT_EQ(second.rc, 1) << second.output;
  EXPECT_NE(second.output.find("another kmsd (pid " + std::to_string(kmsd->pid()) + ") holds this state directory"),
            std::string::npos)
      << second.output;
}

TEST_F(Daemon, WithTheDaemonStoppedKmsctlReadsTheStateAndRefusesToRenew) {
  startLab();
  auto kmsd = startDaemon();
  ASSERT_TRUE(kmsd->waitFor("KMS_CERT_ACTIVATED cert=main")) << kmsd->log();
  EXPECT_EQ(kmsd->stop(SIGTERM), 0) << kmsd->log();
  EXPECT_NE(kmsd->log().find("KMS_STOPPED"), std::string::npos);
  EXPECT_FALSE(test::fileExists(lab_->file("kmsd.sock")));
  CmdResult offline = run(kKmsctl, "status");
  EXPECT_EQ(offline.rc, 0) << offline.output;
  EXPECT_NE(offline.output.find("kmsd is not running; read from the state DB"), std::string::npos);
  EXPECT_NE(offline.output.find("\nmain  active  "), std::string::npos) << offline.output;
  CmdResult offlineKeys = run(kKmsctl, "keys");
  EXPECT_EQ(offlineKeys.rc, 0) << offlineKeys.output;
  EXPECT_NE(offlineKeys.output.find("kmsd is not running; read from the token and the state DB"), std::string::npos)
      << offlineKeys.output;
  EXPECT_NE(offlineKeys.output.find("2 key(s) on token"), std::string::npos) << offlineKeys.output;
  CmdResult refused = run(kKmsctl, "renew main");
  EXPECT_EQ(refused.rc, 1) << refused.output;
  EXPECT_NE(refused.output.find("kmsd is not running"), std::string::npos) << refused.output;
}

TEST_F(Daemon, TheDaemonAndKmsctlWithTheDaemonDownShowTheSameStatusShape) {
  startLab();
  auto kmsd = startDaemon();
  ASSERT_TRUE(kmsd->waitFor("KMS_RENEWAL_PLANNED cert=main")) << kmsd->log();
  auto live = api("GET", "/v1/status");
  ASSERT_TRUE(live.has_value());
  CmdResult liveTable = run(kKmsctl, "status");
  ASSERT_EQ(kmsd->stop(SIGTERM), 0);
  // The table: the same columns and values (NEXT RENEWAL too) with the daemon down.
  CmdResult offlineTable = run(kKmsctl, "status");
  ASSERT_EQ(offlineTable.rc, 0) << offlineTable.output;
  auto afterFirstLine = [](const std::string& out) { return out.substr(out.find('\n') + 1); };
  EXPECT_EQ(afterFirstLine(liveTable.output), afterFirstLine(offlineTable.output))
      << liveTable.output << offlineTable.output;
  EXPECT_EQ(afterFirstLine(offlineTable.output).rfind("NAME  STATE   NOT AFTER          NEXT RENEWAL       "
                                                      "X5U              LAST ERROR\n",
                                                      0),
            0U)
      << offlineTable.output;
  CmdResult offline = run(kKmsctl, "status --json");
  ASSERT_EQ(offline.rc, 0) << offline.output;
  auto a = nlohmann::json::parse(live->body);
  auto b = nlohmann::json::parse(offline.output.substr(offline.output.find('{')));
  auto keys = [](const nlohmann::json& o) {
    std::set<std::string> k;
    for (auto it = o.begin(); it != o.end(); ++it) {
      k.insert(it.key());
    }
    return k;
  };
  EXPECT_EQ(keys(a), keys(b));
  ASSERT_EQ(a["certificates"].size(), 1u);
  ASSERT_EQ(b["certificates"].size(), 1u);
  EXPECT_EQ(keys(a["certificates"][0]), keys(b["certificates"][0])) << live->body << "\n" << offline.output;
  // The same DB, the same facts; only the engine's view differs.
  for (const char* field : {"name", "kind", "state", "serial", "not_after", "x5u", "renew_at", "managed"}) {
    EXPECT_EQ(a["certificates"][0][field], b["certificates"][0][field]) << field;
  }
  EXPECT_TRUE(b["daemon"].is_null());
}

/// Columns a terminal gives a line (UTF-8 continuation bytes take none).
std::size_t columnsOf(const std::string& line) {
  return static_cast<std::size_t>(std::count_if(line.begin(), line.end(), [](char c) {
    return (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  }));
}

TEST_F(Daemon, KmsctlStatusFitsAHundredColumnsWithTheLastErrorUnlessWide) {
  startLab();
  auto kmsd = startDaemon();
  ASSERT_TRUE(kmsd->waitFor("KMS_RENEWAL_PLANNED cert=main")) << kmsd->log();
  // From now on the CA wants the other fingerprint: the renewal's tkauth-01 answer fails.
  ASSERT_TRUE(lab_->labSwitch("/lab/hostile", R"({"fingerprint":"jwk-thumbprint"})"));
  ASSERT_EQ(run(kKmsctl, "renew main").rc, 0);
  ASSERT_TRUE(kmsd->waitFor("_FAILED cert=main")) << kmsd->log();
  CmdResult json = run(kKmsctl, "status --json");
  ASSERT_EQ(json.rc, 0) << json.output;
  EXPECT_EQ(std::count(json.output.begin(), json.output.end(), '\n'), 1) << "not a terminal: one line";
  const auto cert = nlohmann::json::parse(json.output)["certificates"][0];
  const std::string x5u = cert.value("x5u", "");
  const std::string serial = cert.value("serial", "");
  const std::string error = cert.value("last_error", "");
  ASSERT_GT(x5u.size() + error.size(), 100U) << json.output;  // what the table must shorten

  CmdResult narrow = run(kKmsctl, "status");
  ASSERT_EQ(narrow.rc, 0) << narrow.output;
  for (const std::string& line : test::linesOf(narrow.output)) {
    EXPECT_LE(columnsOf(line), 100U) << line;
  }
  EXPECT_EQ(narrow.output.find(x5u), std::string::npos) << narrow.output;
  EXPECT_NE(narrow.output.find("…/" + serial.substr(0, 8) + "….pem"), std::string::npos) << narrow.output;
  // LAST ERROR: the peer as host:port, then what happened (the URL's path is in --wide).
  const std::string peer = x5u.substr(8, x5u.find('/', 8) - 8);
  ASSERT_EQ(error.rfind("https://" + peer + "/", 0), 0U) << error;
  const std::string what = error.substr(error.find(": "));
  EXPECT_NE(narrow.output.find("  " + peer + what.substr(0, 5)), std::string::npos) << narrow.output;
  EXPECT_NE(narrow.output.find("…\n"), std::string::npos) << narrow.output;  // the error cut to fit

  CmdResult wide = run(kKmsctl, "status --wide");
  ASSERT_EQ(wide.rc, 0) << wide.output;
  EXPECT_NE(wide.output.find(x5u + "  "), std::string::npos) << wide.output;
  const std::string notAfter = cert.value("not_after", "");  // to the second; the table to the minute
  EXPECT_NE(wide.output.find("  " + notAfter + "  "), std::string::npos) << wide.output;
  EXPECT_NE(narrow.output.find("  " + notAfter.substr(0, 16) + "Z  "), std::string::npos) << narrow.output;
  EXPECT_NE(wide.output.find(error + "\n"), std::string::npos) << wide.output;

  // On a terminal (script(1) gives kmsctl a pty) the JSON is indented.
  std::string onTty;
  ASSERT_EQ(test::runCommand("SOFTHSM2_CONF=" + lab_->file("softhsm2.conf") + " script -qec '" + kKmsctl +
                                 " --config " + config_ + " status --json' /dev/null",
                             &onTty),
            0)
      << onTty;
  EXPECT_NE(onTty.find("\n  \"certificates\": ["), std::string::npos) << onTty;
}

TEST_F(Daemon, KmsctlStillAsksTheDaemonWhenTheFileHasErrors) {
  startLab();
  auto kmsd = startDaemon();
  ASSERT_TRUE(kmsd->waitFor("KMS_RENEWAL_PLANNED cert=main")) << kmsd->log();
  editConfig("retry_frist = \"1m\"\n");  // a typo: kmsd refuses the file on SIGHUP, keeps the old one
  ASSERT_EQ(::kill(kmsd->pid(), SIGHUP), 0);
  ASSERT_TRUE(kmsd->waitFor("KMS_RELOAD_FAILED")) << kmsd->log();
  CmdResult status = run(kKmsctl, "status");
  EXPECT_EQ(status.rc, 0) << status.output;
  EXPECT_NE(status.output.find("kmsctl: warning: " + config_ + " has 1 error (a running kmsd keeps the "
                               "configuration it last loaded; kmsctl goes on with what it can read):\n  " +
                               config_ + ":"),
            std::string::npos)
      << status.output;
  EXPECT_NE(status.output.find(": [daemon] retry_frist: unknown key\n"), std::string::npos) << status.output;
  EXPECT_NE(status.output.find("kmsd running (pid " + std::to_string(kmsd->pid()) + ")"), std::string::npos)
      << status.output;
  CmdResult events = run(kKmsctl, "events -n 3");
  EXPECT_EQ(events.rc, 0) << events.output;
  EXPECT_NE(events.output.find(" KMS_RELOAD_FAILED "), std::string::npos) << events.output;

  // A file that no longer parses at all: its control_socket line is still found.
  std::ofstream(config_, std::ios::app) << "x = = 1\n";
  CmdResult syntax = run(kKmsctl, "status");
  EXPECT_EQ(syntax.rc, 0) << syntax.output;
  EXPECT_NE(syntax.output.find(": [toml] "), std::string::npos) << syntax.output;
  EXPECT_NE(syntax.output.find("kmsd running (pid "), std::string::npos) << syntax.output;

  // No configuration at all: --socket is enough to reach the daemon.
  std::string bySocket;
  EXPECT_EQ(test::runCommand(kKmsctl + " --config " + sandbox_.file("none.toml") + " status --socket " +
                                 lab_->file("kmsd.sock"),
                             &bySocket),
            0)
      << bySocket;
  EXPECT_EQ(bySocket.rfind("kmsd running (pid ", 0), 0U) << bySocket;  // the file is not needed: no warning
  EXPECT_NE(bySocket.find("\nmain  active  "), std::string::npos) << bySocket;

  // The daemon down: the state directory is read from the broken file too.
  ASSERT_EQ(kmsd->stop(SIGTERM), 0) << kmsd->log();
  CmdResult offline = run(kKmsctl, "status");
  EXPECT_EQ(offline.rc, 0) << offline.output;
  EXPECT_NE(offline.output.find("kmsd is not running; read from the state DB\nNAME "), std::string::npos)
      << offline.output;
  EXPECT_NE(offline.output.find("\nmain  active  "), std::string::npos) << offline.output;
}

TEST_F(Daemon, KmsctlTellsAnotherUserInOneLineWhatItMayNotReach) {
  startLab();
  auto kmsd = startDaemon();
  ASSERT_TRUE(kmsd->waitFor("KMS_RENEWAL_PLANNED cert=main")) << kmsd->log();
  // The paths readable by anyone, the configuration too; kmsd's socket (0660) and state
  // directory (0700) stay root's. The PIN file it names is not read by kmsctl.
  ASSERT_EQ(::chmod(sandbox_.path().c_str(), 0755), 0);
  ASSERT_EQ(::chmod(lab_->file("").c_str(), 0755), 0);
  ASSERT_EQ(::chmod(config_.c_str(), 0644), 0);
  const std::string asNobody = "setpriv --reuid=65534 --regid=65534 --clear-groups " + kKmsctl + " --config " +
                               config_ + " ";
  CmdResult up;
  up.rc = test::runCommand(asNobody + "status", &up.output);
  EXPECT_EQ(up.rc, 1) << up.output;
  EXPECT_EQ(up.output, "kmsctl: kmsd's control socket " + lab_->file("kmsd.sock") +
                           " admits root, kmsd's user and the members of its group (uid 65534 is none of them)\n");
  ASSERT_EQ(kmsd->stop(SIGTERM), 0) << kmsd->log();
  for (const char* command : {"status", "events", "trust"}) {
    CmdResult down;
    down.rc = test::runCommand(asNobody + command, &down.output);
    EXPECT_EQ(down.rc, 1) << command << ": " << down.output;
    EXPECT_EQ(down.output, "kmsctl: kmsd is not running (no answer on " + lab_->file("kmsd.sock") +
                               "), and reading its state in " + lab_->file("state") +
                               " needs root or kmsd's user: Permission denied\n")
        << command;
  }
}

TEST_F(Daemon, EveryControlApiErrorIsAProblemDocument) {
  startLab();
  auto kmsd = startDaemon();
  ASSERT_TRUE(kmsd->waitFor("KMS_CERT_ACTIVATED cert=main")) << kmsd->log();
  struct Case {
    std::string method, target, body;
    int status;
  };
  const std::string nested = std::string(300, '[') + std::string(300, ']');
  const std::vector<Case> cases{
      {"POST", "/v1/certificates/nope/renew", "", 404},
      {"DELETE", "/v1/status", "", 405},
      {"GET", "/v1/frobnicate", "", 404},
      {"POST", "/v1/certificates/main/revoke", "{not json", 400},
      {"POST", "/v1/certificates/main/revoke", R"({"reason": 7})", 400},
      {"POST", "/v1/certificates/main/revoke", R"({"reason": )" + nested + "}", 400},  // too deep
      {"POST", "/v1/certificates/main/revoke", std::string(std::size_t{200} * 1024, ' '), 413},      // too large
      {"GET", "/v1/events?since=abc", "", 400},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.method + " " + c.target);
    auto r = api(c.method, c.target, c.body);
    ASSERT_TRUE(r.has_value()) << r.error().toString();
    EXPECT_EQ(r->status, c.status) << r->body;
    EXPECT_EQ(r->contentType, "application/problem+json");
    auto j = nlohmann::json::parse(r->body, nullptr, false);
    ASSERT_TRUE(j.is_object()) << r->body;
    EXPECT_EQ(j["status"], c.status);
    EXPECT_TRUE(j["title"].is_string() && !j["title"].get<std::string>().empty()) << r->body;
    EXPECT_TRUE(j["detail"].is_string() && !j["detail"].get<std::string>().empty()) << r->body;
  }
  EXPECT_EQ(apiOk("GET", "/healthz").status, 200);  // and the daemon goes on
}

TEST_F(Daemon, ReloadAppliesTheLogFormatAndOrderLimitLive) {
  startLab();
  auto kmsd = startDaemon();
  ASSERT_TRUE(kmsd->waitFor("KMS_CERT_ACTIVATED cert=main")) << kmsd->log();
  editConfig("log_format = \"json\"\nmax_concurrent_orders = 3\n");
  kmsd->signal(SIGHUP);
  ASSERT_TRUE(kmsd->waitFor("KMS_RELOADED")) << kmsd->log();
  EXPECT_EQ(kmsd->log().find("KMS_RELOAD_NEEDS_RESTART"), std::string::npos) << kmsd->log();
  // The next event is a JSON line.
  ASSERT_EQ(run(kKmsctl, "renew main").rc, 0);
  ASSERT_TRUE(kmsd->waitFor(R"("event":"KMS_RENEW_REQUESTED")")) << kmsd->log();
  auto status = api("GET", "/v1/status");
  ASSERT_TRUE(status.has_value());
  auto j = nlohmann::json::parse(status->body);
  EXPECT_EQ(j["daemon"]["max_concurrent_orders"], 3) << status->body;
  // The version, as kmsd --version says it.
  std::string version;
  ASSERT_EQ(test::runCommand(test::kKmsd + " --version", &version), 0);
  EXPECT_EQ("kmsd " + j["daemon"].value("version", "?") + "\n", version) << status->body;
}

TEST_F(Daemon, ReloadKeepsSettingsThatNeedARestartAndNamesThem) {
  startLab();
  auto kmsd = startDaemon();
  ASSERT_TRUE(kmsd->waitFor("KMS_CERT_ACTIVATED cert=main")) << kmsd->log();
  const std::string elsewhere = sandbox_.file("elsewhere.sock");
  std::string toml = test::readFile(config_);
  const auto at = toml.find("control_socket = ");
  ASSERT_NE(at, std::string::npos) << toml;
  toml.replace(at, toml.find('\n', at) - at, "control_socket = \"" + elsewhere + "\"");
  toml.replace(toml.find("[hsm]\n"), 6, "[hsm]\nsession_pool = 2\n");
  std::ofstream(config_, std::ios::trunc) << toml;
  kmsd->signal(SIGHUP);
  ASSERT_TRUE(kmsd->waitFor("KMS_RELOADED")) << kmsd->log();
  const std::string log = kmsd->log();
  const auto line = log.substr(log.find("KMS_RELOAD_NEEDS_RESTART"));
  EXPECT_NE(line.find("[daemon] control_socket"), std::string::npos) << log;
  EXPECT_NE(line.find("[hsm]"), std::string::npos) << log;
  // The old value stays: the API answers where it did, nothing listens at the new path.
  auto health = api("GET", "/healthz");
  ASSERT_TRUE(health.has_value()) << health.error().toString();
  EXPECT_EQ(health->status, 200);
  EXPECT_FALSE(test::fileExists(elsewhere));
}

TEST_F(Daemon, ReloadNamesACertificateThatNeedsTheHttp01ResponderStartedAtARestart) {
  startLab();
  auto kmsd = startDaemon();
  ASSERT_TRUE(kmsd->waitFor("KMS_CERT_ACTIVATED cert=main")) << kmsd->log();
  std::ofstream(config_, std::ios::app) << "\n[[certificate]]\nname = \"web\"\nidentifiers = [\"dns:web.example\"]\n";
  kmsd->signal(SIGHUP);
  ASSERT_TRUE(kmsd->waitFor("KMS_RELOADED")) << kmsd->log();
  const std::string log = kmsd->log();
  EXPECT_NE(log.find("[[certificate]] web: http-01 needs the http-01 responder"), std::string::npos) << log;
  EXPECT_NE(log.find("0 added"), std::string::npos) << log;
  auto status = nlohmann::json::parse(apiOk("GET", "/v1/status").body);
  EXPECT_EQ(status["daemon"]["certificates"], 1) << status.dump();
}

TEST_F(Daemon, AChangedCertificateIsRenewedAtOnceWithItsNewDefinitionWithoutAGap) {
  startLab();
  auto kmsd = startDaemon();
  ASSERT_TRUE(kmsd->waitFor("KMS_CERT_ACTIVATED cert=main")) << kmsd->log();
  auto before = pki::parsePemChain(test::readFile(lab_->file("www/main.pem")));
  ASSERT_TRUE(before.has_value());
  std::string toml = test::readFile(config_);
  const auto at = toml.find("subject_o = ");
  ASSERT_NE(at, std::string::npos) << toml;
  toml.replace(at, toml.find('\n', at) - at, "subject_o = \"Renamed Carrier\"");
  std::ofstream(config_, std::ios::trunc) << toml;
  kmsd->signal(SIGHUP);
  ASSERT_TRUE(kmsd->waitFor("1 changed")) << kmsd->log();
  ASSERT_TRUE(kmsd->waitFor("KMS_RENEWAL_STARTED cert=main")) << kmsd->log();
  // Until the new certificate is published, verifiers get the old one.
  bool gap = false;
  std::string subject;
  for (auto end = std::chrono::steady_clock::now() + 60s; std::chrono::steady_clock::now() < end;) {
    auto now = pki::parsePemChain(test::readFile(lab_->file("www/main.pem")));
    if (!now) {
      gap = true;
      break;
    }
    subject = now->front().subject();
    if (subject.find("Renamed Carrier") != std::string::npos) {
      break;
    }
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_FALSE(gap);
  EXPECT_NE(subject.find("O=Renamed Carrier"), std::string::npos) << subject << kmsd->log();
}

TEST_F(Daemon, UnusableControlSocketIsReportedAndCertificatesStillRenew) {
  startLab();
  std::string text = test::readFile(config_);
  const std::string from = "control_socket = \"" + lab_->file("kmsd.sock") + "\"";
  auto at = text.find(from);
  ASSERT_NE(at, std::string::npos) << text;
  text.replace(at, from.size(), "control_socket = \"" + sandbox_.file("no/such/dir/kmsd.sock") + "\"");
  config_ = sandbox_.write("kmsd.toml", text);
  auto kmsd = startDaemon();
  ASSERT_TRUE(kmsd->waitFor("KMS_CERT_ACTIVATED cert=main")) << kmsd->log();
  const std::string log = kmsd->log();
  EXPECT_NE(log.find("KMS_CONTROL_API_FAILED"), std::string::npos) << log;
  EXPECT_NE(log.find("[daemon] control_socket: "), std::string::npos) << log;
  EXPECT_NE(log.find("no/such/dir/kmsd.sock"), std::string::npos) << log;
  EXPECT_EQ(kmsd->stop(), 0);
}

TEST_F(Daemon, SigtermWhileAStepWaitsOnASlowPeerDoesNotWaitForThePeer) {
  // Every kms-lab answer takes 120 s: the first request of the first order is still waiting
  // when SIGTERM comes. kmsd gives it [daemon] stop_grace, then cancels it: the stop comes
  // after the grace (the step was given it) and well before twice the grace (the request was
  // cancelled; waiting for the peer would take minutes), on a fast machine or a slow one.
  const auto grace = 3s;
  startLab({"--slow-ms", "120000"});
  editConfig("stop_grace = \"3s\"\n");
  auto kmsd = startDaemon();
  ASSERT_TRUE(kmsd->waitFor("KMS_STARTED")) << kmsd->log();
  // The first thing kmsd does is read the STI-PA's CA list; the lab says when it holds it.
  bool held = false;
  for (auto end = std::chrono::steady_clock::now() + 60s; !held && std::chrono::steady_clock::now() < end;) {
    held = lab_->log().find("kms-lab: holding ") != std::string::npos;
    std::this_thread::sleep_for(50ms);
  }
  ASSERT_TRUE(held) << lab_->log();
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(kmsd->stop(SIGTERM), 0) << kmsd->log();
  const auto took = std::chrono::steady_clock::now() - t0;
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(took).count();
  EXPECT_GE(took, grace) << ms << " ms: the step in flight was not given its grace";
  EXPECT_LT(took, 2 * grace) << ms << " ms: the request was not cancelled after the grace";
  const std::string log = kmsd->log();
  EXPECT_NE(log.find("in_flight=1"), std::string::npos) << log;  // a step was in flight
  EXPECT_NE(log.find("KMS_STOP_CANCELLING"), std::string::npos) << log;
  EXPECT_NE(log.find("after 3 s ([daemon] stop_grace)"), std::string::npos) << log;
  EXPECT_NE(log.find("KMS_STOPPED"), std::string::npos) << log;
  // A cancelled request is not the peer's failure: no failure counted, no backoff.
  EXPECT_EQ(log.find("KMS_RENEW_FAILED"), std::string::npos) << log;
}

TEST_F(Daemon, SigtermWhenIdleStopsWithoutWaitingForTheGrace) {
  startLab();
  editConfig("stop_grace = \"8s\"\n");
  auto kmsd = startDaemon();
  ASSERT_TRUE(kmsd->waitFor("KMS_CERT_ACTIVATED cert=main")) << kmsd->log();
  ASSERT_TRUE(kmsd->waitFor("KMS_RENEWAL_PLANNED cert=main")) << kmsd->log();
  std::this_thread::sleep_for(500ms);  // housekeeping after the activation done
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(kmsd->stop(SIGTERM), 0) << kmsd->log();
  const auto took = std::chrono::steady_clock::now() - t0;
  // Nothing in flight: the grace is not waited out (it is 8 s; stopping idle takes none of it).
  EXPECT_LT(took, 8s) << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms";
  EXPECT_EQ(kmsd->log().find("KMS_STOP_CANCELLING"), std::string::npos) << kmsd->log();
}

TEST_F(Daemon, ACaSendingBytesThatAreNotUtf8IsRefusedByNameAndNeverStopsKmsd) {
  // Such a Replay-Nonce once made the JWS header's JSON throw on a worker thread, and
  // kmsctl revoke killed kmsd (std::terminate, exit 134).
  startLab();
  editConfig("retry_first = \"1s\"\nretry_max = \"2s\"\n");
  std::string out;
  // A newOrder Location that is not UTF-8: refused by name, the order abandoned.
  ASSERT_TRUE(lab_->labSwitch("/lab/hostile", R"({"location":"not-utf8"})", &out)) << out;
  auto kmsd = startDaemon();
  ASSERT_TRUE(kmsd->waitFor("newOrder answered a Location header kmsd refuses: refusing a URL from the CA with "
                            "bytes outside printable ASCII: '" + lab_->baseUrl() + "/acme/order/"))
      << kmsd->log();
  EXPECT_NE(kmsd->log().find("\\\\xc3("), std::string::npos) << "the bad bytes are shown escaped\n" << kmsd->log();
  EXPECT_EQ(apiOk("GET", "/healthz").status, 200);
  ASSERT_TRUE(lab_->labSwitch("/lab/hostile", R"({"location":"good"})", &out)) << out;
  ASSERT_TRUE(kmsd->waitFor("KMS_CERT_ACTIVATED cert=main")) << kmsd->log();

  // A Replay-Nonce that is not UTF-8 (nor base64url): never kept or sent; a request that
  // needs a fresh one fails naming it, and kmsd answers on.
  ASSERT_TRUE(lab_->labSwitch("/lab/hostile", R"({"nonce":"not-utf8"})", &out)) << out;
  EXPECT_EQ(run(kKmsctl, "renew main").rc, 0);
  ASSERT_TRUE(kmsd->waitFor("newNonce answered a Replay-Nonce that is not base64url: '\\\\xff\\\\xfe")) << kmsd->log();
  // The pool holds no good nonce now: the revocation needs a fresh one and fails naming it.
  CmdResult revoke = run(kKmsctl, "revoke main");
  EXPECT_NE(revoke.rc, 0) << revoke.output;
  EXPECT_NE(revoke.output.find("newNonce answered a Replay-Nonce that is not base64url"), std::string::npos)
      << revoke.output;
  ASSERT_EQ(apiOk("GET", "/healthz").status, 200) << kmsd->log();
  EXPECT_EQ(kmsd->log().find("KMS_INTERNAL_ERROR"), std::string::npos) << kmsd->log();
  ASSERT_TRUE(lab_->labSwitch("/lab/hostile", R"({"nonce":"good"})", &out)) << out;
  CmdResult renew = run(kKmsctl, "renew main --wait");
  EXPECT_EQ(renew.rc, 0) << renew.output << kmsd->log();
  EXPECT_EQ(kmsd->stop(), 0) << kmsd->log();
}

TEST_F(Daemon, KmsctlRenewOverridesAStoredWaitAndSaysSo) {
  startLab();
  editConfig("retry_first = \"1h\"\nretry_max = \"2h\"\n");
  auto kmsd = startDaemon();
  ASSERT_TRUE(kmsd->waitFor("KMS_CERT_ACTIVATED cert=main")) << kmsd->log();
  std::string out;
  ASSERT_TRUE(lab_->labSwitch("/lab/hostile", R"({"nonce":"not-utf8"})", &out)) << out;
  EXPECT_EQ(run(kKmsctl, "renew main").rc, 0);
  ASSERT_TRUE(kmsd->waitFor("retry_at=")) << kmsd->log();  // a failure, and an hour's backoff
  ASSERT_TRUE(lab_->labSwitch("/lab/hostile", R"({"nonce":"good"})", &out)) << out;
  // The operator's renewal does not wait the hour out, and says what it overrode.
  CmdResult renew = run(kKmsctl, "renew main --wait");
  EXPECT_EQ(renew.rc, 0) << renew.output << kmsd->log();
  EXPECT_NE(renew.output.find("main: renewal requested (overrides a wait until "), std::string::npos) << renew.output;
  EXPECT_NE(renew.output.find(" after 1 failure(s))"), std::string::npos) << renew.output;
  EXPECT_NE(kmsd->log().find("renewal requested through the control API; overrides a wait until "), std::string::npos)
      << kmsd->log();
  EXPECT_EQ(kmsd->stop(), 0) << kmsd->log();
}

/// Six certificates, four order slots, and an STI-CR that answers 503: every certificate
/// is issued, fails its publication check and waits on backoff without holding a slot.
class DaemonSlots : public Daemon {
 protected:
  void SetUp() override {
    startLab({"--fail-sti-cr"});
    editConfig("max_concurrent_orders = 4\nretry_first = \"1s\"\nretry_max = \"2s\"\n",
               shakenCertificates({"c2", "c3", "c4", "c5", "c6"}));
  }
  long issuedNames() {
    return std::stol(test::sql(lab_->file("state/kmsd.db"), "SELECT count(DISTINCT cert_id) FROM issued_certificates"));
  }

  const std::vector<std::string> names_{"main", "c2", "c3", "c4", "c5", "c6"};
};

TEST_F(DaemonSlots, OnceAttemptsEveryCertificateAndEndsNamingEachFailure) {
  // Before: the first four held their slots in backoff and --once never ended.
  CmdResult once = test::runTool("SOFTHSM2_CONF=" + lab_->file("softhsm2.conf") + " timeout 240", kKmsd, config_,
                                 "--once");
  ASSERT_EQ(once.rc, 3) << "124 is timeout(1): --once did not end\n" << once.output;
  for (const auto& name : names_) {
    std::string prefix = name;
    prefix.append(": FAILED: ").append(lab_->baseUrl()).append("/sti-cr/").append(name).append("/");
    const auto line = once.output.find(prefix);
    ASSERT_NE(line, std::string::npos) << name << "\n" << once.output;
    EXPECT_NE(once.output.substr(line, once.output.find('\n', line) - line).find("publication check: GET "),
              std::string::npos)
        << name << "\n" << once.output;
  }
  EXPECT_EQ(issuedNames(), 6);
}

TEST_F(DaemonSlots, TheDaemonIssuesEveryCertificateWhileEarlierOnesWaitOnTheStiCr) {
  auto kmsd = startDaemon();
  auto allChecked = [&] {
    const std::string log = kmsd->log();
    return std::all_of(names_.begin(), names_.end(), [&](const std::string& name) {
      return log.find("KMS_PUBLICATION_CHECK_FAILED cert=" + name + " ") != std::string::npos;
    });
  };
  for (auto end = std::chrono::steady_clock::now() + 90s; !allChecked() && std::chrono::steady_clock::now() < end;) {
    std::this_thread::sleep_for(200ms);
  }
  EXPECT_TRUE(allChecked()) << "a certificate never got an order slot\n" << kmsd->log();
  EXPECT_EQ(issuedNames(), 6);
  EXPECT_EQ(kmsd->stop(), 0) << kmsd->log();
}

TEST_F(Daemon, AnOperatorsRenewalIsNotQueuedBehindRoutineOnes) {
  // One slot and a slow CA: two routine renewals are due; the one that does not get the slot
  // waits, and a renewal asked for meanwhile goes before it.
  startLab({"--slow-ms", "150"});
  editConfig("max_concurrent_orders = 1\n", shakenCertificates({"c2", "c3"}));
  CmdResult first = run(kKmsd, "--once");
  ASSERT_EQ(first.rc, 0) << first.output;
  test::sql(lab_->file("state/kmsd.db"),
            "UPDATE managed_certificates SET renew_at = 0, ari_next_check = NULL, next_attempt_at = NULL "
            "WHERE name IN ('main', 'c3')");
  auto kmsd = startDaemon();
  ASSERT_TRUE(kmsd->waitFor("KMS_RENEWAL_STARTED cert=")) << kmsd->log();
  std::this_thread::sleep_for(500ms);  // the other routine renewal queues for the slot
  ASSERT_EQ(run(kKmsctl, "renew c2").rc, 0);
  auto started = [&] {
    std::vector<std::string> names;
    const std::string log = kmsd->log();
    const std::string tag = "KMS_RENEWAL_STARTED cert=";
    for (auto at = log.find(tag); at != std::string::npos; at = log.find(tag, at + 1)) {
      const auto from = at + tag.size();
      names.push_back(log.substr(from, log.find(' ', from) - from));
    }
    return names;
  };
  for (auto end = std::chrono::steady_clock::now() + 90s; started().size() < 3 && std::chrono::steady_clock::now() < end;) {
    std::this_thread::sleep_for(100ms);
  }
  const auto names = started();
  ASSERT_EQ(names.size(), 3U) << kmsd->log();
  EXPECT_NE(names[0], "c2") << kmsd->log();
  EXPECT_EQ(names[1], "c2") << "the operator's renewal waited behind a routine one\n" << kmsd->log();
  EXPECT_EQ(kmsd->stop(), 0) << kmsd->log();
}

/// Opens `n` connections that send half a request and hold it: to 127.0.0.1:port from
/// 127.0.3.1.. (20 addresses), or to the Unix socket `path`.
std::vector<int> slowClients(int n, std::uint16_t port, const std::string& path = "") {
  std::vector<int> fds;
  const std::string half = "GET /.well-known/acme-challenge/x HTTP/1.1\r\nHost: a\r\nX-Slow: ";
  for (int i = 0; i < n; ++i) {
    int fd = -1;
    if (path.empty()) {
      fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in from{};
      from.sin_family = AF_INET;
      from.sin_addr.s_addr = htonl((127U << 24) | (3U << 8) | static_cast<unsigned>(1 + i % 20));
      sockaddr_in to{};
      to.sin_family = AF_INET;
      to.sin_port = htons(port);
      to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      if (::bind(fd, reinterpret_cast<sockaddr*>(&from), sizeof from) != 0 ||
          ::connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof to) != 0) {
        ::close(fd);
        continue;
      }
    } else {
      fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_un to{};
      to.sun_family = AF_UNIX;
      std::strncpy(to.sun_path, path.c_str(), sizeof to.sun_path - 1);
      if (::connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof to) != 0) {
        ::close(fd);
        continue;
      }
    }
    (void)::send(fd, half.data(), half.size(), MSG_NOSIGNAL);
    fds.push_back(fd);
  }
  return fds;
}

TEST_F(Daemon, SlowClientsOnEitherListenerNeitherExhaustDescriptorsNorSilenceTheControlApi) {
  // kmsd with 256 descriptors: 300 slow clients on the http-01 port once made SIGHUP fail
  // with "Too many open files" and the control API stop answering.
  startLab();
  editConfig("listener_header_timeout = \"2s\"\n",
             "\n[[certificate]]\nname = \"web\"\nidentifiers = [\"dns:web.example\"]\nchallenge = \"http-01\"\n");
  test::PassedSocket http01;
  DaemonProcess kmsd(lab_->file("softhsm2.conf"), config_, sandbox_.file("kmsd.log"), &http01, 256);
  ASSERT_TRUE(kmsd.waitFor("KMS_CERT_ACTIVATED cert=main")) << kmsd.log();
  // 256 descriptors cannot hold 2 x 256 connections beside the reserve: each listener gets 96.
  EXPECT_NE(kmsd.log().find("KMS_FD_LIMIT_LOW"), std::string::npos) << kmsd.log();
  EXPECT_NE(kmsd.log().find("holds each listener to 96 connections"), std::string::npos) << kmsd.log();

  std::vector<int> held = slowClients(300, http01.port());
  EXPECT_GE(held.size(), 250U);
  CmdResult status = run(kKmsctl, "status");
  EXPECT_EQ(status.rc, 0) << status.output;
  EXPECT_EQ(status.output.find("not running"), std::string::npos) << status.output;
  kmsd.signal(SIGHUP);
  EXPECT_TRUE(kmsd.waitFor("KMS_RELOADED")) << kmsd.log();
  EXPECT_EQ(kmsd.log().find("Too many open files"), std::string::npos) << kmsd.log();
  for (int fd : held) {
    ::close(fd);
  }

  // The control socket itself: slow clients fill its cap, the header timeout frees it.
  held = slowClients(300, 0, lab_->file("kmsd.sock"));
  bool answered = false;
  for (auto end = std::chrono::steady_clock::now() + 60s; !answered && std::chrono::steady_clock::now() < end;) {
    auto health = api("GET", "/healthz");
    answered = health.has_value() && health->status == 200;
    if (!answered) {
      std::this_thread::sleep_for(200ms);
    }
  }
  EXPECT_TRUE(answered) << kmsd.log();
  for (int fd : held) {
    ::close(fd);
  }
  EXPECT_EQ(run(kKmsctl, "status").rc, 0);
  EXPECT_EQ(kmsd.stop(), 0) << kmsd.log();
}

TEST_F(Daemon, ControlApiCallersAreRecordedAndRevocationCanBeKeptToAGroup) {
  startLab();
  editConfig("control_admin_group = \"root\"\n");
  auto kmsd = startDaemon();
  ASSERT_TRUE(kmsd->waitFor("KMS_CERT_ACTIVATED cert=main")) << kmsd->log();
  const std::string socket = lab_->file("kmsd.sock");
  // This test lets another user reach the socket at all.
  ASSERT_EQ(::chmod(sandbox_.path().c_str(), 0711), 0);
  ASSERT_EQ(::chmod(lab_->dir().c_str(), 0711), 0);
  ASSERT_EQ(::chmod(socket.c_str(), 0666), 0);
  // POST as uid 65534 with primary group `gid`; the HTTP status and body.
  auto postAs = [&](const std::string& gid, const std::string& what) {
    std::string out;
    test::runCommand("setpriv --reuid=65534 --regid=" + gid + " --clear-groups curl -sS -w '\\n%{http_code}' "
                     "--unix-socket '" + socket + "' -X POST -d '{}' http://kmsd/v1/certificates/main/" + what,
                     &out);
    return out;
  };
  // Renewal is anyone's who can reach the socket; the caller is recorded.
  std::string renew = postAs("65534", "renew");
  EXPECT_NE(renew.find("\n202"), std::string::npos) << renew;
  EXPECT_TRUE(kmsd->waitFor("KMS_RENEW_REQUESTED cert=main uid=65534 ")) << kmsd->log();
  // Revocation: not for uid 65534 outside group root ...
  std::string refused = postAs("65534", "revoke");
  EXPECT_NE(refused.find("\n403"), std::string::npos) << refused;
  EXPECT_NE(refused.find("revocation is restricted to root, kmsd's user and the members of group root "
                         "([daemon] control_admin_group); uid 65534 is not one of them"),
            std::string::npos)
      << refused;
  EXPECT_EQ(kmsd->log().find("KMS_CERT_REVOKED"), std::string::npos) << kmsd->log();
  // ... but for the same uid in group root, recorded as such.
  ASSERT_TRUE(kmsd->waitFor("KMS_CERT_ACTIVATED cert=main", 90s)) << kmsd->log();
  std::string allowed;
  for (int i = 0; i < 100; ++i) {  // the renewal may still be in flight: revoke once it is active
    allowed = postAs("0", "revoke");
    if (allowed.find("\n200") != std::string::npos || allowed.find("\n409") == std::string::npos) {
      break;
    }
    std::this_thread::sleep_for(200ms);
  }
  EXPECT_NE(allowed.find("\n200"), std::string::npos) << allowed;
  EXPECT_TRUE(kmsd->waitFor("uid=65534")) << kmsd->log();
  const std::string log = kmsd->log();
  const auto revoked = log.find("KMS_CERT_REVOKED cert=main");
  ASSERT_NE(revoked, std::string::npos) << log;
  EXPECT_NE(log.substr(revoked, log.find('\n', revoked) - revoked).find(" uid=65534"), std::string::npos) << log;
  EXPECT_EQ(kmsd->stop(), 0) << kmsd->log();
}

TEST_F(Daemon, RateLimitFromTheCaHoldsBackEveryOrderToIt) {
  // The first three newOrders pass; from the fourth on the CA refuses newOrder for 8 s.
  startLab({"--rate-limit-after", "3", "--rate-limit-seconds", "8"});
  {
    std::ofstream(config_, std::ios::app) << "\n[[certificate]]\nname = \"second\"\nspc = \"1234\"\nsubject_o = \"Two\"\n"
                                          << "\n[[certificate]]\nname = \"third\"\nspc = \"1234\"\nsubject_o = \"Three\"\n";
  }
  auto kmsd = startDaemon();
  for (const char* name : {"main", "second", "third"}) {
    ASSERT_TRUE(kmsd->waitFor(std::string("KMS_CERT_ACTIVATED cert=") + name)) << kmsd->log();
  }
  auto countIn = [](const std::string& text, const std::string& what) {
    std::size_t n = 0;
    for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) {
      ++n;
    }
    return n;
  };
  CmdResult renewSecond = run(kKmsctl, "renew second");
  ASSERT_EQ(renewSecond.rc, 0) << renewSecond.output;
  ASSERT_TRUE(kmsd->waitFor("KMS_CA_BACKOFF")) << kmsd->log();
  // Renewed while the CA asked to wait: its newOrder must wait too, without asking.
  CmdResult renewThird = run(kKmsctl, "renew third");
  ASSERT_EQ(renewThird.rc, 0) << renewThird.output;
  auto end = std::chrono::steady_clock::now() + 90s;
  while (countIn(kmsd->log(), "KMS_CERT_ACTIVATED") < 5 && std::chrono::steady_clock::now() < end) {
    std::this_thread::sleep_for(200ms);
  }
  const std::string log = kmsd->log();
  EXPECT_EQ(countIn(log, "KMS_CERT_ACTIVATED cert=second"), 2u) << log;
  EXPECT_EQ(countIn(log, "KMS_CERT_ACTIVATED cert=third"), 2u) << log;
  EXPECT_EQ(countIn(log, "KMS_RENEW_FAILED cert=second"), 1u) << log;  // the one refusal
  EXPECT_EQ(countIn(log, "KMS_RENEW_FAILED cert=third"), 0u) << log;   // never asked during the pause
  EXPECT_EQ(countIn(lab_->log(), "newOrder refused"), 1u) << lab_->log();
  EXPECT_EQ(kmsd->stop(), 0);
}

TEST_F(Daemon, PrivateStateNoCoreDumpsAndAnOpenStateDirRefused) {
  startLab();
  // Started under the laxest umask: kmsd's own umask and explicit modes decide.
  const mode_t old = ::umask(0);
  auto kmsd = startDaemon();
  ::umask(old);
  ASSERT_TRUE(kmsd->waitFor("KMS_CERT_ACTIVATED cert=main")) << kmsd->log();
  auto mode = [](const std::string& p) {
    struct stat st {};
    EXPECT_EQ(::stat(p.c_str(), &st), 0) << p;
    return st.st_mode & 07777;
  };
  const std::string state = lab_->file("state");
  EXPECT_EQ(mode(state), 0700U);
  EXPECT_EQ(mode(state + "/kmsd.db"), 0600U);
  EXPECT_EQ(mode(lab_->file("www/main")), 0755U);
  EXPECT_EQ(mode(lab_->file("www/main.pem")), 0644U);
  EXPECT_EQ(mode(lab_->file("kmsd.sock")), 0660U);  // the control socket: owner and group only
  // A crash writes no core file (the PIN or a token could be in it).
  std::string limits = test::readFile("/proc/" + std::to_string(kmsd->pid()) + "/limits");
  std::istringstream line(limits.substr(limits.find("Max core file size") + 18));
  std::string soft;
  std::string hard;
  line >> soft >> hard;
  EXPECT_EQ(soft, "0") << limits;
  EXPECT_EQ(hard, "0") << limits;
  EXPECT_EQ(kmsd->stop(), 0);

  // Anyone local could swap kmsd.db in a world-writable state directory: refused, named.
  ASSERT_EQ(::chmod(state.c_str(), 0777), 0);
  const std::string expected = "[daemon] state_dir: writable by group or others (mode 0777): another local user "
                               "could replace kmsd.db; run chmod 700 " + state;
  // 78 (EX_CONFIG): the operator mends it; kmsd.service does not restart on it.
  CmdResult once = run(kKmsd, "--once");
  EXPECT_EQ(once.rc, 78) << once.output;
  EXPECT_NE(once.output.find(expected), std::string::npos) << once.output;
  CmdResult check = run(kKmsd, "--check-config");
  EXPECT_EQ(check.rc, 78) << check.output;
  EXPECT_NE(check.output.find(expected), std::string::npos) << check.output;
}

/// A small tmpfs over the lab's web root (root only), unmounted by the destructor.
class SmallDisk {
 public:
  explicit SmallDisk(std::string dir) : dir_(std::move(dir)) {
    mounted_ = test::runCommand("mount -t tmpfs -o size=256k,mode=0755 kms-test-www '" + dir_ + "'", &out_) == 0;
  }
  ~SmallDisk() {
    if (mounted_) {
      std::string out;
      (void)test::runCommand("umount -l '" + dir_ + "'", &out);
    }
  }
  SmallDisk(const SmallDisk&) = delete;
  SmallDisk& operator=(const SmallDisk&) = delete;
  [[nodiscard]] bool mounted() const { return mounted_; }
  [[nodiscard]] const std::string& output() const { return out_; }
  bool remount(const char* how) {
    std::string out;
    return test::runCommand(std::string("mount -o remount,") + how + " '" + dir_ + "'", &out) == 0;
  }

 private:
  std::string dir_;
  std::string out_;
  bool mounted_ = false;
};

TEST_F(Daemon, FullOrReadOnlyWebRootKeepsTheActiveCertificate) {
  if (::geteuid() != 0) {
    GTEST_SKIP() << "mounting a small tmpfs as the web root needs root (CI runs as root)";
  }
  startLab();
  const std::string www = lab_->file("www");
  SmallDisk disk(www);
  ASSERT_TRUE(disk.mounted()) << disk.output();
  // Retries every second or two, so each disk state is tried within the test.
  editConfig("retry_first = \"1s\"\nretry_max = \"2s\"\n");
  auto kmsd = startDaemon();
  ASSERT_TRUE(kmsd->waitFor("KMS_CERT_ACTIVATED cert=main")) << kmsd->log();
  const std::string served = test::readFile(www + "/main.pem");
  auto first = pki::parsePemChain(served);
  ASSERT_TRUE(first.has_value());
  const std::string serial = first->front().serialHex();

  // What must hold while the disk refuses: the active certificate stays, the file verifiers
  // fetch is the old one, whole, and no temp file is left in the web root.
  auto unchanged = [&](const std::string& when) {
    CmdResult status = run(kKmsctl, "status --json");
    auto j = nlohmann::json::parse(status.output.substr(status.output.find('{')));
    EXPECT_EQ(j["certificates"][0]["serial"], serial) << when;
    EXPECT_EQ(test::readFile(www + "/main.pem"), served) << when;
    for (const auto& dir : {www, www + "/main"}) {
      for (const auto& e : std::filesystem::directory_iterator(dir)) {
        EXPECT_EQ(e.path().filename().string().find(".tmp-"), std::string::npos) << when << ": " << e.path();
      }
    }
  };

  // Full: a filler takes every free block.
  {
    std::ofstream filler(www + "/filler", std::ios::binary);
    std::string block(4096, 'x');
    for (int i = 0; i < 128 && filler; ++i) {
      filler.write(block.data(), static_cast<std::streamsize>(block.size()));
      filler.flush();
    }
  }
  EXPECT_EQ(run(kKmsctl, "renew main").rc, 0);
  ASSERT_TRUE(kmsd->waitFor("No space left on device")) << kmsd->log();
  std::string log = kmsd->log();
  auto line = log.substr(log.find("KMS_PUBLISH_FAILED cert=main"));
  line = line.substr(0, line.find('\n'));
  EXPECT_NE(line.find("publish to [publisher] web_root: "), std::string::npos) << line;
  EXPECT_NE(line.find(www + "/main/"), std::string::npos) << line;  // the path it could not write
  unchanged("full");

  // Read-only (and still full): refused for that reason, named.
  ASSERT_TRUE(disk.remount("ro"));
  ASSERT_TRUE(kmsd->waitFor("Read-only file system")) << kmsd->log();
  unchanged("read-only");

  // Mended: the recorded chain is published (no new order) and becomes active.
  ASSERT_TRUE(disk.remount("rw"));
  ::unlink((www + "/filler").c_str());
  std::string renewed;
  for (auto end = std::chrono::steady_clock::now() + 60s; std::chrono::steady_clock::now() < end;) {
    auto chain = pki::parsePemChain(test::readFile(www + "/main.pem"));
    if (chain && chain->front().serialHex() != serial) {
      renewed = chain->front().serialHex();
      break;
    }
    std::this_thread::sleep_for(200ms);
  }
  EXPECT_FALSE(renewed.empty()) << kmsd->log();
  log = kmsd->log();
  EXPECT_EQ(log.find("KMS_ORDER_CREATED", log.find("KMS_PUBLISH_FAILED")), std::string::npos) << log;
  EXPECT_EQ(kmsd->stop(), 0);
}

}  // namespace
}  // namespace kms
