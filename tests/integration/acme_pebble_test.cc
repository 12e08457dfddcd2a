// The ACME client against a real Pebble: accounts, EAB, key rollover, issuance with
// http-01 through the built-in responder, revocation, nonce rejection, failures.
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <algorithm>
#include <utility>
#include <vector>

#include "acme/client.h"
#include "acme/http01_responder.h"
#include "acme/issuer.h"
#include "hsm/token.h"
#include "pki/csr.h"
#include "pebble_server.h"
#include "softhsm_token.h"

namespace kms::acme {
namespace {

using test::PebbleOptions;
using test::PebbleServer;
using test::SoftHsmToken;

class AcmePebble : public ::testing::Test {
 protected:
  void startAll(PebbleOptions options = {}) {
    // The responder binds first and Pebble is told its port: no window for another test
    // running in parallel to take a port chosen but not yet bound.
    auto responder = Http01Responder::start("127.0.0.1", 0);
    ASSERT_TRUE(responder.has_value()) << responder.error().toString();
    responder_ = std::move(*responder);
    options.httpPort = responder_->port();
    pebble_ = std::make_unique<PebbleServer>(options);
    auto token = hsm::Token::open({SoftHsmToken::modulePath(), softhsm_.label(), softhsm_.pinFile(), 4});
    ASSERT_TRUE(token.has_value()) << token.error().toString();
    token_ = std::move(*token);
    accountKey_ = newSigner("account");
    http::TransportOptions topts;
    topts.caBundle = pebble_->tlsCaFile();
    auto transport = http::makeCurlTransport(topts);
    ASSERT_TRUE(transport.has_value()) << transport.error().toString();
    transport_ = std::move(*transport);
    connect();
    solver_ = std::make_unique<Http01Solver>(*responder_);
  }

  void connect() {
    ClientOptions copts;
    copts.directoryUrl = pebble_->directoryUrl();
    copts.pollDeadline = std::chrono::seconds(20);
    auto client = AcmeClient::create(*transport_, copts);
    ASSERT_TRUE(client.has_value()) << client.error().toString();
    client_ = std::move(*client);
  }

  std::unique_ptr<hsm::KeySigner> newSigner(const std::string& label) {
    auto key = token_->generateKey(label);
    EXPECT_TRUE(key.has_value());
    auto signer = token_->signer(key->uri);
    EXPECT_TRUE(signer.has_value());
    return std::move(*signer);
  }

  std::string registerAccount() {
    auto account = client_->newAccount(*accountKey_, {"mailto:noc@example.net"});
    EXPECT_TRUE(account.has_value()) << account.error().toString();
    return account ? account->url : "";
  }

  IssueRequest request(const std::vector<std::string>& names, pki::Signer& certKey) {
    IssueRequest r;
    for (const auto& n : names) {
      r.identifiers.push_back({"dns", n});
    }
    r.challengeType = "http-01";
    r.csr.dnsNames = names;
    r.certKey = &certKey;
    auto anchors = pki::parsePemChain(pebble_->issuingRootsPem());
    EXPECT_TRUE(anchors.has_value());
    r.trustAnchors = *anchors;
    return r;
  }

  Result<IssuedChain> issue(const std::string& accountUrl, const std::vector<std::string>& names, pki::Signer& certKey,
                            const ProgressFn& progress = {}) {
    return issueCertificate(*client_, AccountRef{*accountKey_, accountUrl}, request(names, certKey),
                            {{"http-01", solver_.get()}}, progress);
  }

