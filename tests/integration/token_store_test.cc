// guardSoftHsmStore against a real SoftHSM2 token: damaged token.object files are restored
// from the verified copy, the copy follows real changes only, object files cut at an
// attribute boundary are moved aside, and nothing is invented when there is no copy.
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "hsm/token.h"
#include "hsm/token_store.h"
#include "sandbox.h"
#include "softhsm_token.h"

namespace kms::hsm {
namespace {

using test::SoftHsmToken;

void writeBytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
  out.close();
  ASSERT_TRUE(out.good()) << path;
}

/// Offset just past the attribute of type `type` in a SoftHSM2 object file (8-byte big-endian
/// generation, then type, kind, value); 0 when it is not there. Test-side walker, kept apart
/// from the parser under test.
std::size_t endOfAttribute(const std::string& b, std::uint64_t type) {
  auto be64 = [&](std::size_t p) {
    std::uint64_t v = 0;
    for (std::size_t i = 0; i < 8; ++i) {
      v = (v << 8) | static_cast<unsigned char>(b[p + i]);
    }
    return v;
  };
  std::size_t pos = 8;
  while (pos + 16 <= b.size()) {
    std::uint64_t t = be64(pos);
    std::uint64_t kind = be64(pos + 8);
    pos += 16;
    switch (kind) {
      case 1:
        pos += 1;
        break;
      case 2:
        pos += 8;
        break;
      case 3:
      case 4:
        pos += 8 + be64(pos);
        break;
      case 5:
        pos += 8 + 8 * be64(pos);
        break;
      default:
        return 0;
    }
    if (t == type) {
      return pos;
    }
  }
  return 0;
}

class TokenStore : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const auto& entry : std::filesystem::directory_iterator(softhsm_.sandbox().file("tokens"))) {
      tokenDir_ = entry.path().string();
    }
    ASSERT_FALSE(tokenDir_.empty());
    tokenObject_ = tokenDir_ + "/token.object";
    copy_ = tokenDir_ + "/" + kTokenObjectCopy;
  }

  Result<TokenStoreReport> guard() const {
    TokenStoreOptions options;
    options.modulePath = SoftHsmToken::modulePath();
    options.confPath = softhsm_.confPath();
    options.settle = std::chrono::milliseconds(1);
    return guardSoftHsmStore(options);
  }

  Result<std::unique_ptr<Token>> open() const {
    return Token::open(TokenOptions{SoftHsmToken::modulePath(), softhsm_.label(), softhsm_.pinFile(), 1});
  }

  /// Generates keys through hsm::Token (the token is closed again on return).
  std::vector<KeyInfo> makeKeys(int n) const {
    auto token = open();
    EXPECT_TRUE(token.has_value()) << token.error().toString();
    std::vector<KeyInfo> keys;
    for (int i = 0; token && i < n; ++i) {
      auto key = (*token)->generateKey("key-" + std::to_string(i));
      EXPECT_TRUE(key.has_value()) << key.error().toString();
      keys.push_back(*key);
    }
    return keys;
  }

  /// Opens the token by label, logs in, and signs and verifies with every key.
  void expectKeysUsable(const std::vector<KeyInfo>& keys) const {
    auto token = open();
    ASSERT_TRUE(token.has_value()) << token.error().toString();
    for (const auto& key : keys) {
      auto signer = (*token)->signer(key.uri);
      ASSERT_TRUE(signer.has_value()) << signer.error().toString();
      auto sig = (*signer)->signMessage(pki::asBytes("survives"));
      ASSERT_TRUE(sig.has_value()) << sig.error().toString();
      EXPECT_TRUE(*key.publicKey.verifyEs256(pki::asBytes("survives"), *sig)) << key.label;
    }
  }

  /// The single key object file of the token (`<uuid>.object`).
  std::string keyObjectFile() const {
    std::string found;
    for (const auto& entry : std::filesystem::directory_iterator(tokenDir_)) {
      std::string name = entry.path().filename().string();
      if (name.ends_with(".object") && name != "token.object") {
        EXPECT_TRUE(found.empty()) << "more than one object file";
        found = entry.path().string();
      }
    }
    return found;
  }

  SoftHsmToken softhsm_{"kms-test"};
  std::string tokenDir_;
  std::string tokenObject_;
  std::string copy_;
};

