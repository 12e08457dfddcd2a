// kmsd and kmsctl as an operator runs them: real binaries, a real SoftHSM2 token, a real
// SQLite state directory. Bad input must give one clear line and a non-zero exit.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <regex>
#include <string>
#include <vector>

#include "cli.h"
#include "kmsd_toml.h"
#include "recorded_server.h"
#include "sandbox.h"
#include "softhsm_token.h"
#include "storage/db.h"
#include "storage/migrations.h"
#include "storage/store.h"

namespace kms {
namespace {

using test::SoftHsmToken;

using test::CmdResult;
using test::kKmsctl;
using test::kKmsd;

/// sysexits' EX_CONFIG: what only the operator can mend, which kmsd.service does not restart.
constexpr int kExitConfig = 78;

class KmsdCli : public ::testing::Test {
 protected:
  void SetUp() override {
    pin_ = softhsm_.pinFile();
    stateDir_ = softhsm_.sandbox().file("state");
    writeConfig();
  }

  void writeConfig(const std::string& hsmExtra = "", const std::string& tokenLabel = "kms-test") {
    test::KmsdToml toml;
    toml.stateDir = stateDir_;
    toml.tokenLabel = tokenLabel;
    toml.pinFile = pin_;
    toml.hsmExtra = hsmExtra;
    toml.http01Listen.clear();
    toml.acmeExtra = acmeExtra_;
    toml.webRoot = softhsm_.sandbox().file("www");
    toml.dns("web", {"cr.example.net"});
    config_ = softhsm_.sandbox().write("kmsd.toml", toml.text());
  }

  CmdResult run(const std::string& tool, const std::string& args) {
    return test::runTool("SOFTHSM2_CONF=" + softhsm_.confPath(), tool, config_, args);
  }

