// The ACME client's operations against a real Pebble: accounts, EAB, key rollover, an order
// walked through newOrder, challenges (http-01 through the built-in responder, dns-01
// through an operator hook), finalize and the checked download, revocation, nonce
// rejection, failures. How kmsd sequences and resumes these operations is tested through
// kmsd (kmsd_once_test, crash_test).
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <algorithm>
#include <utility>
#include <vector>

#include "acme/client.h"
#include "acme/http01_responder.h"
#include "acme/issuer.h"
#include "acme/jws.h"
#include "acme_walk.h"
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

  Result<IssuedChain> issue(const std::string& accountUrl, const std::vector<std::string>& names, pki::Signer& certKey) {
    return test::walkOrder(*client_, AccountRef{*accountKey_, accountUrl}, request(names, certKey),
                           test::presentWith(*solver_));
  }
  Result<IssuedChain> issue(const std::string& accountUrl, const IssueRequest& r) {
    return test::walkOrder(*client_, AccountRef{*accountKey_, accountUrl}, r, test::presentWith(*solver_));
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
  auto issued = test::walkOrder(*client_, AccountRef{*newKey, url}, request({"rolled.example.com"}, *certKey),
                                test::presentWith(*solver_));
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
  auto issued = test::walkOrder(*client_, AccountRef{*accountKey_, account}, request({"wrong.example.com"}, *certKey),
                                test::presentWith(wrong));
  ASSERT_FALSE(issued.has_value());
  // The challenge's problem document, as the authorization carries it.
  EXPECT_EQ(issued.error().nativeName, "unauthorized") << issued.error().toString();
  EXPECT_NE(issued.error().message.find("ACME unauthorized"), std::string::npos) << issued.error().toString();
  EXPECT_GE(responder_->served(), 1U);  // Pebble fetched the wrong answer
}

TEST_F(AcmePebble, PebbleStoppedMidOrderIsARetryableNetworkError) {
  startAll();
  std::string account = registerAccount();
  auto certKey = newSigner("midway");
  AccountRef ref{*accountKey_, account};
  auto order = client_->newOrder(ref, {{"dns", "midway.example.com"}});
  ASSERT_TRUE(order.has_value()) << order.error().toString();
  pebble_->stop();
  auto authz = client_->getAuthorization(ref, order->authorizations.front());
  ASSERT_FALSE(authz.has_value());
  EXPECT_EQ(authz.error().disposition, Disposition::retry) << authz.error().toString();
  EXPECT_EQ(authz.error().code, Errc::network) << authz.error().toString();

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
  auto issued = issue(account, r);
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
  auto defaultIssued = issue(account, r);
  ASSERT_TRUE(defaultIssued.has_value()) << defaultIssued.error().toString();
  EXPECT_FALSE(defaultIssued->alternate);

  auto altRoot = pki::parsePemChain(pebble_->issuingRootsPem(1));
  ASSERT_TRUE(altRoot.has_value());
  r.trustAnchors = *altRoot;
  auto certKey2 = newSigner("alt2");
  r.certKey = certKey2.get();
  auto altIssued = issue(account, r);
  ASSERT_TRUE(altIssued.has_value()) << altIssued.error().toString();
  EXPECT_TRUE(altIssued->alternate);
  EXPECT_TRUE(pki::verifyChain(altIssued->chain, *altRoot, std::chrono::system_clock::now()).has_value());
}

/// dns-01 through `hook`'s `present`, waited for (kmsd waits for it from its event loop).
test::PresentFn presentThroughHook(const Dns01Hook& hook) {
  return [&hook](const Authorization& a, const Challenge& c, const std::string& keyAuth) -> Result<std::string> {
    auto child = hook.start("present", a, c, keyAuth);
    if (!child) {
      return fail(child.error());
    }
    auto status = (*child)->wait(std::chrono::seconds(60));
    if (!status) {
      return fail(status.error());
    }
    if (!exitedCleanly(*status)) {
      return fail(Errc::io, "present: " + describeExit(*status), hook.hook());
    }
    return std::string("{}");
  };
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
  Dns01Hook hook(wrapper);
  IssueRequest r = request({"*.dns.example.com", "dns.example.com"}, *certKey);
  r.challengeType = "dns-01";
  auto issued = test::walkOrder(*client_, AccountRef{*accountKey_, account}, r, presentThroughHook(hook));
  ASSERT_TRUE(issued.has_value()) << issued.error().toString();
  auto names = issued->chain.front().dnsNames();
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"*.dns.example.com", "dns.example.com"}));
  EXPECT_EQ(responder_->served(), 0U);  // no http-01 involved
}

TEST_F(AcmePebble, Dns01HookGetsTheRecordAndValueInItsEnvironmentAndItsExitStatusIsKept) {
  startAll();
  std::string account = registerAccount();
  const std::string envFile = softhsm_.sandbox().file("hook.env");
  std::string hookPath = softhsm_.sandbox().write(
      "hook.sh", "#!/bin/sh\necho \"$1 $KMS_DOMAIN $KMS_RECORD $KMS_VALIDATION\" > '" + envFile + "'\nexit 7\n");
  ::chmod(hookPath.c_str(), 0700);
  Dns01Hook hook(hookPath);
  AccountRef ref{*accountKey_, account};
  auto order = client_->newOrder(ref, {{"dns", "fail.example.com"}});
  ASSERT_TRUE(order.has_value()) << order.error().toString();
  auto authz = client_->getAuthorization(ref, order->authorizations.front());
  ASSERT_TRUE(authz.has_value()) << authz.error().toString();
  auto ch = std::find_if(authz->challenges.begin(), authz->challenges.end(),
                         [](const Challenge& c) { return c.type == "dns-01"; });
  ASSERT_NE(ch, authz->challenges.end());
  const std::string keyAuth = keyAuthorization(ch->token, accountKey_->publicKey());
  auto child = hook.start("present", *authz, *ch, keyAuth);
  ASSERT_TRUE(child.has_value()) << child.error().toString();
  auto status = (*child)->wait(std::chrono::seconds(60));
  ASSERT_TRUE(status.has_value()) << status.error().toString();
  EXPECT_EQ(describeExit(*status), "exit status 7");
  EXPECT_EQ(test::readFile(envFile),
            "present fail.example.com _acme-challenge.fail.example.com " + dns01TxtValue(keyAuth) + "\n");
}

}  // namespace
}  // namespace kms::acme
