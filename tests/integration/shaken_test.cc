// SHAKEN issuance end to end: kmsd --once against kms-lab (a real local STI-PA and STI-CA
// over HTTPS), a real SoftHSM2 token and a real SQLite state directory.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <map>
#include <regex>
#include <thread>

#include <nlohmann/json.hpp>

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

  /// A lab switch (POST /lab/...), with curl over the lab's TLS.
  void labSwitch(const std::string& path, const std::string& json) {
    std::string out;
    ASSERT_TRUE(lab_->labSwitch(path, json, &out)) << out;
  }

  /// One SQL query on the state DB, its output.
  std::string sql(const std::string& query) { return test::sql(lab_->file("state/kmsd.db"), query); }

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
  // The challenge is named by its SPC, not by the base64 DER of the TNAuthList identifier.
  EXPECT_NE(r.output.find("KMS_CHALLENGE_ANSWERED cert=main "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("msg=\"tkauth-01 for SPC 1234\""), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("for MAig"), std::string::npos) << r.output;
  // One renewal time for one activation: the CA's window (kms-lab offers ARI), not also the
  // lifetime share it replaces.
  std::size_t renewTimes = 0;
  for (std::size_t at = r.output.find("renew_at="); at != std::string::npos; at = r.output.find("renew_at=", at + 1)) {
    ++renewTimes;
  }
  EXPECT_EQ(renewTimes, 1U) << r.output;
  EXPECT_NE(r.output.find("KMS_RENEWAL_PLANNED cert=main renew_at="), std::string::npos) << r.output;
  ASSERT_TRUE(exists(lab_->file("www/main.pem")));
  auto chain = pki::parsePemChain(test::readFile(lab_->file("www/main.pem")));
  ASSERT_TRUE(chain.has_value());
  const pki::Certificate& leaf = chain->front();
  EXPECT_EQ(leaf.subjectField("CN"), std::optional<std::string>("SHAKEN 1234"));
  EXPECT_EQ(leaf.subjectField("O"), std::optional<std::string>("Example Telecom"));
  EXPECT_EQ(pki::TnAuthList::fromDer(*leaf.tnAuthListDer())->singleSpc(), std::optional<std::string>("1234"));
  EXPECT_TRUE(pki::checkShakenProfile(leaf, "1234").has_value());
  CmdResult status = run(kKmsctl, "status --json");
  EXPECT_NE(status.output.find("\"state\":\"active\""), std::string::npos) << status.output;
  EXPECT_NE(status.output.find("\"kind\":\"shaken\""), std::string::npos) << status.output;
  // Nothing is due right after issuance.
  CmdResult again = run(kKmsd, "--once");
  EXPECT_EQ(again.rc, 0) << again.output;
  EXPECT_NE(again.output.find("main: valid until "), std::string::npos) << again.output;
}

TEST_F(Shaken, WithoutACrlSignerEveryStartWarnsThatTheCrlIsNotRead) {
  startLab();
  CmdResult checked = run(kKmsd, "--once");
  ASSERT_EQ(checked.rc, 0) << checked.output;
  EXPECT_EQ(checked.output.find("KMS_INSECURE_TRUST"), std::string::npos) << checked.output;
  const std::string text = test::readFile(config_);
  const auto at = text.find("crl_signer = ");
  ASSERT_NE(at, std::string::npos) << text;
  editConfig(text.substr(at, text.find('\n', at) + 1 - at), "");
  for (int start = 0; start < 2; ++start) {
    CmdResult r = run(kKmsd, "--once");
    ASSERT_EQ(r.rc, 0) << r.output;
    EXPECT_NE(r.output.find("KMS_INSECURE_TRUST msg=\"[sti_pa] crl_signer is not set: the STI-PA CRL is not read"),
              std::string::npos)
        << r.output;
  }
}

