// kmsd's own alerts against real receivers: Debian's Alertmanager (read back from its API), a
// webhook receiver checking the HMAC (tests/support/alert_receiver.py) and aiosmtpd's Maildir
// (python3-aiosmtpd). kms-lab refuses the SPC token on demand: three failures in a row make
// `spc_token_unobtainable` fire; letting it through again resolves it.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "background_process.h"
#include "cli.h"
#include "daemon_process.h"
#include "lab_process.h"
#include "openssl_pki.h"
#include "sandbox.h"

namespace kms {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr const char* kWebhookKey = "whk-4c1d9e7a0b3f";
constexpr const char* kPython = "/usr/bin/python3";  // Debian's, with python3-aiosmtpd
const std::string kSupport = std::string(KMS_SOURCE_DIR) + "/tests/support/";

/// Polls `ok` every 100 ms for at most `limit`.
template <class F>
bool eventually(F ok, std::chrono::seconds limit = std::chrono::seconds(90)) {
  for (auto end = Clock::now() + limit; Clock::now() < end;) {
    if (ok()) {
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return ok();
}

/// The webhook receiver: its port, its directory of received bodies.
struct Receiver {
  std::uint16_t port = 0;
  std::string dir;
  std::unique_ptr<test::BackgroundProcess> process;

  /// Every body received so far, in order.
  [[nodiscard]] std::vector<nlohmann::json> received() const {
    std::vector<std::string> names;
    names.reserve(64);
    for (const auto& entry : fs::directory_iterator(dir)) {
      const std::string name = entry.path().filename().string();
      if (name.size() == 9 && name.ends_with(".json")) {
        names.push_back(entry.path().string());
      }
    }
    std::sort(names.begin(), names.end());
    std::vector<nlohmann::json> out;
    out.reserve(names.size());
    for (const auto& n : names) {
      out.push_back(nlohmann::json::parse(test::readFile(n)));
    }
    return out;
  }
  /// How many bodies said `status` ("firing", "resolved") of `condition`.
  [[nodiscard]] int count(const std::string& status, const std::string& condition) const {
    int n = 0;
    for (const auto& r : received()) {
      if (r["body"]["status"] == status && r["body"]["alert"]["condition"] == condition) {
        ++n;
      }
    }
    return n;
  }
  void setMode(const std::string& mode) const { std::ofstream(dir + "/mode", std::ios::trunc) << mode; }
};

Receiver startReceiver(const test::Sandbox& sandbox, const std::string& keyFile) {
  Receiver r;
  r.port = test::freePort();
  r.dir = sandbox.file("webhook");
  fs::create_directories(r.dir);
  r.process = std::make_unique<test::BackgroundProcess>(
      std::vector<std::string>{kPython, kSupport + "alert_receiver.py", std::to_string(r.port),
                               keyFile, r.dir},
      sandbox.file("webhook.log"));
  EXPECT_TRUE(eventually([&] { return test::fileExists(r.dir + "/ready"); }, std::chrono::seconds(30)))
      << test::readFile(sandbox.file("webhook.log"));
  return r;
}

/// aiosmtpd on a free port writing a Maildir under `dir`; `handler` its handler class.
std::unique_ptr<test::BackgroundProcess> startSmtp(const test::Sandbox& sandbox, std::uint16_t port,
                                                   const std::string& dir,
                                                   const std::string& handler = "aiosmtpd.handlers.Mailbox") {
  auto smtp = std::make_unique<test::BackgroundProcess>(
      std::vector<std::string>{kPython, "-m", "aiosmtpd", "-n", "-l", "127.0.0.1:" + std::to_string(port), "-c",
                               handler, dir},
      sandbox.file("smtp-" + std::to_string(port) + ".log"),
      std::vector<std::string>{"PYTHONPATH=" + kSupport});
  EXPECT_TRUE(eventually([&] { return test::runCommand("curl -s -m 1 telnet://127.0.0.1:" + std::to_string(port) +
                                                           " </dev/null") != 7; },
                         std::chrono::seconds(30)));
  return smtp;
}

/// The text of every mail delivered to the Maildir `dir`.
std::vector<std::string> mails(const std::string& dir) {
  std::vector<std::string> out;
  if (!fs::exists(dir + "/new")) {
    return out;
  }
  for (const auto& entry : fs::directory_iterator(dir + "/new")) {
    out.push_back(test::readFile(entry.path().string()));
  }
  return out;
}

std::unique_ptr<test::BackgroundProcess> startAlertmanager(const test::Sandbox& sandbox, std::uint16_t port) {
  const std::string config = sandbox.write("am.yml", "route: {receiver: blackhole}\nreceivers: [{name: blackhole}]\n");
  auto am = std::make_unique<test::BackgroundProcess>(
      std::vector<std::string>{"/usr/bin/prometheus-alertmanager", "--config.file=" + config,
                               "--storage.path=" + sandbox.file("am-data"),
                               "--web.listen-address=127.0.0.1:" + std::to_string(port), "--cluster.listen-address=",
                               "--log.level=warn"},
      sandbox.file("am.log"), std::vector<std::string>{"GOMAXPROCS=1"});
  EXPECT_TRUE(eventually([&] {
    return test::runCommand("curl -sf http://127.0.0.1:" + std::to_string(port) + "/-/ready >/dev/null") == 0;
  })) << test::readFile(sandbox.file("am.log"));
  return am;
}

/// Alertmanager's active alerts named `alertname`.
std::vector<nlohmann::json> amAlerts(std::uint16_t port, const std::string& alertname) {
  std::string out;
  std::vector<nlohmann::json> found;
  if (test::runCommand("curl -sf http://127.0.0.1:" + std::to_string(port) + "/api/v2/alerts", &out) != 0) {
    return found;
  }
  auto j = nlohmann::json::parse(out, nullptr, false);
  if (!j.is_array()) {
    return found;
  }
  for (const auto& a : j) {
    if (a["labels"].value("alertname", "") == alertname) {
      found.push_back(a);
    }
  }
  return found;
}

/// The lab's configuration with `text` added at its end (an [alerts] section), and
/// retries after 1-2 s.
void configure(const test::LabProcess& lab, const std::string& text) {
  std::string toml = test::readFile(lab.file("kmsd.toml"));
  toml.replace(toml.find("[daemon]\n"), 9, "[daemon]\nretry_first = \"1s\"\nretry_max = \"2s\"\n");
  std::ofstream(lab.file("kmsd.toml"), std::ios::trunc) << toml << "\n" << text;
}

int countOf(const std::string& text, const std::string& what) {
  int n = 0;
  for (std::size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) {
    ++n;
  }
  return n;
}

class Alerts : public ::testing::Test {
 protected:
  test::Sandbox sandbox_;
  std::string env_;

  std::unique_ptr<test::LabProcess> lab_;
  std::unique_ptr<test::DaemonProcess> kmsd_;
  int generation_ = 0;

  void startLab(std::vector<std::string> args = {}) {
    lab_ = std::make_unique<test::LabProcess>(sandbox_.file("lab"), std::move(args));
    env_ = "SOFTHSM2_CONF=" + lab_->file("softhsm2.conf");
  }
  void startKmsd() {
    kmsd_ = std::make_unique<test::DaemonProcess>(lab_->file("softhsm2.conf"), lab_->file("kmsd.toml"),
                                                  sandbox_.file("kmsd-" + std::to_string(++generation_) + ".log"));
  }
  /// A secret file (kmsd's rules: mode 0600) in the sandbox; its path.
  [[nodiscard]] std::string secret(const std::string& name, const std::string& text) const {
    const std::string path = sandbox_.write(name, text);
    ::chmod(path.c_str(), 0600);
    return path;
  }
  [[nodiscard]] test::CmdResult kmsctl(const std::string& args) const {
    return test::runTool(env_, test::kKmsctl, lab_->file("kmsd.toml"), args);
  }
  void failStiPa(bool fail) const {
    std::string out;
    ASSERT_TRUE(lab_->labSwitch("/lab/hostile", std::string(R"({"fail_sti_pa":)") + (fail ? "true" : "false") + "}",
                                &out))
        << out;
  }
  /// The STI-PA refuses, a renewal is asked for, and fails at fetch_token until the alert fires.
  void makeTheSpcTokenUnobtainable() {
    failStiPa(true);
    ASSERT_EQ(kmsctl("renew main").rc, 0);
    ASSERT_TRUE(kmsd_->waitFor("KMS_ALERT_FIRING cert=main", std::chrono::seconds(90))) << kmsd_->log();
  }
};

TEST_F(Alerts, FireOnceAndResolveThroughAlertmanagerWebhookAndMailAcrossAKill) {
  startLab();
  const std::string key = secret("webhook.key", kWebhookKey);
  Receiver hook = startReceiver(sandbox_, key);
  const std::uint16_t amPort = test::freePort();
  auto am = startAlertmanager(sandbox_, amPort);
  const std::uint16_t smtpPort = test::freePort();
  const std::string maildir = sandbox_.file("maildir");
  auto smtp = startSmtp(sandbox_, smtpPort, maildir);
  configure(*lab_, "[alerts]\ninterval = \"1s\"\nrepeat_interval = \"1h\"\n"
                   "[[alerts.alertmanager]]\nname = \"am\"\nurl = \"http://127.0.0.1:" + std::to_string(amPort) +
                       "\"\nlabels = [\"team=voice\"]\n"
                       "[[alerts.webhook]]\nname = \"hook\"\nurl = \"http://127.0.0.1:" + std::to_string(hook.port) +
                       "/kms\"\nsecret_file = \"" + key + "\"\n"
                       "[[alerts.smtp]]\nname = \"mail\"\nurl = \"smtp://127.0.0.1:" + std::to_string(smtpPort) +
                       "\"\nstarttls = \"off\"\nfrom = \"kmsd@sp.test\"\nto = [\"noc@sp.test\", \"oncall@sp.test\"]\n");
  startKmsd();
  ASSERT_TRUE(kmsd_->waitFor("KMS_CERT_ACTIVATED cert=main")) << kmsd_->log();
  makeTheSpcTokenUnobtainable();

  // Alertmanager holds it, with kmsd's labels and the operator's.
  std::vector<nlohmann::json> inAm;
  ASSERT_TRUE(eventually([&] { return !(inAm = amAlerts(amPort, "KmsSpcTokenUnobtainable")).empty(); }))
      << kmsd_->log() << test::readFile(sandbox_.file("am.log"));
  EXPECT_EQ(inAm[0]["labels"]["name"], "main");
  EXPECT_EQ(inAm[0]["labels"]["condition"], "spc_token_unobtainable");
  EXPECT_EQ(inAm[0]["labels"]["severity"], "critical");
  EXPECT_EQ(inAm[0]["labels"]["team"], "voice");
  EXPECT_NE(inAm[0]["annotations"]["summary"].get<std::string>().find("STI-PA"), std::string::npos) << inAm[0];
  // The webhook, signed with the key.
  ASSERT_TRUE(eventually([&] { return hook.count("firing", "spc_token_unobtainable") >= 1; })) << kmsd_->log();
  const nlohmann::json first = hook.received().at(0);
  EXPECT_TRUE(first["mac_ok"].get<bool>()) << first;
  EXPECT_EQ(first["body"]["alert"]["name"], "main");
  EXPECT_EQ(first["body"]["alert"]["ends_at"], nullptr);
  // The mail, to both recipients.
  ASSERT_TRUE(eventually([&] { return !mails(maildir).empty(); })) << kmsd_->log();
  const std::string mail = mails(maildir).at(0);
  EXPECT_NE(mail.find("Subject: [kmsd FIRING] main: spc_token_unobtainable"), std::string::npos) << mail;
  EXPECT_NE(mail.find("X-RcptTo: noc@sp.test, oncall@sp.test"), std::string::npos) << mail;
  // kmsctl says so too.
  test::CmdResult alerts = kmsctl("alerts");
  EXPECT_EQ(alerts.rc, 0) << alerts.output;
  EXPECT_NE(alerts.output.find("main  spc_token_unobtainable  critical  firing since"), std::string::npos)
      << alerts.output;
  test::CmdResult status = kmsctl("status");
  EXPECT_NE(status.output.find("ALERTS"), std::string::npos) << status.output;
  EXPECT_NE(status.output.find("spc_token_unobtainable"), std::string::npos) << status.output;

  // Once every channel's delivery is recorded (kmsctl alerts), a kill and a restart neither
  // page again nor forget: the resolve still comes, once.
  ASSERT_TRUE(eventually([&] {
    auto doc = nlohmann::json::parse(kmsctl("alerts --json").output, nullptr, false);
    if (!doc.is_object() || doc["alerts"].size() != 1 || doc["alerts"][0]["deliveries"].size() != 3) {
      return false;
    }
    for (const auto& d : doc["alerts"][0]["deliveries"]) {
      if (d["sent"] != "firing") {
        return false;
      }
    }
    return true;
  })) << kmsctl("alerts --json").output;
  EXPECT_EQ(kmsd_->stop(SIGKILL), 128 + SIGKILL);
  startKmsd();
  ASSERT_TRUE(kmsd_->waitFor("KMS_RENEW_FAILED cert=main")) << kmsd_->log();
  failStiPa(false);
  ASSERT_TRUE(kmsd_->waitFor("KMS_CERT_ACTIVATED cert=main")) << kmsd_->log();
  ASSERT_TRUE(eventually([&] { return hook.count("resolved", "spc_token_unobtainable") >= 1; })) << kmsd_->log();
  // Each channel's messages are sent in order by one thread: a repeated page after the
  // restart would have come before the resolve.
  EXPECT_EQ(hook.count("firing", "spc_token_unobtainable"), 1) << kmsd_->log();
  EXPECT_EQ(hook.count("resolved", "spc_token_unobtainable"), 1);
  EXPECT_TRUE(hook.received().back()["mac_ok"].get<bool>());
  EXPECT_NE(hook.received().back()["body"]["alert"]["ends_at"], nullptr);
  EXPECT_TRUE(eventually([&] { return amAlerts(amPort, "KmsSpcTokenUnobtainable").empty(); }))
      << kmsd_->log();
  ASSERT_TRUE(eventually([&] { return mails(maildir).size() >= 2; })) << kmsd_->log();
  int firingMails = 0;
  int resolvedMails = 0;
  for (const auto& m : mails(maildir)) {
    firingMails += countOf(m, "Subject: [kmsd FIRING]");
    resolvedMails += countOf(m, "Subject: [kmsd RESOLVED] main: spc_token_unobtainable");
  }
  EXPECT_EQ(firingMails, 1);
  EXPECT_EQ(resolvedMails, 1);
  EXPECT_EQ(countOf(kmsd_->log(), "KMS_ALERT_FIRING"), 0) << "fired again after the restart\n" << kmsd_->log();
  test::CmdResult after = kmsctl("alerts --json");
  auto doc = nlohmann::json::parse(after.output, nullptr, false);
  ASSERT_TRUE(doc.is_object()) << after.output;
  ASSERT_EQ(doc["alerts"].size(), 1U) << after.output;
  EXPECT_EQ(doc["alerts"][0]["state"], "resolved");
  // With kmsd down, kmsctl reads the same from the state DB.
  ASSERT_EQ(kmsd_->stop(SIGTERM), 0);
  test::CmdResult offline = kmsctl("alerts");
  EXPECT_EQ(offline.rc, 0) << offline.output;
  EXPECT_NE(offline.output.find("kmsd is not running; read from the state DB\nmain  spc_token_unobtainable  critical  "
                                "resolved since"),
            std::string::npos)
      << offline.output;
  EXPECT_NE(offline.output.find("channels: am told resolved; hook told resolved; mail told resolved"),
            std::string::npos)
      << offline.output;
  EXPECT_EQ(nlohmann::json::parse(kmsctl("alerts --json").output)["alerts"], doc["alerts"]);
}

TEST_F(Alerts, AChannelHeldForAMinuteDelaysNoRenewal) {
  startLab();
  const std::string key = secret("webhook.key", kWebhookKey);
  Receiver hook = startReceiver(sandbox_, key);
  hook.setMode("hold");  // the first delivery is answered after 60 s
  configure(*lab_, "[alerts]\ninterval = \"1s\"\ntimeout = \"90s\"\n[[alerts.webhook]]\nname = \"slow\"\nurl = "
                   "\"http://127.0.0.1:" + std::to_string(hook.port) + "/\"\nsecret_file = \"" + key + "\"\n");
  startKmsd();
  ASSERT_TRUE(kmsd_->waitFor("KMS_CERT_ACTIVATED cert=main")) << kmsd_->log();
  makeTheSpcTokenUnobtainable();
  ASSERT_TRUE(eventually([&] { return test::fileExists(hook.dir + "/holding"); })) << kmsd_->log();
  hook.setMode("ok");  // what comes after the held one is answered at once
  // While the channel is held, the STI-PA answers again and the renewal completes, and a
  // PASSporT is signed.
  failStiPa(false);
  ASSERT_TRUE(eventually([&] { return countOf(kmsd_->log(), "KMS_CERT_ACTIVATED cert=main") >= 2; }))
      << kmsd_->log();
  test::CmdResult signedNow = kmsctl("passport sign --orig 12025550100 --dest 12025550101 --attest A");
  EXPECT_EQ(signedNow.rc, 0) << signedNow.output;
  EXPECT_FALSE(test::fileExists(hook.dir + "/held-seconds")) << "the renewal waited for the channel";
  EXPECT_EQ(hook.received().size(), 1U) << "the held delivery is still the only one";
  // After the minute, the held page is recorded and the resolve follows.
  ASSERT_TRUE(eventually([&] { return hook.count("resolved", "spc_token_unobtainable") == 1; },
                         std::chrono::seconds(120)))
      << kmsd_->log();
  EXPECT_GE(std::stod(test::readFile(hook.dir + "/held-seconds")), 59.9);
  EXPECT_EQ(hook.count("firing", "spc_token_unobtainable"), 1);
}

TEST_F(Alerts, FailingChannelsAreNamedRetriedAndRenewalsCarryOn) {
  startLab();
  const std::string key = secret("webhook.key", kWebhookKey);
  Receiver hook = startReceiver(sandbox_, key);
  hook.setMode("fail");  // 500
  const std::uint16_t amPort = test::freePort();
  auto am = startAlertmanager(sandbox_, amPort);
  const std::uint16_t smtpPort = test::freePort();
  auto smtp = startSmtp(sandbox_, smtpPort, sandbox_.file("refusing"), "smtp_handlers.RefusingMailbox");
  const std::uint16_t closed = test::freePort();
  configure(*lab_, "[alerts]\ninterval = \"1s\"\nretry_first = \"1s\"\nretry_max = \"1h\"\n"
                   "[[alerts.alertmanager]]\nname = \"am-badlabel\"\nurl = \"http://127.0.0.1:" +
                       std::to_string(amPort) + "\"\nlabels = [\"bad-label=x\"]\n"
                       "[[alerts.webhook]]\nname = \"hook500\"\nurl = \"http://127.0.0.1:" +
                       std::to_string(hook.port) + "/\"\nsecret_file = \"" + key + "\"\n"
                       "[[alerts.webhook]]\nname = \"nobody\"\nurl = \"http://127.0.0.1:" + std::to_string(closed) +
                       "/\"\nsecret_file = \"" + key + "\"\n"
                       // kms-lab's HTTPS, whose certificate this channel does not trust (no ca_bundle)
                       "[[alerts.webhook]]\nname = \"badtls\"\nurl = \"" + lab_->baseUrl() +
                       "/hooks/kms\"\nsecret_file = \"" + key + "\"\n"
                       "[[alerts.smtp]]\nname = \"refused\"\nurl = \"smtp://127.0.0.1:" + std::to_string(smtpPort) +
                       "\"\nstarttls = \"off\"\nfrom = \"kmsd@sp.test\"\nto = [\"ops@refused.invalid\"]\n");
  startKmsd();
  ASSERT_TRUE(kmsd_->waitFor("KMS_CERT_ACTIVATED cert=main")) << kmsd_->log();
  makeTheSpcTokenUnobtainable();
  // Each failure is an event naming the channel and what the peer said.
  for (const char* what : {"alertmanager channel am-badlabel could not be told", "invalid label set",
                           "webhook channel hook500 could not be told", "answered HTTP 500",
                           "webhook channel nobody could not be told", "webhook channel badtls could not be told",
                           "SSL certificate problem", "smtp channel refused could not be told",
                           "550"}) {
    EXPECT_TRUE(kmsd_->waitFor(what, std::chrono::seconds(60))) << what << "\n" << kmsd_->log();
  }
  // The webhook's 500 is retried (1 s, then 2 s, ...); Alertmanager's 400 waits retry_max.
  EXPECT_TRUE(eventually([&] { return hook.received().size() >= 2; })) << kmsd_->log();
  EXPECT_EQ(amAlerts(amPort, "KmsSpcTokenUnobtainable").size(), 0U);
  // Renewals carry on.
  failStiPa(false);
  EXPECT_TRUE(eventually([&] { return countOf(kmsd_->log(), "KMS_CERT_ACTIVATED cert=main") >= 2; }))
      << kmsd_->log();
  const std::string metrics = [&] {
    std::string out;
    test::runCommand("curl -s --unix-socket " + lab_->file("kmsd.sock") + " http://kmsd/metrics", &out);
    return out;
  }();
  EXPECT_NE(metrics.find("kms_alert_notifications_total{channel=\"hook500\",result=\"failure\"} "), std::string::npos)
      << metrics;
  test::CmdResult alerts = kmsctl("alerts");
  EXPECT_NE(alerts.output.find("hook500 failing"), std::string::npos) << alerts.output;
}

TEST_F(Alerts, AWebhookThatIsNotHttpsIsRefusedNamingTheChannel) {
  startLab();
  const std::string key = secret("webhook.key", kWebhookKey);
  configure(*lab_, "[[alerts.webhook]]\nname = \"remote\"\nurl = \"http://alerts.sp.test/kms\"\nsecret_file = \"" +
                       key + "\"\n");
  std::string out;
  const int rc = test::runCommand(env_ + " " + test::kKmsd + " --check-config --config " + lab_->file("kmsd.toml"),
                                  &out);
  EXPECT_EQ(rc, 78) << out;
  EXPECT_NE(out.find("[alerts.webhook.remote] url: must be https"), std::string::npos) << out;
}

/// Every file under `dir` (recursively), concatenated.
std::string allFiles(const std::string& dir) {
  std::string out;
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    if (entry.is_regular_file()) {
      out += test::readFile(entry.path().string());
      out += '\n';
    }
  }
  return out;
}

std::string command(const std::string& line) {
  std::string out;
  test::runCommand(line, &out);
  return out;
}

/// A SHAKEN issuance, a failed renewal that raises an alert on every channel, the renewal that
/// resolves it; text then JSON logs, metrics on TCP and the socket, every control API read,
/// every kmsctl view, the receivers' copies, the state DB and the web root: none of them holds
/// the HSM PIN, the STI-PA password or what the STI-PA issued (access, refresh and SPC tokens),
/// the EAB key, the webhook key or the SMTP password.
TEST_F(Alerts, NoSecretInAnyOutput) {
  startLab({"--record"});  // kms-lab writes the tokens it hands out to issued-secrets.txt
  test::OpensslPki pki(sandbox_);
  pki.makeCa("smtp-ca", "/CN=SMTP Test CA");
  pki.makeLeaf("smtp", "/CN=127.0.0.1", "smtp-ca", 1, "subjectAltName=IP:127.0.0.1");
  const std::string key = secret("webhook.key", kWebhookKey);
  const std::string smtpPassword = secret("smtp.password", "smtp-pw-93e1c0d7aa");
  Receiver hook = startReceiver(sandbox_, key);
  const std::uint16_t amPort = test::freePort();
  auto am = startAlertmanager(sandbox_, amPort);
  const std::uint16_t smtpPort = test::freePort();
  const std::string maildir = sandbox_.file("maildir");
  test::BackgroundProcess smtp({kPython, kSupport + "smtp_auth_server.py", std::to_string(smtpPort),
                                pki.pem("smtp"), pki.key("smtp"), "kmsd", smtpPassword, maildir},
                               sandbox_.file("smtp.log"));
  ASSERT_TRUE(eventually([&] { return test::fileExists(maildir + ".ready"); }, std::chrono::seconds(30)))
      << smtp.log();
  const std::uint16_t metricsPort = test::freePort();
  configure(*lab_, "[alerts]\ninterval = \"1s\"\n"
                   "[[alerts.alertmanager]]\nname = \"am\"\nurl = \"http://127.0.0.1:" + std::to_string(amPort) +
                       "\"\n[[alerts.webhook]]\nname = \"hook\"\nurl = \"http://127.0.0.1:" +
                       std::to_string(hook.port) + "/\"\nsecret_file = \"" + key + "\"\n"
                       "[[alerts.smtp]]\nname = \"mail\"\nurl = \"smtp://127.0.0.1:" + std::to_string(smtpPort) +
                       "\"\nfrom = \"kmsd@sp.test\"\nto = [\"noc@sp.test\"]\nusername = \"kmsd\"\npassword_file = \"" +
                       smtpPassword + "\"\nca_bundle = \"" + pki.pem("smtp-ca") + "\"\n");
  {
    std::string toml = test::readFile(lab_->file("kmsd.toml"));
    toml.replace(toml.find("[daemon]\n"), 9,
                 "[daemon]\nmetrics_listen = \"127.0.0.1:" + std::to_string(metricsPort) + "\"\n");
    std::ofstream(lab_->file("kmsd.toml"), std::ios::trunc) << toml;
  }
  startKmsd();
  ASSERT_TRUE(kmsd_->waitFor("KMS_CERT_ACTIVATED cert=main")) << kmsd_->log();
  makeTheSpcTokenUnobtainable();
  ASSERT_TRUE(eventually([&] { return !mails(maildir).empty() && hook.count("firing", "spc_token_unobtainable") > 0 &&
                                      !amAlerts(amPort, "KmsSpcTokenUnobtainable").empty(); }))
      << kmsd_->log() << smtp.log();
  // The JSON log from here on: a restart with log_format = "json".
  ASSERT_EQ(kmsd_->stop(SIGTERM), 0);
  std::string outputs = kmsd_->log();
  {
    std::string toml = test::readFile(lab_->file("kmsd.toml"));
    toml.replace(toml.find("[daemon]\n"), 9, "[daemon]\nlog_format = \"json\"\n");
    std::ofstream(lab_->file("kmsd.toml"), std::ios::trunc) << toml;
  }
  startKmsd();
  failStiPa(false);
  ASSERT_TRUE(eventually([&] { return hook.count("resolved", "spc_token_unobtainable") > 0 && mails(maildir).size() >= 2; }))
      << kmsd_->log();
  EXPECT_NE(kmsd_->log().find("\"KMS_ALERT_RESOLVED\""), std::string::npos) << kmsd_->log();

  // Every output, gathered.
  const std::string socket = lab_->file("kmsd.sock");
  for (const char* path : {"/v1/status", "/v1/certificates", "/v1/certificates/main", "/v1/events?last=100000",
                           "/v1/alerts", "/v1/keys", "/v1/trust", "/metrics", "/healthz", "/readyz"}) {
    outputs += command("curl -s --unix-socket " + socket + " 'http://kmsd" + path + "'");
  }
  outputs += command("curl -s http://127.0.0.1:" + std::to_string(metricsPort) + "/metrics");
  for (const char* args : {"status --json", "status --wide", "events -n 100000", "alerts --json", "alerts",
                           "keys --json", "trust --json", "check-config"}) {
    outputs += kmsctl(args).output;
  }
  outputs += command(env_ + " " + test::kKmsd + " --check-config --config " + lab_->file("kmsd.toml"));
  outputs += command("curl -s http://127.0.0.1:" + std::to_string(amPort) + "/api/v2/alerts");
  outputs += allFiles(hook.dir) + allFiles(maildir);
  ASSERT_TRUE(kmsd_->waitFor("KMS_ALERT_SENT")) << kmsd_->log();
  ASSERT_EQ(kmsd_->stop(SIGTERM), 0);
  outputs += kmsd_->log();
  outputs += allFiles(sandbox_.file("lab") + "/state") + allFiles(sandbox_.file("lab") + "/www");

  // What must not be in them.
  std::vector<std::pair<std::string, std::string>> secrets{
      {"HSM PIN", test::readFile(lab_->file("softhsm/hsm.pin"))},
      {"STI-PA password", test::readFile(lab_->file("sti-pa.password"))},
      {"EAB key", test::readFile(lab_->file("eab.key"))},
      {"webhook key", kWebhookKey},
      {"SMTP password", test::readFile(smtpPassword)}};
  std::istringstream issued(test::readFile(lab_->file("issued-secrets.txt")));
  int tokens = 0;
  for (std::string line; std::getline(issued, line);) {
    if (!line.empty()) {
      secrets.emplace_back("an STI-PA token (" + std::to_string(++tokens) + ")", line);
    }
  }
  ASSERT_GE(tokens, 4) << "the access and refresh tokens of a login and two SPC tokens at least";
  EXPECT_GT(outputs.size(), 100000U) << "the outputs were gathered";
  EXPECT_NE(outputs.find("KMS_CERT_ACTIVATED"), std::string::npos);
  EXPECT_NE(outputs.find("kms_alert_notifications_total"), std::string::npos);
  EXPECT_NE(outputs.find("-----BEGIN CERTIFICATE-----"), std::string::npos) << "the web root's chains";
  for (auto [what, secret] : secrets) {
    while (!secret.empty() && (secret.back() == '\n' || secret.back() == '\r')) {
      secret.pop_back();
    }
    ASSERT_GE(secret.size(), 6U) << what;
    EXPECT_EQ(outputs.find(secret), std::string::npos) << what << " appears in an output";
  }
}

}  // namespace
}  // namespace kms
