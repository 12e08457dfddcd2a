// SPC token verification (docs/protocols.md, RFC 9448 §6 from the client's side): tokens made here
// with a real P-256 key and a small real CA; the x5u "fetch" returns the signer's PEM.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "pki/encoding.h"
#include "pki/signer.h"
#include "pki/tn_auth_list.h"
#include "sti_pa/client.h"
#include "test_certs.h"

namespace kms::sti_pa {
namespace {

using nlohmann::json;

/// A certificate built by OpenSSL (tests/support/test_certs.h) for `subject`, signed by
/// `issuerKey` (self-signed when `issuerPem` is empty).
std::string makeCert(const char* cn, const pki::EcPublicKey& subject, pki::SoftwareKey& issuerKey,
                     const std::string& issuerPem, bool ca) {
  kms::test::CertSpec spec;
  spec.subject = {{"CN", cn}};
  spec.serial = ca ? 1 : 2;
  spec.extensions = {{"basicConstraints", ca ? "critical,CA:TRUE" : "CA:FALSE"}};
  const pki::Bytes spki = subject.spkiDer();
  return kms::test::makeCertPemFor(spec, std::string(spki.begin(), spki.end()), issuerKey.evpPkey(), issuerPem);
}

pki::Certificate wrap(const std::string& pem) { return *pki::Certificate::fromPem(pem); }

class StiPaToken : public ::testing::Test {
 protected:
  void SetUp() override {
    rootKey_ = *pki::SoftwareKey::generate();
    const std::string root = makeCert("STI-PA Root", rootKey_->publicKey(), *rootKey_, "", true);
    signerKey_ = *pki::SoftwareKey::generate();
    signerPem_ = makeCert("STI-PA Token Signer", signerKey_->publicKey(), *rootKey_, root, false);
    anchors_ = {wrap(root)};
    accountKey_ = *pki::SoftwareKey::generate();
    expected_.tkvalue = pki::base64Encode(*pki::TnAuthList::forSpc("1234").toDer());
    expected_.fingerprint = accountKey_->publicKey().spkiFingerprint();
  }

  json atc(const Atc& a) const {
    return {{"tktype", a.tktype}, {"tkvalue", a.tkvalue}, {"ca", a.ca}, {"fingerprint", a.fingerprint}};
  }

  std::string token(const json& payload, pki::SoftwareKey& key, const std::string& x5u = kX5u,
                    const std::string& alg = "ES256") {
    json header{{"alg", alg}, {"typ", "JWT"}, {"x5u", x5u}};
    std::string input =
        pki::base64UrlEncode(pki::asBytes(header.dump())) + "." + pki::base64UrlEncode(pki::asBytes(payload.dump()));
    auto sig = key.signMessage(pki::asBytes(input));
    return input + "." + pki::base64UrlEncode(*sig);
  }

  json goodPayload() const {
    return {{"exp", std::time(nullptr) + 3600}, {"jti", "0b6f2d3e-1"}, {"atc", atc(expected_)}};
  }

  Result<SpcToken> verify(const std::string& jwt) {
    return verifySpcToken(jwt, expected_, anchors_, std::chrono::system_clock::now(),
                          [this](const std::string& url) -> Result<std::string> {
                            fetched_.push_back(url);
                            return signerPem_;
                          });
  }