TEST_F(Shaken, RenewalFollowsTheAriWindowNotTheFractionAndNamesTheReplacedCertificate) {
  // A one-hour certificate. kms-lab's ARI window is 40 .. 50 min after notBefore; the
  // configured fraction (5 % left, plus up to 10 % jitter) would renew at 57 min. The two
  // disagree, so the renewal time shows which one kmsd used. No wall-clock wait: the CA then
  // moves the window into the past, as a CA asking for early renewal does.
  startLab({"--cert-lifetime", "3600"});
  editConfig("spc = \"1234\"\n", "spc = \"1234\"\nrenew_before_fraction = 0.05\n");
  CmdResult first = run(kKmsd, "--once");
  ASSERT_EQ(first.rc, 0) << first.output;
  std::smatch m;
  std::regex serialRe("main: issued serial ([0-9A-F]+)");
  ASSERT_TRUE(std::regex_search(first.output, m, serialRe)) << first.output;
  const std::string firstSerial = m[1];
  auto firstChain = pki::parsePemChain(test::readFile(lab_->file("www/main.pem")));
  ASSERT_TRUE(firstChain.has_value());
  const auto notBefore = std::chrono::system_clock::to_time_t(firstChain->front().notBefore());
  const std::string renewAt = sql("SELECT renew_at FROM managed_certificates");
  const long offset = std::stol(renewAt) - static_cast<long>(notBefore);
  EXPECT_GE(offset, 2400) << "renewal not inside the ARI window";
  EXPECT_LE(offset, 3000) << "renewal not inside the ARI window (the fraction would give 3402 .. 3420)";
  CmdResult events = run(kKmsctl, "events");
  EXPECT_NE(events.output.find("KMS_RENEWAL_PLANNED main"), std::string::npos) << events.output;
  EXPECT_NE(events.output.find("(ARI window "), std::string::npos) << events.output;

  CmdResult early = run(kKmsd, "--once");
  EXPECT_EQ(early.rc, 0) << early.output;
  EXPECT_NE(early.output.find("not due (renewal due "), std::string::npos) << early.output;
  EXPECT_EQ(early.output.find("issued serial"), std::string::npos) << early.output;

  // The CA closes the window now; kmsd reads ARI again once the CA's Retry-After has passed
  // (made to have passed here) and renews at once, naming the certificate it replaces.
  labSwitch("/lab/ari", R"({"window":"now"})");
  sql("UPDATE managed_certificates SET ari_next_check = 0");
  CmdResult renewed = run(kKmsd, "--once");
  ASSERT_EQ(renewed.rc, 0) << renewed.output;
  ASSERT_TRUE(std::regex_search(renewed.output, m, serialRe)) << renewed.output;
  const std::string secondSerial = m[1];
  EXPECT_NE(secondSerial, firstSerial);
  EXPECT_TRUE(exists(lab_->file("www/main/" + firstSerial + ".pem")));  // the previous chain stays
  auto chain = pki::parsePemChain(test::readFile(lab_->file("www/main.pem")));
  ASSERT_TRUE(chain.has_value());
  EXPECT_EQ(chain->front().serialHex(), secondSerial);

  // The new order carried `replaces` with the first certificate's ARI certID (kms-lab keeps it).
  auto caState = nlohmann::json::parse(test::readFile(lab_->file("ca-state.json")));
  std::map<std::string, nlohmann::json> bySerial;
  for (const auto& c : caState["certificates"]) {
    bySerial[c["id"].get<std::string>()] = c;
  }
  ASSERT_EQ(bySerial.count(firstSerial), 1U);
  ASSERT_EQ(bySerial.count(secondSerial), 1U);
  EXPECT_EQ(bySerial[secondSerial]["replaces"], *firstChain->front().ariCertId());
  EXPECT_EQ(bySerial[firstSerial]["replaces"], "");
  // The replacement has the usual window: one renewal, then nothing is due.
  CmdResult settled = run(kKmsd, "--once");
  EXPECT_EQ(settled.rc, 0) << settled.output;
  EXPECT_NE(settled.output.find("not due (renewal due "), std::string::npos) << settled.output;
}

