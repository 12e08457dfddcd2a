// The notifier's state machine over a real SQLite state DB, with a clock the test moves and a
// channel of its own (behind AlertChannel): one page per alert, a repeat after repeat_interval
// (not before), a failed delivery retried after retry_first, the resolve, and the state kept
// across a new notifier (a restart). The same against real receivers: tests/integration/alerts_test.cc.
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "alerts/notifier.h"
#include "sandbox.h"
#include "storage/alert_log.h"
#include "storage/db.h"
#include "storage/store.h"

namespace kms::daemon {
namespace {

class MovingClock final : public Clock {
 public:
  explicit MovingClock(std::int64_t t) : t_(t) {}
  [[nodiscard]] TimePoint now() const override { return fromUnix(t_.load()); }
  void set(std::int64_t t) { t_.store(t); }

 private:
  std::atomic<std::int64_t> t_;
};

/// Records what it is sent; fails the next `failures` sends.
class RecordingChannel final : public AlertChannel {
 public:
  const std::string& name() const override { return name_; }
  const char* kind() const override { return "webhook"; }
  Result<void> send(const Notification& n) override {
    std::lock_guard lock(mutex_);
    got_.push_back(n);
    cv_.notify_all();
    if (failures_ > 0) {
      --failures_;
      return fail(Errc::network, "receiver down");
    }
    return {};
  }
  void cancel() override {}
  void failNext(int n) {
    std::lock_guard lock(mutex_);
    failures_ = n;
  }
  /// Waits (10 s at most) until `n` notifications came; all of them.
  std::vector<Notification> waitFor(std::size_t n) {
    std::unique_lock lock(mutex_);
    cv_.wait_for(lock, std::chrono::seconds(10), [&] { return got_.size() >= n; });
    return got_;
  }

 private:
  std::string name_ = "hook";
  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<Notification> got_;
  int failures_ = 0;
};

class Events final : public EventSink {
 public:
  void emit(const EventRecord& e) override {
    std::lock_guard lock(mutex_);
    ids_.emplace_back(e.id);
  }
  int count(const std::string& id) {
    std::lock_guard lock(mutex_);
    return static_cast<int>(std::count(ids_.begin(), ids_.end(), id));
  }