  SoftHsmToken softhsm_{"kms-test"};
  std::unique_ptr<PebbleServer> pebble_;
  std::unique_ptr<hsm::Token> token_;
  std::unique_ptr<hsm::KeySigner> accountKey_;
  std::unique_ptr<Transport> transport_;
  std::unique_ptr<AcmeClient> client_;
  std::unique_ptr<Http01Responder> responder_;
  std::unique_ptr<Http01Solver> solver_;
};

TEST_F(AcmePebble, FullIssuanceWithHttp01) {
  startAll();
  EXPECT_FALSE(client_->directory().externalAccountRequired);
  EXPECT_EQ(client_->directory().renewalInfo, std::nullopt);  // Debian's Pebble 2.4.0 has no ARI
  std::string account = registerAccount();
  auto certKey = newSigner("web");
  auto issued = issue(account, {"web.example.com", "www.example.com"}, *certKey);
  ASSERT_TRUE(issued.has_value()) << issued.error().toString();
  ASSERT_GE(issued->chain.size(), 2U);
  const pki::Certificate& leaf = issued->chain.front();
  EXPECT_TRUE(leaf.hasPublicKey(certKey->publicKey()));
  auto names = leaf.dnsNames();
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"web.example.com", "www.example.com"}));
  EXPECT_GE(responder_->served(), 2U);
  EXPECT_TRUE(leaf.ariCertId().has_value());
}

TEST_F(AcmePebble, FindAndDeactivateAccount) {
  startAll();
  auto missing = client_->findAccount(*accountKey_);
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code, Errc::notFound);
  EXPECT_EQ(missing.error().nativeName, "accountDoesNotExist");
  std::string url = registerAccount();
  auto found = client_->findAccount(*accountKey_);
  ASSERT_TRUE(found.has_value()) << found.error().toString();
  EXPECT_EQ(found->url, url);
  auto again = client_->newAccount(*accountKey_, {});
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again->url, url);
  auto gone = client_->deactivate(AccountRef{*accountKey_, url});
  ASSERT_TRUE(gone.has_value()) << gone.error().toString();
  EXPECT_EQ(gone->status, "deactivated");
}

TEST_F(AcmePebble, ExternalAccountBindingRequired) {
  PebbleOptions options;
  options.eabRequired = true;
  options.eabKeys = {{"kid-1", "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"}};
  startAll(options);
  EXPECT_TRUE(client_->directory().externalAccountRequired);
  auto refused = client_->newAccount(*accountKey_, {});
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().nativeName, "externalAccountRequired");
  EXPECT_EQ(refused.error().code, Errc::unauthorized);

  auto hmac = pki::base64UrlDecode("zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W");
  ExternalAccountBinding wrongKid{"kid-9", SecretBytes(*hmac)};
  EXPECT_FALSE(client_->newAccount(*accountKey_, {}, &wrongKid).has_value());
  ExternalAccountBinding eab{"kid-1", SecretBytes(*hmac)};
  auto account = client_->newAccount(*accountKey_, {}, &eab);
  ASSERT_TRUE(account.has_value()) << account.error().toString();
  auto certKey = newSigner("eab-cert");
  EXPECT_TRUE(issue(account->url, {"eab.example.com"}, *certKey).has_value());
}

TEST_F(AcmePebble, KeyRolloverThenIssueWithTheNewKey) {
  startAll();
  std::string url = registerAccount();
  auto newKey = newSigner("account-2");
  auto rolled = client_->changeKey(AccountRef{*accountKey_, url}, *newKey);
  ASSERT_TRUE(rolled.has_value()) << rolled.error().toString();
  // The old key no longer names the account.
  auto old = client_->findAccount(*accountKey_);
  ASSERT_FALSE(old.has_value());
  EXPECT_EQ(old.error().code, Errc::notFound);
  auto found = client_->findAccount(*newKey);
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->url, url);
  auto certKey = newSigner("rolled-cert");
  auto issued = issueCertificate(*client_, AccountRef{*newKey, url}, request({"rolled.example.com"}, *certKey),
                                 {{"http-01", solver_.get()}});
  ASSERT_TRUE(issued.has_value()) << issued.error().toString();

  // Rolling to a key that already has an account is refused. RFC 8555 §7.3.5 says 409; Debian's
  // Pebble 2.4.0 answers 500 serverInternal instead, which kmsd reports as the CA's problem.
  // The 409 path (Errc::alreadyExists) is tested against kms-lab (lab_test.cc).
  auto third = newSigner("account-3");
  ASSERT_TRUE(client_->newAccount(*third, {}).has_value());
  auto conflict = client_->changeKey(AccountRef{*newKey, url}, *third);
  ASSERT_FALSE(conflict.has_value());
  EXPECT_EQ(conflict.error().native, 500) << conflict.error().toString();
  EXPECT_NE(conflict.error().message.find("already in use"), std::string::npos) << conflict.error().toString();
  // The account still answers to the key it had.
  auto still = client_->findAccount(*newKey);
  ASSERT_TRUE(still.has_value()) << still.error().toString();
  EXPECT_EQ(still->url, url);
}

