// SHAKEN issuance end to end: kmsd --once against kms-lab (a real local STI-PA and STI-CA
// over HTTPS), a real SoftHSM2 token and a real SQLite state directory.
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <regex>
#include <thread>

#include "cli.h"
#include "lab_process.h"
#include "pki/shaken_profile.h"
#include "pki/tn_auth_list.h"
#include "pki/x509.h"
#include "sandbox.h"

namespace kms {
namespace {

using test::LabProcess;

using test::CmdResult;
using test::kKmsctl;
using test::kKmsd;

bool exists(const std::string& p) {
  return test::fileExists(p);
}

class Shaken : public ::testing::Test {
 protected:
  void startLab(std::vector<std::string> switches = {}) {
    lab_ = std::make_unique<LabProcess>(sandbox_.file("lab"), std::move(switches));
    config_ = lab_->file("kmsd.toml");
  }

  CmdResult run(const std::string& tool, const std::string& args, const std::string& env = "") {
    return test::runTool("SOFTHSM2_CONF=" + lab_->file("softhsm2.conf") + " " + env, tool, config_, args);
  }

  /// Rewrites the lab's kmsd.toml with one replacement.
  void editConfig(const std::string& from, const std::string& to) {
    std::string text = test::readFile(config_);
    auto at = text.find(from);
    ASSERT_NE(at, std::string::npos) << from;
    text.replace(at, from.size(), to);
    config_ = sandbox_.write("kmsd-edited.toml", text);
  }

  int keyCount() {
    CmdResult keys = run(kKmsctl, "keys");
    std::smatch m;
    std::regex re("(\\d+) key\\(s\\)");
    return std::regex_search(keys.output, m, re) ? std::stoi(m[1]) : -1;
  }

  void expectNothingPublished() { EXPECT_FALSE(exists(lab_->file("www/main.pem"))); }

