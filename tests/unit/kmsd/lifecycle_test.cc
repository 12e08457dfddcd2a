// kmsd's lifecycle steps one at a time, with the real Services, store (a temp SQLite file)
// and steps, but an in-memory token (tests/support/pkcs11_memory_module.cc, behind PKCS#11)
// and an in-memory CA (fake_acme.h, behind http::Transport): one test per step, and the
// branches a restart meets when it resumes an order the CA has moved on (not ready yet,
// processing, valid, invalid, gone, a replaced certificate already replaced). The same
// steps against SoftHSM2, Pebble and kms-lab: kmsd_once, crash and SHAKEN tests.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <dlfcn.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <ctime>
#include <memory>
#include <string>
#include <vector>

#include "config/config.h"
#include "engine/planner.h"
#include "fake_acme.h"
#include "cli.h"
#include "kmsd_toml.h"
#include "lifecycle/steps.h"
#include "sandbox.h"
#include "services/services.h"
#include "sim_executor.h"
#include "trust/trust_state.h"

namespace kms::daemon::test {
namespace {

using storage::CertState;

class Recorder final : public EventSink {
 public:
  void emit(const EventRecord& e) override { events.push_back(e); }
  [[nodiscard]] bool saw(const std::string& id) const {
    return std::any_of(events.begin(), events.end(), [&](const EventRecord& e) { return e.id == id; });
  }
  std::vector<EventRecord> events;
};

/// The in-memory token module's own functions.
template <typename F>
F memoryModule(const char* name) {
  void* lib = ::dlopen(KMS_MEMORY_MODULE, RTLD_NOW);
  return lib != nullptr ? reinterpret_cast<F>(::dlsym(lib, name)) : nullptr;
}

/// A socket listening on 127.0.0.1 (kmsd's http-01 responder takes it over; the fake CA
/// validates nothing, so nothing connects).
int listeningSocket() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd, 4) != 0) {
    return -1;
  }
  return fd;
}

/// An STI-PA that refuses every request with 401 (a wrong password, an expired contract).
class RefusingStiPa final : public http::Transport {
 public:
  Result<http::HttpResponse> send(const http::HttpRequest& /*request*/) override {
    ++requests;
    http::HttpResponse r;
    r.status = 401;
    r.headers.emplace_back("content-type", "application/json");
    r.body = R"({"status":"failed","message":"invalid user_id or password"})";
    return r;
  }
  int requests = 0;
};

class LifecycleSteps : public ::testing::Test {
 protected:
  void SetUp() override { start(false); }

  /// `shaken`: one SHAKEN certificate (SPC 1234) and an STI-PA that refuses every request,
  /// instead of one http-01 certificate.
  void start(bool shaken) {
    auto reset = memoryModule<void (*)()>("kms_memory_token_reset");
    ASSERT_NE(reset, nullptr);
    reset();
    auto fake = std::make_unique<FakeAcme>();
    ca_ = fake.get();
    kms::test::KmsdToml toml;
    toml.stateDir = sandbox_.file("state");
    toml.pinFile = sandbox_.write("pin", "1234\n");
    toml.hsmExtra = std::string("module = \"") + KMS_MEMORY_MODULE + "\"\n";
    toml.directoryUrl = ca_->directoryUrl();
    toml.trustAnchors = sandbox_.write("roots.pem", ca_->rootPem());
    toml.webRoot = sandbox_.file("www");
    // Runs only when a test runs the deploy action: writes what it was given.
    hookOut_ = sandbox_.file("hook.out");
    const std::string hook = sandbox_.write("deploy.sh", "#!/bin/sh\necho \"$KMS_NAME $KMS_SERIAL $KMS_KEY_URI\" > '" +
                                                             hookOut_ + "'\n");
    ::chmod(hook.c_str(), 0700);
    if (shaken) {
      toml.stiPaSection = "[sti_pa]\nurl = \"https://sti-pa.test/api/v1\"\nuser_id = \"ops\"\npassword_file = \"" +
                          sandbox_.write("sti-pa.password", "secret\n") + "\"\ntrust_anchor = \"" +
                          sandbox_.file("roots.pem") + "\"\n";
      toml.certificates.emplace_back("main", "spc = \"1234\"\nsubject_o = \"Example Telecom\"\n");
    } else {
      toml.dns("web", {"web.example.com"}, "deploy_hook = \"" + hook + "\"\n");
    }
    auto config = config::loadConfigString(toml.text(), "kmsd.toml", {});
    ASSERT_TRUE(config.has_value()) << config.error().front().what;
    config_ = std::make_unique<config::Config>(std::move(*config));
    auto state = openStateDb(*config_);
    ASSERT_TRUE(state.has_value()) << state.error().toString();
    state_ = std::move(*state);
    ASSERT_TRUE(shaken ? state_.store->upsertCertificate("main", storage::CertKind::shaken, R"(["spc:1234"])")
                       : state_.store->upsertCertificate("web", storage::CertKind::acme, R"(["dns:web.example.com"])"));
    TransportOverrides transports;
    transports.acme = std::move(fake);
    if (shaken) {
      auto stiPa = std::make_unique<RefusingStiPa>();
      stiPa_ = stiPa.get();
      transports.stiPa = std::move(stiPa);
    }
    auto services =
        Services::create(*config_, clock_, events_, *state_.locked, listeningSocket(), std::move(transports));
    ASSERT_TRUE(services.has_value()) << services.error().toString();
    services_ = std::move(*services);
    auto trust = TrustState::create(*config_);
    ASSERT_TRUE(trust.has_value()) << trust.error().toString();
    trust_ = std::move(*trust);
    steps_ = std::make_unique<Steps>(*services_, *trust_, clock_, random_, events_);
  }

