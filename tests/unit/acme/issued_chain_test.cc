// acme::checkIssuedChain: the checks every chain a CA returns must pass before it is kept
// (leaf key, identifiers, validity, chain to the trust anchors, then the caller's extra check),
// each broken once with certificates built by OpenSSL (tests/support/test_certs).

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

#include "acme/issuer.h"
#include "pki/signer.h"
#include "test_certs.h"

namespace kms::acme {
namespace {

using namespace std::chrono_literals;
using test::CertSpec;
using test::TestKey;

const char* const kSpc1234 = "MAigBhYEMTIzNA==";  // base64 of SEQUENCE { [0] IA5String "1234" }

class IssuedChain : public ::testing::Test {
 protected:
  IssuedChain()
      : rootPem(test::makeCertPem(test::caSpec("Test Root"), rootKey, rootKey)),
        interPem(test::makeCertPem(test::caSpec("Test Intermediate"), interKey, rootKey, rootPem)),
        certKey(*pki::SoftwareKey::fromPem(leafKey.privatePem())) {}

  std::vector<pki::Certificate> chainFor(const CertSpec& leafSpec, const TestKey& key) {
    std::vector<pki::Certificate> chain;
    chain.push_back(*pki::Certificate::fromPem(test::makeCertPem(leafSpec, key, interKey, interPem)));
    chain.push_back(*pki::Certificate::fromPem(interPem));
    return chain;
  }
  static CertSpec dnsLeaf(const std::string& sans) {
    CertSpec s;
    s.subject = {};
    s.extensions = {{"basicConstraints", "critical,CA:FALSE"},
                    {"keyUsage", "critical,digitalSignature"},
                    {"subjectAltName", sans},
                    {"authorityKeyIdentifier", "keyid:always"}};
    return s;
  }
  IssueRequest dnsRequest(std::vector<std::string> names) {
    IssueRequest r;
    for (auto& n : names) {
      r.identifiers.push_back({"dns", n});
    }
    r.certKey = certKey.get();
    r.trustAnchors = {*pki::Certificate::fromPem(rootPem)};
    return r;
  }

  TestKey rootKey;
  TestKey interKey;
  TestKey leafKey;
  std::string rootPem;
  std::string interPem;
  std::unique_ptr<pki::SoftwareKey> certKey;
  pki::SystemTime now = std::chrono::system_clock::now();
};

TEST_F(IssuedChain, GoodDnsChainPassesNamesCompareWithoutCase) {
  auto chain = chainFor(dnsLeaf("DNS:A.Example.test,DNS:b.example.test"), leafKey);
  auto r = checkIssuedChain(chain, dnsRequest({"a.example.test", "B.EXAMPLE.TEST"}), now);
  EXPECT_TRUE(r.has_value()) << r.error().toString();
}

TEST_F(IssuedChain, NoCertificate) {
  auto r = checkIssuedChain({}, dnsRequest({"a.example.test"}), now);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, Errc::protocol);
  EXPECT_EQ(r.error().message, "check chain: the CA returned no certificate");
}

TEST_F(IssuedChain, LeafForAnotherKeyIsRefused) {
  TestKey other;
  auto chain = chainFor(dnsLeaf("DNS:a.example.test"), other);
  auto r = checkIssuedChain(chain, dnsRequest({"a.example.test"}), now);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, Errc::crypto);
  EXPECT_EQ(r.error().message, "check key: the certificate's public key is not the HSM key");
  IssueRequest noKey = dnsRequest({"a.example.test"});
  noKey.certKey = nullptr;
  auto r2 = checkIssuedChain(chainFor(dnsLeaf("DNS:a.example.test"), leafKey), noKey, now);
  ASSERT_FALSE(r2.has_value());
  EXPECT_EQ(r2.error().message, "check key: the certificate's public key is not the HSM key");
}

TEST_F(IssuedChain, NamesMissingOrExtraAreRefused) {
  auto missing = checkIssuedChain(chainFor(dnsLeaf("DNS:a.example.test"), leafKey),
                                  dnsRequest({"a.example.test", "b.example.test"}), now);
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code, Errc::protocol);
  EXPECT_EQ(missing.error().message,
            "check identifiers: the certificate names [a.example.test] differ from the order's identifiers");
  auto extra = checkIssuedChain(chainFor(dnsLeaf("DNS:a.example.test,DNS:evil.test"), leafKey),
                                dnsRequest({"a.example.test"}), now);
  ASSERT_FALSE(extra.has_value());
  EXPECT_EQ(extra.error().message,
            "check identifiers: the certificate names [a.example.test,evil.test] differ from the order's identifiers");
}

