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

// docs/protocols.md
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

TEST(PkiTnAuthList, RejectsMalformedDerWithTheReason) {
  // Each input is broken in one way, and the error says which (Errc::invalidArgument).
  struct Case {
    const char* hex;
    const char* message;
  };
  const Case cases[] = {
      {"", "TNAuthList: not a DER SEQUENCE"},
      {"3000", "TNAuthList: the list is empty"},
      {"3008A00616043132333400", "TNAuthList: trailing bytes after the SEQUENCE"},
      {"3008A0061604313233", "TNAuthList: not a DER SEQUENCE"},  // truncated
      {"3081083008A006160431323334", "TNAuthList: not a DER SEQUENCE"},  // non-minimal length
      {"3008A306160431323334", "TNAuthList: unknown entry tag"},         // [3]
      {"3008A006040431323334", "TNAuthList: expected IA5String for SPC"},  // OCTET STRING
      {"3008A0061604313233FF", "TNAuthList: SPC is not IA5"},
      {"300AA008160431323334 0500", "TNAuthList: trailing bytes inside an entry"},
      {"300FA20D160B3132313535353531323161",
       "TNAuthList: telephone number must be 1 to 15 characters of 0-9 # *: '1215555121a'"},
      {"3006A104 0402 3132", "TNAuthList: range is not a SEQUENCE"},
      {"300BA10930071602313202 01FF", "TNAuthList: negative range count"},
      {"300CA10A30081602313202020001", "TNAuthList: non-minimal INTEGER"},
      {"3009A10730051603313231", "TNAuthList: expected INTEGER range count"},
      {"300BA1093007160231320201 01", "TNAuthList: range count must be at least 2"},
      // An extra element in a range (found by fuzzing).
      {"3014A1123010160136020164000016020164360201 64", "TNAuthList: unexpected element after the range count"},
  };
  for (const Case& c : cases) {
    std::string clean;
    for (const char* p = c.hex; *p != 0; ++p) {
      if (*p != ' ') {
        clean += *p;
      }
    }
    auto der = hexDecode(clean);
    ASSERT_TRUE(der.has_value()) << c.hex;
    auto r = TnAuthList::fromDer(*der);
    ASSERT_FALSE(r.has_value()) << c.hex;
    EXPECT_EQ(r.error().code, Errc::invalidArgument) << c.hex;
    EXPECT_EQ(r.error().message, c.message) << c.hex;
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
