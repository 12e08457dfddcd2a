// The hsm/ layer against a real SoftHSM2 token created for each test process.
#include <gtest/gtest.h>

#include <dlfcn.h>
#include <unistd.h>
#include <p11-kit/pkcs11.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "must.h"
#include "hsm/token.h"
#include "pki/csr.h"
#include "pki/tn_auth_list.h"
#include "pki/x509.h"
#include "sandbox.h"
#include "softhsm_token.h"

namespace kms::hsm {
namespace {

using test::SoftHsmToken;

/// A second, raw PKCS#11 view of the token the hsm/ layer has open (same module, same
/// login state), to see which objects are on it and to make keys the way other tools do.
class RawToken {
 public:
  explicit RawToken(const std::string& label) {
    void* lib = ::dlopen(SoftHsmToken::modulePath().c_str(), RTLD_NOW);
    if (lib == nullptr) {
      throw std::runtime_error("dlopen failed");
    }
    auto getList = reinterpret_cast<CK_C_GetFunctionList>(::dlsym(lib, "C_GetFunctionList"));
    getList(&f_);
    CK_C_INITIALIZE_ARGS args{};
    args.flags = CKF_OS_LOCKING_OK;
    CK_RV rv = f_->C_Initialize(&args);  // already initialised by the Token under test
    if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
      throw std::runtime_error("C_Initialize failed");
    }
    std::vector<CK_SLOT_ID> slots(16);
    CK_ULONG n = slots.size();
    f_->C_GetSlotList(CK_TRUE, slots.data(), &n);
    for (CK_ULONG i = 0; i < n; ++i) {
      CK_TOKEN_INFO info{};
      if (f_->C_GetTokenInfo(slots[i], &info) == CKR_OK &&
          std::string(reinterpret_cast<const char*>(info.label), sizeof info.label).rfind(label + " ", 0) == 0) {
        slot_ = slots[i];
        f_->C_OpenSession(slot_, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr, &session_);
        return;
      }
    }
    throw std::runtime_error("no token " + label);
  }
  ~RawToken() { f_->C_CloseSession(session_); }
  RawToken(const RawToken&) = delete;
  RawToken& operator=(const RawToken&) = delete;

  /// Closes every session this process has on the token (the hsm/ layer's pooled ones too),
  /// as an HSM that restarts or a reconnect does; the login goes with the last session.
  /// Then opens a fresh raw session for the other helpers.
  CK_RV closeAllSessions() {
    CK_RV rv = f_->C_CloseAllSessions(slot_);
    f_->C_OpenSession(slot_, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr, &session_);
    return rv;
  }
  /// Logs the process out of the token (login state is shared by all its sessions).
  CK_RV logout() { return f_->C_Logout(session_); }
  /// Destroys the private key with this CKA_ID (leaves its public half).
  CK_RV destroyPrivateKey(const pki::Bytes& id) {
    CK_OBJECT_HANDLE h = privateKey(id);
    return h == CK_INVALID_HANDLE ? CKR_OBJECT_HANDLE_INVALID : f_->C_DestroyObject(session_, h);
  }

  /// Handles of the objects matching a template (session objects of any session included).
  std::vector<CK_OBJECT_HANDLE> find(std::vector<CK_ATTRIBUTE> tmpl) {
    f_->C_FindObjectsInit(session_, tmpl.data(), tmpl.size());
    std::vector<CK_OBJECT_HANDLE> found(16);
    CK_ULONG n = 0;
    f_->C_FindObjects(session_, found.data(), found.size(), &n);
    f_->C_FindObjectsFinal(session_);
    found.resize(n);
    return found;
  }
  static CK_ATTRIBUTE idAttr(const pki::Bytes& id) {
    return {CKA_ID, const_cast<std::uint8_t*>(id.data()), id.size()};
  }
  /// The private key with this CKA_ID, CK_INVALID_HANDLE unless exactly one.
  CK_OBJECT_HANDLE privateKey(const pki::Bytes& id) {
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    auto found = find({{CKA_CLASS, &cls, sizeof cls}, idAttr(id)});
    return found.size() == 1 ? found.front() : CK_INVALID_HANDLE;
  }

  /// Token objects of a class with this CKA_ID.
  std::size_t count(CK_OBJECT_CLASS cls, const pki::Bytes& id) {
    CK_BBOOL yes = CK_TRUE;
    return find({{CKA_CLASS, &cls, sizeof cls}, {CKA_TOKEN, &yes, sizeof yes}, idAttr(id)}).size();
  }