TEST_F(TokenStore, FirstRunKeepsAVerifiedCopyThenLeavesItAlone) {
  auto first = guard();
  ASSERT_TRUE(first.has_value()) << first.error().toString();
  EXPECT_TRUE(first->checked);
  EXPECT_EQ(first->tokens, 1U);
  EXPECT_EQ(first->copied, std::vector<std::string>{copy_});
  EXPECT_TRUE(first->restored.empty());
  EXPECT_EQ(test::readFile(copy_), test::readFile(tokenObject_));
  struct stat st {};
  ASSERT_EQ(::stat(copy_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600U);

  auto second = guard();
  ASSERT_TRUE(second.has_value()) << second.error().toString();
  EXPECT_TRUE(second->copied.empty());
}

TEST_F(TokenStore, CopyIsRefreshedOnlyWhenTheAttributesChange) {
  ASSERT_TRUE(guard().has_value());
  std::string before = test::readFile(tokenObject_);
  // A login rewrites token.object with a new generation counter and the same attributes.
  { ASSERT_TRUE(open().has_value()); }
  ASSERT_NE(test::readFile(tokenObject_), before);
  auto afterLogin = guard();
  ASSERT_TRUE(afterLogin.has_value()) << afterLogin.error().toString();
  EXPECT_TRUE(afterLogin->copied.empty());
  EXPECT_EQ(test::readFile(copy_), before);

  // Re-initialising the token (new label, new PIN blobs) is a real change: the copy follows.
  std::string out;
  ASSERT_EQ(test::runCommand("softhsm2-util --init-token --token kms-test --label kms-renamed --so-pin " +
                                 std::string(SoftHsmToken::kSoPin) + " --pin " + SoftHsmToken::kUserPin,
                             &out),
            0)
      << out;
  auto afterInit = guard();
  ASSERT_TRUE(afterInit.has_value()) << afterInit.error().toString();
  EXPECT_EQ(afterInit->copied, std::vector<std::string>{copy_});
  EXPECT_EQ(test::readFile(copy_), test::readFile(tokenObject_));
}

TEST_F(TokenStore, TruncatedTokenObjectIsRestored) {
  auto keys = makeKeys(2);
  ASSERT_TRUE(guard().has_value());
  writeBytes(tokenObject_, "");  // what a kill between SoftHSM2's ftruncate and write leaves
  {
    auto lost = open();
    ASSERT_FALSE(lost.has_value());
    EXPECT_NE(lost.error().message.find("no token labelled 'kms-test'"), std::string::npos) << lost.error().message;
  }
  auto report = guard();
  ASSERT_TRUE(report.has_value()) << report.error().toString();
  ASSERT_EQ(report->restored.size(), 1U);
  EXPECT_EQ(report->restored[0].path, tokenObject_);
  EXPECT_EQ(report->restored[0].reason, "empty");
  EXPECT_EQ(test::readFile(tokenObject_), test::readFile(copy_));
  expectKeysUsable(keys);

  // Cut in the middle (a power cut that kept part of the write).
  std::string whole = test::readFile(tokenObject_);
  writeBytes(tokenObject_, whole.substr(0, whole.size() / 2));
  auto again = guard();
  ASSERT_TRUE(again.has_value()) << again.error().toString();
  ASSERT_EQ(again->restored.size(), 1U);
  EXPECT_EQ(again->restored[0].reason.rfind("cut inside an attribute at byte ", 0), 0U) << again->restored[0].reason;
  expectKeysUsable(keys);
}

TEST_F(TokenStore, GarbageOrMissingTokenObjectIsRestored) {
  auto keys = makeKeys(1);
  ASSERT_TRUE(guard().has_value());
  std::string size = std::to_string(test::readFile(tokenObject_).size());
  writeBytes(tokenObject_, std::string(320, '\xA5'));
  auto garbage = guard();
  ASSERT_TRUE(garbage.has_value()) << garbage.error().toString();
  ASSERT_EQ(garbage->restored.size(), 1U);
  EXPECT_EQ(garbage->restored[0].reason.rfind("unknown attribute kind ", 0), 0U) << garbage->restored[0].reason;
  expectKeysUsable(keys);

  // Zeroes, as a file system can leave after a power cut.
  writeBytes(tokenObject_, std::string(std::stoul(size), '\0'));
  auto zeroes = guard();
  ASSERT_TRUE(zeroes.has_value()) << zeroes.error().toString();
  ASSERT_EQ(zeroes->restored.size(), 1U);
  expectKeysUsable(keys);

  std::filesystem::remove(tokenObject_);
  auto missing = guard();
  ASSERT_TRUE(missing.has_value()) << missing.error().toString();
  ASSERT_EQ(missing->restored.size(), 1U);
  EXPECT_EQ(missing->restored[0].reason, "missing");
  expectKeysUsable(keys);
}

TEST_F(TokenStore, BrokenWithoutACopyIsAClearErrorAndNothingIsInvented) {
  writeBytes(tokenObject_, "");
  auto report = guard();
  ASSERT_FALSE(report.has_value());
  EXPECT_EQ(report.error().code, Errc::io);
  EXPECT_EQ(report.error().context, tokenObject_);
  EXPECT_EQ(report.error().toString(), tokenObject_ +
                                           ": damaged (empty) and no verified copy to restore it from "
                                           "(token.object.kmsd-good: missing); restore the token directory from a "
                                           "backup or re-initialise the token");
  EXPECT_FALSE(std::filesystem::exists(copy_));
  EXPECT_EQ(std::filesystem::file_size(tokenObject_), 0U);
}

TEST_F(TokenStore, DamagedCopyIsRewrittenFromAHealthyTokenObject) {
  ASSERT_TRUE(guard().has_value());
  writeBytes(copy_, "not a token");
  auto report = guard();
  ASSERT_TRUE(report.has_value()) << report.error().toString();
  EXPECT_EQ(report->copied, std::vector<std::string>{copy_});
  EXPECT_EQ(test::readFile(copy_), test::readFile(tokenObject_));
}

TEST_F(TokenStore, OtherModulesAndBackendsAreLeftAlone) {
  TokenStoreOptions options;
  options.modulePath = "/usr/lib/x86_64-linux-gnu/pkcs11/some-vendor-hsm.so";
  options.confPath = "/nonexistent/softhsm2.conf";
  auto other = guardSoftHsmStore(options);
  ASSERT_TRUE(other.has_value()) << other.error().toString();
  EXPECT_FALSE(other->checked);

  options.modulePath = SoftHsmToken::modulePath();
  options.confPath = softhsm_.sandbox().write(
      "db.conf", "directories.tokendir = " + softhsm_.sandbox().file("tokens") + "\nobjectstore.backend = db\n");
  auto db = guardSoftHsmStore(options);
  ASSERT_TRUE(db.has_value()) << db.error().toString();
  EXPECT_FALSE(db->checked);
  EXPECT_FALSE(std::filesystem::exists(copy_));

  options.confPath = softhsm_.sandbox().file("missing.conf");
  auto missing = guardSoftHsmStore(options);
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().toString(), options.confPath + ": SoftHSM2 configuration file not found");
}