TEST_F(AcmePebble, RevokeWithReason) {
  startAll();
  std::string account = registerAccount();
  auto certKey = newSigner("revoked");
  auto issued = issue(account, {"revoke.example.com"}, *certKey);
  ASSERT_TRUE(issued.has_value()) << issued.error().toString();
  AccountRef ref{*accountKey_, account};
  auto revoked = client_->revoke(ref, issued->chain.front().der(), 4);
  ASSERT_TRUE(revoked.has_value()) << revoked.error().toString();
  auto again = client_->revoke(ref, issued->chain.front().der(), 4);
  ASSERT_FALSE(again.has_value());
  EXPECT_EQ(again.error().nativeName, "alreadyRevoked");
}

TEST_F(AcmePebble, NonceRejectionAtThirtyPercentStillIssues) {
  PebbleOptions options;
  options.nonceRejectPercent = 30;
  startAll(options);
  std::string account = registerAccount();
  for (int i = 0; i < 4; ++i) {
    auto certKey = newSigner("n" + std::to_string(i));
    auto issued = issue(account, {"nonce" + std::to_string(i) + ".example.com"}, *certKey);
    ASSERT_TRUE(issued.has_value()) << issued.error().toString();
  }
  EXPECT_GT(client_->badNonceRetries(), 0U);
}

/// Serves a key authorization that is not the right one.
class WrongAnswerSolver : public ChallengeSolver {
 public:
  explicit WrongAnswerSolver(Http01Responder& r) : responder_(r) {}
  Result<std::string> present(const Authorization&, const Challenge& c, const std::string&) override {
    responder_.put(c.token, c.token + ".not-the-thumbprint");
    return std::string("{}");
  }
  void cleanup(const Authorization&, const Challenge& c, const std::string&) override { responder_.remove(c.token); }

 private:
  Http01Responder& responder_;
};

TEST_F(AcmePebble, WrongHttp01AnswerIsATypedError) {
  startAll();
  std::string account = registerAccount();
  auto certKey = newSigner("wrong");
  WrongAnswerSolver wrong(*responder_);
  auto issued = issueCertificate(*client_, AccountRef{*accountKey_, account}, request({"wrong.example.com"}, *certKey),
                                 {{"http-01", &wrong}});
  ASSERT_FALSE(issued.has_value());
  EXPECT_EQ(issued.error().disposition, Disposition::permanent);
  EXPECT_EQ(issued.error().nativeName, "unauthorized") << issued.error().toString();
  EXPECT_EQ(issued.error().message.rfind("http-01 challenge for wrong.example.com failed: ACME unauthorized", 0), 0U)
      << issued.error().toString();
}

TEST_F(AcmePebble, PebbleStoppedMidOrderIsRetryableAndTheNextRunSucceeds) {
  startAll();
  std::string account = registerAccount();
  auto certKey = newSigner("midway");
  bool stopped = false;
  auto issued = issue(account, {"midway.example.com"}, *certKey, [&](IssueStep step, const Order&) -> Result<void> {
    if (step == IssueStep::orderPending && !stopped) {
      pebble_->stop();
      stopped = true;
    }
    return ok();
  });
  ASSERT_FALSE(issued.has_value());
  EXPECT_EQ(issued.error().disposition, Disposition::retry) << issued.error().toString();
  EXPECT_EQ(issued.error().code, Errc::network) << issued.error().toString();

  pebble_->start();  // a fresh Pebble: it forgot the account
  connect();
  std::string again = registerAccount();
  auto retried = issue(again, {"midway.example.com"}, *certKey);
  ASSERT_TRUE(retried.has_value()) << retried.error().toString();
}

