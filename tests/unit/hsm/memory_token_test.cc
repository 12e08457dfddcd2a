// hsm::Token on the in-memory PKCS#11 module the kmsd unit tests use instead of SoftHSM2
// (tests/support/pkcs11_memory_module.cc): everything kmsd asks of a token works on it as on
// SoftHSM2 (hsm_token_test.cc proves the same against the real one).
#include <gtest/gtest.h>

#include <dlfcn.h>

#include "hsm/token.h"
#include "pki/encoding.h"
#include "sandbox.h"

namespace kms::hsm {
namespace {

class MemoryToken : public ::testing::Test {
 protected:
  void SetUp() override {
    pin_ = sandbox_.write("pin", "1234\n");
    auto token = Token::open({KMS_MEMORY_MODULE, "kms-test", pin_, 2});
    ASSERT_TRUE(token.has_value()) << token.error().toString();
    token_ = std::move(*token);
  }
  /// Token objects the module holds (its own count, not hsm's view).
  static int objects() {
    void* lib = ::dlopen(KMS_MEMORY_MODULE, RTLD_NOW | RTLD_NOLOAD);
    auto count = lib != nullptr ? reinterpret_cast<int (*)()>(::dlsym(lib, "kms_memory_token_objects")) : nullptr;
    const int n = count != nullptr ? count() : -1;
    if (lib != nullptr) {
      ::dlclose(lib);
    }
    return n;
  }

  test::Sandbox sandbox_;
  std::string pin_;
  std::unique_ptr<Token> token_;
};

TEST_F(MemoryToken, AGeneratedKeySignsIsFoundByItsUriAndIsDestroyed) {
  const int before = objects();
  auto id = Token::newKeyId();
  ASSERT_TRUE(id.has_value());
  auto signer = token_->generateSigner("mem-1", *id);
  ASSERT_TRUE(signer.has_value()) << signer.error().toString();
  EXPECT_EQ(objects(), before + 1);  // one token object per key (public half in CKA_PUBLIC_KEY_INFO)

  const std::string message = "a PASSporT";
  auto digest = pki::sha256(pki::asBytes(message));
  auto sig = (*signer)->signDigest(digest);
  ASSERT_TRUE(sig.has_value()) << sig.error().toString();
  auto verified = (*signer)->publicKey().verifyEs256(pki::asBytes(message), *sig);
  ASSERT_TRUE(verified.has_value()) << verified.error().toString();
  EXPECT_TRUE(*verified);

  // Found again by URI: the key passes hsm's checks of a key made inside a token.
  const Pkcs11Uri uri = token_->keyUri("mem-1", *id);
  auto found = token_->signer(uri);
  ASSERT_TRUE(found.has_value()) << found.error().toString();
  EXPECT_EQ((*found)->publicKey().spkiDer(), (*signer)->publicKey().spkiDer());
  auto listed = token_->listKeys();
  ASSERT_TRUE(listed.has_value()) << listed.error().toString();
  bool inList = false;
  for (const KeyInfo& k : *listed) {
    inList = inList || k.label == "mem-1";
  }
  EXPECT_TRUE(inList);

  ASSERT_TRUE(token_->destroyKey(uri).has_value());
  EXPECT_EQ(objects(), before);
  auto gone = token_->signer(uri);
  ASSERT_FALSE(gone.has_value());
  EXPECT_EQ(gone.error().code, Errc::notFound);
}

TEST_F(MemoryToken, KeysOutliveTheTokenThatMadeThem) {
  auto signer = token_->generateSigner("mem-2");
  ASSERT_TRUE(signer.has_value()) << signer.error().toString();
  const Pkcs11Uri uri = (*signer)->info().uri;
  signer->reset();
  token_.reset();  // the module is unloaded as far as hsm is concerned
  auto again = Token::open({KMS_MEMORY_MODULE, "kms-test", pin_, 1});
  ASSERT_TRUE(again.has_value()) << again.error().toString();
  EXPECT_TRUE((*again)->signer(uri).has_value());
  EXPECT_TRUE((*again)->destroyKey(uri).has_value());
}

TEST_F(MemoryToken, AnotherLabelIsNotFound) {
  auto other = Token::open({KMS_MEMORY_MODULE, "no-such-token", pin_, 1});
  ASSERT_FALSE(other.has_value());
  EXPECT_EQ(other.error().code, Errc::notFound);
}

}  // namespace
}  // namespace kms::hsm