  /// Objects with this CKA_ID, session objects of any session included.
  std::size_t countAll(const pki::Bytes& id) { return find({idAttr(id)}).size(); }

  /// Boolean attributes of the private key with this CKA_ID, in the order asked (-1: unreadable).
  std::vector<int> flags(const pki::Bytes& id, const std::vector<CK_ATTRIBUTE_TYPE>& types) {
    CK_OBJECT_HANDLE h = privateKey(id);
    std::vector<int> out;
    for (CK_ATTRIBUTE_TYPE t : types) {
      CK_BBOOL v = 2;
      CK_ATTRIBUTE a{t, &v, sizeof v};
      out.push_back(h != CK_INVALID_HANDLE && f_->C_GetAttributeValue(session_, h, &a, 1) == CKR_OK ? v : -1);
    }
    return out;
  }

  /// Tries to read CKA_VALUE (the private scalar) of the key with this CKA_ID.
  CK_RV readPrivateValue(const pki::Bytes& id) {
    CK_OBJECT_HANDLE h = privateKey(id);
    std::uint8_t buf[128];
    CK_ATTRIBUTE a{CKA_VALUE, buf, sizeof buf};
    return h == CK_INVALID_HANDLE ? CKR_OBJECT_HANDLE_INVALID : f_->C_GetAttributeValue(session_, h, &a, 1);
  }

  /// Gives the public-key object with CKA_ID `from` the CKA_ID `to` (after destroying any
  /// public-key object `to` had): a private key then sits beside another key's public half.
  bool movePublicKey(const pki::Bytes& from, const pki::Bytes& to) {
    CK_OBJECT_CLASS cls = CKO_PUBLIC_KEY;
    for (CK_OBJECT_HANDLE h : find({{CKA_CLASS, &cls, sizeof cls}, idAttr(to)})) {
      f_->C_DestroyObject(session_, h);
    }
    auto pubs = find({{CKA_CLASS, &cls, sizeof cls}, idAttr(from)});
    if (pubs.size() != 1) {
      return false;
    }
    pki::Bytes id = to;
    CK_ATTRIBUTE a{CKA_ID, id.data(), id.size()};
    return f_->C_SetAttributeValue(session_, pubs.front(), &a, 1) == CKR_OK;
  }

  /// CKA_PUBLIC_KEY_INFO of the private key with this CKA_ID.
  pki::Bytes publicKeyInfo(const pki::Bytes& id) {
    CK_OBJECT_HANDLE h = privateKey(id);
    pki::Bytes out(256);
    CK_ATTRIBUTE a{CKA_PUBLIC_KEY_INFO, out.data(), out.size()};
    if (h == CK_INVALID_HANDLE || f_->C_GetAttributeValue(session_, h, &a, 1) != CKR_OK) {
      return {};
    }
    out.resize(a.ulValueLen);
    return out;
  }

  /// A P-256 pair as pkcs11-tool and most HSM tooling make one: two token objects, no
  /// CKA_PUBLIC_KEY_INFO; sensitive and not extractable unless `extractable` (then neither). Returns the
  /// public key's CKA_EC_POINT.
  pki::Bytes generateTwoObjectKey(const pki::Bytes& id, const std::string& label, bool extractable = false) {
    static constexpr CK_BYTE kP256[] = {0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07};
    CK_BBOOL yes = CK_TRUE;
    CK_BBOOL extract = extractable ? CK_TRUE : CK_FALSE;
    CK_BBOOL sensitive = extractable ? CK_FALSE : CK_TRUE;
    CK_OBJECT_CLASS pubClass = CKO_PUBLIC_KEY;
    CK_OBJECT_CLASS privClass = CKO_PRIVATE_KEY;
    std::string lbl = label;
    pki::Bytes idCopy = id;
    CK_ATTRIBUTE pub[] = {{CKA_CLASS, &pubClass, sizeof pubClass},
                          {CKA_TOKEN, &yes, sizeof yes},
                          {CKA_EC_PARAMS, const_cast<CK_BYTE*>(kP256), sizeof kP256},
                          {CKA_LABEL, lbl.data(), lbl.size()},
                          {CKA_ID, idCopy.data(), idCopy.size()}};
    CK_ATTRIBUTE priv[] = {{CKA_CLASS, &privClass, sizeof privClass},
                           {CKA_TOKEN, &yes, sizeof yes},
                           {CKA_PRIVATE, &yes, sizeof yes},
                           {CKA_SIGN, &yes, sizeof yes},
                           {CKA_SENSITIVE, &sensitive, sizeof sensitive},
                           {CKA_EXTRACTABLE, &extract, sizeof extract},
                           {CKA_LABEL, lbl.data(), lbl.size()},
                           {CKA_ID, idCopy.data(), idCopy.size()}};
    CK_MECHANISM mech{CKM_EC_KEY_PAIR_GEN, nullptr, 0};
    CK_OBJECT_HANDLE hPub = CK_INVALID_HANDLE;
    CK_OBJECT_HANDLE hPriv = CK_INVALID_HANDLE;
    if (f_->C_GenerateKeyPair(session_, &mech, pub, 5, priv, 8, &hPub, &hPriv) != CKR_OK) {
      return {};
    }
    pki::Bytes point(128);
    CK_ATTRIBUTE a{CKA_EC_POINT, point.data(), point.size()};
    f_->C_GetAttributeValue(session_, hPub, &a, 1);
    point.resize(a.ulValueLen);
    return point;
  }

