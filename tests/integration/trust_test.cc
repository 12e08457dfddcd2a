// Trust upkeep against kms-lab's STI-PA, through kmsd as a daemon: the CA list and CRL kept
// and shown by `kmsctl trust`, emergency renewal with a new key when the CRL lists our
// certificate or the CA list drops its root, and bad documents refused while the kept ones
// stay (also across a restart).
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <set>
#include <thread>

#include <nlohmann/json.hpp>

#include "cli.h"
#include "daemon_process.h"
#include "lab_process.h"
#include "pki/x509.h"
#include "sandbox.h"

namespace kms {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using test::CmdResult;
using test::kKmsctl;

class Trust : public ::testing::Test {
 protected:
  void SetUp() override {
    lab_ = std::make_unique<test::LabProcess>(sandbox_.file("lab"));
    config_ = lab_->file("kmsd.toml");
    // reuse_key: an emergency renewal must take a new key all the same. Short backoff: a
    // renewal after a refused chain is not held back for minutes.
    std::string toml = test::readFile(config_);
    toml.replace(toml.find("[daemon]\n"), 9, "[daemon]\nretry_first = \"1s\"\nretry_max = \"2s\"\n");
    std::ofstream(config_, std::ios::trunc) << toml << "reuse_key = true\n";
  }

  void startDaemon() {
    kmsd_ = std::make_unique<test::DaemonProcess>(lab_->file("softhsm2.conf"), config_, sandbox_.file("kmsd.log"));
  }
  CmdResult ctl(const std::string& args) {
    return test::runTool("SOFTHSM2_CONF=" + lab_->file("softhsm2.conf"), kKmsctl, config_, args);
  }
  json ctlJson(const std::string& args) {
    CmdResult r = ctl(args);
    EXPECT_EQ(r.rc, 0) << r.output;
    auto at = r.output.find_first_of("{[");
    return at == std::string::npos ? json() : json::parse(r.output.substr(at), nullptr, false);
  }
  /// A lab switch (POST /lab/...); the lab's new state.
  json lab(const std::string& path, const json& body = json::object()) {
    std::string out;
    EXPECT_TRUE(lab_->labSwitch(path, body.dump(), &out)) << path << ": " << out;
    return json::parse(out, nullptr, false);
  }
  std::string activeSerial() {
    json s = ctlJson("status --json");
    return s["certificates"][0].value("serial", "");
  }
  std::string activeKey() {
    for (const auto& k : ctlJson("keys --json")) {
      if (k.value("state", "") == "active") {
        return k.value("uri", "");
      }
    }
    return "";
  }
  /// Refreshes and returns kmsctl's text.
  std::string refresh() {
    CmdResult r = ctl("trust --refresh");
    EXPECT_EQ(r.rc, 0) << r.output;
    return r.output;
  }
  /// Waits (bounded) until the active serial is not `old`; returns it.
  std::string waitForNewSerial(const std::string& old) {
    for (auto end = std::chrono::steady_clock::now() + 90s; std::chrono::steady_clock::now() < end;) {
      std::string s = activeSerial();
      if (!s.empty() && s != old) {
        return s;
      }
      std::this_thread::sleep_for(200ms);
    }
    return old;
  }

