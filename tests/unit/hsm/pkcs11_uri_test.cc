#include <gtest/gtest.h>

#include "hsm/pkcs11_uri.h"

namespace kms::hsm {
namespace {

TEST(HsmPkcs11Uri, ParsesRfc7512Examples) {
  auto uri = Pkcs11Uri::parse(
      "pkcs11:token=The%20Software%20PKCS%2311%20Softtoken;manufacturer=Snake%20Oil,%20Inc.;"
      "model=1.0;object=my-certificate;type=cert;id=%69%95%3E%5C%F4%BD%EC%91;serial=?pin-source=file:"
      "/etc/token_pin");
  ASSERT_TRUE(uri.has_value()) << uri.error().toString();
  EXPECT_EQ(uri->path("token"), std::optional<std::string>("The Software PKCS#11 Softtoken"));
  EXPECT_EQ(uri->path("manufacturer"), std::optional<std::string>("Snake Oil, Inc."));
  EXPECT_EQ(uri->path("serial"), std::optional<std::string>(""));
  EXPECT_EQ(uri->query("pin-source"), std::optional<std::string>("file:/etc/token_pin"));
  EXPECT_EQ(uri->id(), (pki::Bytes{0x69, 0x95, 0x3E, 0x5C, 0xF4, 0xBD, 0xEC, 0x91}));
  EXPECT_EQ(uri->path("library-version"), std::nullopt);
  EXPECT_TRUE(Pkcs11Uri::parse("pkcs11:").has_value());
  EXPECT_TRUE(Pkcs11Uri::parse("pkcs11:object=my-key;type=private?pin-value=1234").has_value());
}

TEST(HsmPkcs11Uri, FormatsAndRoundTrips) {
  pki::Bytes id{0x00, 0x01, 0xFE, 0x41};
  Pkcs11Uri uri = Pkcs11Uri::forKey("kms", "main key;2026", id);
  EXPECT_EQ(uri.toString(), "pkcs11:token=kms;object=main%20key%3B2026;id=%00%01%FE%41;type=private");
  auto back = Pkcs11Uri::parse(uri.toString());
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(*back, uri);
  EXPECT_EQ(back->id(), id);
  uri.setQuery("module-path", "/usr/lib/softhsm/libsofthsm2.so");
  EXPECT_EQ(uri.toString(),
            "pkcs11:token=kms;object=main%20key%3B2026;id=%00%01%FE%41;type=private?module-path=/usr/lib/softhsm/"
            "libsofthsm2.so");
}

TEST(HsmPkcs11Uri, RejectsMalformedUris) {
  EXPECT_EQ(Pkcs11Uri::parse("pkcs12:token=a").error().message, "not a pkcs11: URI");
  EXPECT_EQ(Pkcs11Uri::parse("pkcs11:token=a%2").error().message, "pkcs11 URI: truncated percent escape in 'token'");
  EXPECT_EQ(Pkcs11Uri::parse("pkcs11:token=a%zz").error().message, "pkcs11 URI: malformed percent escape in 'token'");
  EXPECT_EQ(Pkcs11Uri::parse("pkcs11:token=a;token=b").error().message, "pkcs11 URI: attribute 'token' appears twice");
  EXPECT_EQ(Pkcs11Uri::parse("pkcs11:token=a b").error().message,
            "pkcs11 URI: character ' ' must be percent-encoded in 'token'");
  EXPECT_EQ(Pkcs11Uri::parse("pkcs11:=a").error().message, "pkcs11 URI: attribute without name=value: '=a'");
  EXPECT_EQ(Pkcs11Uri::parse("pkcs11:token").error().message, "pkcs11 URI: attribute without name=value: 'token'");
}

}  // namespace
}  // namespace kms::hsm