  const config::CertificateConfig& web() const { return config_->certificates.front(); }

  /// Runs `action` on what the DB says now (as the engine does after a restart).
  Result<StepOutcome> run(Action action) {
    auto snap = steps_->snapshot(web(), false);
    if (!snap) {
      return fail(snap.error());
    }
    return steps_->run(action, *snap, web(), poll_);
  }
  /// Runs `action`, which must succeed.
  StepOutcome must(Action action) {
    auto out = run(action);
    EXPECT_TRUE(out.has_value()) << toString(action) << ": " << out.error().toString();
    return out.value_or(StepOutcome{});
  }
  /// The open order as the DB has it.
  std::optional<storage::Order> openOrder() {
    auto snap = steps_->snapshot(web(), false);
    return snap ? snap->order : std::nullopt;
  }
  /// Steps up to (not including) `last`, from nothing.
  void runUpTo(Action last) {
    for (Action a : {Action::startOrder, Action::generateKey, Action::newOrder, Action::authorize, Action::finalize,
                     Action::awaitIssuance, Action::publish, Action::activate}) {
      if (a == last) {
        return;
      }
      must(a);
    }
  }
  static int tokenObjects() {
    auto count = memoryModule<int (*)()>("kms_memory_token_objects");
    return count != nullptr ? count() : -1;
  }

  /// Issued, published and active, as after one whole renewal.
  storage::IssuedCert activeCertificate() {
    runUpTo(Action::activate);
    StepOutcome done = must(Action::activate);
    EXPECT_TRUE(done.activated.has_value());
    return done.activated.value_or(storage::IssuedCert{});
  }

  kms::test::Sandbox sandbox_;
  std::string hookOut_;
  SimClock clock_{std::time(nullptr)};
  MidRandom random_;
  Recorder events_;
  FakeAcme* ca_ = nullptr;
  RefusingStiPa* stiPa_ = nullptr;
  std::unique_ptr<config::Config> config_;
  StateDb state_;
  std::unique_ptr<Services> services_;
  std::unique_ptr<TrustState> trust_;
  std::unique_ptr<Steps> steps_;
  PollState poll_;
};

TEST_F(LifecycleSteps, StartOrderRecordsTheKeyAndTheOrderBeforeTheKeyExists) {
  must(Action::startOrder);
  auto order = openOrder();
  ASSERT_TRUE(order.has_value());
  EXPECT_EQ(order->step, CertState::planned);
  ASSERT_TRUE(order->keyUri.has_value());
  EXPECT_EQ(tokenObjects(), 0);  // recorded, not yet generated
  EXPECT_EQ(ca_->orders(), 0);
}

TEST_F(LifecycleSteps, GenerateKeyPutsTheRecordedKeyOnTheToken) {
  must(Action::startOrder);
  must(Action::generateKey);
  EXPECT_EQ(openOrder()->step, CertState::keyReady);
  EXPECT_EQ(tokenObjects(), 1);  // the ACME account key is made when the CA is first used
}

TEST_F(LifecycleSteps, NewOrderRecordsTheCasOrder) {
  runUpTo(Action::newOrder);
  must(Action::newOrder);
  auto order = openOrder();
  ASSERT_TRUE(order.has_value());
  EXPECT_EQ(order->step, CertState::orderPending);
  EXPECT_EQ(order->orderUrl, ca_->orderUrl(1));
  EXPECT_EQ(ca_->count("newOrder"), 1);
  EXPECT_TRUE(events_.saw("KMS_ORDER_CREATED"));
}

