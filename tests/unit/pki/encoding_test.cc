#include <gtest/gtest.h>

#include "pki/encoding.h"

namespace kms::pki {
namespace {

std::string text(const Bytes& b) {
  return {b.begin(), b.end()};
}

TEST(PkiEncoding, Base64UrlRfc4648Vectors) {
  EXPECT_EQ(base64UrlEncode(asBytes("")), "");
  EXPECT_EQ(base64UrlEncode(asBytes("f")), "Zg");
  EXPECT_EQ(base64UrlEncode(asBytes("fo")), "Zm8");
  EXPECT_EQ(base64UrlEncode(asBytes("foo")), "Zm9v");
  EXPECT_EQ(base64UrlEncode(asBytes("foob")), "Zm9vYg");
  EXPECT_EQ(base64UrlEncode(asBytes("fooba")), "Zm9vYmE");
  EXPECT_EQ(base64UrlEncode(asBytes("foobar")), "Zm9vYmFy");
  const Bytes high{0xFB, 0xFF, 0xBF};
  EXPECT_EQ(base64UrlEncode(high), "-_-_");
  EXPECT_EQ(base64Encode(high), "+/+/");
  EXPECT_EQ(text(*base64UrlDecode("Zm9vYmE")), "fooba");
  EXPECT_EQ(*base64UrlDecode("-_-_"), high);
}

TEST(PkiEncoding, Base64StandardNeedsPadding) {
  EXPECT_EQ(base64Encode(asBytes("f")), "Zg==");
  EXPECT_EQ(base64Encode(asBytes("fo")), "Zm8=");
  EXPECT_EQ(text(*base64Decode("Zm8=")), "fo");
  auto r = base64Decode("Zm8");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().message, "invalid base64: length is not a multiple of 4");
}

TEST(PkiEncoding, DecodeRejectsBadInput) {
  EXPECT_EQ(base64UrlDecode("Zm=v").error().message, "invalid base64url: unexpected character at offset 2");
  EXPECT_EQ(base64UrlDecode("Z").error().message, "invalid base64url: truncated input");
  EXPECT_EQ(base64UrlDecode("Zh").error().message, "invalid base64url: non-canonical trailing bits");
  EXPECT_FALSE(base64Decode("Zm+_").has_value());
}

TEST(PkiEncoding, HexAndFingerprint) {
  EXPECT_EQ(hexEncode(Bytes{0x0A, 0xBC}, ":"), "0A:BC");
  EXPECT_EQ(*hexDecode("0abc"), (Bytes{0x0A, 0xBC}));
  EXPECT_FALSE(hexDecode("0g").has_value());
  EXPECT_FALSE(hexDecode("abc").has_value());
  // SHA-256("abc"), FIPS 180-2 example.
  EXPECT_EQ(hexEncode(sha256(asBytes("abc"))), "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD");
  EXPECT_EQ(sha256Fingerprint(asBytes("abc")).substr(0, 16), "SHA256 BA:78:16:");
}

}  // namespace
}  // namespace kms::pki
