#include <gtest/gtest.h>

#include "pki/ec_key.h"
#include "pki/signer.h"

namespace kms::pki {
namespace {

// RFC 7515 A.3 P-256 key (docs/protocols.md).
constexpr const char* kX = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
constexpr const char* kY = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";

TEST(PkiEcKey, Rfc7515KeyThumbprintAndFingerprints) {
  auto key = EcPublicKey::fromJwkCoordinates(kX, kY);
  ASSERT_TRUE(key.has_value()) << key.error().toString();
  EXPECT_EQ(key->jwkJson(), std::string(R"({"crv":"P-256","kty":"EC","x":")") + kX + R"(","y":")" + kY + "\"}");
  EXPECT_EQ(key->jwkThumbprint(), "oKIywvGUpTVTyxMQ3bwIIeQUudfr_CkLMjCE19ECD-U");
  EXPECT_EQ(key->thumbprintFingerprint(),
            "SHA256 A0:A2:32:C2:F1:94:A5:35:53:CB:13:10:DD:BC:08:21:E4:14:B9:D7:EB:FC:29:0B:32:30:84:D7:D1:02:0F:E5");
  EXPECT_EQ(key->spkiFingerprint(),
            "SHA256 2B:D1:BB:0C:44:A8:97:C3:0A:7A:A0:99:1C:DE:38:D8:06:2F:E4:41:DE:50:DA:0F:46:82:53:44:F6:02:E8:27");
  Bytes spki = key->spkiDer();
  ASSERT_EQ(spki.size(), 91U);
  EXPECT_EQ(hexEncode(ByteView(spki).first(29)), "3059301306072A8648CE3D020106082A8648CE3D030107034200047FCD");
  auto back = EcPublicKey::fromSpkiDer(spki);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(*back, *key);
}

TEST(PkiEcKey, RejectsPointsOffTheCurveAndOtherKeys) {
  Bytes point(65, 0x01);
  point[0] = 0x04;
  auto r = EcPublicKey::fromUncompressedPoint(point);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().message, "EC point is not on P-256");
  EXPECT_EQ(EcPublicKey::fromUncompressedPoint(Bytes(64, 4)).error().message,
            "EC point is not a 65-byte uncompressed P-256 point");
  EXPECT_FALSE(EcPublicKey::fromJwkCoordinates("AAAA", kY).has_value());
  EXPECT_FALSE(EcPublicKey::fromSpkiDer(Bytes{0x30, 0x00}).has_value());
}

TEST(PkiEcKey, SoftwareKeySignsAndVerifies) {
  auto key = SoftwareKey::generate();
  ASSERT_TRUE(key.has_value());
  auto sig = (*key)->signMessage(asBytes("payload"));
  ASSERT_TRUE(sig.has_value());
  EXPECT_TRUE(*(*key)->publicKey().verifyEs256(asBytes("payload"), *sig));
  EXPECT_FALSE(*(*key)->publicKey().verifyEs256(asBytes("payloaD"), *sig));
  auto other = SoftwareKey::generate();
  EXPECT_FALSE(*(*other)->publicKey().verifyEs256(asBytes("payload"), *sig));
}

TEST(PkiEcKey, SignatureDerRoundTrip) {
  RawSignature raw{};
  raw[0] = 0x80;  // r needs a leading zero in DER
  raw[63] = 0x01;
  auto der = rawSignatureToDer(raw);
  ASSERT_TRUE(der.has_value());
  EXPECT_EQ((*der)[0], 0x30);
  auto back = derSignatureToRaw(*der);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(*back, raw);
  EXPECT_FALSE(rawSignatureToDer(Bytes(63, 1)).has_value());
  EXPECT_FALSE(derSignatureToRaw(Bytes{0x30, 0x01, 0x00}).has_value());
}

TEST(PkiEcKey, PemRoundTrip) {
  auto key = SoftwareKey::generate();
  ASSERT_TRUE(key.has_value());
  auto pem = (*key)->privateKeyPem();
  ASSERT_TRUE(pem.has_value());
  auto again = SoftwareKey::fromPem(*pem);
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ((*again)->publicKey(), (*key)->publicKey());
  EXPECT_FALSE(SoftwareKey::fromPem("not a key").has_value());
}

}  // namespace
}  // namespace kms::pki