TEST_F(LifecycleSteps, AuthorizeAnswersTheChallengeAndMovesOnOnceTheOrderIsReady) {
  runUpTo(Action::authorize);
  StepOutcome answered = must(Action::authorize);
  EXPECT_EQ(ca_->count("challenge"), 1);
  EXPECT_TRUE(events_.saw("KMS_CHALLENGE_ANSWERED"));
  // The answer already said valid: the order is read back at once, not after a poll wait.
  EXPECT_FALSE(answered.wait.has_value());
  EXPECT_EQ(openOrder()->step, CertState::orderPending);
  const int reads = ca_->count("order");
  must(Action::authorize);
  EXPECT_EQ(openOrder()->step, CertState::authorized);
  EXPECT_EQ(ca_->count("order"), reads + 1);
  EXPECT_EQ(ca_->count("challenge"), 1);
}

TEST_F(LifecycleSteps, AResumedOrderNotReadyYetIsReadAgainWithoutAnsweringTwice) {
  ca_->validateOnAnswer = false;  // the CA takes its time
  runUpTo(Action::authorize);
  StepOutcome first = must(Action::authorize);
  ASSERT_TRUE(first.wait.has_value());  // polled again later
  EXPECT_EQ(ca_->count("challenge"), 1);
  // As Pebble reports it: the challenge still "pending" while the CA validates.
  ca_->order(1).challengeStatus = "pending";
  // A restart: new steps, the same DB and CA. The challenge is not answered again.
  steps_ = std::make_unique<Steps>(*services_, *trust_, clock_, random_, events_);
  StepOutcome again = must(Action::authorize);
  EXPECT_TRUE(again.wait.has_value());
  EXPECT_EQ(ca_->count("challenge"), 1);
  EXPECT_EQ(openOrder()->step, CertState::orderPending);
  // The CA decides; the next read moves on.
  ca_->order(1).authzStatus = "valid";
  ca_->order(1).challengeStatus = "valid";
  ca_->order(1).status = "ready";
  must(Action::authorize);
  EXPECT_EQ(openOrder()->step, CertState::authorized);
  EXPECT_EQ(ca_->count("challenge"), 1);
}

TEST_F(LifecycleSteps, AResumedOrderTheCaInvalidatedIsAPermanentFailure) {
  ca_->validateOnAnswer = false;
  runUpTo(Action::authorize);
  must(Action::authorize);
  ca_->order(1).status = "invalid";
  ca_->order(1).authzStatus = "invalid";
  ca_->order(1).challengeStatus = "invalid";
  auto out = run(Action::authorize);
  ASSERT_FALSE(out.has_value());
  EXPECT_EQ(out.error().disposition, Disposition::permanent) << out.error().toString();
}

TEST_F(LifecycleSteps, AResumedOrderTheCaNoLongerKnowsIsAPermanentFailure) {
  runUpTo(Action::authorize);
  ASSERT_TRUE(state_.store->advanceOrder(openOrder()->id, [] {
    storage::OrderUpdate u;
    u.step = CertState::orderPending;
    u.orderUrl = std::string(FakeAcme::kBase) + "/order/99";
    return u;
  }()));
  auto out = run(Action::authorize);
  ASSERT_FALSE(out.has_value());
  EXPECT_EQ(out.error().disposition, Disposition::permanent) << out.error().toString();
  EXPECT_NE(out.error().message.find("no longer knows this order (404)"), std::string::npos) << out.error().toString();
}

TEST_F(LifecycleSteps, FinalizeSendsTheCsrOnce) {
  runUpTo(Action::finalize);
  must(Action::finalize);
  EXPECT_EQ(ca_->count("finalize"), 1);
  EXPECT_EQ(openOrder()->step, CertState::finalizing);
}

TEST_F(LifecycleSteps, AResumedOrderStillProcessingIsPolledNotFinalizedAgain) {
  ca_->finalizeProcessing = true;
  ca_->orderRetryAfter = 3;
  runUpTo(Action::awaitIssuance);
  StepOutcome waiting = must(Action::awaitIssuance);
  ASSERT_TRUE(waiting.wait.has_value());
  EXPECT_GE(*waiting.wait, Millis(3000));  // the CA's Retry-After is a minimum
  EXPECT_EQ(ca_->count("finalize"), 1);
  ca_->order(1).status = "valid";
  must(Action::awaitIssuance);
  EXPECT_EQ(openOrder()->step, CertState::issued);
  EXPECT_EQ(ca_->count("finalize"), 1);
}

TEST_F(LifecycleSteps, AwaitIssuanceOfAValidOrderDownloadsChecksAndRecordsTheChain) {
  runUpTo(Action::awaitIssuance);
  must(Action::awaitIssuance);
  EXPECT_EQ(openOrder()->step, CertState::issued);
  EXPECT_EQ(ca_->count("certificate"), 1);
  auto issued = state_.store->listIssued("web");
  ASSERT_TRUE(issued.has_value());
  ASSERT_EQ(issued->size(), 1U);
  EXPECT_EQ(issued->front().keyUri, openOrder()->keyUri.value_or(""));
  EXPECT_TRUE(events_.saw("KMS_CERT_ISSUED"));
}

