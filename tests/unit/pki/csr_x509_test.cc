#include <gtest/gtest.h>

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "pki/csr.h"
#include "pki/signer.h"
#include "pki/tn_auth_list.h"
#include "pki/x509.h"
#include "test_certs.h"

namespace kms::pki {
namespace {

using namespace std::chrono_literals;

Bytes derOfReq(X509_REQ* req) {
  int len = i2d_X509_REQ(req, nullptr);
  Bytes out(static_cast<size_t>(len));
  unsigned char* p = out.data();
  i2d_X509_REQ(req, &p);
  return out;
}

X509_REQ* parseReq(const Bytes& der) {
  const unsigned char* p = der.data();
  return d2i_X509_REQ(nullptr, &p, static_cast<long>(der.size()));
}

TEST(PkiCsr, ShakenCsrCarriesByteIdenticalTnAuthList) {
  auto key = SoftwareKey::generate();
  ASSERT_TRUE(key.has_value());
  auto request = CsrRequest::shaken("1234", "Example Telecom");
  ASSERT_TRUE(request.has_value());
  auto der = buildCsr(*request, **key);
  ASSERT_TRUE(der.has_value()) << der.error().toString();

  X509_REQ* req = parseReq(*der);
  ASSERT_NE(req, nullptr);
  EVP_PKEY* pub = X509_REQ_get0_pubkey(req);
  EXPECT_EQ(X509_REQ_verify(req, pub), 1);
  EXPECT_EQ(derOfReq(req), *der);

  char subject[256];
  X509_NAME_oneline(X509_REQ_get_subject_name(req), subject, sizeof subject);
  EXPECT_STREQ(subject, "/C=US/O=Example Telecom/CN=SHAKEN 1234");

  STACK_OF(X509_EXTENSION)* exts = X509_REQ_get_extensions(req);
  ASSERT_NE(exts, nullptr);
  ASSERT_EQ(sk_X509_EXTENSION_num(exts), 1);
  X509_EXTENSION* ext = sk_X509_EXTENSION_value(exts, 0);
  EXPECT_EQ(X509_EXTENSION_get_critical(ext), 0);
  unsigned char* extDer = nullptr;
  int extLen = i2d_X509_EXTENSION(ext, &extDer);
  // docs/protocols.md: the full Extension for SPC 1234.
  EXPECT_EQ(hexEncode(ByteView(extDer, static_cast<size_t>(extLen))),
            "301606082B0601050507011A040A3008A006160431323334");
  OPENSSL_free(extDer);
  sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
  X509_REQ_free(req);
}

TEST(PkiCsr, DnsCsrHasSansAndNoSubject) {
  auto key = SoftwareKey::generate();
  CsrRequest request;
  request.dnsNames = {"cr.example.net", "www.example.net"};
  auto der = buildCsr(request, **key);
  ASSERT_TRUE(der.has_value()) << der.error().toString();
  X509_REQ* req = parseReq(*der);
  ASSERT_NE(req, nullptr);
  EXPECT_EQ(X509_REQ_verify(req, X509_REQ_get0_pubkey(req)), 1);
  EXPECT_EQ(X509_NAME_entry_count(X509_REQ_get_subject_name(req)), 0);
  X509_REQ_free(req);
}

TEST(PkiCsr, RejectsBadRequests) {
  auto key = SoftwareKey::generate();
  EXPECT_EQ(buildCsr(CsrRequest{}, **key).error().message, "CSR would carry no subject, SAN or TNAuthList");
  EXPECT_EQ(CsrRequest::shaken("12a4", "X").error().message, "SPC must be one or more of 0-9 A-Z: '12a4'");
  CsrRequest bad;
  bad.dnsNames = {"a b"};
  EXPECT_EQ(buildCsr(bad, **key).error().message, "invalid DNS name in CSR: 'a b'");
}

TEST(PkiCsr, SignerErrorsPropagate) {
  class FailingSigner : public Signer {
   public:
    FailingSigner() : key_(*SoftwareKey::generate()) {}
    Result<RawSignature> signDigest(const Digest&) override { return fail(Errc::hsm, "C_Sign failed", "token"); }
    const EcPublicKey& publicKey() const override { return key_->publicKey(); }

   private:
    std::unique_ptr<SoftwareKey> key_;
  };
  FailingSigner signer;
  auto r = buildCsr(*CsrRequest::shaken("1234", "X"), signer);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().toString(), "token: C_Sign failed");
}

// A tiny CA for the chain tests, its certificates built by OpenSSL (tests/support/test_certs.h).
struct TestCa {
  std::unique_ptr<SoftwareKey> key;
  std::string pem;
};

std::string makeCert(const char* cn, const EcPublicKey& subjectKey, SoftwareKey& issuerKey, const std::string& issuer,
                     bool ca, long serial, long fromSeconds, long toSeconds) {
  kms::test::CertSpec spec = kms::test::caSpec(cn);
  if (!ca) {
    spec.set("basicConstraints", "critical,CA:FALSE").set("keyUsage", "critical,digitalSignature");
  }
  spec.serial = serial;
  spec.notBeforeSeconds = fromSeconds;
  spec.notAfterSeconds = toSeconds;
  const Bytes spki = subjectKey.spkiDer();
  return kms::test::makeCertPemFor(spec, std::string(spki.begin(), spki.end()), issuerKey.evpPkey(), issuer);
}

Certificate wrap(const std::string& pem) { return *Certificate::fromPem(pem); }

class PkiChain : public ::testing::Test {
 protected:
  void SetUp() override {
    root.key = *SoftwareKey::generate();
    root.pem = makeCert("Test Root", root.key->publicKey(), *root.key, "", true, 1, -3600, 86400);
    inter.key = *SoftwareKey::generate();
    inter.pem = makeCert("Test Intermediate", inter.key->publicKey(), *root.key, root.pem, true, 2, -3600, 86400);
    leafKey = *SoftwareKey::generate();
    leaf = makeCert("SHAKEN 1234", leafKey->publicKey(), *inter.key, inter.pem, false, 0x87654321L, -60, 3600);
  }