 private:
  CK_FUNCTION_LIST* f_ = nullptr;
  CK_SLOT_ID slot_ = 0;
  CK_SESSION_HANDLE session_ = CK_INVALID_HANDLE;
};

class HsmToken : public ::testing::Test {
 protected:
  TokenOptions options(std::size_t pool = 4) const {
    return TokenOptions{SoftHsmToken::modulePath(), softhsm_.label(), softhsm_.pinFile(), pool};
  }
  std::unique_ptr<Token> openToken(std::size_t pool = 4) {
    // must(): a token that does not open fails the test (an exception), never a null deref.
    return test::must(Token::open(options(pool)));
  }

  SoftHsmToken softhsm_{"kms-test"};
};

TEST_F(HsmToken, GeneratesSignsAndVerifies) {
  auto token = openToken();
  ASSERT_NE(token, nullptr);
  auto key = token->generateKey("main-2026");
  ASSERT_TRUE(key.has_value()) << key.error().toString();
  EXPECT_EQ(key->id.size(), 16U);
  EXPECT_EQ(key->label, "main-2026");
  EXPECT_EQ(key->uri.path("token"), std::optional<std::string>("kms-test"));
  EXPECT_EQ(key->uri.path("type"), std::optional<std::string>("private"));

  auto signer = token->signer(key->uri);
  ASSERT_TRUE(signer.has_value()) << signer.error().toString();
  EXPECT_EQ((*signer)->publicKey(), key->publicKey);
  auto sig = (*signer)->signMessage(pki::asBytes("header.payload"));
  ASSERT_TRUE(sig.has_value()) << sig.error().toString();
  EXPECT_TRUE(*key->publicKey.verifyEs256(pki::asBytes("header.payload"), *sig));
  EXPECT_FALSE(*key->publicKey.verifyEs256(pki::asBytes("header.payloaX"), *sig));
}

TEST_F(HsmToken, KeysSurviveReopenAndAreFoundByUriString) {
  std::string uriText;
  pki::EcPublicKey pub;
  {
    auto token = openToken();
    auto key = token->generateKey("persisted");
    ASSERT_TRUE(key.has_value());
    uriText = key->uri.toString();
    pub = key->publicKey;
  }
  auto token = openToken();
  auto uri = Pkcs11Uri::parse(uriText);
  ASSERT_TRUE(uri.has_value());
  auto signer = token->signer(*uri);
  ASSERT_TRUE(signer.has_value()) << signer.error().toString();
  EXPECT_EQ((*signer)->publicKey(), pub);
  auto byLabel = Pkcs11Uri::parse("pkcs11:object=persisted;type=private");
  EXPECT_TRUE(token->signer(*byLabel).has_value());
}

TEST_F(HsmToken, PrivateValueCannotBeRead) {
  auto token = openToken();
  auto key = token->generateKey("secret");
  ASSERT_TRUE(key.has_value());
  RawToken raw("kms-test");
  EXPECT_EQ(raw.readPrivateValue(key->id), CKR_ATTRIBUTE_SENSITIVE);
}

TEST_F(HsmToken, AKeyBesideAnotherKeysPublicHalfIsRefused) {
  auto token = openToken();
  RawToken raw("kms-test");
  pki::Bytes mine{0x01, 0x11};
  pki::Bytes other{0x02, 0x22};
  ASSERT_FALSE(raw.generateTwoObjectKey(mine, "mine").empty());
  ASSERT_FALSE(raw.generateTwoObjectKey(other, "other").empty());
  ASSERT_TRUE(raw.movePublicKey(other, mine));  // someone swaps the public object
  auto signer = token->signer(Pkcs11Uri::forKey("kms-test", "mine", mine));
  ASSERT_FALSE(signer.has_value());
  EXPECT_EQ(signer.error().code, Errc::hsm);
  EXPECT_EQ(signer.error().message, "key refused: its public key object does not match the private key");
}

TEST_F(HsmToken, KeysNotMadeInsideATokenAreRefused) {
  auto token = openToken();
  RawToken raw("kms-test");
  // Someone with the PIN places an extractable key under the CKA_ID kmsd expects.
  pki::Bytes id{0x0B, 0xAD};
  ASSERT_FALSE(raw.generateTwoObjectKey(id, "planted", true).empty());
  EXPECT_EQ(raw.readPrivateValue(id), CKR_OK);  // it can leave the token
  auto signer = token->signer(Pkcs11Uri::forKey("kms-test", "planted", id));
  ASSERT_FALSE(signer.has_value());
  EXPECT_EQ(signer.error().code, Errc::hsm);
  EXPECT_EQ(signer.error().message,
            "key refused: CKA_SENSITIVE is false; kmsd signs only with keys generated inside the token (sign, "
            "sensitive, never extractable, local)");
  EXPECT_NE(signer.error().context.find("id=%0B%AD"), std::string::npos) << signer.error().context;
}

TEST_F(HsmToken, ListAndDestroy) {
  auto token = openToken();
  ASSERT_TRUE(token->generateKey("b-key").has_value());
  auto a = token->generateKey("a-key");
  ASSERT_TRUE(a.has_value());
  auto keys = token->listKeys();
  ASSERT_TRUE(keys.has_value());
  ASSERT_EQ(keys->size(), 2U);
  EXPECT_EQ((*keys)[0].label, "a-key");
  EXPECT_EQ((*keys)[1].label, "b-key");
  ASSERT_TRUE(token->destroyKey(a->uri).has_value());
  EXPECT_EQ(token->listKeys()->size(), 1U);
  auto gone = token->signer(a->uri);
  ASSERT_FALSE(gone.has_value());
  EXPECT_EQ(gone.error().code, Errc::notFound);
  EXPECT_EQ(token->destroyKey(a->uri).error().code, Errc::notFound);
}

TEST_F(HsmToken, NewKeyIsOneTokenObjectCarryingItsPublicKeyInfo) {
  auto token = openToken();
  auto key = token->generateKey("one-object");
  ASSERT_TRUE(key.has_value()) << key.error().toString();
  RawToken raw("kms-test");
  EXPECT_EQ(raw.count(CKO_PRIVATE_KEY, key->id), 1U);
  EXPECT_EQ(raw.count(CKO_PUBLIC_KEY, key->id), 0U);
  EXPECT_EQ(raw.countAll(key->id), 1U);  // no session object left behind either
  // Generated in the token's memory and copied onto it: still a key that never left it.
  EXPECT_EQ(raw.flags(key->id, {CKA_TOKEN, CKA_PRIVATE, CKA_SENSITIVE, CKA_EXTRACTABLE, CKA_SIGN, CKA_LOCAL,
                                CKA_ALWAYS_SENSITIVE, CKA_NEVER_EXTRACTABLE}),
            (std::vector<int>{1, 1, 1, 0, 1, 1, 1, 1}));
  // Least privilege: a signing key and nothing else.
  EXPECT_EQ(raw.flags(key->id, {CKA_SIGN_RECOVER, CKA_DECRYPT, CKA_UNWRAP, CKA_DERIVE}),
            (std::vector<int>{0, 0, 0, 0}));
  EXPECT_EQ(raw.publicKeyInfo(key->id), key->publicKey.spkiDer());
  // Read back from the token alone (a fresh handle, not the generation result).
  auto listed = token->listKeys();
  ASSERT_TRUE(listed.has_value()) << listed.error().toString();
  ASSERT_EQ(listed->size(), 1U);
  EXPECT_EQ((*listed)[0].publicKey, key->publicKey);
  ASSERT_TRUE(token->destroyKey(key->uri).has_value());
  EXPECT_EQ(raw.count(CKO_PRIVATE_KEY, key->id), 0U);
}

TEST_F(HsmToken, KeysMadeByOtherToolsUseTheirPublicKeyObject) {
  auto token = openToken();
  RawToken raw("kms-test");
  pki::Bytes id{0xAB, 0xCD, 0x01};
  pki::Bytes point = raw.generateTwoObjectKey(id, "imported");
  ASSERT_FALSE(point.empty());
  EXPECT_TRUE(raw.publicKeyInfo(id).empty());
  auto signer = token->signer(Pkcs11Uri::forKey("kms-test", "imported", id));
  ASSERT_TRUE(signer.has_value()) << signer.error().toString();
  // CKA_EC_POINT is a DER OCTET STRING (04 41) around the 65-byte uncompressed point.
  ASSERT_EQ(point.size(), 67U);
  EXPECT_EQ((*signer)->publicKey().spkiDer().size(), 91U);
  EXPECT_TRUE(std::equal(point.begin() + 2, point.end(), (*signer)->publicKey().spkiDer().end() - 65));
  auto sig = (*signer)->signMessage(pki::asBytes("payload"));
  ASSERT_TRUE(sig.has_value()) << sig.error().toString();
  EXPECT_TRUE(*(*signer)->publicKey().verifyEs256(pki::asBytes("payload"), *sig));
  signer->reset();
  ASSERT_TRUE(token->destroyKey(Pkcs11Uri::forKey("kms-test", "imported", id)).has_value());
  EXPECT_EQ(raw.count(CKO_PRIVATE_KEY, id), 0U);
  EXPECT_EQ(raw.count(CKO_PUBLIC_KEY, id), 0U);
}

TEST_F(HsmToken, ConcurrentSigningThroughThePool) {
  auto token = openToken(2);
  auto key = token->generateKey("busy");
  auto signer = token->signer(key->uri);
  ASSERT_TRUE(signer.has_value());
  std::atomic<int> good{0};
  std::vector<std::thread> threads;
  threads.reserve(4);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        std::string msg = "m" + std::to_string(t) + "-" + std::to_string(i);
        auto sig = (*signer)->signMessage(pki::asBytes(msg));
        if (sig && *key->publicKey.verifyEs256(pki::asBytes(msg), *sig)) {
          ++good;
        }
      }
    });
  }
  for (auto& th : threads) {
    th.join();
  }
  EXPECT_EQ(good.load(), 200);
}

