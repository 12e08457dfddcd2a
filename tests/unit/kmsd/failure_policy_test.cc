// The failure policy, branch by branch, as a pure function of plain values and a simulated time.
#include <gtest/gtest.h>

#include "engine/failure_policy.h"

namespace kms::daemon {
namespace {

using storage::CertState;

constexpr std::int64_t kT0 = 1'800'000'000;
const RetryPolicy kPolicy{60, 3600};

Error error(Disposition d, std::optional<std::chrono::seconds> retryAfter = std::nullopt) {
  Error e{Errc::protocol, "refused", "https://ca.example/order/1", 400, "x", d, retryAfter};
  return e;
}

CertSnapshot withOrder(const std::string& orderKey, std::optional<std::string> activeKey, std::int64_t failures = 0) {
  CertSnapshot s;
  s.cert.name = "main";
  s.cert.failureCount = failures;
  storage::Order o;
  o.id = 7;
  o.step = CertState::orderPending;
  o.keyUri = orderKey;
  s.order = o;
  if (activeKey) {
    storage::IssuedCert a;
    a.serial = "0a";
    a.notBefore = kT0 - 1000;
    a.notAfter = kT0 + 100000;
    a.keyUri = *activeKey;
    s.active = a;
  }
  return s;
}

TEST(FailurePolicy, RetryKeepsTheOrderAndItsKeyAndBacksOff) {
  auto snap = withOrder("pkcs11:id=%02", std::nullopt);
  auto d = decideFailure(error(Disposition::retry), "main", &snap, Action::authorize, kT0, 0.5, kPolicy);
  EXPECT_FALSE(d.abandonOrder);
  EXPECT_FALSE(d.destroyKey);
  EXPECT_FALSE(d.markFailed);
  EXPECT_FALSE(d.pauseCaUntil);
  EXPECT_EQ(d.failures, 1);
  EXPECT_EQ(d.retryAt, kT0 + 60);  // jitter 0.5: the middle of +-20 %
  EXPECT_STREQ(d.event.id, "KMS_RENEW_FAILED");
  EXPECT_EQ(d.event.cert, "main");
}

TEST(FailurePolicy, BackoffDoublesWithTheFailuresAndIsCapped) {
  auto third = withOrder("k", std::nullopt, 2);
  EXPECT_EQ(decideFailure(error(Disposition::retry), "main", &third, Action::authorize, kT0, 0.5, kPolicy).retryAt,
            kT0 + 240);
  auto many = withOrder("k", std::nullopt, 40);
  EXPECT_EQ(decideFailure(error(Disposition::retry), "main", &many, Action::authorize, kT0, 0.5, kPolicy).retryAt,
            kT0 + 3600);
  // Jitter spans -20 % .. +20 %.
  EXPECT_EQ(decideFailure(error(Disposition::retry), "main", &third, Action::authorize, kT0, 0.0, kPolicy).retryAt,
            kT0 + 192);
}

TEST(FailurePolicy, APeersRetryAfterReplacesTheBackoff) {
  auto snap = withOrder("k", std::nullopt, 5);
  auto d = decideFailure(error(Disposition::retry, std::chrono::seconds(7)), "main", &snap, Action::authorize, kT0,
                         0.9, kPolicy);
  EXPECT_EQ(d.retryAt, kT0 + 7);
  EXPECT_FALSE(d.pauseCaUntil);  // only this certificate waits
}

TEST(FailurePolicy, PermanentAbandonsTheOrderAndDestroysItsKey) {
  auto snap = withOrder("pkcs11:id=%02", std::nullopt);
  auto d = decideFailure(error(Disposition::permanent), "main", &snap, Action::awaitIssuance, kT0, 0.5, kPolicy);
  EXPECT_TRUE(d.abandonOrder);
  ASSERT_TRUE(d.destroyKey);
  EXPECT_EQ(*d.destroyKey, "pkcs11:id=%02");
  EXPECT_TRUE(d.markFailed);  // nothing verifiers can get
  EXPECT_STREQ(d.event.id, "KMS_ISSUE_FAILED");
  EXPECT_EQ(d.retryAt, kT0 + 60);
}

TEST(FailurePolicy, PermanentKeepsAReusedKeyOfTheActiveCertificate) {
  auto snap = withOrder("pkcs11:id=%01", std::string("pkcs11:id=%01"));
  auto d = decideFailure(error(Disposition::permanent), "main", &snap, Action::finalize, kT0, 0.5, kPolicy);
  EXPECT_TRUE(d.abandonOrder);
  EXPECT_FALSE(d.destroyKey);
  EXPECT_FALSE(d.markFailed);  // the active certificate stays
}

TEST(FailurePolicy, PermanentWithANewKeyBesideAnActiveCertificate) {
  auto snap = withOrder("pkcs11:id=%02", std::string("pkcs11:id=%01"));
  auto d = decideFailure(error(Disposition::permanent), "main", &snap, Action::authorize, kT0, 0.5, kPolicy);
  ASSERT_TRUE(d.destroyKey);
  EXPECT_EQ(*d.destroyKey, "pkcs11:id=%02");
  EXPECT_FALSE(d.markFailed);
}

TEST(FailurePolicy, PermanentWithoutAnOrderOnlyBacksOff) {
  CertSnapshot snap;
  snap.cert.name = "main";
  auto d = decideFailure(error(Disposition::permanent), "main", &snap, Action::refreshRenewal, kT0, 0.5, kPolicy);
  EXPECT_FALSE(d.abandonOrder);
  EXPECT_FALSE(d.destroyKey);
  EXPECT_STREQ(d.event.id, "KMS_RENEW_FAILED");
}

TEST(FailurePolicy, NoSnapshotNeverDestroysAnything) {
  auto d = decideFailure(error(Disposition::permanent), "main", nullptr, Action::startOrder, kT0, 0.5, kPolicy);
  EXPECT_FALSE(d.abandonOrder);
  EXPECT_FALSE(d.destroyKey);
  EXPECT_EQ(d.failures, 1);
}

TEST(FailurePolicy, TheDefaultDispositionNeverCostsAKey) {
  Error plain;  // as every fail() makes it
  EXPECT_EQ(plain.disposition, Disposition::retry);
  auto snap = withOrder("pkcs11:id=%02", std::nullopt);
  for (Action a : {Action::generateKey, Action::fetchToken, Action::newOrder, Action::authorize, Action::finalize,
                   Action::awaitIssuance, Action::publish, Action::activate}) {
    auto d = decideFailure(plain, "main", &snap, a, kT0, 0.5, kPolicy);
    EXPECT_FALSE(d.abandonOrder) << toString(a);
    EXPECT_FALSE(d.destroyKey) << toString(a);
  }
}

TEST(FailurePolicy, CaPauseHoldsEveryOrderOnlyInStepsThatTalkToTheCa) {
  auto snap = withOrder("k", std::nullopt);
  auto atCa = decideFailure(error(Disposition::caPause, std::chrono::seconds(120)), "main", &snap, Action::newOrder,
                            kT0, 0.5, kPolicy);
  ASSERT_TRUE(atCa.pauseCaUntil);
  EXPECT_EQ(*atCa.pauseCaUntil, kT0 + 120);
  EXPECT_EQ(atCa.retryAt, kT0 + 120);
  EXPECT_FALSE(atCa.abandonOrder);
  auto publish = decideFailure(error(Disposition::caPause, std::chrono::seconds(120)), "main", &snap,
                               Action::publish, kT0, 0.5, kPolicy);
  EXPECT_FALSE(publish.pauseCaUntil);
  // Without a time named by the CA: paused for the backoff.
  auto noTime = decideFailure(error(Disposition::caPause), "main", &snap, Action::finalize, kT0, 0.5, kPolicy);
  ASSERT_TRUE(noTime.pauseCaUntil);
  EXPECT_EQ(*noTime.pauseCaUntil, kT0 + 60);
}

TEST(FailurePolicy, TheEventNamesTheStepAndTheRetryTime) {
  auto snap = withOrder("k", std::nullopt, 1);
  auto d = decideFailure(error(Disposition::retry), "main", &snap, Action::finalize, kT0, 0.5, kPolicy);
  EXPECT_EQ(d.event.message, "https://ca.example/order/1: refused (x)");
  ASSERT_EQ(d.event.fields.size(), 3u);
  EXPECT_EQ(d.event.fields[0], (std::pair<std::string, std::string>{"step", "finalize"}));
  EXPECT_EQ(d.event.fields[1], (std::pair<std::string, std::string>{"failures", "2"}));
  EXPECT_EQ(d.why, "retry 2027-01-15T08:02:00Z after 2 failure(s)");
}

}  // namespace
}  // namespace kms::daemon