TEST_F(IssuedChain, TnAuthListMustEqualTheOrdersOne) {
  IssueRequest request;
  request.identifiers = {{"TNAuthList", kSpc1234}};
  request.certKey = certKey.get();
  request.trustAnchors = {*pki::Certificate::fromPem(rootPem)};
  auto good = checkIssuedChain(chainFor(test::shakenLeafSpec("1234"), leafKey), request, now);
  EXPECT_TRUE(good.has_value()) << good.error().toString();

  auto other = checkIssuedChain(chainFor(test::shakenLeafSpec("5678"), leafKey), request, now);
  ASSERT_FALSE(other.has_value());
  EXPECT_EQ(other.error().code, Errc::protocol);
  EXPECT_EQ(other.error().message, "check tnauthlist: the certificate's TNAuthList differs from the order's");
  EXPECT_EQ(other.error().context, "C=US,O=Test Carrier,CN=SHAKEN 5678");

  auto none = checkIssuedChain(chainFor(test::shakenLeafSpec("1234").remove("1.3.6.1.5.5.7.1.26"), leafKey), request,
                               now);
  ASSERT_FALSE(none.has_value());
  EXPECT_EQ(none.error().message, "check tnauthlist: the certificate's TNAuthList differs from the order's");
}

TEST_F(IssuedChain, UnknownIdentifierTypeIsUnsupported) {
  IssueRequest request = dnsRequest({});
  request.identifiers = {{"ip", "127.0.0.1"}};
  auto r = checkIssuedChain(chainFor(dnsLeaf("IP:127.0.0.1"), leafKey), request, now);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, Errc::unsupported);
  EXPECT_EQ(r.error().message, "check identifiers: unknown identifier type 'ip'");
}

TEST_F(IssuedChain, ExpiredLeafIsRefusedBeforeTheChainIsVerified) {
  auto chain = chainFor(dnsLeaf("DNS:a.example.test"), leafKey);
  auto r = checkIssuedChain(chain, dnsRequest({"a.example.test"}), chain.front().notAfter() + 1s);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().message, "check validity: the certificate has already expired");
  // One second earlier the leaf is still valid and everything else holds.
  auto before = checkIssuedChain(chain, dnsRequest({"a.example.test"}), chain.front().notAfter() - 1s);
  EXPECT_TRUE(before.has_value()) << before.error().toString();
}

TEST_F(IssuedChain, ChainToAnotherRootOrWithoutIntermediateIsRefused) {
  TestKey otherKey;
  IssueRequest request = dnsRequest({"a.example.test"});
  request.trustAnchors = {*pki::Certificate::fromPem(test::makeCertPem(test::caSpec("Other Root"), otherKey, otherKey))};
  auto chain = chainFor(dnsLeaf("DNS:a.example.test"), leafKey);
  auto wrongRoot = checkIssuedChain(chain, request, now);
  ASSERT_FALSE(wrongRoot.has_value());
  EXPECT_EQ(wrongRoot.error().message,
            "check chain: chain does not verify: unable to get local issuer certificate at depth 1");

  auto leafOnly = checkIssuedChain({chain.front()}, dnsRequest({"a.example.test"}), now);
  ASSERT_FALSE(leafOnly.has_value());
  EXPECT_EQ(leafOnly.error().message,
            "check chain: chain does not verify: unable to get local issuer certificate at depth 0");

  // Without trust anchors the chain is not verified (a plain ACME CA with no anchors configured).
  request.trustAnchors.clear();
  EXPECT_TRUE(checkIssuedChain({chain.front()}, request, now).has_value());
}

TEST_F(IssuedChain, ExtraCheckRunsLastAndItsErrorIsReturned) {
  IssueRequest request = dnsRequest({"a.example.test"});
  int calls = 0;
  request.extraCheck = [&calls](const std::vector<pki::Certificate>& chain) -> Result<void> {
    ++calls;
    return fail(Errc::protocol, "check profile: refused " + chain.front().subject());
  };
  auto r = checkIssuedChain(chainFor(dnsLeaf("DNS:a.example.test"), leafKey), request, now);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().message, "check profile: refused ");
  EXPECT_EQ(calls, 1);
  // An earlier failure stops before the extra check.
  auto early = checkIssuedChain(chainFor(dnsLeaf("DNS:b.example.test"), leafKey), request, now);
  ASSERT_FALSE(early.has_value());
  EXPECT_EQ(calls, 1);
}

}  // namespace
}  // namespace kms::acme