  static constexpr const char* kX5u = "https://sti-pa.example/download/v1/certificate/certificateId_1.crt";
  std::unique_ptr<pki::SoftwareKey> rootKey_;
  std::unique_ptr<pki::SoftwareKey> signerKey_;
  std::unique_ptr<pki::SoftwareKey> accountKey_;
  std::string signerPem_;
  std::vector<pki::Certificate> anchors_;
  std::vector<std::string> fetched_;
  Atc expected_;
};

TEST_F(StiPaToken, ValidTokenVerifies) {
  auto t = verify(token(goodPayload(), *signerKey_));
  ASSERT_TRUE(t.has_value()) << t.error().toString();
  EXPECT_EQ(t->jti, "0b6f2d3e-1");
  EXPECT_EQ(t->spc, "1234");
  EXPECT_EQ(fetched_, std::vector<std::string>{kX5u});
}

TEST_F(StiPaToken, TamperedSignatureIsRefused) {
  std::string jwt = token(goodPayload(), *signerKey_);
  jwt[jwt.size() - 5] = jwt[jwt.size() - 5] == 'A' ? 'B' : 'A';
  EXPECT_EQ(verify(jwt).error().message, "SPC token: signature does not verify");
  // Signed by a key that is not the x5u certificate's.
  EXPECT_EQ(verify(token(goodPayload(), *accountKey_)).error().message, "SPC token: signature does not verify");
}

TEST_F(StiPaToken, ExpiredTokenIsRefused) {
  json p = goodPayload();
  p["exp"] = std::time(nullptr) - 1;
  EXPECT_EQ(verify(token(p, *signerKey_)).error().message, "SPC token: expired or expiring within 30 s");
  p["exp"] = std::time(nullptr) + 10;
  EXPECT_EQ(verify(token(p, *signerKey_)).error().message, "SPC token: expired or expiring within 30 s");
}

TEST_F(StiPaToken, AnExpFarBeyond2262IsNotAnOverflow) {
  json p = goodPayload();
  p["exp"] = std::int64_t{1} << 40;  // year ~36812
  auto t = verify(token(p, *signerKey_));
  ASSERT_TRUE(t.has_value()) << t.error().toString();
  EXPECT_GT(t->exp, std::chrono::system_clock::now() + std::chrono::hours(24 * 365 * 200));
}

TEST_F(StiPaToken, TokenForAnotherSpcIsRefused) {
  Atc other = expected_;
  other.tkvalue = pki::base64Encode(*pki::TnAuthList::forSpc("9999").toDer());
  json p = goodPayload();
  p["atc"] = atc(other);
  EXPECT_EQ(verify(token(p, *signerKey_)).error().message,
            "SPC token: atc.tkvalue differs from the request (another SPC?)");
}

TEST_F(StiPaToken, FingerprintOfAnotherKeyIsRefused) {
  Atc other = expected_;
  other.fingerprint = signerKey_->publicKey().spkiFingerprint();
  json p = goodPayload();
  p["atc"] = atc(other);
  EXPECT_EQ(verify(token(p, *signerKey_)).error().message, "SPC token: atc.fingerprint is not the account key's");
}

TEST_F(StiPaToken, SignerNotChainedToTheAnchorIsRefused) {
  auto otherRoot = *pki::SoftwareKey::generate();
  const std::string root = makeCert("Other Root", otherRoot->publicKey(), *otherRoot, "", true);
  anchors_ = {wrap(root)};
  auto r = verify(token(goodPayload(), *signerKey_));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().message.rfind("SPC token: signer certificate chain does not verify", 0), 0U) << r.error().message;
}

TEST_F(StiPaToken, MalformedTokensAreRefused) {
  EXPECT_EQ(verify("abc").error().message, "SPC token: compact JWS must have exactly three parts");
  EXPECT_EQ(verify(token(goodPayload(), *signerKey_, "http://sti-pa.example/cert.crt")).error().message,
            "SPC token: x5u must be an https URL");
  EXPECT_EQ(verify(token(goodPayload(), *signerKey_, kX5u, "HS256")).error().message, "SPC token: alg must be ES256");
  json noJti = goodPayload();
  noJti.erase("jti");
  EXPECT_EQ(verify(token(noJti, *signerKey_)).error().message, "SPC token: no jti claim");
  json caTrue = goodPayload();
  caTrue["atc"]["ca"] = true;
  EXPECT_EQ(verify(token(caTrue, *signerKey_)).error().message, "SPC token: atc.ca differs from the request");
}

TEST(StiPaFingerprint, BothFlavours) {
  auto key = pki::EcPublicKey::fromJwkCoordinates("f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
                                                  "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0");
  auto transport = http::makeCurlTransport({});
  StiPaOptions spki;
  auto a = StiPaClient::create(**transport, spki);
  EXPECT_EQ(a->fingerprintOf(*key),
            "SHA256 2B:D1:BB:0C:44:A8:97:C3:0A:7A:A0:99:1C:DE:38:D8:06:2F:E4:41:DE:50:DA:0F:46:82:53:44:F6:02:E8:27");
  StiPaOptions thumb;
  thumb.fingerprint = FingerprintKind::jwkThumbprint;
  auto b = StiPaClient::create(**transport, thumb);
  EXPECT_EQ(b->fingerprintOf(*key),
            "SHA256 A0:A2:32:C2:F1:94:A5:35:53:CB:13:10:DD:BC:08:21:E4:14:B9:D7:EB:FC:29:0B:32:30:84:D7:D1:02:0F:E5");
}

}  // namespace
}  // namespace kms::sti_pa