// What SoftHSM2 2.6.1 does with a key file cut at an attribute boundary (a power cut during a
// key write): it loads it as a valid object, fills the missing attributes with defaults and
// writes that back, leaving a private key with an empty CKA_ID and no EC parameters or public
// key, which breaks Token::listKeys. This is why the guard moves such files aside.
TEST_F(TokenStore, SoftHsmTurnsAKeyFileCutAtABoundaryIntoABogusKey) {
  auto keys = makeKeys(1);
  std::string file = keyObjectFile();
  std::string whole = test::readFile(file);
  std::size_t cut = endOfAttribute(whole, 0x100);  // just after CKA_KEY_TYPE (CKK_EC)
  ASSERT_GT(cut, 0U);
  writeBytes(file, whole.substr(0, cut));
  auto token = open();
  ASSERT_TRUE(token.has_value()) << token.error().toString();
  auto listed = (*token)->listKeys();
  ASSERT_FALSE(listed.has_value());
  EXPECT_EQ(listed.error().code, Errc::notFound) << listed.error().toString();
  EXPECT_GT(std::filesystem::file_size(file), cut) << "SoftHSM2 wrote its defaults back";
}

TEST_F(TokenStore, KeyFileCutAtABoundaryIsMovedAsideOthersAreLeft) {
  auto keys = makeKeys(1);
  std::string file = keyObjectFile();
  std::string whole = test::readFile(file);
  auto kept = makeKeys(1);  // a second key, which must stay usable
  std::size_t cut = endOfAttribute(whole, 0x100);
  ASSERT_GT(cut, 0U);
  writeBytes(file, whole.substr(0, cut));
  auto report = guard();
  ASSERT_TRUE(report.has_value()) << report.error().toString();
  ASSERT_EQ(report->quarantined.size(), 1U);
  EXPECT_EQ(report->quarantined[0].path, file);
  EXPECT_EQ(report->quarantined[0].movedTo, file + kQuarantineSuffix);
  EXPECT_EQ(report->quarantined[0].reason.rfind("ends after ", 0), 0U) << report->quarantined[0].reason;
  EXPECT_NE(report->quarantined[0].reason.find(" attributes, before CKA_DESTROYABLE"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(file));
  EXPECT_EQ(test::readFile(file + kQuarantineSuffix), whole.substr(0, cut));
  {
    auto token = open();
    ASSERT_TRUE(token.has_value()) << token.error().toString();
    auto listed = (*token)->listKeys();
    ASSERT_TRUE(listed.has_value()) << listed.error().toString();
    ASSERT_EQ(listed->size(), 1U);
    EXPECT_EQ(listed->front().uri, kept.front().uri);
  }
  expectKeysUsable(kept);

  // Files SoftHSM2 skips are left where they are: empty, generation counter only, cut
  // inside a value.
  for (std::size_t size : {std::size_t{0}, std::size_t{8}, cut - 3}) {
    writeBytes(file, whole.substr(0, size));
    auto left = guard();
    ASSERT_TRUE(left.has_value()) << left.error().toString();
    EXPECT_TRUE(left->quarantined.empty()) << size;
    EXPECT_TRUE(std::filesystem::exists(file)) << size;
    expectKeysUsable(kept);
  }
}

}  // namespace
}  // namespace kms::hsm
