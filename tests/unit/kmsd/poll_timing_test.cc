// How soon an order is read again, on a simulated clock.
#include <gtest/gtest.h>

#include "lifecycle/poll_timing.h"
#include "sim_executor.h"

namespace kms::daemon::test {
namespace {

constexpr std::int64_t kT0 = 1'800'000'000;

TEST(PollTiming, QuickAtFirstThenAtMostOnceASecond) {
  SimClock clock(kT0);
  MidRandom random;  // jitter factor exactly 1.0
  PollTiming polls(clock, random);
  PollState poll;
  std::vector<Millis> waits;
  Millis elapsed{0};
  while (elapsed < std::chrono::seconds(20)) {
    auto w = polls.next(poll, std::nullopt, "order", "https://ca.example/order/1");
    ASSERT_TRUE(w.has_value());
    waits.push_back(*w);
    elapsed += *w;
    clock.set(clock.now() + *w);
  }
  ASSERT_GE(waits.size(), 6u);
  EXPECT_EQ(waits[0], Millis(20));  // a CA that decides at once is read again at once
  EXPECT_EQ(waits[1], Millis(40));
  EXPECT_EQ(waits[2], Millis(80));
  EXPECT_EQ(waits[3], Millis(160));
  // Past the first second: never sooner than a second apart, never later than five; and
  // no more than seven reads in the first second.
  Millis sum{0};
  int readsInTheFirstSecond = 0;
  for (Millis w : waits) {
    if (sum >= Millis(1000)) {
      EXPECT_GE(w, Millis(1000));
    } else {
      ++readsInTheFirstSecond;
    }
    EXPECT_LE(w, Millis(5000));
    sum += w;
  }
  EXPECT_EQ(waits.back(), Millis(5000));
  EXPECT_LE(readsInTheFirstSecond, 7);
}

TEST(PollTiming, TheCasRetryAfterIsAMinimum) {
  SimClock clock(kT0);
  MidRandom random;
  PollTiming polls(clock, random);
  PollState poll;
  auto w = polls.next(poll, std::chrono::seconds(3), "order", "u");
  ASSERT_TRUE(w.has_value());
  EXPECT_GE(*w, Millis(3000));
  EXPECT_LE(*w, Millis(3300));
}

TEST(PollTiming, PollingPastTheDeadlineIsATimeoutThatStartsOver) {
  SimClock clock(kT0);
  MidRandom random;
  PollTiming polls(clock, random);
  PollState poll;
  ASSERT_TRUE(polls.next(poll, std::nullopt, "authorization", "u").has_value());
  clock.set(clock.now() + std::chrono::minutes(11));
  auto late = polls.next(poll, std::nullopt, "authorization", "https://ca.example/authz/1");
  ASSERT_FALSE(late.has_value());
  EXPECT_EQ(late.error().code, Errc::timeout);
  EXPECT_EQ(late.error().disposition, Disposition::retry);
  EXPECT_EQ(late.error().toString(),
            "https://ca.example/authz/1: authorization still not final after polling for 600 s");
  EXPECT_FALSE(poll.since.has_value());  // the next poll starts a new deadline
}

}  // namespace
}  // namespace kms::daemon::test
