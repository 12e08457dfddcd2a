// kmsctl backup against a running kmsd (with kms-lab), and the README's restore: a fresh
// state directory and token store made from the backup alone, on which kmsd resumes with the
// same key and certificate and orders nothing.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli.h"
#include "control/control_api.h"
#include "daemon_process.h"
#include "lab_process.h"
#include "must.h"
#include "pki/encoding.h"
#include "sandbox.h"

namespace kms {
namespace {

namespace fs = std::filesystem;
using test::CmdResult;
using test::DaemonProcess;
using test::kKmsctl;
using test::LabProcess;

std::string sha256Hex(const std::string& bytes) {
  return pki::hexEncode(pki::sha256(pki::asBytes(bytes)));
}

unsigned modeOf(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return st.st_mode & 07777;
}

/// Replaces every `key = "..."` line of `key` in the TOML text.
void setSetting(std::string& toml, const std::string& key, const std::string& value) {
  toml = std::regex_replace(toml, std::regex("\n" + key + " = \"[^\"]*\""), "\n" + key + " = \"" + value + "\"");
}

class Backup : public ::testing::Test {
 protected:
  void SetUp() override {
    lab_ = std::make_unique<LabProcess>(sandbox_.file("lab"));
    config_ = lab_->file("kmsd.toml");
    softhsmConf_ = lab_->file("softhsm2.conf");
  }
  std::unique_ptr<DaemonProcess> startDaemon(const std::string& log) {
    return std::make_unique<DaemonProcess>(softhsmConf_, config_, sandbox_.file(log));
  }
  CmdResult kmsctl(const std::string& args) {
    return test::runTool("SOFTHSM2_CONF=" + softhsmConf_, kKmsctl, config_, args);
  }
  nlohmann::json get(const std::string& target) {
    auto r = test::must(daemon::controlRequest(lab_->file("kmsd.sock"), "GET", target, ""));
    EXPECT_EQ(r.status, 200) << target << ": " << r.body;
    return nlohmann::json::parse(r.body);
  }
  /// The active certificate's serial and key, and the key URIs on the token.
  std::string fingerprint() {
    nlohmann::json certs = get("/v1/certificates")["certificates"];
    std::string out;
    for (const auto& c : certs) {
      out += c.value("name", "") + " " + c.value("state", "") + " " + c.value("serial", "") + " " +
             c.value("not_after", "") + " " + c.value("x5u", "") + "\n";
    }
    std::vector<std::string> keys;
    const nlohmann::json keyList = get("/v1/keys")["keys"];
    for (const auto& k : keyList) {
      keys.push_back(k.value("uri", ""));
    }
    std::sort(keys.begin(), keys.end());
    for (const auto& k : keys) {
      out += k + "\n";
    }
    return out;
  }

