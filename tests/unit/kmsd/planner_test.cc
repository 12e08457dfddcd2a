// The planner and the retry policy as pure functions of plain values and a simulated time.
#include <gtest/gtest.h>

#include "engine/planner.h"

namespace kms::daemon {
namespace {

using storage::CertState;

constexpr std::int64_t kT0 = 1'800'000'000;  // "now" of these tests

CertSnapshot fresh() {
  CertSnapshot s;
  s.cert.name = "main";
  s.cert.state = CertState::planned;
  return s;
}

storage::IssuedCert active(std::int64_t notBefore, std::int64_t notAfter) {
  storage::IssuedCert c;
  c.serial = "0a";
  c.notBefore = notBefore;
  c.notAfter = notAfter;
  c.publishedAt = notBefore;
  c.keyUri = "pkcs11:id=%01";
  return c;
}

storage::Order orderAt(CertState step) {
  storage::Order o;
  o.id = 7;
  o.step = step;
  o.keyUri = "pkcs11:id=%02";
  return o;
}

TEST(Planner, NoCertificateStartsAnOrderAtOnce) {
  Plan p = plan(fresh(), kT0);
  EXPECT_EQ(p.action, Action::startOrder);
  EXPECT_EQ(p.at, kT0);
  EXPECT_EQ(p.why, "no valid certificate");
}

TEST(Planner, AnOpenOrderContinuesAtItsStep) {
  const std::vector<std::pair<CertState, Action>> acme{
      {CertState::planned, Action::generateKey},      {CertState::keyReady, Action::newOrder},
      {CertState::orderPending, Action::authorize},   {CertState::authorized, Action::finalize},
      {CertState::finalizing, Action::awaitIssuance}, {CertState::issued, Action::publish},
      {CertState::published, Action::activate}};
  for (const auto& [step, action] : acme) {
    CertSnapshot s = fresh();
    s.order = orderAt(step);
    EXPECT_EQ(plan(s, kT0).action, action) << storage::toString(step);
  }
  // SHAKEN needs an SPC token between the key and newOrder.
  CertSnapshot shaken = fresh();
  shaken.shaken = true;
  shaken.order = orderAt(CertState::keyReady);
  EXPECT_EQ(plan(shaken, kT0).action, Action::fetchToken);
  shaken.order = orderAt(CertState::tokenReady);
  EXPECT_EQ(plan(shaken, kT0).action, Action::newOrder);
}

TEST(Planner, BackoffIsHonoured) {
  CertSnapshot s = fresh();
  s.cert.failureCount = 2;
  s.cert.nextAttemptAt = kT0 + 120;
  Plan p = plan(s, kT0);
  EXPECT_EQ(p.action, Action::startOrder);
  EXPECT_EQ(p.at, kT0 + 120);
  EXPECT_EQ(p.why, "retry 2027-01-15T08:02:00Z after 2 failure(s)");
  // Also for an order in flight, and the backoff in the past no longer holds anything.
  s.order = orderAt(CertState::orderPending);
  EXPECT_EQ(plan(s, kT0).at, kT0 + 120);
  EXPECT_EQ(plan(s, kT0 + 121).at, kT0 + 121);
}

TEST(Planner, ActiveCertificateWaitsForItsRenewalInstant) {
  CertSnapshot s = fresh();
  s.cert.state = CertState::active;
  s.active = active(kT0 - 100, kT0 + 800);
  // No instant chosen yet (a DB from kmsd --once of an earlier version): choose one.
  EXPECT_EQ(plan(s, kT0).action, Action::refreshRenewal);
  s.cert.renewAt = kT0 + 500;
  Plan p = plan(s, kT0);
  EXPECT_EQ(p.action, Action::wait);
  EXPECT_EQ(p.at, kT0 + 500);
  Plan due = plan(s, kT0 + 500);
  EXPECT_EQ(due.action, Action::startOrder);
  EXPECT_EQ(due.at, kT0 + 500);
}

TEST(Planner, AriIsReadAgainBeforeTheRenewal) {
  CertSnapshot s = fresh();
  s.active = active(kT0 - 100, kT0 + 800);
  s.cert.renewAt = kT0 + 500;
  s.cert.ariNextCheck = kT0 + 300;
  Plan p = plan(s, kT0);
  EXPECT_EQ(p.action, Action::wait);
  EXPECT_EQ(p.at, kT0 + 300);
  EXPECT_EQ(plan(s, kT0 + 300).action, Action::refreshRenewal);
  // A check time after the renewal is not waited for; without one (no ARI) the renewal time rules.
  s.cert.ariNextCheck = kT0 + 600;
  EXPECT_EQ(plan(s, kT0).at, kT0 + 500);
  s.cert.ariNextCheck.reset();
  EXPECT_EQ(plan(s, kT0).at, kT0 + 500);
  EXPECT_EQ(plan(s, kT0 + 300).action, Action::wait);
}

TEST(Planner, MissingKeyOrOperatorRequestRenewsAtOnce) {
  CertSnapshot s = fresh();
  s.active = active(kT0 - 100, kT0 + 800);
  s.cert.renewAt = kT0 + 500;
  s.activeKeyMissing = true;
  Plan p = plan(s, kT0);
  EXPECT_EQ(p.action, Action::startOrder);
  EXPECT_EQ(p.at, kT0);
  EXPECT_EQ(p.why, "the active key is missing");
  s.activeKeyMissing = false;
  s.renewRequested = true;
  EXPECT_EQ(plan(s, kT0).action, Action::startOrder);
  EXPECT_EQ(plan(s, kT0).why, "renewal requested");
}

TEST(Planner, DistrustedRootRenewsAtOnceEvenBeforeTheDeployHook) {
  CertSnapshot s = fresh();
  s.active = active(kT0 - 100, kT0 + 800);
  s.cert.renewAt = kT0 + 500;
  s.deployHook = true;
  s.activeDistrusted = true;
  Plan p = plan(s, kT0);
  EXPECT_EQ(p.action, Action::startOrder);
  EXPECT_EQ(p.at, kT0);
  EXPECT_EQ(p.why, "the root of serial " + s.active->serial + " left the STI-PA CA list");
  // After failures, at the backoff instant.
  s.cert.nextAttemptAt = kT0 + 60;
  s.cert.failureCount = 2;
  EXPECT_EQ(plan(s, kT0).at, kT0 + 60);
  // With an order open, the order continues.
  s.order = storage::Order{};
  s.order->step = storage::CertState::planned;
  EXPECT_EQ(plan(s, kT0 + 60).action, Action::generateKey);
}

TEST(Planner, DeployHookRunsForTheActiveCertificateUntilItSucceeds) {
  CertSnapshot s = fresh();
  s.active = active(kT0 - 100, kT0 + 800);
  s.cert.renewAt = kT0 + 500;
  s.deployHook = true;
  Plan p = plan(s, kT0);
  EXPECT_EQ(p.action, Action::deploy);
  EXPECT_EQ(p.at, kT0);
  // After a failure: at the backoff instant, not before.
  s.cert.nextAttemptAt = kT0 + 60;
  s.cert.failureCount = 1;
  EXPECT_EQ(plan(s, kT0).action, Action::deploy);
  EXPECT_EQ(plan(s, kT0).at, kT0 + 60);
  // Done for this certificate: back to waiting for the renewal.
  s.active->deployedAt = kT0 + 1;
  s.cert.nextAttemptAt.reset();
  EXPECT_EQ(plan(s, kT0).action, Action::wait);
  // No hook configured: never.
  s.active->deployedAt.reset();
  s.deployHook = false;
  EXPECT_EQ(plan(s, kT0).action, Action::wait);
}

TEST(Planner, FractionRenewalTimeWithJitterIsNeverLater) {
  // 90 days, a third left: day 60; jitter moves it up to 10% of the 30 days earlier.
  const std::int64_t day = 86400;
  EXPECT_EQ(fractionRenewalTime(0, 90 * day, 1.0 / 3, 0.0), 60 * day);
  EXPECT_EQ(fractionRenewalTime(0, 90 * day, 1.0 / 3, 0.999999), 57 * day);
  EXPECT_EQ(fractionRenewalTime(0, 90 * day, 1.0 / 3, 0.5), 60 * day - 3 * day / 2);
}

TEST(RetryPolicy, DoublesFromTheFirstWaitUpToTheCapWithJitter) {
  RetryPolicy p{60, 3600};
  EXPECT_EQ(backoffSeconds(p, 1, 0.5), 60);
  EXPECT_EQ(backoffSeconds(p, 2, 0.5), 120);
  EXPECT_EQ(backoffSeconds(p, 6, 0.5), 1920);
  EXPECT_EQ(backoffSeconds(p, 7, 0.5), 3600);
  EXPECT_EQ(backoffSeconds(p, 1000, 0.5), 3600);
  EXPECT_EQ(backoffSeconds(p, 1, 0.0), 48);                 // -20%
  EXPECT_EQ(backoffSeconds(p, 1, 1.0), 72);                 // +20%
  EXPECT_EQ(backoffSeconds(RetryPolicy{1, 1}, 1, 0.0), 1);  // never below a second
}

}  // namespace
}  // namespace kms::daemon