  SoftHsmToken softhsm_{"kms-test"};
  std::string pin_;
  std::string stateDir_;
  std::string config_;
  /// These tests never reach a CA: no trust anchors, accepted as a lab would.
  std::string acmeExtra_ = "insecure_skip_chain_check = true\n";
};

int lineCount(const std::string& s) {
  int n = 0;
  for (char c : s) {
    n += c == '\n' ? 1 : 0;
  }
  return n;
}

TEST_F(KmsdCli, TrustAnchorsAreRequiredUnlessALabSaysOtherwise) {
  acmeExtra_ = "";
  writeConfig();
  const std::string expected =
      "[acme] trust_anchors: required without [sti_pa] (whose CA list would give the anchors): otherwise any "
      "chain with our key and names is accepted (insecure_skip_chain_check = true accepts that, for a lab only)";
  CmdResult check = run(kKmsd, "--check-config");
  EXPECT_EQ(check.rc, kExitConfig) << check.output;
  EXPECT_NE(check.output.find(config_ + ": " + expected), std::string::npos) << check.output;
  CmdResult once = run(kKmsd, "--once");
  EXPECT_EQ(once.rc, kExitConfig) << once.output;
  EXPECT_NE(once.output.find(expected), std::string::npos) << once.output;
  // The lab switch: accepted, and said at every start.
  acmeExtra_ = "insecure_skip_chain_check = true\ndns01_hook = \"/bin/true\"\n";
  writeConfig();
  std::ofstream(config_, std::ios::app) << "challenge = \"dns-01\"\n";  // no http-01 listener needed
  EXPECT_EQ(run(kKmsd, "--check-config").rc, 0);
  CmdResult lab = run(kKmsd, "--once");
  EXPECT_NE(lab.output.find("KMS_INSECURE_TRUST msg=\"running with trust checks switched off for a lab: issued "
                            "chains are not checked against any trust anchor\""),
            std::string::npos)
      << lab.output;
}

TEST_F(KmsdCli, VersionsNameTheGitCommitWhenBuiltFromGit) {
  for (const std::string& tool : {kKmsd, test::kKmsctl}) {
    const std::string name = tool.substr(tool.rfind('/') + 1);
    test::CmdResult r{};
    r.rc = test::runCommand(tool + " --version", &r.output);
    EXPECT_EQ(r.rc, 0) << r.output;
    const bool fromGit = ::access(KMS_SOURCE_DIR "/.git", F_OK) == 0;
    const std::regex form(name + " " KMS_PROJECT_VERSION + (fromGit ? R"( \(git [0-9A-Za-z._+-]+\))" : "") + "\n");
    EXPECT_TRUE(std::regex_match(r.output, form)) << r.output;
  }
}

TEST_F(KmsdCli, CheckConfigOk) {
  CmdResult r = run(kKmsd, "--check-config");
  EXPECT_EQ(r.rc, 0) << r.output;
  EXPECT_EQ(r.output, "note: state_dir " + stateDir_ + " does not exist yet; kmsd will create it\nok\n");
  CmdResult c = run(kKmsctl, "check-config");
  EXPECT_EQ(c.rc, 0) << c.output;
}

TEST_F(KmsdCli, MalformedConfigListsEveryError) {
  config_ = softhsm_.sandbox().write(
      "bad.toml", "[daemon]\nstate_dir = 7\n[hsm]\ntoken_label = \"kms-test\"\npin_file = \"" + pin_ +
                      "\"\ncolour = \"red\"\n[acme]\ndirectory_url = \"http://ca.example/dir\"\n"
                      "[publisher]\nweb_root = \"/srv/www\"\nbase_url = \"https://cr/\"\n");
  CmdResult r = run(kKmsd, "--check-config");
  EXPECT_EQ(r.rc, kExitConfig);
  EXPECT_EQ(r.output, config_ + ":2:13: [daemon] state_dir: expected a string, got integer\n" + config_ +
                          ":6:1: [hsm] colour: unknown key\n" + config_ +
                          ":8:17: [acme] directory_url: must be https (http is accepted only for loopback hosts)\n");
}

TEST_F(KmsdCli, TomlSyntaxErrorIsOneLine) {
  config_ = softhsm_.sandbox().write("syntax.toml", "[daemon\nstate_dir = \"/x\"\n");
  CmdResult r = run(kKmsd, "--check-config");
  EXPECT_EQ(r.rc, kExitConfig);
  EXPECT_EQ(lineCount(r.output), 1) << r.output;
  EXPECT_EQ(r.output.rfind(config_ + ":1:", 0), 0U) << r.output;
}

TEST_F(KmsdCli, UnreadablePinFile) {
  pin_ = softhsm_.sandbox().file("missing.pin");
  writeConfig();
  CmdResult r = run(kKmsd, "--check-config");
  EXPECT_EQ(r.rc, kExitConfig);
  EXPECT_EQ(lineCount(r.output), 1) << r.output;
  EXPECT_NE(r.output.find("[hsm] pin_file:"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("missing.pin"), std::string::npos) << r.output;
}

TEST_F(KmsdCli, WrongPinNamesThePinFileNotItsContent) {
  pin_ = softhsm_.sandbox().write("wrong.pin", "999999\n");
  writeConfig();
  CmdResult r = run(kKmsd, "--check-config");
  EXPECT_EQ(r.rc, 1);
  EXPECT_EQ(r.output, config_ + ": [hsm] pin_file " + pin_ + ": the token refused the PIN (CKR_PIN_INCORRECT)\n");
  EXPECT_EQ(r.output.find("999999"), std::string::npos);
  // kmsd itself says the same when it starts.
  CmdResult once = run(kKmsd, "--once");
  EXPECT_NE(once.rc, 0);
  EXPECT_NE(once.output.find("[hsm] pin_file " + pin_ + ": the token refused the PIN (CKR_PIN_INCORRECT)"),
            std::string::npos)
      << once.output;
  EXPECT_EQ(once.output.find("999999"), std::string::npos);
}

TEST_F(KmsdCli, MissingToken) {
  writeConfig("", "nosuch");
  CmdResult r = run(kKmsd, "--check-config");
  EXPECT_EQ(r.rc, 1);
  EXPECT_EQ(r.output, config_ + ": [hsm] " + SoftHsmToken::modulePath() +
                          ": no token labelled 'nosuch' (tokens present: 'kms-test'); SoftHSM2 read " +
                          softhsm_.confPath() + " (tokens in " + softhsm_.sandbox().file("tokens") +
                          "): name the configuration that holds the token with [hsm] softhsm2_conf or "
                          "SOFTHSM2_CONF\n");
}

TEST_F(KmsdCli, SoftHsm2ConfSettingIsAppliedBeforeTheModuleLoads) {
  // Another SoftHSM2 configuration, its token directory empty, in the environment.
  ::mkdir(softhsm_.sandbox().file("other-tokens").c_str(), 0700);
  const std::string other = softhsm_.sandbox().write(
      "other.conf", "directories.tokendir = " + softhsm_.sandbox().file("other-tokens") +
                        "\nobjectstore.backend = file\nlog.level = ERROR\n");
  auto withEnv = [&](const std::string& args) {
    return test::runTool("SOFTHSM2_CONF=" + other, kKmsd, config_, args);
  };
  CmdResult lost = withEnv("--check-config");
  EXPECT_EQ(lost.rc, 1) << lost.output;
  EXPECT_NE(lost.output.find("no token labelled 'kms-test' (no initialised tokens); SoftHSM2 read " + other +
                             " (tokens in " + softhsm_.sandbox().file("other-tokens") + "): name the configuration "
                             "that holds the token with [hsm] softhsm2_conf or SOFTHSM2_CONF\n"),
            std::string::npos)
      << lost.output;
  // The setting wins over the environment, for kmsd and for kmsctl's offline view alike.
  writeConfig("softhsm2_conf = \"" + softhsm_.confPath() + "\"\n");
  CmdResult found = withEnv("--check-config");
  EXPECT_EQ(found.rc, 0) << found.output;
  CmdResult keys = test::runTool("SOFTHSM2_CONF=" + other, kKmsctl, config_, "keys");
  EXPECT_EQ(keys.rc, 0) << keys.output;
  EXPECT_NE(keys.output.find("0 key(s) on token 'kms-test'"), std::string::npos) << keys.output;
}

TEST_F(KmsdCli, MissingModule) {
  // A module that exists as a file but is not a shared object.
  std::string fake = softhsm_.sandbox().write("libfake.so", "not an ELF file");
  writeConfig("module = \"" + fake + "\"\n");
  CmdResult r = run(kKmsd, "--check-config");
  EXPECT_EQ(r.rc, 1);
  EXPECT_EQ(lineCount(r.output), 1) << r.output;
  EXPECT_EQ(r.output.rfind(config_ + ": [hsm] " + fake + ": cannot load PKCS#11 module:", 0), 0U) << r.output;

  writeConfig("module = \"" + softhsm_.sandbox().file("libnone.so") + "\"\n");
  CmdResult absent = run(kKmsd, "--check-config");
  EXPECT_EQ(absent.rc, kExitConfig);
  EXPECT_EQ(lineCount(absent.output), 1) << absent.output;
  EXPECT_NE(absent.output.find("[hsm] module:"), std::string::npos) << absent.output;
}

TEST_F(KmsdCli, MissingConfigFile) {
  config_ = softhsm_.sandbox().file("nope.toml");
  CmdResult r = run(kKmsd, "--check-config");
  EXPECT_EQ(r.rc, kExitConfig);
  EXPECT_EQ(lineCount(r.output), 1) << r.output;
  EXPECT_NE(r.output.find("nope.toml"), std::string::npos);
}

TEST_F(KmsdCli, NewerSchemaDatabaseIsRefused) {
  ::mkdir(stateDir_.c_str(), 0700);
  std::string db = stateDir_ + "/kmsd.db";
  test::sql(db, "PRAGMA journal_mode=WAL; PRAGMA user_version=99;");
  CmdResult r = run(kKmsd, "--check-config");
  EXPECT_EQ(r.rc, kExitConfig);
  EXPECT_EQ(r.output, config_ + ": [daemon] state_dir: " + db +
                          ": database schema version 99 is newer than this kmsd supports (" +
                          std::to_string(storage::supportedSchemaVersion()) +
                          "); upgrade kmsd or "
                          "restore a backup\n");
}

TEST_F(KmsdCli, KmsctlStatusAndKeys) {
  CmdResult empty = run(kKmsctl, "status");
  EXPECT_EQ(empty.rc, 0) << empty.output;
  EXPECT_EQ(empty.output, "kmsd is not running; read from the state DB\nno managed certificates yet (state: " +
                              stateDir_ + "/kmsd.db)\n");

  ::mkdir(stateDir_.c_str(), 0700);
  {
    auto db = storage::Db::open(stateDir_ + "/kmsd.db", {});
    ASSERT_TRUE(db.has_value()) << db.error().toString();
    auto store = storage::makeSqliteStore(**db);
    ASSERT_TRUE(store->upsertCertificate("web", storage::CertKind::acme, R"(["dns:cr.example.net"])").has_value());
  }
  CmdResult status = run(kKmsctl, "status --json");
  EXPECT_EQ(status.rc, 0) << status.output;
  EXPECT_NE(status.output.find("\"name\":\"web\""), std::string::npos) << status.output;
  EXPECT_NE(status.output.find("\"state\":\"planned\""), std::string::npos) << status.output;

  CmdResult keys = run(kKmsctl, "keys");
  EXPECT_EQ(keys.rc, 0) << keys.output;
  EXPECT_EQ(keys.output, "kmsd is not running; read from the token and the state DB\n0 key(s) on token 'kms-test'\n");
}

TEST_F(KmsdCli, UsageErrors) {
  CmdResult r = run(kKmsctl, "frobnicate");
  EXPECT_EQ(r.rc, 2) << r.output;
  CmdResult d = run(kKmsd, "--no-such-switch");
  EXPECT_EQ(d.rc, 2) << d.output;
}

TEST_F(KmsdCli, KmsctlTakesItsGlobalOptionsAfterTheSubcommandToo) {
  CmdResult r;
  r.rc = test::runCommand("SOFTHSM2_CONF=" + softhsm_.confPath() + " " + kKmsctl + " status --config " + config_,
                          &r.output);
  EXPECT_EQ(r.rc, 0) << r.output;
  EXPECT_EQ(r.output.rfind("kmsd is not running; read from the state DB\n", 0), 0U) << r.output;
}

TEST_F(KmsdCli, KmsctlWithoutAConfigurationNamesTheOptionAndTheVariable) {
  ASSERT_FALSE(test::fileExists("/etc/kmsd/kmsd.toml")) << "this test needs a machine without an installed kmsd";
  CmdResult r;
  r.rc = test::runCommand("env -u KMSD_CONFIG " + kKmsctl + " status", &r.output);
  EXPECT_EQ(r.rc, 2) << r.output;  // a usage error
  EXPECT_EQ(r.output,
            "kmsctl: no configuration: /etc/kmsd/kmsd.toml does not exist; name kmsd's with --config PATH or "
            "KMSD_CONFIG=PATH (or its socket with --socket)\n");
  CmdResult help;
  help.rc = test::runCommand(kKmsctl + " --help", &help.output);
  EXPECT_EQ(help.rc, 0) << help.output;
  EXPECT_NE(help.output.find("=/etc/kmsd/kmsd.toml"), std::string::npos) << help.output;  // the default shown
  EXPECT_NE(help.output.find("KMSD_CONFIG"), std::string::npos) << help.output;
}

TEST_F(KmsdCli, KmsctlEventsAreOldestFirstWithTheNewestAtTheBottomUnlessReversed) {
  ::mkdir(stateDir_.c_str(), 0700);
  {
    auto db = storage::Db::open(stateDir_ + "/kmsd.db", {});
    ASSERT_TRUE(db.has_value()) << db.error().toString();
    auto store = storage::makeSqliteStore(**db);
    for (int i = 1; i <= 4; ++i) {
      storage::Event e;
      e.time = 1'800'000'000 + i;
      e.eventId = "KMS_TEST_" + std::to_string(i);
      e.message = "event " + std::to_string(i);
      ASSERT_TRUE(store->appendEvent(e).has_value());
    }
  }
  auto ids = [](const std::string& out) {
    std::vector<std::string> found;
    for (std::size_t at = out.find("KMS_TEST_"); at != std::string::npos; at = out.find("KMS_TEST_", at + 1)) {
      found.push_back(out.substr(at, 10));
    }
    return found;
  };
  CmdResult newest = run(kKmsctl, "events -n 3");
  EXPECT_EQ(newest.rc, 0) << newest.output;
  EXPECT_EQ(ids(newest.output), (std::vector<std::string>{"KMS_TEST_2", "KMS_TEST_3", "KMS_TEST_4"})) << newest.output;
  CmdResult reversed = run(kKmsctl, "events -n 3 -r");
  EXPECT_EQ(reversed.rc, 0) << reversed.output;
  EXPECT_EQ(ids(reversed.output), (std::vector<std::string>{"KMS_TEST_4", "KMS_TEST_3", "KMS_TEST_2"}))
      << reversed.output;
  CmdResult both = run(kKmsctl, "events -f -r");
  EXPECT_EQ(both.rc, 2) << both.output;
}

TEST_F(KmsdCli, CaTextCannotDriveTheTerminalOrForgeEventLines) {
  // A CA whose problem detail clears the screen and starts a forged second line.
  const std::string detail = "no\x1b[2J\nKMS_CERT_ACTIVATED cert=web msg=forged";
  std::string escaped;
  for (char c : detail) {
    // Escaped twice: once for the route file's JSON string, once for the problem's.
    if (c == '\x1b') {
      escaped += "\\\\u001b";
    } else if (c == '\n') {
      escaped += "\\\\n";
    } else {
      escaped += c;
    }
  }
  test::RecordedServer ca("{\"GET /dir\":{\"status\":500,\"headers\":{\"Content-Type\":\"application/problem+json\"},"
                          "\"body\":\"{\\\"type\\\":\\\"urn:ietf:params:acme:error:serverInternal\\\",\\\"detail\\\":\\\"" +
                          escaped + "\\\"}\"}}");
  std::string text = test::readFile(config_);
  text.replace(text.find("https://127.0.0.1:14000/dir"), 27, ca.url("/dir") + "\"\ndns01_hook = \"/bin/true");
  // dns-01 (a hook that does nothing): no http-01 listener is needed for a CA that fails.
  std::ofstream(config_, std::ios::trunc) << text << "challenge = \"dns-01\"\n";
  CmdResult once = run(kKmsd, "--once");
  EXPECT_EQ(once.rc, 3) << once.output;
  CmdResult events = run(kKmsctl, "events");
  EXPECT_EQ(events.rc, 0) << events.output;
  EXPECT_NE(events.output.find("no\\x1b[2J; KMS_CERT_ACTIVATED"), std::string::npos) << events.output;
  for (const std::string& out : {once.output, events.output}) {
    EXPECT_EQ(out.find('\x1b'), std::string::npos) << out;
    EXPECT_EQ(out.find("\nKMS_CERT_ACTIVATED"), std::string::npos) << out;
  }
  CmdResult status = run(kKmsctl, "status");
  EXPECT_EQ(status.output.find('\x1b'), std::string::npos) << status.output;
}

}  // namespace
}  // namespace kms