TEST_F(AcmePebble, WrongTrustAnchorsRejectTheChain) {
  startAll();
  std::string account = registerAccount();
  auto certKey = newSigner("untrusted");
  IssueRequest r = request({"untrusted.example.com"}, *certKey);
  auto tlsCa = pki::parsePemChain(test::readFile(pebble_->tlsCaFile()));
  ASSERT_TRUE(tlsCa.has_value());
  r.trustAnchors = *tlsCa;
  auto issued = issueCertificate(*client_, AccountRef{*accountKey_, account}, r, {{"http-01", solver_.get()}});
  ASSERT_FALSE(issued.has_value());
  EXPECT_EQ(issued.error().message.rfind("check chain: chain does not verify", 0), 0U) << issued.error().toString();
}

TEST_F(AcmePebble, AlternateChainIsUsedWhenOnlyItsRootIsTrusted) {
  PebbleOptions options;
  options.alternateRoots = 1;
  startAll(options);
  std::string account = registerAccount();
  auto certKey = newSigner("alt");
  IssueRequest r = request({"alt.example.com"}, *certKey);
  auto defaultIssued = issueCertificate(*client_, AccountRef{*accountKey_, account}, r, {{"http-01", solver_.get()}});
  ASSERT_TRUE(defaultIssued.has_value()) << defaultIssued.error().toString();
  EXPECT_FALSE(defaultIssued->alternate);

  auto altRoot = pki::parsePemChain(pebble_->issuingRootsPem(1));
  ASSERT_TRUE(altRoot.has_value());
  r.trustAnchors = *altRoot;
  auto certKey2 = newSigner("alt2");
  r.certKey = certKey2.get();
  auto altIssued = issueCertificate(*client_, AccountRef{*accountKey_, account}, r, {{"http-01", solver_.get()}});
  ASSERT_TRUE(altIssued.has_value()) << altIssued.error().toString();
  EXPECT_TRUE(altIssued->alternate);
  EXPECT_TRUE(pki::verifyChain(altIssued->chain, *altRoot, std::chrono::system_clock::now()).has_value());
}

TEST_F(AcmePebble, Dns01ThroughAnOperatorHookIncludingAWildcard) {
  startAll();
  // Hooks get a minimal environment: the wrapper says where the DNS test server is.
  const std::string wrapper = softhsm_.sandbox().write(
      "dns-hook.sh", "#!/bin/sh\nexport CHALLTESTSRV=http://127.0.0.1:" + std::to_string(pebble_->dnsManagementPort()) +
                         "\nexec '" KMS_TEST_DATA_DIR "/dns01-hook.sh' \"$@\"\n");
  ::chmod(wrapper.c_str(), 0700);
  std::string account = registerAccount();
  auto certKey = newSigner("dns");
  Dns01HookSolver hook(wrapper);
  IssueRequest r = request({"*.dns.example.com", "dns.example.com"}, *certKey);
  r.challengeType = "dns-01";
  auto issued = issueCertificate(*client_, AccountRef{*accountKey_, account}, r, {{"dns-01", &hook}});
  ASSERT_TRUE(issued.has_value()) << issued.error().toString();
  auto names = issued->chain.front().dnsNames();
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"*.dns.example.com", "dns.example.com"}));
  EXPECT_EQ(responder_->served(), 0U);  // no http-01 involved
}