TEST_F(Shaken, ACaAskingToRenewEveryCertificateAtOnceGetsNoLoop) {
  // A hostile CA: every certificate's ARI window, the new ones' too, has just closed. kmsd
  // renews early while the certificate's budget lasts (three early renewals the CA brought
  // about in a day or a third of the lifetime, whichever is longer), then keeps its own,
  // lifetime-based time (KMS_ARI_IGNORED) instead of renewing (and making a new key) in a loop.
  startLab({"--cert-lifetime", "3600"});
  CmdResult first = run(kKmsd, "--once");
  ASSERT_EQ(first.rc, 0) << first.output;
  labSwitch("/lab/ari", R"({"window":"every"})");
  sql("UPDATE managed_certificates SET ari_next_check = 0");
  CmdResult pressed = run(kKmsd, "--once");
  ASSERT_EQ(pressed.rc, 0) << pressed.output;
  EXPECT_EQ(sql("SELECT COUNT(*) FROM issued_certificates"), "4");  // the first and three early ones
  EXPECT_EQ(sql("SELECT COUNT(*) FROM orders WHERE cause = 'ca'"), "3");
  EXPECT_NE(pressed.output.find("main: issued serial "), std::string::npos) << pressed.output;  // and it settled
  const std::string ignored = sql("SELECT message FROM events WHERE event_id = 'KMS_ARI_IGNORED'");
  EXPECT_NE(ignored.find("the CA asks for an early renewal again (3 early renewals the CA brought about in the last "
                         "86400 s, the budget)"),
            std::string::npos)
      << ignored;
  // The held time is the lifetime-based one: a third of the lifetime (the default
  // renew_before_fraction, plus up to 10 % jitter) before the newest certificate's notAfter.
  const long renewAt = std::stol(sql("SELECT renew_at FROM managed_certificates"));
  const long notAfter = std::stol(sql("SELECT MAX(not_after) FROM issued_certificates"));
  EXPECT_GE(notAfter - renewAt, 1199);
  EXPECT_LE(notAfter - renewAt, 1320);
  CmdResult again = run(kKmsd, "--once");
  EXPECT_EQ(again.rc, 0) << again.output;
  EXPECT_EQ(sql("SELECT COUNT(*) FROM issued_certificates"), "4");
}

TEST_F(Shaken, AFailedRenewalInfoReadWaitsAtLeastAMinuteWhateverRetryAfterSays) {
  // renewalInfo answering 503 with Retry-After: 0 once had kmsd read it again at once,
  // forever; with 1, every second.
  startLab();
  CmdResult first = run(kKmsd, "--once");
  ASSERT_EQ(first.rc, 0) << first.output;
  for (const auto& [retryAfter, least] : std::vector<std::pair<std::string, long>>{{"0", 3600}, {"1", 60}, {"30", 60}}) {
    SCOPED_TRACE("Retry-After: " + retryAfter);
    labSwitch("/lab/hostile", R"({"ari_retry_after":")" + retryAfter + R"("})");
    sql("UPDATE managed_certificates SET ari_next_check = 0");
    const long before = std::time(nullptr);
    CmdResult once = run(kKmsd, "--once");
    EXPECT_EQ(once.rc, 0) << once.output;
    EXPECT_NE(once.output.find("KMS_ARI_FAILED"), std::string::npos) << once.output;
    const long next = std::stol(sql("SELECT ari_next_check FROM managed_certificates"));
    EXPECT_GE(next - before, least) << once.output;
    EXPECT_LE(next - std::time(nullptr), least + 5) << once.output;  // not longer than asked either
  }
  labSwitch("/lab/hostile", R"({"ari_retry_after":null})");
}