  test::Sandbox sandbox_;
  std::unique_ptr<LabProcess> lab_;
  std::string config_;
  std::string softhsmConf_;
};

TEST_F(Backup, ARestoredStateDirectoryAndTokenStoreResumeWithTheSameKeyAndCertificate) {
  auto kmsd = startDaemon("kmsd.log");
  ASSERT_TRUE(kmsd->waitFor("KMS_CERT_ACTIVATED cert=main")) << kmsd->log();
  const std::string before = fingerprint();
  ASSERT_NE(before.find("main active "), std::string::npos) << before;

  const std::string dir = sandbox_.file("backup");
  CmdResult taken = kmsctl("backup " + dir);
  ASSERT_EQ(taken.rc, 0) << taken.output;
  EXPECT_NE(taken.output.find("backup in " + dir + ": kmsd.db ("), std::string::npos) << taken.output;
  EXPECT_TRUE(kmsd->waitFor("KMS_BACKUP_TAKEN")) << kmsd->log();

  // The manifest lists every file with its size and SHA-256; the files are private.
  nlohmann::json manifest = nlohmann::json::parse(test::readFile(dir + "/manifest.json"));
  EXPECT_EQ(manifest["format"], "kmsd-backup/1");
  EXPECT_EQ(modeOf(dir), 0700U);
  const std::string db = test::readFile(dir + "/kmsd.db");
  EXPECT_EQ(manifest["state_db"]["sha256"], sha256Hex(db));
  EXPECT_FALSE(manifest["state_db"].contains("base64"));
  EXPECT_EQ(modeOf(dir + "/kmsd.db"), 0600U);
  ASSERT_TRUE(manifest["token_store"].is_object()) << manifest.dump(2);
  std::size_t objects = 0;
  for (const auto& f : manifest["token_store"]["files"]) {
    const std::string path = dir + "/" + f["path"].get<std::string>();
    EXPECT_EQ(f["sha256"], sha256Hex(test::readFile(path))) << path;
    EXPECT_EQ(modeOf(path), 0600U) << path;
    objects += path.ends_with(".object") ? 1 : 0;
  }
  EXPECT_GE(objects, 3U) << manifest.dump(2);  // token.object and the two keys at least

  // A backup never goes into a directory that holds something.
  CmdResult again = kmsctl("backup " + dir);
  EXPECT_EQ(again.rc, 2) << again.output;
  EXPECT_NE(again.output.find(dir + " is not empty"), std::string::npos) << again.output;
  EXPECT_EQ(sha256Hex(test::readFile(dir + "/kmsd.db")), manifest["state_db"]["sha256"]);

  ASSERT_EQ(kmsd->stop(SIGTERM), 0) << kmsd->log();

  // The README's restore, into places that never held anything, the old ones moved away.
  std::string toml = test::readFile(config_);
  const std::string oldState = lab_->file("state");
  const std::string oldTokens = lab_->file("softhsm/tokens");
  fs::rename(oldState, oldState + ".gone");
  fs::rename(oldTokens, oldTokens + ".gone");
  const std::string state = sandbox_.file("restored-state");
  const std::string tokens = sandbox_.file("restored-tokens");
  fs::create_directory(state);
  fs::permissions(state, fs::perms::owner_all);
  fs::copy_file(dir + "/kmsd.db", state + "/kmsd.db");
  fs::create_directory(tokens);
  fs::permissions(tokens, fs::perms::owner_all);
  fs::copy(dir + "/tokens", tokens, fs::copy_options::recursive);
  std::string conf = test::readFile(softhsmConf_);
  conf = std::regex_replace(conf, std::regex("directories.tokendir = [^\n]*"), "directories.tokendir = " + tokens);
  softhsmConf_ = sandbox_.file("restored-softhsm2.conf");
  std::ofstream(softhsmConf_) << conf;
  setSetting(toml, "state_dir", state);
  setSetting(toml, "softhsm2_conf", softhsmConf_);
  std::ofstream(config_, std::ios::trunc) << toml;

  auto restored = startDaemon("kmsd-restored.log");
  ASSERT_TRUE(restored->waitFor("KMS_STARTED")) << restored->log();
  EXPECT_EQ(fingerprint(), before) << restored->log();
  // The key signs: a PASSporT with the restored key, from the restored certificate.
  CmdResult signed_ = kmsctl("passport sign --orig 12025550100 --dest 12025550101 --attest A");
  EXPECT_EQ(signed_.rc, 0) << signed_.output;
  EXPECT_NE(signed_.output.find(";ppt=shaken"), std::string::npos) << signed_.output;
  // Ready: the schedule is armed, so a certificate the DB did not know would be ordered by now.
  bool ready = false;
  for (int i = 0; i < 300 && !ready; ++i) {
    auto r = daemon::controlRequest(lab_->file("kmsd.sock"), "GET", "/readyz", "");
    ready = r && r->status == 200;
    if (!ready) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  ASSERT_TRUE(ready) << restored->log();
  EXPECT_EQ(restored->log().find("KMS_ORDER_CREATED"), std::string::npos) << restored->log();
  EXPECT_EQ(restored->log().find("KMS_KEY_MISSING"), std::string::npos) << restored->log();
  EXPECT_EQ(fingerprint(), before) << restored->log();
}

TEST_F(Backup, WithoutTheDaemonNothingIsWritten) {
  const std::string dir = sandbox_.file("backup");
  CmdResult r = kmsctl("backup " + dir);
  EXPECT_EQ(r.rc, 1) << r.output;
  EXPECT_NE(r.output.find("kmsd is not running"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(dir));
}

}  // namespace
}  // namespace kms