TEST_F(AcmePebble, FailingDns01HookNamesTheHookAndItsExitStatus) {
  startAll();
  std::string account = registerAccount();
  auto certKey = newSigner("dns-fail");
  std::string hookPath = softhsm_.sandbox().write("hook.sh", "#!/bin/sh\nexit 7\n");
  ::chmod(hookPath.c_str(), 0700);
  Dns01HookSolver hook(hookPath);
  IssueRequest r = request({"fail.example.com"}, *certKey);
  r.challengeType = "dns-01";
  auto issued = issueCertificate(*client_, AccountRef{*accountKey_, account}, r, {{"dns-01", &hook}});
  ASSERT_FALSE(issued.has_value());
  EXPECT_EQ(issued.error().toString(), hookPath + ": dns-01 hook 'present' failed with exit status 7");
}

// --- resuming an order (after a crash, kmsd continues the order it recorded) -----------

/// Steps recorded by issueCertificate's progress callback, with the order URL each time.
struct Steps {
  std::vector<std::pair<IssueStep, std::string>> seen;
  ProgressFn fn() {
    return [this](IssueStep step, const Order& order) -> Result<void> {
      seen.emplace_back(step, order.url);
      return ok();
    };
  }
};

class AcmePebbleResume : public AcmePebble {
 protected:
  void SetUp() override {
    startAll();
    account_ = registerAccount();
    certKey_ = newSigner("resumed");
  }
  AccountRef ref() { return AccountRef{*accountKey_, account_}; }

  /// A new order for `name`, left pending.
  Order pendingOrder(const std::string& name) {
    auto order = client_->newOrder(ref(), {{"dns", name}});
    EXPECT_TRUE(order.has_value()) << order.error().toString();
    EXPECT_EQ(order->status, "pending");
    return *order;
  }

  /// Answers every authorization of `order` by hand and waits until the order is ready.
  Order readyOrder(const std::string& name) {
    Order order = pendingOrder(name);
    for (const std::string& url : order.authorizations) {
      auto authz = client_->getAuthorization(ref(), url);
      EXPECT_TRUE(authz.has_value()) << authz.error().toString();
      for (const Challenge& c : authz->challenges) {
        if (c.type == "http-01") {
          responder_->put(c.token, c.token + "." + accountKey_->publicKey().jwkThumbprint());
          EXPECT_TRUE(client_->respondChallenge(ref(), c.url, "{}").has_value());
        }
      }
      auto done = client_->pollAuthorization(ref(), url);
      EXPECT_TRUE(done.has_value()) << done.error().toString();
      EXPECT_EQ(done->status, "valid");
    }
    auto ready = client_->pollOrder(ref(), order.url);
    EXPECT_TRUE(ready.has_value()) << ready.error().toString();
    EXPECT_EQ(ready->status, "ready");
    return *ready;
  }

  Result<IssuedChain> resume(const std::string& name, const std::string& orderUrl, Steps& steps) {
    IssueRequest r = request({name}, *certKey_);
    r.resumeOrderUrl = orderUrl;
    return issueCertificate(*client_, ref(), r, {{"http-01", solver_.get()}}, steps.fn());
  }

  std::string account_;
  std::unique_ptr<hsm::KeySigner> certKey_;
};

TEST_F(AcmePebbleResume, APendingOrderIsAnsweredFinalizedAndDownloaded) {
  Order order = pendingOrder("pending.example.com");
  Steps steps;
  auto issued = resume("pending.example.com", order.url, steps);
  ASSERT_TRUE(issued.has_value()) << issued.error().toString();
  EXPECT_EQ(issued->orderUrl, order.url);  // the same order, not a new one
  EXPECT_TRUE(issued->chain.front().hasPublicKey(certKey_->publicKey()));
  // No orderPending step: no order was created.
  ASSERT_EQ(steps.seen.size(), 2U);
  EXPECT_EQ(steps.seen[0], std::make_pair(IssueStep::authorized, order.url));
  EXPECT_EQ(steps.seen[1], std::make_pair(IssueStep::finalizing, order.url));
}