TEST_F(Shaken, RenewedCertificateBecomesActiveOnlyOnceTheStiCrServesIt) {
  startLab();
  CmdResult first = run(kKmsd, "--once");
  ASSERT_EQ(first.rc, 0) << first.output;
  const std::string firstPem = test::readFile(lab_->file("www/main.pem"));
  // The STI-CR now answers 503 to every fetch, and the certificate is due.
  lab_.reset();
  lab_ = std::make_unique<LabProcess>(sandbox_.file("lab"), std::vector<std::string>{"--fail-sti-cr"});
  const std::string db = lab_->file("state/kmsd.db");
  sql("UPDATE managed_certificates SET renew_at = 0, ari_next_check = NULL, next_attempt_at = NULL");
  CmdResult unchecked = run(kKmsd, "--once");
  EXPECT_EQ(unchecked.rc, 3) << unchecked.output;
  EXPECT_NE(unchecked.output.find("publication check: GET " + lab_->baseUrl() + "/sti-cr/main/"), std::string::npos)
      << unchecked.output;
  EXPECT_NE(unchecked.output.find("answered HTTP 503"), std::string::npos) << unchecked.output;
  // Verifiers keep getting the previous certificate; the new chain is written, not current.
  EXPECT_EQ(test::readFile(lab_->file("www/main.pem")), firstPem);
  CmdResult events = run(kKmsctl, "events");
  EXPECT_NE(events.output.find("KMS_PUBLICATION_CHECK_FAILED main"), std::string::npos) << events.output;
  CmdResult status = run(kKmsctl, "status --json");
  EXPECT_NE(status.output.find("\"state\":\"issued\""), std::string::npos) << status.output;

  // The STI-CR is back: the same certificate is checked and activated, no new order.
  lab_.reset();
  lab_ = std::make_unique<LabProcess>(sandbox_.file("lab"));
  ASSERT_TRUE(test::backoffPassed(db));
  CmdResult checked = run(kKmsd, "--once");
  ASSERT_EQ(checked.rc, 0) << checked.output;
  const std::string current = test::readFile(lab_->file("www/main.pem"));
  EXPECT_NE(current, firstPem);
  EXPECT_EQ(sql("SELECT COUNT(*) FROM orders"), "2");  // the first certificate's and the renewal's
}