 private:
  std::mutex mutex_;
  std::vector<std::string> ids_;
};

class NotifierTest : public ::testing::Test {
 protected:
  NotifierTest() {
    auto db = storage::Db::open(sandbox_.file("kmsd.db"));
    EXPECT_TRUE(db.has_value());
    db_ = std::move(*db);
    store_ = storage::makeSqliteStore(*db_);
    EXPECT_TRUE(store_->upsertCertificate("main", storage::CertKind::shaken, "[]").has_value());
    settings_.interval = std::chrono::seconds(600);  // the test evaluates by hand
    settings_.repeatInterval = std::chrono::seconds(3600);
    settings_.retryFirst = std::chrono::seconds(60);
    settings_.retryMax = std::chrono::seconds(600);
  }
  /// A failure of `step`, as the engine records it.
  void fails(const char* step) {
    ASSERT_TRUE(store_->recordFailure("main", "https://ca/x: 500", std::nullopt).has_value());
    storage::Event e;
    e.time = 1;
    e.certName = "main";
    e.eventId = "KMS_RENEW_FAILED";
    e.level = storage::EventLevel::warning;
    e.message = "x";
    e.fieldsJson = std::string(R"({"step":")") + step + "\"}";
    ASSERT_TRUE(store_->appendEvent(e).has_value());
  }
  std::unique_ptr<Notifier> notifier(RecordingChannel*& channel) {
    auto log = storage::AlertLog::open(sandbox_.file("kmsd.db"));
    EXPECT_TRUE(log.has_value());
    auto owned = std::make_unique<RecordingChannel>();
    channel = owned.get();
    std::vector<std::unique_ptr<AlertChannel>> channels;
    channels.push_back(std::move(owned));
    auto n = std::make_unique<Notifier>(std::move(*log), std::move(channels), settings_, std::set<std::string>{"main"},
                                        events_, clock_);
    n->start();
    return n;
  }
  /// The delivery row of the one alert once `ok` holds for it (or the last one after 10 s).
  template <class Pred>
  storage::DeliveryRow deliveryWhen(Notifier& n, Pred ok) {
    storage::DeliveryRow row;
    for (int i = 0; i < 1000; ++i) {
      auto view = n.view();
      if (view && view->deliveries.size() == 1) {
        row = view->deliveries[0];
        if (ok(row)) {
          return row;
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return row;
  }

  kms::test::Sandbox sandbox_;
  std::unique_ptr<storage::Db> db_;
  std::unique_ptr<storage::Store> store_;
  config::AlertsConfig settings_;
  Events events_;
  MovingClock clock_{1000};
};

TEST_F(NotifierTest, OnePageARepeatAfterTheIntervalARetriedResolveAndNothingTwiceAfterARestart) {
  RecordingChannel* channel = nullptr;
  auto n = notifier(channel);
  fails("new_order");
  fails("new_order");
  n->evaluate();
  EXPECT_EQ(events_.count("KMS_ALERT_FIRING"), 0) << "two failures: below [alerts] failures";
  fails("new_order");
  n->evaluate();  // t=1000: fires, sent
  auto got = channel->waitFor(1);
  ASSERT_EQ(got.size(), 1U);
  EXPECT_EQ(got[0].condition, "renewal_failing");
  EXPECT_FALSE(got[0].resolved());
  EXPECT_EQ(deliveryWhen(*n, [](const storage::DeliveryRow& r) { return r.sent == "firing"; }).sentAt, 1000);
  clock_.set(1000 + 3599);
  n->evaluate();  // not yet a repeat
  clock_.set(1000 + 3600);
  n->evaluate();  // the repeat
  got = channel->waitFor(2);
  ASSERT_EQ(got.size(), 2U);
  EXPECT_EQ(got[1].now, 4600) << "no message between the page and its repeat";
  EXPECT_EQ(got[1].startsAt, 1000);
  EXPECT_EQ(deliveryWhen(*n, [](const storage::DeliveryRow& r) { return r.sentAt == 4600; }).sentAt, 4600);

  // A restart: a new notifier over the same DB sends nothing for what it was told.
  n.reset();
  n = notifier(channel);
  clock_.set(4700);
  n->evaluate();  // still firing, already told
  clock_.set(5000);
  ASSERT_TRUE(store_->setState("main", storage::CertState::active, std::nullopt).has_value());  // failures cleared
  channel->failNext(1);
  n->evaluate();  // resolved; the first try fails
  got = channel->waitFor(1);
  ASSERT_EQ(got.size(), 1U);
  EXPECT_TRUE(got[0].resolved()) << "the first message after the restart is the resolve, not a page";
  const storage::DeliveryRow failed = deliveryWhen(*n, [](const storage::DeliveryRow& r) { return r.attempts > 0; });
  EXPECT_EQ(failed.attempts, 1);
  EXPECT_EQ(failed.nextTryAt, 5060);
  EXPECT_EQ(failed.lastError, "receiver down");
  clock_.set(5059);
  n->evaluate();  // backing off
  clock_.set(5060);
  n->evaluate();  // retried
  got = channel->waitFor(2);
  ASSERT_EQ(got.size(), 2U);
  EXPECT_EQ(got[1].now, 5060);
  EXPECT_TRUE(got[1].resolved());
  EXPECT_EQ(got[1].endsAt, 5000);
  EXPECT_EQ(deliveryWhen(*n, [](const storage::DeliveryRow& r) { return r.sent == "resolved"; }).sent, "resolved");
  clock_.set(9000);
  n->evaluate();
  n.reset();  // joins the channel thread: whatever it was given has been sent
  EXPECT_EQ(events_.count("KMS_ALERT_FIRING"), 1);
  EXPECT_EQ(events_.count("KMS_ALERT_RESOLVED"), 1);
  EXPECT_EQ(events_.count("KMS_ALERT_DELIVERY_FAILED"), 1);
  EXPECT_EQ(events_.count("KMS_ALERT_SENT"), 3);  // the page, its repeat, the resolve
}

TEST_F(NotifierTest, TheSpcTokenStepRaisesItsOwnCondition) {
  RecordingChannel* channel = nullptr;
  auto n = notifier(channel);
  for (int i = 0; i < 3; ++i) {
    fails("fetch_token");
  }
  n->evaluate();
  auto got = channel->waitFor(1);
  ASSERT_EQ(got.size(), 1U);
  EXPECT_EQ(got[0].condition, "spc_token_unobtainable");
  EXPECT_EQ(got[0].severity, "critical");
}

}  // namespace
}  // namespace kms::daemon
