#include <gtest/gtest.h>

#include "pki/tn_auth_list.h"

namespace kms::pki {
namespace {

std::string derHex(const TnAuthList& list) {
  auto der = list.toDer();
  EXPECT_TRUE(der.has_value()) << der.error().toString();
  return der ? hexEncode(*der) : "";
}

struct Vector {
  TnAuthList list;
  const char* hex;
  const char* base64;
};

// spec §4 and §10.1
TEST(PkiTnAuthList, SpecVectorsEncodeAndDecode) {
  const Vector vectors[] = {
      {TnAuthList::forSpc("1234"), "3008A006160431323334", "MAigBhYEMTIzNA=="},
      {TnAuthList::forSpc("281K"), "3008A00616043238314B", "MAigBhYEMjgxSw=="},
      {TnAuthList::forSpc("818H"), "3008A006160438313848", "MAigBhYEODE4SA=="},
      {TnAuthList({TnEntry::range("12155550000", 100)}), "3014A1123010160B3132313535353530303030020164",
       "MBShEjAQFgsxMjE1NTU1MDAwMAIBZA=="},
      {TnAuthList({TnEntry::one("12155551212")}), "300FA20D160B3132313535353531323132", "MA+iDRYLMTIxNTU1NTEyMTI="},
      {TnAuthList({TnEntry::spc("1234"), TnEntry::range("12155550000", 100), TnEntry::one("12155551212")}),
       "302BA006160431323334A1123010160B3132313535353530303030020164A20D160B3132313535353531323132", nullptr},
  };
  for (const Vector& v : vectors) {
    EXPECT_EQ(derHex(v.list), v.hex);
    auto der = hexDecode(v.hex);
    ASSERT_TRUE(der.has_value());
    auto parsed = TnAuthList::fromDer(*der);
    ASSERT_TRUE(parsed.has_value()) << parsed.error().toString();
    EXPECT_EQ(*parsed, v.list);
    if (v.base64 != nullptr) {
      EXPECT_EQ(base64Encode(*der), v.base64);
      auto fromId = TnAuthList::fromIdentifierValue(v.base64);
      ASSERT_TRUE(fromId.has_value());
      EXPECT_EQ(*fromId, v.list);
    }
  }
}

TEST(PkiTnAuthList, IdentifierValueAcceptsUnpaddedBase64Url) {
  auto list = TnAuthList::fromIdentifierValue("MAigBhYEMTIzNA");
  ASSERT_TRUE(list.has_value());
  EXPECT_EQ(list->singleSpc(), std::optional<std::string>("1234"));
  EXPECT_FALSE(TnAuthList::fromIdentifierValue("!!!").has_value());
}

TEST(PkiTnAuthList, LargeRangeCountNeedsLeadingZero) {
  TnAuthList list({TnEntry::range("1215555", 200)});
  auto der = list.toDer();
  ASSERT_TRUE(der.has_value());
  EXPECT_NE(hexEncode(*der).find("020200C8"), std::string::npos);
  EXPECT_EQ(*TnAuthList::fromDer(*der), list);
}

TEST(PkiTnAuthList, RejectsInvalidEntries) {
  EXPECT_EQ(TnAuthList().toDer().error().message, "TNAuthList: the list is empty");
  EXPECT_EQ(TnAuthList({TnEntry::one("12a")}).toDer().error().message,
            "TNAuthList: telephone number must be 1 to 15 characters of 0-9 # *: '12a'");
  EXPECT_FALSE(TnAuthList({TnEntry::one("1234567890123456")}).toDer().has_value());
  EXPECT_EQ(TnAuthList({TnEntry::range("1215", 1)}).toDer().error().message,
            "TNAuthList: range count must be at least 2");
  EXPECT_FALSE(TnAuthList({TnEntry::spc("")}).toDer().has_value());
  EXPECT_TRUE(TnAuthList({TnEntry::one("*#0")}).toDer().has_value());
}

TEST(PkiTnAuthList, RejectsMalformedDer) {
  const char* bad[] = {
      "",                                               // nothing
      "3000",                                           // empty list
      "3008A00616043132333400",                         // trailing byte
      "3008A0061604313233",                             // truncated
      "3008A306160431323334",                           // unknown tag [3]
      "3008A00604043132333400",                         // wrong inner type (OCTET STRING)
      "300FA20D160B31323135353535313261",               // 'a' in a TN
      "3081083008A006160431323334",                     // non-minimal length
      "300BA10930071602313202 01FF",                    // garbage
      "3014A1123010160136020164000016020164360201 64",  // extra element in a range (found by fuzzing)
  };
  for (const char* hex : bad) {
    std::string clean;
    for (const char* p = hex; *p != 0; ++p) {
      if (*p != ' ') {
        clean += *p;
      }
    }
    auto der = hexDecode(clean);
    ASSERT_TRUE(der.has_value()) << hex;
    EXPECT_FALSE(TnAuthList::fromDer(*der).has_value()) << hex;
  }
}

TEST(PkiTnAuthList, SpcValidation) {
  EXPECT_TRUE(isValidSpc("281K"));
  EXPECT_FALSE(isValidSpc("281k"));
  EXPECT_FALSE(isValidSpc(""));
  EXPECT_FALSE(isValidSpc("12 3"));
  EXPECT_EQ(TnAuthList({TnEntry::spc("1"), TnEntry::spc("2")}).singleSpc(), std::nullopt);
}

}  // namespace
}  // namespace kms::pki
