// The engine driven by a simulated clock: the scheduler, the worker turns, order slots,
// the failure policy's retry times, the CA pause and --once settling. The lifecycle behind
// it is in memory (store_lifecycle.h) over a real SQLite file; no token, no CA, no sleeps.
#include <gtest/gtest.h>

#include "engine/engine.h"
#include "events/event_sink.h"
#include "sandbox.h"
#include "storage/db.h"
#include "store_lifecycle.h"

namespace kms::daemon::test {
namespace {

constexpr std::int64_t kT0 = 1'800'000'000;

/// Events kept in memory.
class ListSink final : public EventSink {
 public:
  void emit(const EventRecord& e) override {
    ids.emplace_back(e.id);
  }
  [[nodiscard]] int count(const std::string& id) const {
    return static_cast<int>(std::count(ids.begin(), ids.end(), id));
  }
  std::vector<std::string> ids;
};

class EngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto db = storage::Db::open(sandbox_.file("kmsd.db"));
    ASSERT_TRUE(db.has_value()) << db.error().toString();
    db_ = std::move(*db);
    store_ = storage::makeSqliteStore(*db_, [this] { return unixSeconds(clock_.now()); });
    locked_ = std::make_unique<LockedStore>(*store_);
    life_ = std::make_unique<StoreLifecycle>(*locked_, clock_);
  }

  void makeEngine(std::size_t maxOrders = 4, bool once = false) {
    engine_ = std::make_unique<Engine>(exec_, clock_, random_, *life_, *locked_, sink_,
                                       EngineSettings{maxOrders, RetryPolicy{60, 3600}, once});
  }

  void addCert(const std::string& name) {
    auto r = store_->upsertCertificate(name, storage::CertKind::acme, R"(["dns:)" + name + R"(.example"])");
    ASSERT_TRUE(r.has_value()) << r.error().toString();
    config::CertificateConfig c;
    c.name = name;
    c.dnsNames = {name + ".example"};
    engine_->add(c);
  }

  [[nodiscard]] storage::ManagedCert row(const std::string& name) {
    auto c = store_->getCertificate(name);
    EXPECT_TRUE(c.has_value() && c->has_value());
    return c && *c ? **c : storage::ManagedCert{};
  }

  [[nodiscard]] bool active(const std::string& name) {
    auto issued = store_->listIssued(name);
    return issued && !issued->empty() && issued->front().publishedAt.has_value();
  }

  static Error caError(Disposition d, std::optional<std::chrono::seconds> retryAfter = std::nullopt) {
    return Error{Errc::protocol, "refused", "https://ca.example/new-order", 400, "x", d, retryAfter};
  }

  kms::test::Sandbox sandbox_;
  SimClock clock_{kT0};
  MidRandom random_;
  SimExecutor exec_{clock_};
  ListSink sink_;
  std::unique_ptr<storage::Db> db_;
  std::unique_ptr<storage::Store> store_;
  std::unique_ptr<LockedStore> locked_;
  std::unique_ptr<StoreLifecycle> life_;
  std::unique_ptr<Engine> engine_;
};

TEST_F(EngineTest, ACertificateGoesFromNothingToActiveWithoutTimePassing) {
  makeEngine();
  addCert("main");
  engine_->start();
  exec_.advance(Millis(0));
  EXPECT_TRUE(active("main"));
  const std::vector<Action> expected{Action::startOrder, Action::generateKey, Action::newOrder,
                                     Action::authorize,  Action::finalize,    Action::awaitIssuance,
                                     Action::publish,    Action::activate};
  ASSERT_GE(life_->log.size(), expected.size());
  for (std::size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(life_->log[i].second, expected[i]) << i;
  }
  // Then it waits for its renewal: nothing more runs until the renewal instant.
  const std::size_t ran = life_->log.size();
  exec_.advance(std::chrono::hours(24));
  EXPECT_EQ(life_->log.size(), ran);
  EXPECT_EQ(life_->count("main", Action::startOrder), 1);
}

TEST_F(EngineTest, TheRenewalStartsAtItsInstantAndNotBefore) {
  makeEngine();
  addCert("main");
  engine_->start();
  exec_.advance(Millis(0));
  const auto renewAt = row("main").renewAt;
  ASSERT_TRUE(renewAt.has_value());
  exec_.advance(std::chrono::seconds(*renewAt - unixSeconds(clock_.now()) - 1));
  EXPECT_EQ(life_->count("main", Action::startOrder), 1);
  exec_.advance(std::chrono::seconds(2));
  EXPECT_EQ(life_->count("main", Action::startOrder), 2);
  EXPECT_EQ(life_->count("main", Action::activate), 2);
}

