// PASSporT claims, canonical form, signature and the Identity header. The signature is
// checked with the openssl command line (not kmsd's verifier), the canonical form against
// the public seed example.
#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "pki/ec_key.h"
#include "pki/encoding.h"
#include "pki/jose.h"
#include "pki/passport.h"
#include "pki/signer.h"
#include "sandbox.h"

namespace kms::pki {
namespace {

// The seed material's Identity header (asipto's slides), folded as published.
constexpr const char* kSeedIdentity =
    "eyJhbGciOiJFUzI1NiIsInBwdCI6InNoYWtlbiIsInR5cCI6InBhc3Nwb3J0IiwieDV1IjoiaHR0cDovL2FzaXB0by5sYWIvc3\r\n"
    " Rpci9jZXJ0LnBlbSJ9.eyJhdHRlc3QiOiJBIiwiZGVzdCI6eyJ0biI6WyI0OTMwNTU1NTk5OTkiXX0sImlhdCI6MTU4MD\r\n"
    " ExNTE1Nywib3JpZyI6eyJ0biI6IjQ5MzA0NDQ0ODg4OCJ9LCJvcmlnaWQiOiJhZWRmNmI2MS1kMWM3LTQ3YTEt\r\n"
    " ODhjNi03NTBlOThmNDdiZTUifQ.Mwd84gpf_IE0C3VQ1rLtQHyVEBkcmzNXyOqOkrx118nTsGpPKVdLDhFjoJVx4Z\r\n"
    " DQ-UZ0ey_Rjw8K2I2hz2kJkw;info=<http://asipto.lab/stir/cert.pem>;alg=ES256;ppt=shaken";

PassportClaims shaken() {
  PassportClaims c;
  c.orig = "12155551212";
  c.dest = {"12355551212"};
  c.iat = 1632412033;
  c.attest = "A";
  c.origid = "de305d54-75b4-431b-adb2-eb6b9e546014";
  return c;
}

TEST(Passport, TelephoneNumbersLoseTheirPlusAndSeparatorsAndNothingElse) {
  EXPECT_EQ(canonicalTn("+1 (215) 555-1212", "orig.tn").value(), "12155551212");
  EXPECT_EQ(canonicalTn("1.215.555.1212", "orig.tn").value(), "12155551212");
  auto letters = canonicalTn("1215555CALL", "dest.tn[0]");
  ASSERT_FALSE(letters.has_value());
  EXPECT_NE(letters.error().toString().find("dest.tn[0]: not a telephone number: '1215555CALL'"), std::string::npos)
      << letters.error().toString();
  EXPECT_FALSE(canonicalTn("12+15551212", "orig.tn").has_value());  // '+' only in front
  EXPECT_FALSE(canonicalTn("*67 2155551212", "orig.tn").has_value());
  EXPECT_FALSE(canonicalTn("+", "orig.tn").has_value());
  EXPECT_FALSE(canonicalTn("1234567890123456", "orig.tn").has_value());  // 16 digits
  EXPECT_TRUE(canonicalTn("123456789012345", "orig.tn").has_value());
}

TEST(Passport, TheSeedExampleIsWhatKmsdWritesForItsClaims) {
  auto seed = parseIdentityHeader(kSeedIdentity);
  ASSERT_TRUE(seed.has_value()) << seed.error().toString();
  EXPECT_EQ(seed->info, "http://asipto.lab/stir/cert.pem");
  EXPECT_EQ(seed->alg, "ES256");
  EXPECT_EQ(seed->ppt, "shaken");
  auto parsed = parseCompactJws(seed->jws);
  ASSERT_TRUE(parsed.has_value()) << parsed.error().toString();

  PassportClaims c;
  c.orig = "493044448888";
  c.dest = {"493055559999"};
  c.iat = 1580115157;
  c.attest = "A";
  c.origid = "aedf6b61-d1c7-47a1-88c6-750e98f47be5";
  EXPECT_EQ(passportHeaderJson(PassportType::shaken, seed->info), parsed->protectedJson);
  EXPECT_EQ(passportPayloadJson(c), parsed->payload);
  // Byte for byte, the signing input too: base64url of the canonical JSON.
  EXPECT_EQ(jwsSigningInput(passportHeaderJson(PassportType::shaken, seed->info), passportPayloadJson(c)),
            parsed->signingInput);
}

TEST(Passport, TheSignatureVerifiesWithTheOpensslCommandLine) {
  auto key = SoftwareKey::generate();
  ASSERT_TRUE(key.has_value());
  const std::string x5u = "https://cr.example.net/main/0A1B.pem";
  auto jws = signPassport(shaken(), x5u, **key);
  ASSERT_TRUE(jws.has_value()) << jws.error().toString();
  EXPECT_EQ(jws->substr(0, jws->find('.')),
            base64UrlEncode(asBytes(R"({"alg":"ES256","ppt":"shaken","typ":"passport","x5u":")" + x5u + "\"}")));
  auto parsed = parseCompactJws(*jws);
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ(parsed->payload, R"({"attest":"A","dest":{"tn":["12355551212"]},"iat":1632412033,)"
                             R"("orig":{"tn":"12155551212"},"origid":"de305d54-75b4-431b-adb2-eb6b9e546014"})");
  ASSERT_EQ(parsed->signature.size(), 64U);  // raw r||s

