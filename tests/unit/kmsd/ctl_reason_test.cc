// kmsctl revoke --reason: RFC 5280 CRLReason names (as certbot takes them) and codes.
#include <gtest/gtest.h>

#include "kmsctl/commands.h"

namespace kms::daemon {
namespace {

TEST(RevocationReason, NamesInAnyCaseAndCodes) {
  EXPECT_EQ(parseRevocationReason("unspecified"), 0);
  EXPECT_EQ(parseRevocationReason("keyCompromise"), 1);
  EXPECT_EQ(parseRevocationReason("keycompromise"), 1);  // certbot's spelling
  EXPECT_EQ(parseRevocationReason("affiliationChanged"), 3);
  EXPECT_EQ(parseRevocationReason("SUPERSEDED"), 4);
  EXPECT_EQ(parseRevocationReason("cessationOfOperation"), 5);
  EXPECT_EQ(parseRevocationReason("privilegeWithdrawn"), 9);
  EXPECT_EQ(parseRevocationReason("0"), 0);
  EXPECT_EQ(parseRevocationReason("4"), 4);
  EXPECT_EQ(parseRevocationReason("10"), 10);
}

TEST(RevocationReason, AnythingElseIsRefused) {
  for (const char* bad : {"7", "11", "-1", "", "superseded ", "key compromise", "0x4", "004", "removed"}) {
    EXPECT_EQ(parseRevocationReason(bad), std::nullopt) << "'" << bad << "'";
  }
}

TEST(RevocationReason, CodesHaveTheirNames) {
  EXPECT_EQ(revocationReasonName(4), "superseded");
  EXPECT_EQ(revocationReasonName(1), "keyCompromise");
  EXPECT_EQ(revocationReasonName(7), "7");
  EXPECT_EQ(revocationReasonName(42), "42");
}

}  // namespace
}  // namespace kms::daemon