TEST_F(HsmToken, KeyGenerationWhileOtherThreadsSignAndGenerate) {
  // As the engine does: orders on several workers generate certificate keys while the
  // account key signs JWS. SoftHSM2's file store fails concurrent object creation now and
  // then (CKR_GENERAL_ERROR); the token serialises generation and destruction.
  auto token = openToken(4);
  auto account = token->generateSigner("account");
  ASSERT_TRUE(account.has_value());
  std::atomic<int> generated{0};
  std::atomic<int> signatures{0};
  std::atomic<bool> stop{false};
  std::vector<std::string> errors(4);
  std::vector<std::thread> threads;
  threads.reserve(4);
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 25; ++i) {
        auto signer = token->generateSigner("k" + std::to_string(t) + "-" + std::to_string(i));
        if (signer && (*signer)->signMessage(pki::asBytes("csr")).has_value()) {
          ++generated;
        } else if (!signer) {
          errors[static_cast<std::size_t>(t)] = signer.error().toString();
        }
      }
    });
  }
  for (int t = 2; t < 4; ++t) {
    threads.emplace_back([&, t] {
      while (!stop.load()) {
        auto sig = (*account)->signMessage(pki::asBytes("jws"));
        if (sig) {
          ++signatures;
        } else {
          errors[static_cast<std::size_t>(t)] = sig.error().toString();
        }
      }
    });
  }
  threads[0].join();
  threads[1].join();
  stop = true;
  threads[2].join();
  threads[3].join();
  EXPECT_EQ(generated.load(), 50) << errors[0] << errors[1];
  EXPECT_TRUE(errors[2].empty() && errors[3].empty()) << errors[2] << errors[3];
  EXPECT_GT(signatures.load(), 0);
  EXPECT_EQ(token->listKeys()->size(), 51U);
}

