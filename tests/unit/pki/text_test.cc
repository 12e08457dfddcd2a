// escapeControl: what outside text may not bring into a log line, the DB or a terminal.
#include <gtest/gtest.h>

#include <string>

#include "kms/text.h"

namespace kms {
namespace {

TEST(EscapeControl, C0AndDelAreEscapedAsBytes) {
  EXPECT_EQ(escapeControl("a\nb\rc\x1b[2Jd\x7f"), "a\\x0ab\\x0dc\\x1b[2Jd\\x7f");
  EXPECT_EQ(escapeControl(std::string("nul\0x", 5)), "nul\\x00x");
}

TEST(EscapeControl, C1ControlsAreEscapedLikeC0) {
  // U+009B is a one-character CSI on terminals that honour C1; U+0085 a next-line.
  EXPECT_EQ(escapeControl("x\xc2\x9b" "2Jy"), "x\\u009b2Jy");
  EXPECT_EQ(escapeControl("\xc2\x80\xc2\x85\xc2\x9f"), "\\u0080\\u0085\\u009f");
  EXPECT_EQ(escapeControl("\xc2\xa0"), "\xc2\xa0");  // U+00A0 is no control
}

TEST(EscapeControl, UnicodeTextStaysAsItIs) {
  EXPECT_EQ(escapeControl("Télécom Ünïcode 電話 \xf0\x9f\x93\x9e"), "Télécom Ünïcode 電話 \xf0\x9f\x93\x9e");
}

TEST(EscapeControl, BytesThatAreNotUtf8AreEscapedSoTheResultIsUtf8) {
  EXPECT_EQ(escapeControl("\xff\xfe" "abc"), "\\xff\\xfeabc");
  EXPECT_EQ(escapeControl("order/1\xc3\x28"), "order/1\\xc3(");            // lead byte, no continuation
  EXPECT_EQ(escapeControl("\xc0\xaf"), "\\xc0\\xaf");                      // overlong '/'
  EXPECT_EQ(escapeControl("\xed\xa0\x80"), "\\xed\\xa0\\x80");             // a surrogate
  EXPECT_EQ(escapeControl("\xf4\x90\x80\x80"), "\\xf4\\x90\\x80\\x80");    // above U+10FFFF
  EXPECT_EQ(escapeControl("end\xe2\x82"), "end\\xe2\\x82");                // cut short
}

TEST(EscapeControl, LongTextIsCut) {
  EXPECT_EQ(escapeControl(std::string(10, 'a'), 4), "aaaa...");
}

}  // namespace
}  // namespace kms
