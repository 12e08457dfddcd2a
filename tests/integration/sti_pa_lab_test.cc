// The STI-PA client against kms-lab's STI-PA over HTTPS: tokens, the CA list, the CRL,
// logging in again after the access token expired, and the 403 allow-listing hint.
#include <gtest/gtest.h>

#include <thread>

#include "must.h"
#include "config/config.h"
#include "lab_process.h"
#include "pki/signer.h"
#include "sandbox.h"
#include "sti_pa/client.h"

namespace kms::sti_pa {
namespace {

class StiPaLab : public ::testing::Test {
 protected:
  void start(std::vector<std::string> switches = {}) {
    lab_ = std::make_unique<test::LabProcess>(sandbox_.file("lab"), std::move(switches));
    auto cfg = config::loadConfigFile(lab_->file("kmsd.toml"), {});
    ASSERT_TRUE(cfg.has_value()) << config::formatErrors(cfg.error());
    http::TransportOptions topts;
    topts.caBundle = cfg->acme.caBundle;
    transport_ = test::must(http::makeCurlTransport(topts));
    StiPaOptions o;
    o.url = cfg->stiPa->url;
    o.userId = cfg->stiPa->userId;
    o.passwordFile = cfg->stiPa->passwordFile;
    o.trustAnchors = test::must(pki::parsePemChain(test::readFile(cfg->stiPa->trustAnchor.value())));
    client_ = StiPaClient::create(*transport_, o);
    staRoots_ = test::must(pki::parsePemChain(test::readFile(lab_->file("sti-ca-root.pem"))));
    accountKey_ = test::must(pki::SoftwareKey::generate());
  }

