// The alert conditions (alerts/conditions.h) on hand-made facts: when each fires, and when not.
#include <gtest/gtest.h>

#include "alerts/channels.h"
#include "alerts/conditions.h"

#include <nlohmann/json.hpp>

namespace kms::daemon {
namespace {

constexpr std::int64_t kDay = 86400;

storage::AlertFacts cert(std::int64_t notBefore, std::int64_t notAfter) {
  storage::AlertFacts f;
  f.name = "main";
  f.notBefore = notBefore;
  f.notAfter = notAfter;
  return f;
}

ConditionInputs at(std::int64_t now) {
  ConditionInputs in;
  in.now = now;
  in.configured = {"main"};
  return in;
}

std::vector<std::string> names(const std::vector<Condition>& conditions) {
  std::vector<std::string> out;
  out.reserve(conditions.size());
  for (const auto& c : conditions) {
    out.emplace_back(c.condition);
  }
  return out;
}

using Names = std::vector<std::string>;

TEST(AlertConditions, ExpiringInTheLastSixthThenExpired) {
  const auto f = cert(0, 60 * kDay);  // a sixth: 10 days
  EXPECT_EQ(names(evaluateConditions({f}, at(50 * kDay - 1))), Names{});
  EXPECT_EQ(names(evaluateConditions({f}, at(50 * kDay))), Names{"expiring"});
  EXPECT_EQ(names(evaluateConditions({f}, at(60 * kDay - 1))), Names{"expiring"});
  EXPECT_EQ(names(evaluateConditions({f}, at(60 * kDay))), Names{"expired"});
  auto in = at(50 * kDay);
  in.warningFraction = 0.1;  // 6 days
  EXPECT_EQ(names(evaluateConditions({f}, in)), Names{});
  in.configured = {};
  in.now = 70 * kDay;
  EXPECT_EQ(names(evaluateConditions({f}, in)), Names{}) << "a certificate no longer configured raises nothing";
}

TEST(AlertConditions, FailuresInARowByStep) {
  auto f = cert(0, 60 * kDay);
  f.failureCount = 2;
  f.lastFailedStep = "new_order";
  f.lastError = "https://ca/acme/new-order: 500\nline two";
  EXPECT_EQ(names(evaluateConditions({f}, at(kDay))), Names{});
  f.failureCount = 3;
  const auto fired = evaluateConditions({f}, at(kDay));
  ASSERT_EQ(names(fired), Names{"renewal_failing"});
  EXPECT_EQ(fired[0].summary,
            "renewal of main failed 3 times in a row (step new_order): https://ca/acme/new-order: 500; line two");
  EXPECT_STREQ(fired[0].severity, "warning");
  f.lastFailedStep = "fetch_token";
  const auto token = evaluateConditions({f}, at(kDay));
  ASSERT_EQ(names(token), Names{"spc_token_unobtainable"});
  EXPECT_STREQ(token[0].severity, "critical");
}

TEST(AlertConditions, RevocationFiresOnceEvenWhenAlreadyReplaced) {
  auto f = cert(0, 60 * kDay);
  f.crlRevokedEvent = 10;
  f.activatedEvent = 5;
  auto in = at(kDay);
  in.cursor = 12;
  EXPECT_EQ(names(evaluateConditions({f}, in)), Names{"revoked"}) << "not replaced yet";
  f.activatedEvent = 11;
  EXPECT_EQ(names(evaluateConditions({f}, in)), Names{}) << "replaced, and seen before";
  in.cursor = 9;
  EXPECT_EQ(names(evaluateConditions({f}, in)), Names{"revoked"}) << "replaced since the last look: said once";
  f.crlRevokedEvent = 0;
  f.distrustedEvent = 10;
  EXPECT_EQ(names(evaluateConditions({f}, in)), Names{"root_distrusted"});
}

TEST(AlertConditions, PublicationFailingUntilPublished) {
  auto f = cert(0, 60 * kDay);
  f.publicationFailedEvent = 7;
  f.publishedEvent = 3;
  EXPECT_EQ(names(evaluateConditions({f}, at(kDay))), Names{"publication_failing"});
  f.publishedEvent = 8;
  EXPECT_EQ(names(evaluateConditions({f}, at(kDay))), Names{});
}

TEST(AlertChannels, BodiesAndSignature) {
  Notification n{"main", "spc_token_unobtainable", "critical", "no token", 1000, std::nullopt, 1060, "id-1"};
  EXPECT_EQ(alertName(n.condition), "KmsSpcTokenUnobtainable");
  const auto am = nlohmann::json::parse(alertmanagerBody(n, {{"alertname", "Other"}, {"team", "voice"}}, 60));
  ASSERT_TRUE(am.is_array());
  EXPECT_EQ(am[0]["labels"]["alertname"], "KmsSpcTokenUnobtainable") << "an operator label cannot rename it";
  EXPECT_EQ(am[0]["labels"]["team"], "voice");
  EXPECT_EQ(am[0]["startsAt"], "1970-01-01T00:16:40Z");
  EXPECT_EQ(am[0]["endsAt"], "1970-01-01T00:21:40Z");  // four resends ahead
  n.endsAt = 1100;
  EXPECT_EQ(nlohmann::json::parse(alertmanagerBody(n, {}, 60))[0]["endsAt"], "1970-01-01T00:18:20Z");
  EXPECT_EQ(nlohmann::json::parse(webhookBody(n))["status"], "resolved");
  // RFC 4231 test case 2.
  EXPECT_EQ(webhookSignature("Jefe", "what do ya want for nothing?").value(),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

}  // namespace
}  // namespace kms::daemon