TEST_F(HsmToken, CsrSignedInTheHsmPassesOpensslVerify) {
  auto token = openToken();
  auto key = token->generateKey("csr-key");
  auto signer = token->signer(key->uri);
  ASSERT_TRUE(signer.has_value());
  auto request = pki::CsrRequest::shaken("1234", "Example Telecom");
  auto der = pki::buildCsr(*request, **signer);
  ASSERT_TRUE(der.has_value()) << der.error().toString();
  std::string path = softhsm_.sandbox().write("req.pem", pki::derToPem(*der, "CERTIFICATE REQUEST"));
  std::string out;
  int rc = test::runCommand("openssl req -in " + path + " -noout -verify -text", &out);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("verify OK"), std::string::npos) << out;
  EXPECT_NE(out.find("Subject: C = US, O = Example Telecom, CN = SHAKEN 1234"), std::string::npos) << out;
  EXPECT_NE(out.find("1.3.6.1.5.5.7.1.26"), std::string::npos) << out;
}

TEST_F(HsmToken, WrongPinIsOneClearError) {
  std::string bad = softhsm_.sandbox().write("bad.pin", "0000\n");
  TokenOptions o = options();
  o.pinFile = bad;
  auto token = Token::open(o);
  ASSERT_FALSE(token.has_value());
  EXPECT_EQ(token.error().code, Errc::unauthorized);
  EXPECT_EQ(token.error().toString(), "token 'kms-test': C_Login failed (CKR_PIN_INCORRECT)");
  EXPECT_EQ(token.error().toString().find("0000"), std::string::npos);
}