  test::Sandbox sandbox_;
  std::unique_ptr<test::LabProcess> lab_;
  std::unique_ptr<http::Transport> transport_;
  std::unique_ptr<StiPaClient> client_;
  std::vector<pki::Certificate> staRoots_;
  std::unique_ptr<pki::SoftwareKey> accountKey_;
};

TEST_F(StiPaLab, TokenIsCachedUntilPresented) {
  start();
  auto a = client_->spcToken("1234", accountKey_->publicKey());
  ASSERT_TRUE(a.has_value()) << a.error().toString();
  EXPECT_EQ(a->spc, "1234");
  EXPECT_EQ(a->fingerprint, accountKey_->publicKey().spkiFingerprint());
  EXPECT_FALSE(a->crlUrl.empty());
  auto b = client_->spcToken("1234", accountKey_->publicKey());
  ASSERT_TRUE(b.has_value()) << b.error().toString();
  EXPECT_EQ(b->jti, a->jti);  // cached
  client_->markUsed(a->jti);
  auto c = client_->spcToken("1234", accountKey_->publicKey());
  ASSERT_TRUE(c.has_value()) << c.error().toString();
  EXPECT_NE(c->jti, a->jti);  // a presented token is not handed out again
  client_->forgetTokens();
  auto d = client_->spcToken("1234", accountKey_->publicKey());
  ASSERT_TRUE(d.has_value()) << d.error().toString();
  EXPECT_NE(d->jti, c->jti);
  EXPECT_EQ(client_->logins(), 1);
  EXPECT_EQ(client_->tokenRequests(), 3);
}

TEST_F(StiPaLab, CaListAndCrl) {
  start();
  auto list = client_->caList();
  ASSERT_TRUE(list.has_value()) << list.error().toString();
  ASSERT_EQ(list->roots.size(), 1U);
  EXPECT_EQ(list->roots.front().der(), staRoots_.front().der());
  EXPECT_EQ(list->sequence, 1);
  EXPECT_GT(list->exp, std::chrono::duration_cast<std::chrono::seconds>(
                           std::chrono::system_clock::now().time_since_epoch()).count());
  // The kept copy reads back the same.
  auto kept = readKeptCaList(list->jws);
  ASSERT_TRUE(kept.has_value()) << kept.error().toString();
  EXPECT_EQ(kept->sequence, list->sequence);
  EXPECT_EQ(kept->roots.front().der(), list->roots.front().der());
  auto crl = client_->crl();
  ASSERT_TRUE(crl.has_value()) << crl.error().toString();
  EXPECT_GT(crl->size(), 0U);
}

TEST_F(StiPaLab, TwoOrdersForOneSpcNeverShareAToken) {
  start();
  ASSERT_TRUE(client_->spcToken("1234", accountKey_->publicKey()).has_value());  // cached, not presented
  std::string a;
  std::string b;
  std::thread other([&] { a = client_->takeSpcToken("1234", accountKey_->publicKey())->jti; });
  b = client_->takeSpcToken("1234", accountKey_->publicKey())->jti;
  other.join();
  EXPECT_FALSE(a.empty());
  EXPECT_NE(a, b);  // one got the cached token, the other a new one
  EXPECT_EQ(client_->tokenRequests(), 2);
}

TEST_F(StiPaLab, LogsInAgainWhenTheAccessTokenExpired) {
  start();
  ASSERT_TRUE(client_->spcToken("1234", accountKey_->publicKey()).has_value());
  std::string out;
  ASSERT_TRUE(lab_->labSwitch("/lab/expire-access-tokens", "{}", &out)) << out;  // as after its lifetime
  client_->forgetTokens();
  auto again = client_->spcToken("1234", accountKey_->publicKey());
  ASSERT_TRUE(again.has_value()) << again.error().toString();
  EXPECT_EQ(client_->logins(), 2);
}

TEST_F(StiPaLab, ForbiddenCarriesTheAllowListHint) {
  start({"--sti-pa-allowed-ip", "192.0.2.1"});
  auto t = client_->spcToken("1234", accountKey_->publicKey());
  ASSERT_FALSE(t.has_value());
  EXPECT_EQ(t.error().code, Errc::unauthorized);
  EXPECT_NE(t.error().message.find("HTTP 403"), std::string::npos) << t.error().toString();
  EXPECT_NE(t.error().message.find("allow-listed at the STI-PA"), std::string::npos) << t.error().toString();
}

TEST_F(StiPaLab, UrlsOffTheStiPaHostAreRefused) {
  start({"--foreign-urls"});
  auto t = client_->spcToken("1234", accountKey_->publicKey());
  ASSERT_FALSE(t.has_value());
  EXPECT_EQ(t.error().code, Errc::protocol);
  const std::string host = lab_->baseUrl().substr(8);
  const std::string port = host.substr(host.find(':') + 1);
  EXPECT_EQ(t.error().message, "x5u is not an https URL on the STI-PA's host " + host +
                                   " or in [sti_pa] allowed_hosts: https://127.0.0.2:" + port +
                                   "/sti-pa/download/v1/certificate/certificateId_1.crt");
  // Listed, the other host is tried (nothing listens there: a network error, not a refusal).
  StiPaOptions o;
  auto cfg = config::loadConfigFile(lab_->file("kmsd.toml"), {});
  o.url = cfg->stiPa->url;
  o.userId = cfg->stiPa->userId;
  o.passwordFile = cfg->stiPa->passwordFile;
  o.trustAnchors = test::must(pki::parsePemChain(test::readFile(cfg->stiPa->trustAnchor.value())));
  o.allowedHosts = {"127.0.0.2:" + port};
  auto listed = StiPaClient::create(*transport_, o)->spcToken("1234", accountKey_->publicKey());
  ASSERT_FALSE(listed.has_value());
  EXPECT_EQ(listed.error().message.find("allowed_hosts"), std::string::npos) << listed.error().toString();
  EXPECT_EQ(listed.error().code, Errc::network) << listed.error().toString();
}

TEST_F(StiPaLab, ServerErrorsAreRetryable) {
  start({"--fail-sti-pa"});
  auto t = client_->spcToken("1234", accountKey_->publicKey());
  ASSERT_FALSE(t.has_value());
  EXPECT_EQ(t.error().disposition, Disposition::retry) << t.error().toString();
}

}  // namespace
}  // namespace kms::sti_pa