TEST_F(LifecycleSteps, PublishWritesTheChainToTheWebRootAndActivateClosesTheOrder) {
  runUpTo(Action::publish);
  must(Action::publish);
  EXPECT_EQ(openOrder()->step, CertState::published);
  auto issued = state_.store->listIssued("web");
  ASSERT_TRUE(issued.has_value() && issued->size() == 1U);
  const std::string serial = issued->front().serial;
  // Under its own name first; the stable name follows at activation.
  EXPECT_TRUE(kms::test::fileExists(sandbox_.file("www/web/" + serial + ".pem")));
  EXPECT_FALSE(kms::test::fileExists(sandbox_.file("www/web.pem")));
  StepOutcome done = must(Action::activate);
  ASSERT_TRUE(done.activated.has_value());
  EXPECT_EQ(done.activated->serial, serial);
  EXPECT_TRUE(kms::test::fileExists(sandbox_.file("www/web.pem")));
  EXPECT_FALSE(openOrder().has_value());
  EXPECT_TRUE(events_.saw("KMS_CERT_ACTIVATED"));
}

TEST_F(LifecycleSteps, ARenewalWhoseCertificateTheCaSaysWasAlreadyReplacedOrdersWithoutReplaces) {
  activeCertificate();
  ca_->refuseReplaces = true;
  must(Action::startOrder);
  must(Action::generateKey);
  must(Action::newOrder);
  EXPECT_EQ(ca_->orders(), 2);
  EXPECT_FALSE(ca_->order(2).replaces.has_value());
  EXPECT_TRUE(events_.saw("KMS_ORDER_REPLACES_DROPPED")) << "no event said replaces was dropped";
}

TEST_F(LifecycleSteps, RefreshRenewalTakesTheRenewalInstantFromTheCasWindow) {
  activeCertificate();
  must(Action::refreshRenewal);
  auto cert = state_.store->getCertificate("web");
  ASSERT_TRUE(cert.has_value() && cert->has_value());
  ASSERT_TRUE((*cert)->renewAt.has_value());
  // The fake CA's window: a day wide, starting a month from now (MidRandom: its middle).
  const std::int64_t start = std::time(nullptr) + 30L * 86400;
  EXPECT_GE(*(*cert)->renewAt, start - 60);
  EXPECT_LE(*(*cert)->renewAt, start + 86400 + 60);
  EXPECT_GT((*cert)->ariNextCheck.value_or(0), unixSeconds(clock_.now()));  // read again later
}

TEST_F(LifecycleSteps, DeployRunsTheHookForTheActiveCertificateWithoutHoldingAWorker) {
  const storage::IssuedCert active = activeCertificate();
  StepOutcome started = must(Action::deploy);
  ASSERT_NE(started.waitFor, nullptr);  // the step returns while the hook runs
  auto status = started.waitFor->wait(std::chrono::seconds(30));
  ASSERT_TRUE(status.has_value()) << status.error().toString();
  must(Action::deploy);  // run again when the hook exits: it records the outcome
  EXPECT_TRUE(events_.saw("KMS_DEPLOY_HOOK_RAN"));
  EXPECT_EQ(kms::test::readFile(hookOut_), "web " + active.serial + " " + active.keyUri + "\n");
}

class ShakenLifecycleSteps : public LifecycleSteps {
 protected:
  void SetUp() override { start(true); }
};

TEST_F(ShakenLifecycleSteps, FetchTokenRefusedByTheStiPaIsRetriedAndKeepsTheOrderAndItsKey) {
  must(Action::startOrder);
  must(Action::generateKey);
  const auto before = openOrder();
  ASSERT_TRUE(before.has_value());
  auto out = run(Action::fetchToken);
  ASSERT_FALSE(out.has_value());
  EXPECT_GE(stiPa_->requests, 1);
  // Not the order's fault: retried later with the same order and key (no key destroyed).
  EXPECT_EQ(out.error().disposition, Disposition::retry) << out.error().toString();
  auto after = openOrder();
  ASSERT_TRUE(after.has_value());
  EXPECT_EQ(after->id, before->id);
  EXPECT_EQ(after->step, CertState::keyReady);
  EXPECT_EQ(after->keyUri, before->keyUri);
  EXPECT_EQ(ca_->orders(), 0);  // nothing reached the CA's orders
}

}  // namespace
}  // namespace kms::daemon::test