  test::Sandbox box;
  const std::string input = box.write("input", parsed->signingInput);
  auto der = rawSignatureToDer(parsed->signature);
  ASSERT_TRUE(der.has_value());
  const std::string sig = box.write("sig.der", std::string(der->begin(), der->end()));
  const Bytes spki = (*key)->publicKey().spkiDer();
  const std::string pub = box.write("pub.der", std::string(spki.begin(), spki.end()));
  std::string out;
  EXPECT_EQ(test::runCommand("openssl dgst -sha256 -verify " + pub + " -keyform DER -signature " + sig + " " + input,
                             &out),
            0)
      << out;
  // And a changed payload does not.
  std::ofstream(input, std::ios::app) << "x";
  EXPECT_NE(test::runCommand("openssl dgst -sha256 -verify " + pub + " -keyform DER -signature " + sig + " " + input,
                             &out),
            0);

  const std::string identity = identityHeader(*jws, x5u, PassportType::shaken);
  EXPECT_EQ(identity, *jws + ";info=<" + x5u + ">;alg=ES256;ppt=shaken");
  auto back = parseIdentityHeader(identity);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->jws, *jws);
  EXPECT_EQ(back->info, x5u);
}

TEST(Passport, DiversionAndRichCallDataClaims) {
  PassportClaims div;
  div.type = PassportType::div;
  div.orig = "12155551212";
  div.dest = {"12355550000"};
  div.div = "12355551212";
  div.iat = 1632412033;
  EXPECT_TRUE(checkClaims(div).has_value()) << checkClaims(div).error().toString();
  EXPECT_EQ(passportHeaderJson(PassportType::div, "https://x/y.pem"),
            R"({"alg":"ES256","ppt":"div","typ":"passport","x5u":"https://x/y.pem"})");
  EXPECT_EQ(passportPayloadJson(div),
            R"({"dest":{"tn":["12355550000"]},"div":{"tn":"12355551212"},"iat":1632412033,"orig":{"tn":"12155551212"}})");
  div.attest = "A";
  EXPECT_FALSE(checkClaims(div).has_value());

  PassportClaims rcd = shaken();
  rcd.rcd = RichCallData{"Example Telecom Billing", std::string("Your invoice")};
  EXPECT_EQ(passportPayloadJson(rcd),
            R"({"attest":"A","crn":"Your invoice","dest":{"tn":["12355551212"]},"iat":1632412033,)"
            R"("orig":{"tn":"12155551212"},"origid":"de305d54-75b4-431b-adb2-eb6b9e546014",)"
            R"("rcd":{"nam":"Example Telecom Billing"}})");
}

TEST(Passport, ClaimsAVerifierWouldRejectAreRefusedByName) {
  auto refusal = [](const PassportClaims& c) {
    auto r = checkClaims(c);
    return r ? std::string("accepted") : r.error().toString();
  };
  PassportClaims c = shaken();
  c.attest = "D";
  EXPECT_NE(refusal(c).find("attest: must be A, B or C"), std::string::npos);
  c = shaken();
  c.origid = "not-a-uuid";
  EXPECT_NE(refusal(c).find("origid: must be a UUID"), std::string::npos);
  c = shaken();
  c.dest.clear();
  EXPECT_NE(refusal(c).find("dest.tn: at least one"), std::string::npos);
  c = shaken();
  c.dest.push_back("+1 215");
  EXPECT_NE(refusal(c).find("dest.tn[1]: "), std::string::npos);
  c = shaken();
  c.div = "12155551212";
  EXPECT_NE(refusal(c).find("div: only a div PASSporT"), std::string::npos);
  c = shaken();
  c.rcd = RichCallData{"", std::nullopt};
  EXPECT_NE(refusal(c).find("rcd.nam"), std::string::npos);
  c = shaken();
  c.iat = 0;
  EXPECT_NE(refusal(c).find("iat"), std::string::npos);
  EXPECT_EQ(refusal(shaken()), "accepted");
}

TEST(Passport, UuidsAreVersionFourAndDistinct) {
  const std::string a = randomUuid();
  const std::string b = randomUuid();
  EXPECT_TRUE(isUuid(a)) << a;
  EXPECT_NE(a, b);
  EXPECT_EQ(a[14], '4');
  EXPECT_NE(std::string("89ab").find(a[19]), std::string::npos) << a;
  EXPECT_FALSE(isUuid("aedf6b61-d1c7-47a1-88c6-750e98f47be"));
  EXPECT_FALSE(isUuid("aedf6b61xd1c7-47a1-88c6-750e98f47be5"));
  EXPECT_TRUE(isUuid("AEDF6B61-D1C7-47A1-88C6-750E98F47BE5"));
}

}  // namespace
}  // namespace kms::pki
