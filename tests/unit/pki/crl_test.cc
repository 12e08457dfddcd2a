// pki::Crl against indirect CRLs built like the STI-PA's (the lab's builder, OpenSSL):
// entries attributed to the issuer their certificateIssuer names, the signer check, and
// inputs that are not a CRL.
#include <gtest/gtest.h>

#include "cert_builder.h"
#include "pki/crl.h"
#include "pki/signer.h"

namespace kms::pki {
namespace {

using namespace std::chrono_literals;
using lab::buildCertificate;
using lab::buildCrl;
using lab::CertSpec;
using lab::RevokedEntry;

struct Issued {
  Certificate cert;
  std::unique_ptr<SoftwareKey> key;
};

Issued make(const std::string& cn, const Issued* issuer, bool ca) {
  auto key = SoftwareKey::generate();
  EXPECT_TRUE(key.has_value());
  auto now = std::chrono::system_clock::now();
  CertSpec spec{{{"C", "US"}, {"O", "crl test"}, {"CN", cn}},
                (*key)->publicKey(),
                issuer != nullptr ? &issuer->cert : nullptr,
                issuer != nullptr ? issuer->key.get() : key->get(),
                now - 1h,
                now + 24h,
                {{"basicConstraints", ca ? "critical,CA:TRUE" : "critical,CA:FALSE"},
                 {"keyUsage", ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature"}},
                {},
                issuer != nullptr};
  auto cert = buildCertificate(spec);
  EXPECT_TRUE(cert.has_value()) << cert.error().toString();
  return Issued{*cert, std::move(*key)};
}

Bytes serialOf(const Certificate& c) {
  return *hexDecode(c.serialHex());
}

class CrlTest : public ::testing::Test {
 protected:
  Bytes crlOf(const Issued& namedBy, SoftwareKey& signedWith, std::chrono::seconds validity = 24h) {
    std::vector<RevokedEntry> entries{{serialOf(leafA_.cert), 1700000000, 1, leafA_.cert},
                                      {serialOf(leafB_.cert), 1700000100, 4, leafB_.cert}};
    auto der = buildCrl(namedBy.cert, signedWith, entries, "https://sti-pa.example/crl", validity);
    EXPECT_TRUE(der.has_value()) << der.error().toString();
    return *der;
  }

  Issued root_ = make("Root", nullptr, true);
  Issued signer_ = make("STI-PA CRL", &root_, false);
  Issued other_ = make("Token Signer", &root_, false);
  Issued ca1_ = make("Intermediate One", &root_, true);
  Issued ca2_ = make("Intermediate Two", &root_, true);
  Issued leafA_ = make("SHAKEN 1234", &ca1_, false);
  Issued leafB_ = make("SHAKEN 5678", &ca2_, false);
};

TEST_F(CrlTest, EntriesBelongToTheIssuerTheyName) {
  const std::int64_t before = std::chrono::duration_cast<std::chrono::seconds>(
                                  std::chrono::system_clock::now().time_since_epoch())
                                  .count();
  auto crl = Crl::fromDer(crlOf(signer_, *signer_.key));
  ASSERT_TRUE(crl.has_value()) << crl.error().toString();
  EXPECT_EQ(crl->issuer(), signer_.cert.subject());
  EXPECT_NEAR(static_cast<double>(crl->thisUpdate()), static_cast<double>(before - 60), 5.0);
  ASSERT_TRUE(crl->nextUpdate().has_value());
  EXPECT_NEAR(static_cast<double>(*crl->nextUpdate()), static_cast<double>(before + 86400), 5.0);
  ASSERT_EQ(crl->entries().size(), 2U);

  auto a = crl->find(ca1_.cert.subject(), leafA_.cert.serialHex());
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->reason, 1);
  EXPECT_EQ(a->revokedAt, 1700000000);
  auto b = crl->find(ca2_.cert.subject(), leafB_.cert.serialHex());
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(b->reason, 4);
  // The same serial under another issuer is another certificate.
  EXPECT_FALSE(crl->find(ca2_.cert.subject(), leafA_.cert.serialHex()).has_value());
  EXPECT_FALSE(crl->find(crl->issuer(), leafA_.cert.serialHex()).has_value());
  EXPECT_FALSE(crl->find(ca1_.cert.subject(), ca1_.cert.serialHex()).has_value());
}

TEST_F(CrlTest, SignerCheckNamesWhatIsWrong) {
  auto good = Crl::fromDer(crlOf(signer_, *signer_.key));
  ASSERT_TRUE(good.has_value());
  EXPECT_TRUE(good->verifySignedBy(signer_.cert).has_value());

  auto wrongIssuer = good->verifySignedBy(other_.cert);
  ASSERT_FALSE(wrongIssuer.has_value());
  EXPECT_EQ(wrongIssuer.error().message, "the CRL issuer '" + signer_.cert.subject() +
                                             "' is not the configured CRL signer '" + other_.cert.subject() + "'");

  // The signer's name, another key: a forgery.
  auto forged = Crl::fromDer(crlOf(signer_, *other_.key));
  ASSERT_TRUE(forged.has_value());
  auto bad = forged->verifySignedBy(signer_.cert);
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().code, Errc::crypto);
  EXPECT_EQ(bad.error().message,
            "the CRL signature does not verify with the key of '" + signer_.cert.subject() + "'");
}

TEST_F(CrlTest, NotACrlIsRefused) {
  for (const Bytes& junk : {Bytes{}, Bytes{'n', 'o', 't'}, Bytes{0x30, 0x03, 0x02, 0x01, 0x01}}) {
    auto crl = Crl::fromDer(junk);
    ASSERT_FALSE(crl.has_value());
    EXPECT_EQ(crl.error().code, Errc::invalidArgument);
    EXPECT_EQ(crl.error().message, "not a DER CRL");
  }
  Bytes der = crlOf(signer_, *signer_.key);
  der.push_back(0);
  auto trailing = Crl::fromDer(der);
  ASSERT_FALSE(trailing.has_value());
  EXPECT_EQ(trailing.error().message, "trailing bytes after the CRL");
}

}  // namespace
}  // namespace kms::pki