  test::Sandbox sandbox_;
  std::unique_ptr<LabProcess> lab_;
  std::string config_;
};

TEST_F(Shaken, IssuesChecksAndPublishesASpcCertificate) {
  startLab();
  CmdResult check = run(kKmsd, "--check-config");
  ASSERT_EQ(check.rc, 0) << check.output;
  CmdResult r = run(kKmsd, "--once");
  ASSERT_EQ(r.rc, 0) << r.output;
  EXPECT_NE(r.output.find("main: issued serial "), std::string::npos) << r.output;
  ASSERT_TRUE(exists(lab_->file("www/main.pem")));
  auto chain = pki::parsePemChain(test::readFile(lab_->file("www/main.pem")));
  ASSERT_TRUE(chain.has_value());
  const pki::Certificate& leaf = chain->front();
  EXPECT_EQ(leaf.subjectField("CN"), std::optional<std::string>("SHAKEN 1234"));
  EXPECT_EQ(leaf.subjectField("O"), std::optional<std::string>("Example Telecom"));
  EXPECT_EQ(pki::TnAuthList::fromDer(*leaf.tnAuthListDer())->singleSpc(), std::optional<std::string>("1234"));
  EXPECT_TRUE(pki::checkShakenProfile(leaf, "1234").has_value());
  CmdResult status = run(kKmsctl, "status --json");
  EXPECT_NE(status.output.find("\"state\": \"active\""), std::string::npos) << status.output;
  EXPECT_NE(status.output.find("\"kind\": \"shaken\""), std::string::npos) << status.output;
  // Nothing is due right after issuance.
  CmdResult again = run(kKmsd, "--once");
  EXPECT_EQ(again.rc, 0) << again.output;
  EXPECT_NE(again.output.find("main: valid until "), std::string::npos) << again.output;
}

TEST_F(Shaken, RenewsWhenTheAriWindowOpensAndKeepsThePreviousChain) {
  startLab({"--cert-lifetime", "9"});  // ARI window: 6 s .. 7.5 s after notBefore
  CmdResult first = run(kKmsd, "--once");
  ASSERT_EQ(first.rc, 0) << first.output;
  std::smatch m;
  std::regex serialRe("main: issued serial ([0-9A-F]+)");
  ASSERT_TRUE(std::regex_search(first.output, m, serialRe)) << first.output;
  std::string firstSerial = m[1];
  CmdResult early = run(kKmsd, "--once");
  EXPECT_EQ(early.rc, 0) << early.output;
  EXPECT_NE(early.output.find("not due (renewal due "), std::string::npos) << early.output;
  std::this_thread::sleep_for(std::chrono::milliseconds(7600));
  CmdResult renewed = run(kKmsd, "--once");
  ASSERT_EQ(renewed.rc, 0) << renewed.output;
  ASSERT_TRUE(std::regex_search(renewed.output, m, serialRe)) << renewed.output;
  EXPECT_NE(m[1], firstSerial);
  EXPECT_TRUE(exists(lab_->file("www/main/" + firstSerial + ".pem")));  // the previous chain stays
  auto chain = pki::parsePemChain(test::readFile(lab_->file("www/main.pem")));
  EXPECT_EQ(chain->front().serialHex(), std::string(m[1]));
}

TEST_F(Shaken, FinalizeAnsweringProcessingIsPolledOnlyAfterItsRetryAfter) {
  // kms-lab refuses (429) a poll of the order that comes before the Retry-After it gave.
  startLab({"--processing-seconds", "2"});
  CmdResult r = run(kKmsd, "--once");
  EXPECT_EQ(r.rc, 0) << r.output;
  EXPECT_NE(r.output.find("main: issued serial "), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("KMS_RENEW_FAILED"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("CSR sent, order processing"), std::string::npos) << r.output;
}

TEST_F(Shaken, WrongStiPaPassword) {
  startLab();
  std::string bad = sandbox_.write("bad.password", "not-the-password\n");
  CmdResult r = run(kKmsd, "--once", "KMSD_STI_PA_PASSWORD_FILE=" + bad);
  EXPECT_EQ(r.rc, 3) << r.output;
  EXPECT_NE(r.output.find("main: FAILED: "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("login of user"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("HTTP 401"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("not-the-password"), std::string::npos);
  expectNothingPublished();
  EXPECT_EQ(keyCount(), 1);  // the account key only
  // The failure is on record: an event and a failure count, not a silent "planned".
  CmdResult events = run(kKmsctl, "events");
  EXPECT_NE(events.output.find("KMS_ISSUE_FAILED main"), std::string::npos) << events.output;
  CmdResult status = run(kKmsctl, "status --json");
  EXPECT_NE(status.output.find("\"failures\": 1"), std::string::npos) << status.output;
  EXPECT_NE(status.output.find("login of user"), std::string::npos) << status.output;
}

TEST_F(Shaken, SpcTheAccountDoesNotOwnIsRefusedByTheStiPa) {
  startLab();
  editConfig("spc = \"1234\"", "spc = \"9999\"");
  CmdResult r = run(kKmsd, "--once");
  EXPECT_EQ(r.rc, 3) << r.output;
  EXPECT_NE(r.output.find("SPC token request for 9999"), std::string::npos) << r.output;
  expectNothingPublished();
  EXPECT_EQ(keyCount(), 1);
}

TEST_F(Shaken, ExpiredTokenIsNotPresented) {
  startLab({"--token-lifetime", "1"});
  CmdResult r = run(kKmsd, "--once");
  EXPECT_EQ(r.rc, 3) << r.output;
  EXPECT_NE(r.output.find("SPC token: expired or expiring within 30 s"), std::string::npos) << r.output;
  expectNothingPublished();
  EXPECT_EQ(keyCount(), 1);
}

TEST_F(Shaken, TamperedTokenSignatureIsRefusedBeforeUse) {
  startLab({"--tamper-token"});
  CmdResult r = run(kKmsd, "--once");
  EXPECT_EQ(r.rc, 3) << r.output;
  EXPECT_NE(r.output.find("SPC token: signature does not verify"), std::string::npos) << r.output;
  expectNothingPublished();
  EXPECT_EQ(keyCount(), 1);
}

TEST_F(Shaken, FingerprintOfAnotherKeyIsRefusedByTheCa) {
  // The CA checks the JWK-thumbprint flavour while kmsd is configured for the SPKI flavour.
  startLab({"--fingerprint", "jwk-thumbprint"});
  std::string labConfig = config_;
  editConfig("fingerprint = \"jwk-thumbprint\"", "fingerprint = \"spki\"");
  CmdResult r = run(kKmsd, "--once");
  EXPECT_EQ(r.rc, 3) << r.output;
  EXPECT_NE(r.output.find("tkauth-01 challenge for"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("fingerprint"), std::string::npos) << r.output;
  expectNothingPublished();
  EXPECT_EQ(keyCount(), 1);
  // Configured to match (the lab's own kmsd.toml), the same lab issues (after the backoff).
  config_ = labConfig;
  ASSERT_TRUE(test::backoffPassed(lab_->file("state/kmsd.db")));
  CmdResult ok = run(kKmsd, "--once");
  EXPECT_EQ(ok.rc, 0) << ok.output;
}

TEST_F(Shaken, CaIssuingAnotherTnAuthListIsNotAccepted) {
  startLab({"--wrong-tnauthlist"});
  CmdResult r = run(kKmsd, "--once");
  EXPECT_EQ(r.rc, 3) << r.output;
  EXPECT_NE(r.output.find("check tnauthlist"), std::string::npos) << r.output;
  expectNothingPublished();
  EXPECT_EQ(keyCount(), 1);
  CmdResult events = run(kKmsctl, "events");
  EXPECT_NE(events.output.find("KMS_ISSUE_FAILED main"), std::string::npos) << events.output;
  EXPECT_NE(events.output.find("check tnauthlist"), std::string::npos) << events.output;
}

TEST_F(Shaken, ChainThatDoesNotVerifyIsNotAccepted) {
  startLab({"--broken-chain"});
  CmdResult r = run(kKmsd, "--once");
  EXPECT_EQ(r.rc, 3) << r.output;
  EXPECT_NE(r.output.find("check chain"), std::string::npos) << r.output;
  expectNothingPublished();
  EXPECT_EQ(keyCount(), 1);
}

TEST_F(Shaken, StiPaUnreachableIsRetryableAndLeavesNoUnmanagedKey) {
  startLab();
  CmdResult r = run(kKmsd, "--once", "KMSD_STI_PA_URL=https://127.0.0.1:1/api/v1");
  EXPECT_EQ(r.rc, 3) << r.output;
  EXPECT_NE(r.output.find("127.0.0.1:1"), std::string::npos) << r.output;
  expectNothingPublished();
  CmdResult keys = run(kKmsctl, "keys");
  EXPECT_EQ(keys.output.find("unmanaged"), std::string::npos) << keys.output;
  // The STI-PA back: the order in flight completes (after the backoff).
  ASSERT_TRUE(test::backoffPassed(lab_->file("state/kmsd.db")));
  CmdResult ok = run(kKmsd, "--once");
  EXPECT_EQ(ok.rc, 0) << ok.output;
  EXPECT_TRUE(exists(lab_->file("www/main.pem")));
}

}  // namespace
}  // namespace kms