TEST_F(HsmToken, MissingPinFileTokenAndModule) {
  TokenOptions o = options();
  o.pinFile = softhsm_.sandbox().file("nope.pin");
  auto noPin = Token::open(o);
  ASSERT_FALSE(noPin.has_value());
  EXPECT_EQ(noPin.error().toString(),
            softhsm_.sandbox().file("nope.pin") +
                ": cannot read the HSM PIN file: cannot read secret file: No such file or directory");

  o = options();
  o.tokenLabel = "other";
  auto noToken = Token::open(o);
  ASSERT_FALSE(noToken.has_value());
  EXPECT_EQ(noToken.error().code, Errc::notFound);
  EXPECT_EQ(noToken.error().message, "no token labelled 'other' (tokens present: 'kms-test')");

  o = options();
  o.modulePath = softhsm_.sandbox().file("libmissing.so");
  auto noModule = Token::open(o);
  ASSERT_FALSE(noModule.has_value());
  EXPECT_EQ(noModule.error().toString(), o.modulePath + ": PKCS#11 module not found");

  o.modulePath = softhsm_.pinFile();  // exists, but is not a shared object
  auto notModule = Token::open(o);
  ASSERT_FALSE(notModule.has_value());
  EXPECT_NE(notModule.error().message.find("cannot load PKCS#11 module"), std::string::npos);
}

// --- recovery: the token changes under the hsm/ layer ---------------------------------

/// Signs and checks the signature with the key's public half.
void expectSigns(KeySigner& signer, const std::string& message) {
  auto sig = signer.signMessage(pki::asBytes(message));
  ASSERT_TRUE(sig.has_value()) << sig.error().toString();
  EXPECT_TRUE(*signer.publicKey().verifyEs256(pki::asBytes(message), *sig));
}

TEST_F(HsmToken, EveryOperationOutlivesAllSessionsBeingClosed) {
  auto token = openToken(2);
  ASSERT_NE(token, nullptr);
  auto key = token->generateKey("before");
  ASSERT_TRUE(key.has_value()) << key.error().toString();
  auto signer = token->signer(key->uri);
  ASSERT_TRUE(signer.has_value()) << signer.error().toString();
  RawToken raw(softhsm_.label());
  // Before each operation every session (and with them the login) is gone: each one opens
  // a fresh session, logs in again and succeeds.
  ASSERT_EQ(raw.closeAllSessions(), CKR_OK);
  expectSigns(**signer, "after the sessions were closed");
  ASSERT_EQ(raw.closeAllSessions(), CKR_OK);
  auto second = token->generateKey("after");
  ASSERT_TRUE(second.has_value()) << second.error().toString();
  ASSERT_EQ(raw.closeAllSessions(), CKR_OK);
  auto keys = token->listKeys();
  ASSERT_TRUE(keys.has_value()) << keys.error().toString();
  EXPECT_EQ(keys->size(), 2U);
  ASSERT_EQ(raw.closeAllSessions(), CKR_OK);
  auto secondSigner = token->signer(second->uri);
  ASSERT_TRUE(secondSigner.has_value()) << secondSigner.error().toString();
  ASSERT_EQ(raw.closeAllSessions(), CKR_OK);
  auto destroyed = token->destroyKey(second->uri);
  ASSERT_TRUE(destroyed.has_value()) << destroyed.error().toString();
  EXPECT_EQ(raw.count(CKO_PRIVATE_KEY, second->id), 0U);
  EXPECT_EQ(raw.count(CKO_PRIVATE_KEY, key->id), 1U);
}