  test::Sandbox sandbox_;
  std::unique_ptr<test::LabProcess> lab_;
  std::unique_ptr<test::DaemonProcess> kmsd_;
  std::string config_;
};

TEST_F(Trust, CrlListingOurCertificateRenewsAtOnceWithANewKey) {
  startDaemon();
  ASSERT_TRUE(kmsd_->waitFor("KMS_CERT_ACTIVATED cert=main")) << kmsd_->log();
  const std::string serial = activeSerial();
  const std::string key = activeKey();
  ASSERT_FALSE(key.empty());

  json t = ctlJson("trust --json");
  EXPECT_EQ(t["anchors"], "ca_list");
  EXPECT_EQ(t["ca_list"]["sequence"], 1);
  ASSERT_EQ(t["ca_list"]["roots"].size(), 1U);
  EXPECT_NE(t["ca_list"]["roots"][0].value("subject", "").find("CN=kms-lab SHAKEN Root CA"), std::string::npos) << t;
  EXPECT_NE(t["crl"].value("issuer", "").find("CN=kms-lab STI-PA CRL"), std::string::npos) << t;
  EXPECT_EQ(t["crl"]["entries"], 0);
  CmdResult text = ctl("trust");
  EXPECT_NE(text.output.find("CA list: sequence 1, fetched "), std::string::npos) << text.output;
  EXPECT_NE(text.output.find("CRL: issuer "), std::string::npos) << text.output;

  lab("/lab/revoke", {{"serial", serial}, {"reason", 1}});
  EXPECT_NE(refresh().find("renewing at once: main"), std::string::npos);
  ASSERT_TRUE(kmsd_->waitFor("KMS_CERT_REVOKED cert=main serial=" + serial + " source=crl msg=\"the STI-PA CRL lists serial " +
                             serial + " (reason 1")) << kmsd_->log();
  const std::string renewed = waitForNewSerial(serial);
  ASSERT_NE(renewed, serial) << kmsd_->log();
  EXPECT_NE(activeKey(), key);  // a new key although reuse_key = true
  EXPECT_EQ(ctlJson("trust --json")["crl"]["entries"], 1);
  EXPECT_EQ(kmsd_->stop(), 0);
}

TEST_F(Trust, TheDaemonRereadsBothEveryTrustRefresh) {
  std::string toml = test::readFile(config_);
  toml.replace(toml.find("[sti_pa]\n"), 9, "[sti_pa]\ntrust_refresh = \"1s\"\n");
  std::ofstream(config_, std::ios::trunc) << toml;
  startDaemon();
  ASSERT_TRUE(kmsd_->waitFor("KMS_CERT_ACTIVATED cert=main")) << kmsd_->log();
  const std::string serial = activeSerial();
  lab("/lab/revoke", {{"serial", serial}});
  // No kmsctl trust --refresh: the timer finds it.
  ASSERT_TRUE(kmsd_->waitFor("KMS_CERT_REVOKED cert=main serial=" + serial)) << kmsd_->log();
  EXPECT_NE(waitForNewSerial(serial), serial) << kmsd_->log();
  EXPECT_EQ(kmsd_->stop(), 0);
}

TEST_F(Trust, RootLeavingTheCaListRenewsAtOnceWithANewKey) {
  startDaemon();
  ASSERT_TRUE(kmsd_->waitFor("KMS_CERT_ACTIVATED cert=main")) << kmsd_->log();
  const std::string serial = activeSerial();
  const std::string key = activeKey();

  json state = lab("/lab/rotate-root");
  EXPECT_EQ(state["ca_list_sequence"], 2);
  EXPECT_NE(refresh().find("renewing at once: main"), std::string::npos);
  ASSERT_TRUE(kmsd_->waitFor("KMS_ROOT_DISTRUSTED cert=main serial=" + serial + " msg=\"the chain of serial " + serial +
                             " no longer verifies to the STI-PA CA list (sequence 2)")) << kmsd_->log();
  const std::string renewed = waitForNewSerial(serial);
  ASSERT_NE(renewed, serial) << kmsd_->log();
  EXPECT_NE(activeKey(), key);
  // The new chain is the new root's, and it verifies to the CA list kmsd keeps.
  auto chain = pki::parsePemChain(test::readFile(lab_->file("www/main.pem")));
  ASSERT_TRUE(chain.has_value() && chain->size() == 2);
  EXPECT_EQ(chain->front().serialHex(), renewed);
  EXPECT_NE(chain->at(1).subject().find("Intermediate CA G2"), std::string::npos) << chain->at(1).subject();
  json t = ctlJson("trust --json");
  EXPECT_EQ(t["ca_list"]["sequence"], 2);
  EXPECT_NE(t["ca_list"]["roots"][0].value("subject", "").find("Root CA G2"), std::string::npos) << t;
  // Settled: the next refresh finds nothing to renew.
  EXPECT_EQ(refresh().find("renewing at once"), std::string::npos);
  EXPECT_EQ(kmsd_->stop(), 0);
}

TEST_F(Trust, IssuedChainsMustVerifyToTheKeptCaList) {
  startDaemon();
  ASSERT_TRUE(kmsd_->waitFor("KMS_CERT_ACTIVATED cert=main")) << kmsd_->log();
  const std::string serial = activeSerial();
  // The CA moves to a new root, but the CA list naming it does not verify: kmsd keeps the
  // old list, so a chain to the new root is refused and the active certificate stays.
  lab("/lab/ca-list", {{"mode", "tampered"}});
  lab("/lab/rotate-root");
  EXPECT_EQ(refresh().find("renewing at once"), std::string::npos);
  EXPECT_EQ(ctlJson("trust --json")["ca_list"]["sequence"], 1);
  EXPECT_EQ(ctl("renew main").rc, 0);
  ASSERT_TRUE(kmsd_->waitFor("KMS_ISSUE_FAILED cert=main")) << kmsd_->log();
  std::string log = kmsd_->log();
  std::string line = log.substr(log.find("KMS_ISSUE_FAILED cert=main"));
  EXPECT_NE(line.substr(0, line.find('\n')).find("chain does not verify"), std::string::npos) << line;
  EXPECT_EQ(activeSerial(), serial);
  // The list verifies again: sequence 2 is kept, the old chain is distrusted and replaced.
  lab("/lab/ca-list", {{"mode", "good"}});
  EXPECT_NE(refresh().find("renewing at once: main"), std::string::npos);
  EXPECT_NE(waitForNewSerial(serial), serial) << kmsd_->log();
  EXPECT_EQ(ctlJson("trust --json")["ca_list"]["sequence"], 2);
  EXPECT_EQ(kmsd_->stop(), 0);
}

TEST_F(Trust, WithoutAKeptCaListNoChainIsAccepted) {
  // No [acme] trust_anchors and the first CA list does not verify: fail closed.
  lab("/lab/ca-list", {{"mode", "tampered"}});
  startDaemon();
  ASSERT_TRUE(kmsd_->waitFor("no trust anchors to check the issued chain against: [acme] trust_anchors is not set "
                             "and no STI-PA CA list has been kept yet"))
      << kmsd_->log();
  EXPECT_EQ(activeSerial(), "");
  EXPECT_FALSE(test::fileExists(lab_->file("www/main.pem")));
  EXPECT_TRUE(ctlJson("trust --json")["ca_list"].is_null());
  // Once a list is kept, the recorded order completes.
  lab("/lab/ca-list", {{"mode", "good"}});
  refresh();
  ASSERT_TRUE(kmsd_->waitFor("KMS_CERT_ACTIVATED cert=main")) << kmsd_->log();
  EXPECT_EQ(kmsd_->log().find("KMS_ISSUE_FAILED"), std::string::npos);
  EXPECT_EQ(kmsd_->stop(), 0);
}

TEST_F(Trust, BadDocumentsAreRefusedAndTheKeptOnesStay) {
  startDaemon();
  ASSERT_TRUE(kmsd_->waitFor("KMS_CERT_ACTIVATED cert=main")) << kmsd_->log();
  const std::string serial = activeSerial();

  lab("/lab/ca-list", {{"sequence", 5}});
  refresh();
  EXPECT_TRUE(kmsd_->waitFor("STI-PA CA list sequence 5 (was 1) with 1 root(s) kept", 5s)) << kmsd_->log();

  struct Case {
    json caList;
    std::string refusal;
  };
  for (const Case& c : {Case{{{"sequence", 3}}, "CA list refused (sequence 3 is lower than the kept list's 5)"},
                        Case{{{"sequence", 5}, {"mode", "tampered"}}, "CA list refused (CA list: signature does not verify)"},
                        Case{{{"mode", "expired"}}, "CA list refused (CA list: expired (exp "},
                        Case{{{"mode", "empty"}}, "CA list refused (CA list: trustList is empty)"}}) {
    lab("/lab/ca-list", c.caList);
    refresh();
    EXPECT_TRUE(kmsd_->waitFor("msg=\"STI-PA " + c.refusal, 5s)) << c.refusal << "\n" << kmsd_->log();
    json t = ctlJson("trust --json");
    EXPECT_EQ(t["ca_list"]["sequence"], 5) << c.refusal;
    EXPECT_NE(t["daemon"].value("ca_list_error", "").find(c.refusal.substr(c.refusal.find('(') + 1, 20)),
              std::string::npos)
        << t;
  }
  lab("/lab/ca-list", {{"mode", "good"}});

  // Our certificate is revoked, but no CRL saying so verifies: nothing is renewed.
  lab("/lab/revoke", {{"serial", serial}});
  for (const auto& [mode, refusal] : std::vector<std::pair<std::string, std::string>>{
           {"garbage", "CRL refused (it does not parse: not a DER CRL)"},
           {"wrong-signer", "CRL refused (the CRL issuer 'CN=kms-lab STI-PA Token Signer"},
           {"bad-signature", "CRL refused (the CRL signature does not verify with the key of"},
           {"stale", "CRL refused (it is stale: nextUpdate "}}) {
    lab("/lab/crl", {{"mode", mode}});
    std::string out = refresh();
    EXPECT_EQ(out.find("renewing at once"), std::string::npos) << mode;
    EXPECT_TRUE(kmsd_->waitFor("msg=\"STI-PA " + refusal, 5s)) << mode << "\n" << kmsd_->log();
    EXPECT_EQ(ctlJson("trust --json")["crl"]["entries"], 0) << mode;
  }
  EXPECT_EQ(activeSerial(), serial);
  EXPECT_EQ(kmsd_->log().find("KMS_CERT_REVOKED"), std::string::npos);

  // Kept across a restart: a lower sequence is still refused, and kmsctl reads the DB.
  EXPECT_EQ(kmsd_->stop(), 0);
  lab("/lab/ca-list", {{"sequence", 4}});
  CmdResult offline = ctl("trust");
  EXPECT_NE(offline.output.find("kmsd is not running; read from the state DB"), std::string::npos) << offline.output;
  EXPECT_NE(offline.output.find("CA list: sequence 5"), std::string::npos) << offline.output;
  startDaemon();
  EXPECT_TRUE(kmsd_->waitFor("sequence 4 is lower than the kept list's 5", 30s)) << kmsd_->log();
  // The start's own refresh reads the (still stale) CRL too; a refresh asked for while it
  // runs is refused (409), so one more is made once it is over: nothing is left to race
  // with the good CRL below.
  bool refreshed = false;
  for (int i = 0; i < 100 && !refreshed; ++i) {
    refreshed = ctl("trust --refresh").rc == 0;
    if (!refreshed) {
      std::this_thread::sleep_for(100ms);
    }
  }
  ASSERT_TRUE(refreshed) << kmsd_->log();
  EXPECT_EQ(kmsd_->log().find("KMS_CERT_REVOKED"), std::string::npos) << kmsd_->log();

  // A good CRL at last: the revocation is found.
  lab("/lab/crl", {{"mode", "good"}});
  EXPECT_NE(refresh().find("renewing at once: main"), std::string::npos);
  EXPECT_TRUE(kmsd_->waitFor("KMS_CERT_REVOKED cert=main", 5s)) << kmsd_->log();
  EXPECT_EQ(kmsd_->stop(), 0);
}

/// Revocation after one or two renewals, by the control API (kmsctl revoke) or found in the
/// CRL: the revoked certificate is replaced at once with a new key, no certificate it
/// superseded is ever shown as active again, and the web root serves the replacement.
class TrustRevoke : public Trust, public ::testing::WithParamInterface<std::tuple<bool, int>> {};

TEST_P(TrustRevoke, ARevokedCertificateIsReplacedAndNoSupersededOneReturns) {
  const auto [byCrl, renewals] = GetParam();
  startDaemon();
  ASSERT_TRUE(kmsd_->waitFor("KMS_CERT_ACTIVATED cert=main")) << kmsd_->log();
  std::set<std::string> earlier{activeSerial()};
  for (int i = 0; i < renewals; ++i) {
    CmdResult renew = ctl("renew main --wait");
    ASSERT_EQ(renew.rc, 0) << renew.output << kmsd_->log();
    earlier.insert(activeSerial());
  }
  ASSERT_EQ(earlier.size(), static_cast<std::size_t>(renewals + 1)) << kmsd_->log();
  const std::string revoked = activeSerial();
  const std::string revokedKey = activeKey();
  if (byCrl) {
    lab("/lab/revoke", {{"serial", revoked}, {"reason", 1}});
    EXPECT_NE(refresh().find("renewing at once: main"), std::string::npos) << kmsd_->log();
  } else {
    CmdResult r = ctl("revoke main --reason keyCompromise");
    ASSERT_EQ(r.rc, 0) << r.output << kmsd_->log();
    EXPECT_NE(r.output.find("revoked serial " + revoked + " (reason 1 keyCompromise)"), std::string::npos) << r.output;
  }
  // Until the replacement is active, status shows no certificate at all, never one that
  // the revoked one superseded.
  std::string now;
  for (auto end = std::chrono::steady_clock::now() + 90s; std::chrono::steady_clock::now() < end;) {
    now = activeSerial();
    ASSERT_EQ(earlier.count(now) != 0 && now != revoked, false) << "superseded serial " << now << " is active again";
    if (!now.empty() && now != revoked) {
      break;
    }
    std::this_thread::sleep_for(100ms);
  }
  ASSERT_FALSE(now.empty() || now == revoked) << kmsd_->log();
  EXPECT_EQ(earlier.count(now), 0U);
  EXPECT_NE(activeKey(), revokedKey);  // a new key although reuse_key = true
  // The web root serves the replacement, and the revoked key is called revoked.
  auto chain = pki::parsePemChain(test::readFile(lab_->file("www/main.pem")));
  ASSERT_TRUE(chain.has_value());
  EXPECT_EQ(chain->front().serialHex(), now);
  // The revoked key is no longer active (with reuse_key the certificate it superseded
  // still holds it as "previous").
  for (const auto& k : ctlJson("keys --json")) {
    if (k.value("uri", "") == revokedKey) {
      EXPECT_NE(k.value("state", ""), "active") << k;
    }
  }
  // Settled: a refresh finds nothing more, and the revoked serial stays replaced.
  EXPECT_EQ(refresh().find("renewing at once"), std::string::npos);
  EXPECT_EQ(activeSerial(), now);
  EXPECT_EQ(kmsd_->stop(), 0);
}

TEST_F(Trust, ConfiguredAnchorsAreWhatTheTrustRefreshChecksToo) {
  // [acme] trust_anchors beside [sti_pa], and a CA list that approves another root: issuance
  // accepts chains to the configured anchors, and the trust refresh must not distrust them
  // (it once did, renewing at every refresh, and at every kmsd --once).
  std::string toml = test::readFile(config_);
  toml.replace(toml.find("[acme]\n"), 7, "[acme]\ntrust_anchors = \"" + lab_->file("sti-ca-root.pem") + "\"\n");
  std::ofstream(config_, std::ios::trunc) << toml;
  lab("/lab/ca-list", {{"sequence", 2}, {"mode", "foreign"}});
  for (int run = 0; run < 3; ++run) {
    CmdResult once = test::runTool("SOFTHSM2_CONF=" + lab_->file("softhsm2.conf"), test::kKmsd, config_, "--once");
    ASSERT_EQ(once.rc, 0) << once.output;
    EXPECT_EQ(once.output.find("KMS_ROOT_DISTRUSTED"), std::string::npos) << once.output;
    // Said at every start: the two disagree, and which one is used.
    EXPECT_NE(once.output.find("KMS_TRUST_ANCHORS_DIFFER sequence=2 msg=\"[acme] trust_anchors holds root(s) the STI-PA CA list "
                               "(sequence 2) does not approve: CN=kms-lab SHAKEN Root CA"),
              std::string::npos)
        << once.output;
  }
  json keys = ctlJson("keys --json");
  int certificateKeys = 0;
  for (const auto& k : keys) {
    certificateKeys += k.value("managed", "") == "certificate" ? 1 : 0;
  }
  EXPECT_EQ(certificateKeys, 1) << keys;  // one issuance, no renewal loop
}

INSTANTIATE_TEST_SUITE_P(, TrustRevoke, ::testing::Combine(::testing::Bool(), ::testing::Values(1, 2)),
                         [](const ::testing::TestParamInfo<std::tuple<bool, int>>& param) {
                           return std::string(std::get<0>(param.param) ? "ByCrl" : "ByControlApi") + "After" +
                                  std::to_string(std::get<1>(param.param)) + "Renewals";
                         });

}  // namespace
}  // namespace kms