TEST_F(EngineTest, APollWaitRunsTheSameStepAgainAfterTheWait) {
  makeEngine();
  addCert("main");
  life_->polls[{"main", Action::authorize}] = {std::chrono::seconds(5)};
  engine_->start();
  exec_.advance(Millis(0));
  EXPECT_EQ(life_->count("main", Action::authorize), 1);
  exec_.advance(Millis(4999));
  EXPECT_EQ(life_->count("main", Action::authorize), 1);
  exec_.advance(Millis(1));
  EXPECT_EQ(life_->count("main", Action::authorize), 2);
  EXPECT_TRUE(active("main"));
}

TEST_F(EngineTest, ARetryableFailureIsTriedAgainAtThePolicysTimeWithoutADbRoundTrip) {
  makeEngine();
  addCert("main");
  life_->failures[{"main", Action::newOrder}] = {caError(Disposition::retry)};
  engine_->start();
  exec_.advance(Millis(0));
  EXPECT_EQ(life_->count("main", Action::newOrder), 1);
  EXPECT_EQ(row("main").failureCount, 1);
  EXPECT_EQ(row("main").nextAttemptAt, kT0 + 60);  // the first backoff, jitter in the middle
  EXPECT_EQ(exec_.nextTimer(), fromUnix(kT0 + 60));  // scheduled as decided
  exec_.advance(std::chrono::seconds(59));
  EXPECT_EQ(life_->count("main", Action::newOrder), 1);
  exec_.advance(std::chrono::seconds(1));
  EXPECT_EQ(life_->count("main", Action::newOrder), 2);
  EXPECT_TRUE(active("main"));
  EXPECT_EQ(life_->count("main", Action::startOrder), 1);  // the same order went on
  EXPECT_TRUE(life_->destroyedKeys.empty());
  EXPECT_EQ(sink_.count("KMS_RENEW_FAILED"), 1);
}

TEST_F(EngineTest, APermanentFailureAbandonsTheOrderDestroysItsKeyAndStartsAgainAfterBackoff) {
  makeEngine();
  addCert("main");
  life_->failures[{"main", Action::finalize}] = {caError(Disposition::permanent)};
  engine_->start();
  exec_.advance(Millis(0));
  ASSERT_EQ(life_->destroyedKeys.size(), 1u);
  EXPECT_EQ(life_->destroyedKeys[0], "pkcs11:id=main-01");
  EXPECT_EQ(row("main").state, storage::CertState::failed);  // nothing valid meanwhile
  EXPECT_EQ(sink_.count("KMS_ISSUE_FAILED"), 1);
  exec_.advance(std::chrono::seconds(60));
  EXPECT_EQ(life_->count("main", Action::startOrder), 2);  // a new order, a new key
  EXPECT_TRUE(active("main"));
}

TEST_F(EngineTest, TheCaPauseHoldsEveryCertificatesCaStepsUntilItEnds) {
  makeEngine();
  addCert("first");
  addCert("second");
  life_->failures[{"first", Action::newOrder}] = {caError(Disposition::caPause, std::chrono::seconds(300))};
  engine_->start();
  exec_.advance(Millis(0));
  EXPECT_EQ(sink_.count("KMS_CA_BACKOFF"), 1);
  // "second" ran its newOrder before the refusal (both were due at once), or waits for the
  // pause: either way neither talks to the CA again before it ends.
  const int firstAt = life_->count("first", Action::newOrder);
  const int secondAuth = life_->count("second", Action::authorize);
  exec_.advance(std::chrono::seconds(299));
  EXPECT_EQ(life_->count("first", Action::newOrder), firstAt);
  EXPECT_EQ(life_->count("second", Action::authorize), secondAuth);
  exec_.advance(std::chrono::seconds(2));
  EXPECT_TRUE(active("first"));
  EXPECT_TRUE(active("second"));
}

TEST_F(EngineTest, SlotsBoundTheOrdersAtTheCaAndEveryCertificateGetsItsTurn) {
  makeEngine(2);
  for (int i = 0; i < 6; ++i) {
    addCert("c" + std::to_string(i));
  }
  // Each order polls twice at authorize: slots stay held across the polls.
  for (int i = 0; i < 6; ++i) {
    life_->polls[{"c" + std::to_string(i), Action::authorize}] = {Millis(500), Millis(500)};
  }
  engine_->start();
  exec_.advance(std::chrono::seconds(30));
  for (int i = 0; i < 6; ++i) {
    EXPECT_TRUE(active("c" + std::to_string(i))) << i;
  }
  EXPECT_LE(engine_->counters().openOrders, 0u);
  EXPECT_LE(life_->atCaMost, 2);
}