TEST_F(HsmToken, ALogoutIsFollowedByALoginNotByKeysThatSeemGone) {
  // Logged out, private keys are invisible: without a new login every key would look gone.
  auto token = openToken(2);
  ASSERT_NE(token, nullptr);
  auto key = token->generateKey("kept");
  ASSERT_TRUE(key.has_value()) << key.error().toString();
  auto signer = token->signer(key->uri);
  ASSERT_TRUE(signer.has_value()) << signer.error().toString();
  RawToken raw(softhsm_.label());
  ASSERT_EQ(raw.logout(), CKR_OK);
  expectSigns(**signer, "after a logout");
  ASSERT_EQ(raw.logout(), CKR_OK);
  auto keys = token->listKeys();
  ASSERT_TRUE(keys.has_value()) << keys.error().toString();
  ASSERT_EQ(keys->size(), 1U);
  EXPECT_EQ(keys->front().uri.toString(), key->uri.toString());
  ASSERT_EQ(raw.logout(), CKR_OK);
  auto again = token->signer(key->uri);
  ASSERT_TRUE(again.has_value()) << again.error().toString();
  ASSERT_EQ(raw.logout(), CKR_OK);
  auto fresh = token->generateKey("after-logout");
  ASSERT_TRUE(fresh.has_value()) << fresh.error().toString();
  EXPECT_EQ(raw.count(CKO_PRIVATE_KEY, fresh->id), 1U);
}

TEST_F(HsmToken, AKeyDestroyedUnderItsSignerIsNotFoundNamingIt) {
  auto token = openToken(2);
  ASSERT_NE(token, nullptr);
  auto key = token->generateKey("doomed");
  ASSERT_TRUE(key.has_value()) << key.error().toString();
  auto signer = token->signer(key->uri);
  ASSERT_TRUE(signer.has_value()) << signer.error().toString();
  expectSigns(**signer, "while it exists");
  RawToken raw(softhsm_.label());
  ASSERT_EQ(raw.destroyPrivateKey(key->id), CKR_OK);
  auto sig = (*signer)->signMessage(pki::asBytes("after it was destroyed"));
  ASSERT_FALSE(sig.has_value());
  EXPECT_EQ(sig.error().code, Errc::notFound);
  EXPECT_EQ(sig.error().toString(), key->uri.toString() + ": signing key is gone from the token");
  auto lookup = token->signer(key->uri);
  ASSERT_FALSE(lookup.has_value());
  EXPECT_EQ(lookup.error().toString(), key->uri.toString() + ": no private key matches");
  auto destroy = token->destroyKey(key->uri);
  ASSERT_FALSE(destroy.has_value());
  EXPECT_EQ(destroy.error().code, Errc::notFound);
}

/// Mounts a directory read-only over itself (a bind mount) for a test; root only.
class ReadOnlyBind {
 public:
  explicit ReadOnlyBind(std::string dir) : dir_(std::move(dir)) {
    mounted_ = test::runCommand("mount --bind '" + dir_ + "' '" + dir_ + "'", &out_) == 0;
    if (mounted_ && test::runCommand("mount -o remount,bind,ro '" + dir_ + "'", &out_) != 0) {
      release();
    }
  }
  ~ReadOnlyBind() { release(); }
  ReadOnlyBind(const ReadOnlyBind&) = delete;
  ReadOnlyBind& operator=(const ReadOnlyBind&) = delete;
  [[nodiscard]] bool readOnly() const { return mounted_; }
  [[nodiscard]] const std::string& output() const { return out_; }
  void release() {
    if (mounted_) {
      std::string ignored;
      test::runCommand("umount '" + dir_ + "'", &ignored);
      mounted_ = false;
    }
  }

 private:
  std::string dir_;
  std::string out_;
  bool mounted_ = false;
};