TEST_F(AcmePebbleResume, AnInvalidOrderIsReplacedByANewOne) {
  // The challenge answered with nothing behind it (the responder knows no token): Pebble
  // gets a 404, the authorization and the order become invalid.
  Order order = pendingOrder("invalid.example.com");
  auto authz = client_->getAuthorization(ref(), order.authorizations.front());
  ASSERT_TRUE(authz.has_value()) << authz.error().toString();
  for (const Challenge& c : authz->challenges) {
    if (c.type == "http-01") {
      ASSERT_TRUE(client_->respondChallenge(ref(), c.url, "{}").has_value());
    }
  }
  auto failed = client_->pollOrder(ref(), order.url);
  ASSERT_TRUE(failed.has_value()) << failed.error().toString();
  ASSERT_EQ(failed->status, "invalid");
  Steps steps;
  auto issued = resume("invalid.example.com", order.url, steps);
  ASSERT_TRUE(issued.has_value()) << issued.error().toString();
  EXPECT_NE(issued->orderUrl, order.url);
  ASSERT_EQ(steps.seen.size(), 3U);
  EXPECT_EQ(steps.seen[0], std::make_pair(IssueStep::orderPending, issued->orderUrl));
}

TEST_F(AcmePebbleResume, AReadyOrderIsFinalizedWithoutAnsweringAgain) {
  Order order = readyOrder("ready.example.com");
  const std::uint64_t served = responder_->served();
  Steps steps;
  auto issued = resume("ready.example.com", order.url, steps);
  ASSERT_TRUE(issued.has_value()) << issued.error().toString();
  EXPECT_EQ(issued->orderUrl, order.url);
  EXPECT_EQ(responder_->served(), served);  // Pebble validated nothing more
  ASSERT_EQ(steps.seen.size(), 2U);
  EXPECT_EQ(steps.seen[0].first, IssueStep::authorized);
  EXPECT_EQ(steps.seen[1].first, IssueStep::finalizing);
}

TEST_F(AcmePebbleResume, AProcessingOrValidOrderIsOnlyPolledAndDownloaded) {
  // Finalized by hand, as a crash right after the finalize request leaves it: the order is
  // processing or already valid when resumed; no second CSR goes out (Pebble would refuse a
  // finalize of an order that is not ready).
  Order order = readyOrder("valid.example.com");
  IssueRequest r = request({"valid.example.com"}, *certKey_);
  auto csr = pki::buildCsr(r.csr, *certKey_);
  ASSERT_TRUE(csr.has_value()) << csr.error().toString();
  auto finalized = client_->finalize(ref(), order, *csr);
  ASSERT_TRUE(finalized.has_value()) << finalized.error().toString();
  ASSERT_TRUE(finalized->status == "processing" || finalized->status == "valid") << finalized->status;
  Steps steps;
  auto issued = resume("valid.example.com", order.url, steps);
  ASSERT_TRUE(issued.has_value()) << issued.error().toString();
  EXPECT_EQ(issued->orderUrl, order.url);
  EXPECT_TRUE(steps.seen.empty()) << steps.seen.size();  // nothing left to record
  // Resuming the now valid order again gives the same certificate.
  Steps again;
  auto second = resume("valid.example.com", order.url, again);
  ASSERT_TRUE(second.has_value()) << second.error().toString();
  EXPECT_EQ(second->pem, issued->pem);
}

TEST_F(AcmePebbleResume, AValidOrderResumedWithAnotherKeyFailsTheKeyCheck) {
  Order order = pendingOrder("other-key.example.com");
  Steps steps;
  ASSERT_TRUE(resume("other-key.example.com", order.url, steps).has_value());
  certKey_ = newSigner("not-the-orders");
  auto wrong = resume("other-key.example.com", order.url, steps);
  ASSERT_FALSE(wrong.has_value());
  EXPECT_EQ(wrong.error().message, "check key: the certificate's public key is not the HSM key");
}

}  // namespace
}  // namespace kms::acme