  TestCa root;
  TestCa inter;
  std::unique_ptr<SoftwareKey> leafKey;
  std::string leaf;
};

TEST_F(PkiChain, ParsesPemChainAndVerifies) {
  std::string pem = wrap(leaf).pem() + "junk between blocks\n" + wrap(inter.pem).pem();
  auto chain = parsePemChain(pem);
  ASSERT_TRUE(chain.has_value()) << chain.error().toString();
  ASSERT_EQ(chain->size(), 2U);
  EXPECT_EQ((*chain)[0].subject(), "CN=SHAKEN 1234");
  EXPECT_EQ((*chain)[0].issuer(), "CN=Test Intermediate");
  EXPECT_EQ((*chain)[0].subjectField("CN"), std::optional<std::string>("SHAKEN 1234"));
  EXPECT_TRUE((*chain)[0].hasPublicKey(leafKey->publicKey()));
  EXPECT_FALSE((*chain)[0].hasPublicKey(inter.key->publicKey()));
  EXPECT_EQ((*chain)[0].serialHex(), "87654321");
  EXPECT_EQ((*chain)[0].extensionCritical("2.5.29.19"), std::optional<bool>(true));
  EXPECT_EQ((*chain)[0].tnAuthListDer(), std::nullopt);
  auto now = std::chrono::system_clock::now();
  EXPECT_LT((*chain)[0].notBefore(), now);
  EXPECT_GT((*chain)[0].notAfter(), now + 3000s);
  EXPECT_TRUE(verifyChain(*chain, {wrap(root.pem)}, now).has_value());
}

TEST_F(PkiChain, VerifyFailsOnWrongAnchorExpiryAndMissingIntermediate) {
  auto chain = *parsePemChain(wrap(leaf).pem() + wrap(inter.pem).pem());
  auto now = std::chrono::system_clock::now();
  TestCa other;
  other.key = *SoftwareKey::generate();
  other.pem = makeCert("Other Root", other.key->publicKey(), *other.key, "", true, 9, -3600, 86400);
  auto wrong = verifyChain(chain, {wrap(other.pem)}, now);
  ASSERT_FALSE(wrong.has_value());
  EXPECT_EQ(wrong.error().message, "chain does not verify: unable to get local issuer certificate at depth 1");
  auto expired = verifyChain(chain, {wrap(root.pem)}, now + 7200s);
  ASSERT_FALSE(expired.has_value());
  EXPECT_EQ(expired.error().message, "chain does not verify: certificate has expired at depth 0");
  auto missing = verifyChain({chain[0]}, {wrap(root.pem)}, now);
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().message, "chain does not verify: unable to get local issuer certificate at depth 0");
}

TEST_F(PkiChain, AriCertIdUsesAkiAndSerialContent) {
  Certificate c = wrap(leaf);
  auto aki = c.authorityKeyId();
  ASSERT_TRUE(aki.has_value());
  auto id = c.ariCertId();
  ASSERT_TRUE(id.has_value());
  // serial 0x87654321 has its top bit set: content octets 00 87 65 43 21 (RFC 9773 example)
  EXPECT_EQ(id->substr(id->find('.')), ".AIdlQyE");
  EXPECT_EQ(id->substr(0, id->find('.')), base64UrlEncode(*aki));
}

TEST(PkiX509, DatesPast2262AreFarFutureNotOverflow) {
  auto key = *SoftwareKey::generate();
  kms::test::CertSpec spec;
  spec.subject = {{"CN", "Forever"}};
  spec.notAfterTime = "99991231235959Z";
  const Bytes spki = key->publicKey().spkiDer();
  Certificate c = wrap(kms::test::makeCertPemFor(spec, std::string(spki.begin(), spki.end()), key->evpPkey()));
  const auto now = std::chrono::system_clock::now();
  EXPECT_GT(c.notAfter(), now + std::chrono::hours(24 * 365 * 200));  // not taken as expired
  EXPECT_GT(std::chrono::duration_cast<std::chrono::seconds>(c.notAfter().time_since_epoch()).count(), 0);
  // The clamp at both ends, in 64-bit seconds.
  EXPECT_EQ(fromUnixSeconds(253402300799), fromUnixSeconds(INT64_MAX));
  EXPECT_GT(fromUnixSeconds(253402300799), now);
  EXPECT_LT(fromUnixSeconds(INT64_MIN), now);
  EXPECT_EQ(std::chrono::duration_cast<std::chrono::seconds>(fromUnixSeconds(1700000000).time_since_epoch()).count(),
            1700000000);
}

TEST(PkiX509, RejectsGarbage) {
  EXPECT_EQ(parsePemChain("nothing here").error().message, "no CERTIFICATE block in PEM");
  EXPECT_FALSE(parsePemChain("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").has_value());
  EXPECT_FALSE(Certificate::fromDer(Bytes{0x30, 0x03, 0x01, 0x01, 0x00}).has_value());
}

}  // namespace
}  // namespace kms::pki