TEST_F(HsmToken, AReadOnlyTokenDirectoryKeepsSigningAndRefusesNewKeysByName) {
  if (::geteuid() != 0) {
    GTEST_SKIP() << "a read-only bind mount of the token directory needs root (CI runs as root)";
  }
  auto token = openToken(2);
  ASSERT_NE(token, nullptr);
  auto key = token->generateKey("existing");
  ASSERT_TRUE(key.has_value()) << key.error().toString();
  auto signer = token->signer(key->uri);
  ASSERT_TRUE(signer.has_value()) << signer.error().toString();
  ReadOnlyBind ro(softhsm_.sandbox().file("tokens"));
  ASSERT_TRUE(ro.readOnly()) << ro.output();
  expectSigns(**signer, "on a read-only token store");
  auto refused = token->generateKey("refused");
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().code, Errc::hsm);
  EXPECT_EQ(refused.error().toString(), "token 'kms-test': C_GenerateKeyPair failed (" +
                                            refused.error().nativeName + ")");
  EXPECT_TRUE(refused.error().nativeName.starts_with("CKR_")) << refused.error().toString();
  auto keys = token->listKeys();
  ASSERT_TRUE(keys.has_value()) << keys.error().toString();
  EXPECT_EQ(keys->size(), 1U);  // nothing half-made
  // Writable again: a new key is made as usual.
  ro.release();
  auto later = token->generateKey("later");
  ASSERT_TRUE(later.has_value()) << later.error().toString();
}

/// The refusing module's call counter (tests/support/pkcs11_refusing_module.cc).
int shimCalls(const char* function) {
  void* lib = ::dlopen(KMS_REFUSING_MODULE, RTLD_NOW | RTLD_NOLOAD);
  auto calls = lib != nullptr ? reinterpret_cast<int (*)(const char*)>(::dlsym(lib, "kms_shim_calls")) : nullptr;
  return calls != nullptr ? calls(function) : -2;
}

class HsmRefusingToken : public ::testing::Test {
 protected:
  std::unique_ptr<Token> openThroughShim(const char* refuse) {
    ::setenv("KMS_SHIM_TARGET", SoftHsmToken::modulePath().c_str(), 1);
    ::setenv("KMS_SHIM_REFUSE", refuse, 1);
    return test::must(Token::open(TokenOptions{KMS_REFUSING_MODULE, softhsm_.label(), softhsm_.pinFile(), 2}));
  }
  SoftHsmToken softhsm_{"kms-test"};
};

TEST_F(HsmRefusingToken, ATokenThatWillNotCopyGeneratesTheKeyInPlace) {
  auto token = openThroughShim("C_CopyObject");
  ASSERT_NE(token, nullptr);
  auto key = token->generateKey("in-place");
  ASSERT_TRUE(key.has_value()) << key.error().toString();
  // The copy was asked for once, refused, and the pair generated a second time on the token.
  EXPECT_EQ(shimCalls("C_CopyObject"), 1);
  EXPECT_EQ(shimCalls("C_GenerateKeyPair"), 2);
  RawToken raw(softhsm_.label());
  EXPECT_EQ(raw.count(CKO_PRIVATE_KEY, key->id), 1U);
  EXPECT_EQ(raw.countAll(key->id), 1U);  // no session copy, no public object left behind
  EXPECT_EQ(raw.flags(key->id, {CKA_LOCAL, CKA_NEVER_EXTRACTABLE, CKA_EXTRACTABLE, CKA_SENSITIVE}),
            (std::vector<int>{1, 1, 0, 1}));
  auto signer = token->signer(key->uri);
  ASSERT_TRUE(signer.has_value()) << signer.error().toString();
  expectSigns(**signer, "generated in place");
}

TEST_F(HsmRefusingToken, ATokenWithoutPublicKeyInfoKeepsAPublicKeyObject) {
  auto token = openThroughShim("CKA_PUBLIC_KEY_INFO");
  ASSERT_NE(token, nullptr);
  auto key = token->generateKey("two-objects");
  ASSERT_TRUE(key.has_value()) << key.error().toString();
  EXPECT_EQ(shimCalls("C_CopyObject"), 1);  // the copy itself was fine
  RawToken raw(softhsm_.label());
  EXPECT_EQ(raw.count(CKO_PRIVATE_KEY, key->id), 1U);
  EXPECT_EQ(raw.count(CKO_PUBLIC_KEY, key->id), 1U);
  auto keys = token->listKeys();
  ASSERT_TRUE(keys.has_value()) << keys.error().toString();
  ASSERT_EQ(keys->size(), 1U);
  EXPECT_EQ(keys->front().publicKey, key->publicKey);
  auto signer = token->signer(key->uri);
  ASSERT_TRUE(signer.has_value()) << signer.error().toString();
  expectSigns(**signer, "public half in its own object");
}

}  // namespace
}  // namespace kms::hsm