TEST_F(Shaken, SlowStiCrFailsThePublicationCheckWithinItsOwnTimeout) {
  startLab({"--sti-cr-delay-ms", "4000"});
  {
    std::string text = test::readFile(config_);
    auto at = text.find("[publisher]\n");
    ASSERT_NE(at, std::string::npos);
    text.insert(at + 12, "check_timeout = \"1s\"\ncheck_retries = 0\n");
    config_ = sandbox_.write("kmsd-check.toml", text);
  }
  CmdResult r = run(kKmsd, "--once");
  EXPECT_EQ(r.rc, 3) << r.output;
  EXPECT_NE(r.output.find("main: FAILED: " + lab_->baseUrl() + "/sti-cr/main/"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("publication check: "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("timed out"), std::string::npos) << r.output;
  expectNothingPublished();  // the current pointer never named the unchecked chain
}

TEST_F(Shaken, DeployHookRunsOnceTheCertificateIsActiveAndIsRetriedWithoutReissuing) {
  startLab();
  const std::string calls = sandbox_.file("hook-calls");
  const std::string failFlag = sandbox_.file("hook-fails");
  const std::string hook = sandbox_.write(
      "deploy.sh", "#!/bin/sh\nenv | grep '^KMS_' | sort >> '" + calls + "'\necho --- >> '" + calls +
                       "'\nif [ -e '" + failFlag + "' ]; then echo 'cannot reach the SBC'; exit 4; fi\necho deployed\n");
  ::chmod(hook.c_str(), 0700);
  {
    std::string text = test::readFile(config_);
    config_ = sandbox_.write("kmsd-hook.toml", text + "deploy_hook = \"" + hook + "\"\n");
  }
  sandbox_.write("hook-fails", "");
  CmdResult failed = run(kKmsd, "--once");
  EXPECT_EQ(failed.rc, 3) << failed.output;
  EXPECT_NE(failed.output.find("main: FAILED: " + hook + ": deploy hook failed with exit status 4"), std::string::npos)
      << failed.output;
  EXPECT_TRUE(exists(lab_->file("www/main.pem")));  // the certificate itself is active
  const std::string db = lab_->file("state/kmsd.db");
  const std::string fields = test::sql(db, "SELECT fields FROM events WHERE event_id = 'KMS_DEPLOY_HOOK_FAILED'");
  EXPECT_NE(fields.find("cannot reach the SBC"), std::string::npos) << fields;  // its output, on record

  ::unlink(failFlag.c_str());
  ASSERT_TRUE(test::backoffPassed(db));
  CmdResult retried = run(kKmsd, "--once");
  EXPECT_EQ(retried.rc, 0) << retried.output;
  const std::string log = test::readFile(calls);
  const auto firstEnd = log.find("\n---\n");
  ASSERT_NE(firstEnd, std::string::npos) << log;
  const std::string second = log.substr(firstEnd + 5);
  ASSERT_NE(second.find("\n---\n"), std::string::npos) << log;  // a second run of the hook ...
  EXPECT_EQ(second.find("\n---\n"), second.size() - 5) << log;  // ... and no third
  std::smatch m;
  ASSERT_TRUE(std::regex_search(second, m, std::regex("KMS_CERT_PATH=(\\S+)"))) << second;
  EXPECT_EQ(test::readFile(m[1]), test::readFile(lab_->file("www/main.pem")));
  EXPECT_NE(second.find("KMS_NAME=main\n"), std::string::npos) << second;
  EXPECT_NE(second.find("KMS_CHAIN_PATH=" + lab_->file("www/main.pem") + "\n"), std::string::npos) << second;
  EXPECT_NE(second.find("KMS_X5U=" + lab_->baseUrl() + "/sti-cr/main/"), std::string::npos) << second;
  EXPECT_NE(second.find("KMS_KEY_URI=pkcs11:token=kms;object=main-"), std::string::npos) << second;
  EXPECT_NE(second.find("KMS_NOT_AFTER=20"), std::string::npos) << second;
  EXPECT_EQ(test::sql(db, "SELECT COUNT(*) FROM orders"), "1");  // retried without a new order

  CmdResult again = run(kKmsd, "--once");
  EXPECT_EQ(again.rc, 0) << again.output;
  EXPECT_EQ(test::readFile(calls), log);  // deployed once per certificate
}

TEST_F(Shaken, ReplacedChainAndKeyLeaveAfterRetainWhileKmsctlKeysShowsThem) {
  startLab();
  {
    std::string text = test::readFile(config_);
    auto at = text.find("[publisher]\n");
    ASSERT_NE(at, std::string::npos);
    text.insert(at + 12, "retain = \"1h\"\n");
    config_ = sandbox_.write("kmsd-retain.toml", text);
  }
  std::regex serialRe("main: issued serial ([0-9A-F]+)");
  std::smatch m;
  CmdResult first = run(kKmsd, "--once");
  ASSERT_EQ(first.rc, 0) << first.output;
  ASSERT_TRUE(std::regex_search(first.output, m, serialRe)) << first.output;
  const std::string firstSerial = m[1];
  // Due now (as if the renewal instant had come).
  test::sql(lab_->file("state/kmsd.db"), "UPDATE managed_certificates SET renew_at = 0, ari_next_check = NULL");
  CmdResult renewed = run(kKmsd, "--once");
  ASSERT_EQ(renewed.rc, 0) << renewed.output;
  ASSERT_TRUE(std::regex_search(renewed.output, m, serialRe)) << renewed.output;
  ASSERT_NE(std::string(m[1]), firstSerial);
  // Right after the switch the previous chain and key are still there, and shown as such.
  EXPECT_TRUE(exists(lab_->file("www/main/" + firstSerial + ".pem")));
  CmdResult keys = run(kKmsctl, "keys");
  EXPECT_NE(keys.output.find("3 key(s) on token"), std::string::npos) << keys.output;
  EXPECT_NE(keys.output.find("[certificate]  active (main)"), std::string::npos) << keys.output;
  EXPECT_NE(keys.output.find("[certificate]  previous (main) until 20"), std::string::npos) << keys.output;
  EXPECT_NE(keys.output.find("[account]  account"), std::string::npos) << keys.output;
  // After retain (as if the new certificate had been published two hours ago), the next run
  // retires both.
  test::sql(lab_->file("state/kmsd.db"),
            "UPDATE issued_certificates SET published_at = published_at - 7200 WHERE serial = '" + std::string(m[1]) +
                "'");
  CmdResult later = run(kKmsd, "--once");
  EXPECT_EQ(later.rc, 0) << later.output;
  EXPECT_FALSE(exists(lab_->file("www/main/" + firstSerial + ".pem")));
  EXPECT_TRUE(exists(lab_->file("www/main/" + std::string(m[1]) + ".pem")));
  CmdResult after = run(kKmsctl, "keys");
  EXPECT_NE(after.output.find("2 key(s) on token"), std::string::npos) << after.output;
  EXPECT_EQ(after.output.find("previous"), std::string::npos) << after.output;
  CmdResult events = run(kKmsctl, "events");
  EXPECT_NE(events.output.find("KMS_CHAIN_UNPUBLISHED main"), std::string::npos) << events.output;
}

TEST_F(Shaken, ReuseKeyRenewsWithTheSameKey) {
  startLab();
  {
    std::string text = test::readFile(config_);
    config_ = sandbox_.write("kmsd-reuse.toml", text + "reuse_key = true\n");
  }
  CmdResult first = run(kKmsd, "--once");
  ASSERT_EQ(first.rc, 0) << first.output;
  auto before = pki::parsePemChain(test::readFile(lab_->file("www/main.pem")));
  ASSERT_TRUE(before.has_value());
  // Due now (as if the renewal instant had come), while the certificate is still valid.
  test::sql(lab_->file("state/kmsd.db"), "UPDATE managed_certificates SET renew_at = 0, ari_next_check = NULL");
  CmdResult renewed = run(kKmsd, "--once");
  ASSERT_EQ(renewed.rc, 0) << renewed.output;
  EXPECT_NE(renewed.output.find("main: issued serial "), std::string::npos) << renewed.output;
  auto after = pki::parsePemChain(test::readFile(lab_->file("www/main.pem")));
  ASSERT_TRUE(after.has_value());
  EXPECT_NE(after->front().serialHex(), before->front().serialHex());
  EXPECT_EQ(after->front().spkiDer(), before->front().spkiDer());
  CmdResult keys = run(kKmsctl, "keys");
  EXPECT_NE(keys.output.find("2 key(s) on token"), std::string::npos) << keys.output;  // account + the one key
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
  // A refusal the operator can mend keeps the order and its key for the retry: the account
  // key and the order's, nothing destroyed.
  EXPECT_EQ(keyCount(), 2);
  // The failure is on record: an event and a failure count, not a silent "planned".
  CmdResult events = run(kKmsctl, "events");
  EXPECT_NE(events.output.find("KMS_RENEW_FAILED main"), std::string::npos) << events.output;
  EXPECT_EQ(events.output.find("KMS_ORDER_ABANDONED"), std::string::npos) << events.output;
  CmdResult status = run(kKmsctl, "status --json");
  EXPECT_NE(status.output.find("\"failures\":1"), std::string::npos) << status.output;
  EXPECT_NE(status.output.find("login of user"), std::string::npos) << status.output;
}

TEST_F(Shaken, KmsdsOwnBackoffBelongsToTheConfigurationItHappenedUnder) {
  startLab();
  editConfig("[daemon]\n", "[daemon]\nretry_first = \"1h\"\nretry_max = \"2h\"\n");
  editConfig("spc = \"1234\"", "spc = \"9999\"");  // an SPC the account does not own
  CmdResult refused = run(kKmsd, "--once");
  ASSERT_EQ(refused.rc, 3) << refused.output;
  // Unchanged: the hour of backoff holds.
  CmdResult held = run(kKmsd, "--once");
  EXPECT_EQ(held.rc, 3) << held.output;
  EXPECT_NE(held.output.find("main: FAILED: not attempted: retry "), std::string::npos) << held.output;
  // Mended: tried again at once, and issued.
  editConfig("spc = \"9999\"", "spc = \"1234\"");
  CmdResult mended = run(kKmsd, "--once");
  EXPECT_EQ(mended.rc, 0) << mended.output;
  EXPECT_NE(mended.output.find("main: issued serial "), std::string::npos) << mended.output;
  CmdResult events = run(kKmsctl, "events");
  EXPECT_NE(events.output.find("KMS_RETRY_AFTER_CHANGE main"), std::string::npos) << events.output;
}

TEST_F(Shaken, OnceForceOverridesAStoredWaitAndSaysWhich) {
  startLab();
  editConfig("[daemon]\n", "[daemon]\nretry_first = \"1h\"\nretry_max = \"2h\"\n");
  const std::string bad = sandbox_.write("bad.password", "not-the-password\n");
  CmdResult refused = run(kKmsd, "--once", "KMSD_STI_PA_PASSWORD_FILE=" + bad);
  ASSERT_EQ(refused.rc, 3) << refused.output;
  // The environment is the same (and the password a secret file whose content is never
  // hashed): the backoff holds, until --force overrides it, naming it.
  CmdResult held = run(kKmsd, "--once", "KMSD_STI_PA_PASSWORD_FILE=" + bad);
  EXPECT_NE(held.output.find("not attempted"), std::string::npos) << held.output;
  CmdResult unknown = run(kKmsd, "--once --force nosuch", "KMSD_STI_PA_PASSWORD_FILE=" + bad);
  EXPECT_EQ(unknown.rc, 78) << "EX_CONFIG\n" << unknown.output;
  EXPECT_NE(unknown.output.find("--force nosuch: no [[certificate]] of that name"), std::string::npos)
      << unknown.output;
  CmdResult notOnce = run(kKmsd, "--force", "KMSD_STI_PA_PASSWORD_FILE=" + bad);
  EXPECT_EQ(notOnce.rc, 2) << notOnce.output;
  CmdResult stillHeld = run(kKmsd, "--once", "KMSD_STI_PA_PASSWORD_FILE=" + bad);  // neither touched the wait
  EXPECT_NE(stillHeld.output.find("not attempted"), std::string::npos) << stillHeld.output;
  // Forced: tried (and refused again, the password is still wrong), the line saying what it
  // overrode.
  CmdResult forced = run(kKmsd, "--once --force main", "KMSD_STI_PA_PASSWORD_FILE=" + bad);
  EXPECT_EQ(forced.rc, 3) << forced.output;  // still the wrong password: tried, and refused
  EXPECT_NE(forced.output.find("(--force overrode kmsd's backoff until "), std::string::npos) << forced.output;
  EXPECT_NE(forced.output.find("login of user"), std::string::npos) << forced.output;
}

TEST_F(Shaken, StiPaTlsIsTrustedOnlyThroughItsOwnCaBundle) {
  startLab();
  // kms-lab serves the STI-PA and the CA with one TLS root: without [sti_pa] ca_bundle the
  // STI-PA is not trusted, although [acme] ca_bundle names that root.
  const std::string line = "ca_bundle = \"" + lab_->file("tls-ca.pem") + "\"\n";
  const std::string text = test::readFile(config_);
  ASSERT_LT(text.find(line), text.find("[acme]")) << text;  // the first one is [sti_pa]'s
  editConfig(line, "");
  CmdResult r = run(kKmsd, "--once");
  EXPECT_EQ(r.rc, 3) << r.output;
  EXPECT_NE(r.output.find("main: FAILED: " + lab_->baseUrl() + "/sti-pa/"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("certificate"), std::string::npos) << r.output;
  expectNothingPublished();
}

TEST_F(Shaken, SpcTheAccountDoesNotOwnIsRefusedByTheStiPa) {
  startLab();
  editConfig("spc = \"1234\"", "spc = \"9999\"");
  CmdResult r = run(kKmsd, "--once");
  EXPECT_EQ(r.rc, 3) << r.output;
  EXPECT_NE(r.output.find("SPC token request for 9999"), std::string::npos) << r.output;
  expectNothingPublished();
  EXPECT_EQ(keyCount(), 2);  // the order waits for the retry with its key
}

TEST_F(Shaken, ExpiredTokenIsNotPresented) {
  startLab({"--token-lifetime", "1"});
  CmdResult r = run(kKmsd, "--once");
  EXPECT_EQ(r.rc, 3) << r.output;
  EXPECT_NE(r.output.find("SPC token: expired or expiring within 30 s"), std::string::npos) << r.output;
  expectNothingPublished();
  EXPECT_EQ(keyCount(), 2);  // the order waits for the retry with its key
}

TEST_F(Shaken, TamperedTokenSignatureIsRefusedBeforeUse) {
  startLab({"--tamper-token"});
  CmdResult r = run(kKmsd, "--once");
  EXPECT_EQ(r.rc, 3) << r.output;
  EXPECT_NE(r.output.find("SPC token: signature does not verify"), std::string::npos) << r.output;
  expectNothingPublished();
  EXPECT_EQ(keyCount(), 2);  // the order waits for the retry with its key
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

TEST_F(Shaken, WhatKmsdSendsChecksOutWithCodeThatIsNotKmsds) {
  // kms-lab is the oracle of these tests and shares kms_pki with kmsd: the JWS signatures,
  // the CSR's TNAuthList and the account key fingerprint are checked again by Python's
  // cryptography (tests/support/crosscheck.py).
  startLab({"--record"});
  CmdResult r = run(kKmsd, "--once");
  ASSERT_EQ(r.rc, 0) << r.output;
  std::string out;
  const int rc = test::runCommand(std::string("/usr/bin/python3 ") + KMS_TEST_SUPPORT_DIR + "/crosscheck.py " +
                                      lab_->file("requests.jsonl") + " 1234",
                                  &out);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find(", 1 CSR, "), std::string::npos) << out;
  EXPECT_EQ(out.find("MISMATCH"), std::string::npos) << out;
}

TEST_F(Shaken, ACertificateBreakingTheShakenProfileIsRefusedAndItsKeyDestroyed) {
  // Not only the TNAuthList: a CA issuing against another rule of the profile is refused the
  // same way (nothing published, the order given up, its key gone).
  for (const std::string rule : {"key-usage", "no-policy", "no-crl-dp"}) {
    SCOPED_TRACE(rule);
    lab_.reset();  // the previous rule's lab stops
    lab_ = std::make_unique<LabProcess>(sandbox_.file("lab-" + rule), std::vector<std::string>{"--break-profile", rule});
    config_ = lab_->file("kmsd.toml");
    CmdResult r = run(kKmsd, "--once");
    EXPECT_EQ(r.rc, 3) << r.output;
    EXPECT_NE(r.output.find("check profile: "), std::string::npos) << r.output;
    expectNothingPublished();
    EXPECT_EQ(keyCount(), 1);  // the account key only
    CmdResult events = run(kKmsctl, "events");
    EXPECT_NE(events.output.find("KMS_ISSUE_FAILED main"), std::string::npos) << events.output;
    EXPECT_NE(events.output.find("KMS_ORDER_ABANDONED main"), std::string::npos) << events.output;
  }
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
