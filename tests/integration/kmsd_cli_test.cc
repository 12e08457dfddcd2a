// kmsd and kmsctl as an operator runs them: real binaries, a real SoftHSM2 token, a real
// SQLite state directory. Bad input must give one clear line and a non-zero exit.
#include <gtest/gtest.h>

#include <sys/stat.h>

#include "cli.h"
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

class KmsdCli : public ::testing::Test {
 protected:
  void SetUp() override {
    pin_ = softhsm_.pinFile();
    stateDir_ = softhsm_.sandbox().file("state");
    writeConfig();
  }

  void writeConfig(const std::string& hsmExtra = "", const std::string& tokenLabel = "kms-test") {
    config_ = softhsm_.sandbox().write("kmsd.toml",
                                       "[daemon]\n"
                                       "state_dir = \"" +
                                           stateDir_ +
                                           "\"\n"
                                           "[hsm]\n"
                                           "token_label = \"" +
                                           tokenLabel +
                                           "\"\n"
                                           "pin_file = \"" +
                                           pin_ + "\"\n" + hsmExtra +
                                           "[acme]\n"
                                           "directory_url = \"https://127.0.0.1:14000/dir\"\n"
                                           "[publisher]\n"
                                           "web_root = \"" +
                                           softhsm_.sandbox().file("www") +
                                           "\"\n"
                                           "base_url = \"https://cr.example.net/\"\npublication_check = \"file\"\n"
                                           "[[certificate]]\n"
                                           "name = \"web\"\n"
                                           "identifiers = [\"dns:cr.example.net\"]\n");
  }

  CmdResult run(const std::string& tool, const std::string& args) {
    return test::runTool("SOFTHSM2_CONF=" + softhsm_.confPath(), tool, config_, args);
  }

  SoftHsmToken softhsm_{"kms-test"};
  std::string pin_;
  std::string stateDir_;
  std::string config_;
};

int lineCount(const std::string& s) {
  int n = 0;
  for (char c : s) {
    n += c == '\n' ? 1 : 0;
  }
  return n;
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
  EXPECT_EQ(r.rc, 1);
  EXPECT_EQ(r.output, config_ + ":2:13: [daemon] state_dir: expected a string, got integer\n" + config_ +
                          ":6:1: [hsm] colour: unknown key\n" + config_ +
                          ":8:17: [acme] directory_url: must be https (http is accepted only for loopback hosts)\n");
}

TEST_F(KmsdCli, TomlSyntaxErrorIsOneLine) {
  config_ = softhsm_.sandbox().write("syntax.toml", "[daemon\nstate_dir = \"/x\"\n");
  CmdResult r = run(kKmsd, "--check-config");
  EXPECT_EQ(r.rc, 1);
  EXPECT_EQ(lineCount(r.output), 1) << r.output;
  EXPECT_EQ(r.output.rfind(config_ + ":1:", 0), 0U) << r.output;
}

TEST_F(KmsdCli, UnreadablePinFile) {
  pin_ = softhsm_.sandbox().file("missing.pin");
  writeConfig();
  CmdResult r = run(kKmsd, "--check-config");
  EXPECT_EQ(r.rc, 1);
  EXPECT_EQ(lineCount(r.output), 1) << r.output;
  EXPECT_NE(r.output.find("[hsm] pin_file:"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("missing.pin"), std::string::npos) << r.output;
}

TEST_F(KmsdCli, WrongPinNamesTheTokenNotThePin) {
  pin_ = softhsm_.sandbox().write("wrong.pin", "999999\n");
  writeConfig();
  CmdResult r = run(kKmsd, "--check-config");
  EXPECT_EQ(r.rc, 1);
  EXPECT_EQ(r.output, config_ + ": [hsm] token 'kms-test': C_Login failed (CKR_PIN_INCORRECT)\n");
  EXPECT_EQ(r.output.find("999999"), std::string::npos);
}

TEST_F(KmsdCli, MissingToken) {
  writeConfig("", "nosuch");
  CmdResult r = run(kKmsd, "--check-config");
  EXPECT_EQ(r.rc, 1);
  EXPECT_EQ(r.output, config_ + ": [hsm] " + SoftHsmToken::modulePath() +
                          ": no token labelled 'nosuch' (tokens present: 'kms-test')\n");
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
  EXPECT_EQ(absent.rc, 1);
  EXPECT_EQ(lineCount(absent.output), 1) << absent.output;
  EXPECT_NE(absent.output.find("[hsm] module:"), std::string::npos) << absent.output;
}

TEST_F(KmsdCli, MissingConfigFile) {
  config_ = softhsm_.sandbox().file("nope.toml");
  CmdResult r = run(kKmsd, "--check-config");
  EXPECT_EQ(r.rc, 1);
  EXPECT_EQ(lineCount(r.output), 1) << r.output;
  EXPECT_NE(r.output.find("nope.toml"), std::string::npos);
}

TEST_F(KmsdCli, NewerSchemaDatabaseIsRefused) {
  ::mkdir(stateDir_.c_str(), 0700);
  std::string db = stateDir_ + "/kmsd.db";
  ASSERT_EQ(test::runCommand("sqlite3 " + db + " 'PRAGMA journal_mode=WAL; PRAGMA user_version=99;'"), 0);
  CmdResult r = run(kKmsd, "--check-config");
  EXPECT_EQ(r.rc, 1);
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
  EXPECT_NE(status.output.find("\"name\": \"web\""), std::string::npos) << status.output;
  EXPECT_NE(status.output.find("\"state\": \"planned\""), std::string::npos) << status.output;

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

}  // namespace
}  // namespace kms
