// pki::checkShakenProfile, one rule at a time: a leaf that passes, and for every rule a leaf
// built with OpenSSL (tests/support/test_certs) that breaks exactly that rule.

#include "pki/shaken_profile.h"

#include <gtest/gtest.h>

#include <functional>
#include <string>

#include "must.h"
#include "test_certs.h"

namespace kms::pki {
namespace {

using test::CertSpec;
using test::TestKey;

struct BrokenRule {
  const char* name;
  std::function<void(CertSpec&)> breakIt;
  const char* message;
  const char* leafCurve = "P-256";
};

class ShakenProfile : public ::testing::TestWithParam<BrokenRule> {
 protected:
  static void SetUpTestSuite() {
    caKey = new TestKey();
    caPem = new std::string(test::makeCertPem(test::caSpec("Test STI-CA"), *caKey, *caKey));
  }
  static void TearDownTestSuite() {
    delete caKey;
    delete caPem;
  }
  static Certificate leaf(const CertSpec& spec, const char* curve = "P-256") {
    TestKey key(curve);
    // must(): a certificate that cannot be built fails the test instead of a dereference.
    return test::must(Certificate::fromPem(test::makeCertPem(spec, key, *caKey, *caPem)));
  }
  static TestKey* caKey;
  static std::string* caPem;
};
TestKey* ShakenProfile::caKey = nullptr;
std::string* ShakenProfile::caPem = nullptr;

TEST_F(ShakenProfile, GoodLeafPasses) {
  auto r = checkShakenProfile(leaf(test::shakenLeafSpec("1234")), "1234");
  EXPECT_TRUE(r.has_value()) << r.error().toString();
}

TEST_F(ShakenProfile, ErrorNamesTheLeafAndIsProtocol) {
  auto r = checkShakenProfile(leaf(test::shakenLeafSpec("1234")), "5678");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, Errc::protocol);
  EXPECT_EQ(r.error().context, "C=US,O=Test Carrier,CN=SHAKEN 1234");
}

TEST_P(ShakenProfile, BrokenRuleIsRefusedWithItsMessage) {
  const BrokenRule& rule = GetParam();
  CertSpec spec = test::shakenLeafSpec("1234");
  rule.breakIt(spec);
  auto r = checkShakenProfile(leaf(spec, rule.leafCurve), "1234");
  ASSERT_FALSE(r.has_value()) << rule.name << " was accepted";
  EXPECT_EQ(r.error().message, std::string("check profile: ") + rule.message);
}

const char* const kPolicy = "2.16.840.1.114569.1.1.3";

INSTANTIATE_TEST_SUITE_P(
    EachRule, ShakenProfile,
    ::testing::Values(
        BrokenRule{"CnOtherSpc", [](CertSpec& s) { s.subject[0].second = "SHAKEN 9999"; },
                   "CN is 'SHAKEN 9999', expected 'SHAKEN 1234'"},
        BrokenRule{"CnMissing", [](CertSpec& s) { s.subject.erase(s.subject.begin()); },
                   "CN is '', expected 'SHAKEN 1234'"},
        BrokenRule{"BasicConstraintsNotCritical", [](CertSpec& s) { s.set("basicConstraints", "CA:FALSE"); },
                   "basicConstraints must be present and critical"},
        BrokenRule{"BasicConstraintsMissing", [](CertSpec& s) { s.remove("basicConstraints"); },
                   "basicConstraints must be present and critical"},
        BrokenRule{"BasicConstraintsCaTrue", [](CertSpec& s) { s.set("basicConstraints", "critical,CA:TRUE"); },
                   "basicConstraints must say cA FALSE"},
        BrokenRule{"KeyUsageNotCritical", [](CertSpec& s) { s.set("keyUsage", "digitalSignature"); },
                   "keyUsage must be present and critical"},
        BrokenRule{"KeyUsageMissing", [](CertSpec& s) { s.remove("keyUsage"); },
                   "keyUsage must be present and critical"},
        BrokenRule{"KeyUsageMoreThanSigning",
                   [](CertSpec& s) { s.set("keyUsage", "critical,digitalSignature,keyAgreement"); },
                   "keyUsage must be digitalSignature only"},
        BrokenRule{"KeyUsageWithoutSigning", [](CertSpec& s) { s.set("keyUsage", "critical,nonRepudiation"); },
                   "keyUsage must be digitalSignature only"},
        BrokenRule{"PoliciesCritical",
                   [](CertSpec& s) { s.set("certificatePolicies", std::string("critical,") + kPolicy); },
                   "certificatePolicies must be present and not critical"},
        BrokenRule{"PoliciesMissing", [](CertSpec& s) { s.remove("certificatePolicies"); },
                   "certificatePolicies must be present and not critical"},
        BrokenRule{"PolicyNotShaken", [](CertSpec& s) { s.set("certificatePolicies", "1.3.6.1.4.1.99999.1"); },
                   "certificatePolicies must hold exactly one SHAKEN policy (2.16.840.1.114569.1.1.x)"},
        BrokenRule{"PolicyShakenPlusAnother",
                   [](CertSpec& s) { s.set("certificatePolicies", std::string(kPolicy) + ",1.3.6.1.4.1.99999.1"); },
                   "certificatePolicies must hold exactly one SHAKEN policy (2.16.840.1.114569.1.1.x)"},
        BrokenRule{"CrlPointWithoutCrlIssuer",
                   [](CertSpec& s) { s.set("crlDistributionPoints", "URI:https://sti-pa.test/crl"); },
                   "CRL distribution points must hold one point with fullName and cRLIssuer"},
        BrokenRule{"CrlPointsTwo",
                   [](CertSpec& s) {
                     s.set("crlDistributionPoints", "crl_point,crl_point2");
                     s.sections += "[crl_point2]\nfullname = URI:https://sti-pa.test/crl2\nCRLissuer = dirName:crl_issuer\n";
                   },
                   "CRL distribution points must hold one point with fullName and cRLIssuer"},
        BrokenRule{"CrlPointsMissing", [](CertSpec& s) { s.remove("crlDistributionPoints"); },
                   "CRL distribution points must hold one point with fullName and cRLIssuer"},
        BrokenRule{"SubjectKeyIdMissing", [](CertSpec& s) { s.remove("subjectKeyIdentifier"); },
                   "subjectKeyIdentifier is missing"},
        BrokenRule{"AuthorityKeyIdMissing", [](CertSpec& s) { s.remove("authorityKeyIdentifier"); },
                   "authorityKeyIdentifier is missing"},
        BrokenRule{"TnAuthListMissing", [](CertSpec& s) { s.remove("1.3.6.1.5.5.7.1.26"); }, "TNAuthList is missing"},
        BrokenRule{"TnAuthListOtherSpc",
                   [](CertSpec& s) {
                     // The CN still says 1234: only the TNAuthList is wrong.
                     s.set("1.3.6.1.5.5.7.1.26", test::tnAuthListSpcDer("5678"));
                   },
                   "TNAuthList must hold exactly SPC 1234"},
        BrokenRule{"TnAuthListNotDer", [](CertSpec& s) { s.set("1.3.6.1.5.5.7.1.26", "DER:30:03:a0:01"); },
                   "TNAuthList must hold exactly SPC 1234"},
        BrokenRule{"SignedWithSha384", [](CertSpec& s) { s.digest = "SHA384"; },
                   "signature algorithm must be ecdsa-with-SHA256"},
        BrokenRule{"KeyP384", [](CertSpec& /*s*/) {}, "key must be EC P-256", "P-384"}),
    [](const ::testing::TestParamInfo<BrokenRule>& param) { return std::string(param.param.name); });

}  // namespace
}  // namespace kms::pki