TEST_F(EngineTest, AnOperatorsRenewalGoesBeforeRoutineWaiters) {
  makeEngine(1);
  addCert("a");
  addCert("b");
  addCert("c");
  life_->polls[{"a", Action::authorize}] = {std::chrono::seconds(10)};
  engine_->start();
  exec_.advance(Millis(0));  // "a" holds the one slot while polling; "b" and "c" wait
  engine_->requestRenewal("c");
  exec_.advance(std::chrono::seconds(10));
  // After "a", the operator's "c" took the slot before the routine "b".
  std::vector<std::string> started;
  for (const auto& [cert, action] : life_->log) {
    if (action == Action::generateKey) {
      started.push_back(cert);
    }
  }
  ASSERT_GE(started.size(), 2u);
  EXPECT_EQ(started[0], "a");
  EXPECT_EQ(started[1], "c");
}

TEST_F(EngineTest, OnceSettlesEveryCertificateThenStops) {
  makeEngine(4, true);
  addCert("ok");
  addCert("bad");
  life_->failures[{"bad", Action::authorize}] = {caError(Disposition::retry)};
  engine_->start();
  exec_.advance(Millis(0));
  EXPECT_TRUE(exec_.stopped());
  auto out = engine_->outcomes();
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].kind, CertOutcome::Kind::issued);
  EXPECT_EQ(out[1].kind, CertOutcome::Kind::failed);
  EXPECT_NE(out[1].line.find("bad: FAILED: https://ca.example/new-order: refused"), std::string::npos) << out[1].line;
}

TEST_F(EngineTest, OnceReportsACertificateHeldBackByBackoffAsNotAttempted) {
  makeEngine(4, true);
  addCert("main");
  ASSERT_TRUE(store_->recordFailure("main", "earlier", kT0 + 600).has_value());
  engine_->start();
  exec_.advance(Millis(0));
  EXPECT_TRUE(exec_.stopped());
  EXPECT_TRUE(life_->log.empty());
  auto out = engine_->outcomes();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].kind, CertOutcome::Kind::failed);
  EXPECT_NE(out[0].line.find("not attempted"), std::string::npos) << out[0].line;
}

TEST_F(EngineTest, OnceWithAValidCertificateIsNotDue) {
  makeEngine();
  addCert("main");
  engine_->start();
  exec_.advance(Millis(0));
  ASSERT_TRUE(active("main"));
  engine_.reset();
  makeEngine(4, true);
  addCert("main");
  const std::size_t ran = life_->log.size();
  engine_->start();
  exec_.advance(Millis(0));
  EXPECT_TRUE(exec_.stopped());
  EXPECT_EQ(life_->log.size(), ran);
  EXPECT_EQ(engine_->outcomes()[0].kind, CertOutcome::Kind::notDue);
}

TEST_F(EngineTest, AnUpdateFromAReloadReplansNothingByItself) {
  makeEngine();
  addCert("main");
  engine_->start();
  exec_.advance(Millis(0));
  const std::size_t ran = life_->log.size();
  config::CertificateConfig same;
  same.name = "main";
  same.dnsNames = {"main.example"};
  engine_->update(same, "another-settings-hash");
  exec_.advance(Millis(0));
  EXPECT_EQ(life_->log.size(), ran);  // 100,000 unchanged certificates must not all run again
  engine_->requestRenewal("main");   // what the reloader does for a changed definition
  exec_.advance(Millis(0));
  EXPECT_EQ(life_->count("main", Action::startOrder), 2);
}

TEST_F(EngineTest, ARemovedCertificateIsNoLongerRenewed) {
  makeEngine();
  addCert("main");
  engine_->start();
  exec_.advance(Millis(0));
  engine_->remove("main");
  EXPECT_FALSE(engine_->manages("main"));
  exec_.advance(std::chrono::hours(24 * 90));
  EXPECT_EQ(life_->count("main", Action::startOrder), 1);
}

TEST_F(EngineTest, StopWaitsForTheTurnInFlightAndStartsNoOther) {
  makeEngine();
  addCert("main");
  engine_->start();
  exec_.fireDue();  // the turn is handed to a worker that has not run it yet
  ASSERT_EQ(exec_.queuedWork(), 1u);
  bool stopped = false;
  engine_->stop([&] { stopped = true; });
  EXPECT_FALSE(stopped);
  exec_.runOneWork();  // the worker finishes its step
  EXPECT_FALSE(stopped);
  exec_.runLoop();  // its completion reaches the loop
  EXPECT_TRUE(stopped);
  EXPECT_EQ(life_->log.size(), 1u);  // startOrder only: no next step began
  exec_.advance(std::chrono::hours(1));
  EXPECT_EQ(life_->log.size(), 1u);
}

TEST_F(EngineTest, AnIdleEngineStopsAtOnce) {
  makeEngine();
  addCert("main");
  engine_->start();
  exec_.advance(Millis(0));
  bool stopped = false;
  engine_->stop([&] { stopped = true; });
  EXPECT_TRUE(stopped);
}

}  // namespace
}  // namespace kms::daemon::test
