// kms-lab as a black box: started as a child process in a sandbox, driven over HTTPS with
// the project's curl transport and ACME client.

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>
#include <openssl/x509.h>
#include <nlohmann/json.hpp>

#include "acme/client.h"
#include "acme/issuer.h"
#include "acme/jws.h"
#include "acme_walk.h"
#include "http/transport.h"
#include "lab_process.h"
#include "pki/csr.h"
#include "pki/ec_key.h"
#include "pki/encoding.h"
#include "pki/jose.h"
#include "pki/signer.h"
#include "pki/x509.h"
#include "sandbox.h"

namespace kms::test {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;

constexpr const char* kSpc1234 = "MAigBhYEMTIzNA==";

/// A sandbox with a lab in <sandbox>/lab and an HTTPS transport trusting its TLS CA.
class LabTest : public ::testing::Test {
 protected:
  void start(std::vector<std::string> flags = {}) {
    lab_ = std::make_unique<LabProcess>(dir(), std::move(flags));
    http::TransportOptions options;
    options.caBundle = lab_->file("tls-ca.pem");
    options.requestTimeout = 10000ms;
    auto t = http::makeCurlTransport(options);
    ASSERT_TRUE(t.has_value()) << t.error().toString();
    transport_ = std::move(*t);
  }
  [[nodiscard]] std::string dir() const { return sandbox_.path() + "/lab"; }

  http::HttpResponse send(const std::string& method, const std::string& url, const std::string& body = "",
                          std::vector<std::pair<std::string, std::string>> headers = {}) {
    if (!body.empty()) {
      headers.emplace_back("Content-Type", "application/json");
    }
    auto r = transport_->send(http::HttpRequest{method, url, headers, body});
    if (!r) {
      ADD_FAILURE() << r.error().toString();
      return {};
    }
    return *r;
  }

  std::string stiPa(const std::string& path) const { return lab_->baseUrl() + "/sti-pa/api/v1" + path; }

  std::string login() {
    std::string password = readFile(lab_->file("sti-pa.password"));
    password.erase(password.find_last_not_of("\r\n") + 1);
    auto r = send("POST", stiPa("/auth/login"), json{{"userId", "kms-lab"}, {"password", password}}.dump());
    EXPECT_EQ(r.status, 200) << r.body;
    return json::parse(r.body).value("accessToken", "");
  }

  http::HttpResponse requestToken(const std::string& access, const std::string& spc, const std::string& tkvalue,
                                  const std::string& fingerprint) {
    json body{{"atc", {{"tktype", "TNAuthList"}, {"tkvalue", tkvalue}, {"ca", false}, {"fingerprint", fingerprint}}}};
    return send("POST", stiPa("/account/" + spc + "/token"), body.dump(), {{"Authorization", access}});
  }

  /// Verifies a compact JWS with its x5u certificate (fetched) chained to the STI-PA root;
  /// returns the payload.
  json verifyStiPaJws(const std::string& compact) {
    auto jws = pki::parseCompactJws(compact);
    EXPECT_TRUE(jws.has_value());
    json header = json::parse(jws->protectedJson);
    EXPECT_EQ(header["alg"], "ES256");
    std::string x5u = header.value("x5u", "");
    EXPECT_TRUE(x5u.starts_with("https://127.0.0.1:"));
    auto certReply = send("GET", x5u);
    EXPECT_EQ(certReply.status, 200);
    auto signer = pki::Certificate::fromPem(certReply.body);
    EXPECT_TRUE(signer.has_value());
    auto root = pki::Certificate::fromPem(readFile(lab_->file("sti-pa-root.pem")));
    EXPECT_TRUE(root.has_value());
    auto chain = pki::verifyChain({*signer}, {*root}, std::chrono::system_clock::now());
    EXPECT_TRUE(chain.has_value()) << chain.error().toString();
    auto key = pki::EcPublicKey::fromSpkiDer(signer->spkiDer());
    EXPECT_TRUE(key.has_value());
    auto good = key->verifyEs256(pki::asBytes(jws->signingInput), jws->signature);
    EXPECT_TRUE(good.has_value() && *good);
    return json::parse(jws->payload);
  }

  Sandbox sandbox_;
  std::unique_ptr<LabProcess> lab_;
  std::unique_ptr<http::Transport> transport_;
};

TEST_F(LabTest, LabFilesWritesLabJsonKmsdTomlAndToken) {
  start();
  json lab = json::parse(readFile(lab_->file("lab.json")));
  EXPECT_EQ(lab["base_url"], lab_->baseUrl());
  EXPECT_EQ(lab["sti_pa_url"], lab_->baseUrl() + "/sti-pa/api/v1");
  EXPECT_EQ(lab["acme_directory_url"], lab_->baseUrl() + "/acme/directory");
  EXPECT_EQ(lab["crl_url"], lab_->baseUrl() + "/sti-pa/download/v1/crl");
  EXPECT_EQ(lab["eab_kid"], "kid-1");
  for (const char* key : {"sti_pa_password_file", "sti_pa_trust_anchor", "tls_ca_file", "eab_key_file",
                          "sti_ca_trust_anchors", "sti_pa_crl_signer", "kmsd_toml", "softhsm2_conf", "hsm_pin_file"}) {
    EXPECT_TRUE(std::filesystem::exists(lab[key].get<std::string>())) << key;
  }
  std::string toml = readFile(lab_->file("kmsd.toml"));
  EXPECT_NE(toml.find("url = \"" + lab_->baseUrl() + "/sti-pa/api/v1\""), std::string::npos) << toml;
  EXPECT_NE(toml.find("base_url = \"" + lab_->baseUrl() + "/sti-cr/\""), std::string::npos) << toml;
  EXPECT_NE(toml.find("spc = \"1234\""), std::string::npos);
  // kmsd is built before this test (a dependency of lab_tests): the config must load.
  std::string out;
  int rc = runCommand("SOFTHSM2_CONF=" + lab_->file("softhsm2.conf") + " " + KMS_KMSD_BINARY + " --config " +
                          lab_->file("kmsd.toml") + " --check-config",
                      &out);
  EXPECT_EQ(rc, 0) << out;
}

TEST_F(LabTest, LabStiPaLoginAndBadPassword) {
  start();
  EXPECT_FALSE(login().empty());
  auto bad = send("POST", stiPa("/auth/login"), R"({"userId":"kms-lab","password":"nope"})");
  EXPECT_EQ(bad.status, 401);
  EXPECT_EQ(json::parse(bad.body)["status"], "failed");
  EXPECT_EQ(json::parse(bad.body)["message"], "invalid credentials");
}

TEST_F(LabTest, LabStiPaTokenVerifiesWithX5uChainedToRoot) {
  start();
  auto key = pki::SoftwareKey::generate();
  ASSERT_TRUE(key.has_value());
  std::string fingerprint = (*key)->publicKey().spkiFingerprint();
  auto r = requestToken(login(), "1234", kSpc1234, fingerprint);
  ASSERT_EQ(r.status, 200) << r.body;
  json body = json::parse(r.body);
  EXPECT_EQ(body["status"], "success");
  EXPECT_EQ(body["message"], "SPC token for spc: 1234 is created successfully");
  EXPECT_EQ(body["crl"], lab_->baseUrl() + "/sti-pa/download/v1/crl");
  json payload = verifyStiPaJws(body["token"].get<std::string>());
  EXPECT_GT(
      payload["exp"].get<std::int64_t>(),
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count());
  EXPECT_FALSE(payload.value("jti", "").empty());
  EXPECT_EQ(payload["atc"]["tkvalue"], kSpc1234);
  EXPECT_EQ(payload["atc"]["fingerprint"], fingerprint);
  EXPECT_EQ(payload["atc"]["ca"], false);
}

TEST_F(LabTest, LabStiPaRefusesOtherSpcBadTokenAndMissingLogin) {
  start();
  std::string access = login();
  auto key = pki::SoftwareKey::generate();
  ASSERT_TRUE(key.has_value());
  std::string fp = (*key)->publicKey().spkiFingerprint();
  auto other = requestToken(access, "281K", "MAigBhYEMjgxSw==", fp);
  EXPECT_EQ(other.status, 403) << other.body;
  EXPECT_EQ(json::parse(other.body)["message"], "SPC 281K is not assigned to this account");
  auto mismatch = requestToken(access, "1234", "MAigBhYEMjgxSw==", fp);
  EXPECT_EQ(mismatch.status, 400) << mismatch.body;
  auto noLogin = requestToken("not-a-token", "1234", kSpc1234, fp);
  EXPECT_EQ(noLogin.status, 401);
  auto bearer = requestToken("Bearer " + access, "1234", kSpc1234, fp);
  EXPECT_EQ(bearer.status, 401);
}

TEST_F(LabTest, LabStiPaCaListAndCrl) {
  start();
  auto r = send("GET", stiPa("/ca-list"), "", {{"Authorization", login()}});
  ASSERT_EQ(r.status, 200) << r.body;
  json payload = verifyStiPaJws(json::parse(r.body)["caList"].get<std::string>());
  ASSERT_EQ(payload["trustList"].size(), 1U);
  EXPECT_EQ(payload["trustList"][0], readFile(lab_->file("sti-ca-root.pem")));
  EXPECT_EQ(send("GET", stiPa("/ca-list")).status, 401);

  auto crl = send("GET", lab_->baseUrl() + "/sti-pa/download/v1/crl");
  ASSERT_EQ(crl.status, 200);
  EXPECT_EQ(crl.header("content-type").value_or(""), "application/pkix-crl");
  const auto* p = reinterpret_cast<const unsigned char*>(crl.body.data());
  X509_CRL* parsed = d2i_X509_CRL(nullptr, &p, static_cast<long>(crl.body.size()));
  ASSERT_NE(parsed, nullptr);
  X509_CRL_free(parsed);
}

TEST_F(LabTest, LabAcmeDirectoryAnswers) {
  start();
  auto client = acme::AcmeClient::create(*transport_, {lab_->baseUrl() + "/acme/directory"});
  ASSERT_TRUE(client.has_value()) << client.error().toString();
  const auto& dir = (*client)->directory();
  EXPECT_TRUE(dir.externalAccountRequired);
  EXPECT_EQ(dir.renewalInfo.value_or(""), lab_->baseUrl() + "/acme/renewal-info");
  EXPECT_EQ(dir.newNonce, lab_->baseUrl() + "/acme/new-nonce");
}

TEST_F(LabTest, HostileDirectoryUrlsAreRefusedUnsent) {
  start({"--foreign-urls"});
  auto client = acme::AcmeClient::create(*transport_, {lab_->baseUrl() + "/acme/directory"});
  ASSERT_TRUE(client.has_value()) << client.error().toString();
  const std::string origin = lab_->baseUrl();  // https://127.0.0.1:PORT
  const std::string port = origin.substr(origin.rfind(':') + 1);
  const std::string refusing = "refusing a URL from the CA that is not on the directory's origin " + origin + ": ";
  // newAccount is on another host: refused before a nonce is even fetched for it.
  auto key = *pki::SoftwareKey::generate();
  auto account = (*client)->newAccount(*key, {});
  ASSERT_FALSE(account.has_value());
  EXPECT_EQ(account.error().code, Errc::protocol);
  EXPECT_EQ(account.error().message, refusing + "https://127.0.0.2:" + port + "/acme/new-account");
  // newOrder is on the origin, but newNonce is plain http on the same host and port:
  // refused before any request.
  auto order = (*client)->newOrder(acme::AccountRef{*key, origin + "/acme/acct/1"}, {{"dns", "a.example"}});
  ASSERT_FALSE(order.has_value());
  EXPECT_EQ(order.error().code, Errc::protocol);
  EXPECT_EQ(order.error().message, refusing + "http://127.0.0.1:" + port + "/acme/new-nonce");
  auto info = (*client)->renewalInfo("x");
  ASSERT_FALSE(info.has_value());
  EXPECT_EQ(info.error().message, refusing + "file:///etc/passwd/x");
  // Nothing reached the lab but the directory request.
  EXPECT_EQ(lab_->log().find("new-nonce"), std::string::npos) << lab_->log();
}

/// Answers tkauth-01 with a fresh SPC token from the lab STI-PA.
class TokenSolver : public acme::ChallengeSolver {
 public:
  explicit TokenSolver(std::function<std::string()> fetch) : fetch_(std::move(fetch)) {}
  Result<std::string> present(const acme::Authorization& /*authz*/, const acme::Challenge& challenge,
                              const std::string& /*keyAuthorization*/) override {
    seenTokenAuthority = challenge.tokenAuthority.value_or("");
    return json{{"atc", fetch_()}}.dump();
  }
  void cleanup(const acme::Authorization&, const acme::Challenge&, const std::string&) override {}
  std::string seenTokenAuthority;

 private:
  std::function<std::string()> fetch_;
};

class LabAcmeFlow : public LabTest {
 protected:
  struct Outcome {
    Result<acme::IssuedChain> issued = fail(Errc::internal, "not run");
    std::unique_ptr<acme::AcmeClient> client;
    std::unique_ptr<pki::SoftwareKey> accountKey;
    std::string accountUrl;
  };

  /// A client of the lab CA with a new account (nothing issued yet).
  Outcome withAccount() {
    Outcome out;
    auto client = acme::AcmeClient::create(*transport_, {lab_->baseUrl() + "/acme/directory"});
    EXPECT_TRUE(client.has_value());
    out.client = std::move(*client);
    out.accountKey = std::move(*pki::SoftwareKey::generate());
    out.accountUrl = registerAccount(*out.client, *out.accountKey);
    return out;
  }

  Outcome issue(const std::string& fingerprintFlavour = "spki") {
    Outcome out = withAccount();
    certKey_ = std::move(*pki::SoftwareKey::generate());
    out.issued = issueWith(out, fingerprintFlavour);
    return out;
  }

  /// The request for SPC 1234 with certKey_.
  acme::IssueRequest spc1234Request() {
    acme::IssueRequest request;
    request.identifiers = {{"TNAuthList", kSpc1234}};
    request.challengeType = "tkauth-01";
    request.csr = *pki::CsrRequest::shaken("1234", "Example Telecom");
    request.certKey = certKey_.get();
    request.trustAnchors = {*pki::Certificate::fromPem(readFile(lab_->file("sti-ca-root.pem")))};
    return request;
  }

  /// Answers tkauth-01 with a token the lab STI-PA issues for SPC 1234 to `out`'s account key.
  std::unique_ptr<TokenSolver> solverFor(Outcome& out, const std::string& fingerprintFlavour) {
    std::string access = login();
    const pki::EcPublicKey& pub = out.accountKey->publicKey();
    std::string fp = fingerprintFlavour == "spki" ? pub.spkiFingerprint() : pub.thumbprintFingerprint();
    return std::make_unique<TokenSolver>([this, access, fp] {
      auto r = requestToken(access, "1234", kSpc1234, fp);
      return json::parse(r.body).value("token", "");
    });
  }

  /// A certificate for SPC 1234 with the account of `out` (and certKey_), walked through the
  /// ACME operations (tests/support/acme_walk.h).
  Result<acme::IssuedChain> issueWith(Outcome& out, const std::string& fingerprintFlavour = "spki") {
    auto solver = solverFor(out, fingerprintFlavour);
    acme::AccountRef ref{*out.accountKey, out.accountUrl};
    auto issued = test::walkOrder(*out.client, ref, spc1234Request(), test::presentWith(*solver));
    if (issued.has_value()) {
      EXPECT_EQ(solver->seenTokenAuthority, lab_->baseUrl() + "/sti-pa/api/v1");
    }
    return issued;
  }

  /// A new account at the lab CA (with the lab's EAB key); returns its URL.
  std::string registerAccount(acme::AcmeClient& client, pki::Signer& key) {
    std::string eabText = readFile(lab_->file("eab.key"));
    eabText.erase(eabText.find_last_not_of("\r\n") + 1);
    auto hmac = pki::base64UrlDecode(eabText);
    EXPECT_TRUE(hmac.has_value());
    acme::ExternalAccountBinding eab{"kid-1", SecretBytes(*hmac)};
    auto account = client.newAccount(key, {"mailto:noc@example.net"}, &eab);
    EXPECT_TRUE(account.has_value()) << account.error().toString();
    return account.has_value() ? account->url : "";
  }

  std::unique_ptr<pki::SoftwareKey> certKey_;
};

TEST_F(LabAcmeFlow, AnOrderProcessingAnswersAnEarlyReadWith429AndTheTimeToComeBack) {
  // The CA takes 3 s to issue and answers a read of the processing order before then with
  // 429 and Retry-After (how kmsd honours it: Shaken.FinalizeAnsweringProcessingIsPolledOnly…;
  // how it resumes such an order after a crash: Crash.KilledRightAfterEveryStepResumes).
  start({"--processing-seconds", "3"});
  Outcome out = withAccount();
  ASSERT_NE(out.client, nullptr);
  certKey_ = std::move(*pki::SoftwareKey::generate());
  acme::AccountRef ref{*out.accountKey, out.accountUrl};
  const acme::IssueRequest request = spc1234Request();
  auto solver = solverFor(out, "spki");
  auto order = out.client->newOrder(ref, request.identifiers);
  ASSERT_TRUE(order.has_value()) << order.error().toString();
  ASSERT_TRUE(test::answerAuthorizations(*out.client, ref, *order, request, test::presentWith(*solver)).has_value());
  auto ready = test::orderDecided(*out.client, ref, order->url);
  ASSERT_TRUE(ready.has_value()) << ready.error().toString();
  ASSERT_EQ(ready->status, "ready");
  auto csr = pki::buildCsr(request.csr, *certKey_);
  ASSERT_TRUE(csr.has_value()) << csr.error().toString();
  auto finalized = out.client->finalize(ref, *ready, *csr);
  ASSERT_TRUE(finalized.has_value()) << finalized.error().toString();
  EXPECT_EQ(finalized->status, "processing");

  auto early = out.client->getOrder(ref, order->url);
  ASSERT_FALSE(early.has_value());
  EXPECT_EQ(early.error().nativeName, "rateLimited");
  EXPECT_EQ(early.error().disposition, Disposition::caPause);
  ASSERT_TRUE(early.error().retryAfter.has_value());
  EXPECT_GE(*early.error().retryAfter, std::chrono::seconds(1));
  std::this_thread::sleep_for(*early.error().retryAfter);  // as told: a lower bound, not a race
  auto valid = test::orderDecided(*out.client, ref, order->url);
  ASSERT_TRUE(valid.has_value()) << valid.error().toString();
  ASSERT_EQ(valid->status, "valid");
  auto issued = acme::downloadCheckedChain(*out.client, ref, request, *valid);
  ASSERT_TRUE(issued.has_value()) << issued.error().toString();
  EXPECT_TRUE(issued->chain.front().hasPublicKey(certKey_->publicKey()));
}

TEST_F(LabAcmeFlow, KeyChangeToAKeyThatHasAnAccountIs409AlreadyExists) {
  start();
  auto client = acme::AcmeClient::create(*transport_, {lab_->baseUrl() + "/acme/directory"});
  ASSERT_TRUE(client.has_value()) << client.error().toString();
  auto first = std::move(*pki::SoftwareKey::generate());
  auto second = std::move(*pki::SoftwareKey::generate());
  auto third = std::move(*pki::SoftwareKey::generate());
  const std::string firstUrl = registerAccount(**client, *first);
  const std::string secondUrl = registerAccount(**client, *second);
  ASSERT_NE(firstUrl, secondUrl);

  auto conflict = (*client)->changeKey(acme::AccountRef{*first, firstUrl}, *second);
  ASSERT_FALSE(conflict.has_value());
  EXPECT_EQ(conflict.error().code, Errc::alreadyExists);
  EXPECT_EQ(conflict.error().native, 409);
  EXPECT_EQ(conflict.error().message, "the new key already belongs to an account (" + secondUrl + ")");
  // Neither account changed hands.
  auto stillFirst = (*client)->findAccount(*first);
  ASSERT_TRUE(stillFirst.has_value()) << stillFirst.error().toString();
  EXPECT_EQ(stillFirst->url, firstUrl);
  auto stillSecond = (*client)->findAccount(*second);
  ASSERT_TRUE(stillSecond.has_value()) << stillSecond.error().toString();
  EXPECT_EQ(stillSecond->url, secondUrl);

  // A key without an account rolls over; the old key then names no account.
  auto rolled = (*client)->changeKey(acme::AccountRef{*first, firstUrl}, *third);
  ASSERT_TRUE(rolled.has_value()) << rolled.error().toString();
  auto byThird = (*client)->findAccount(*third);
  ASSERT_TRUE(byThird.has_value()) << byThird.error().toString();
  EXPECT_EQ(byThird->url, firstUrl);
  auto byFirst = (*client)->findAccount(*first);
  ASSERT_FALSE(byFirst.has_value());
  EXPECT_EQ(byFirst.error().code, Errc::notFound);
}

TEST_F(LabAcmeFlow, LabAcmeIssuesRenewalInfoAndRevocationReachesCrl) {
  start({"--cert-lifetime", "600"});
  auto out = issue();
  ASSERT_TRUE(out.issued.has_value()) << out.issued.error().toString();
  const pki::Certificate& leaf = out.issued->chain.front();
  EXPECT_EQ(leaf.subjectField("CN").value_or(""), "SHAKEN 1234");
  EXPECT_EQ(leaf.subjectField("O").value_or(""), "Example Telecom");
  EXPECT_EQ(leaf.extensionCritical("2.5.29.19"), std::optional<bool>(true));
  EXPECT_EQ(leaf.extensionCritical("2.5.29.15"), std::optional<bool>(true));
  EXPECT_EQ(leaf.extensionCritical("2.5.29.32"), std::optional<bool>(false));
  EXPECT_TRUE(leaf.extensionValue("2.5.29.31").has_value());
  EXPECT_EQ(leaf.notAfter() - leaf.notBefore(), std::chrono::seconds(600));
  EXPECT_GE(leaf.serialContent().size(), 9U);

  auto certId = leaf.ariCertId();
  ASSERT_TRUE(certId.has_value());
  auto info = out.client->renewalInfo(*certId);
  ASSERT_TRUE(info.has_value()) << info.error().toString();
  EXPECT_EQ(info->windowStart, leaf.notBefore() + std::chrono::seconds(400));
  EXPECT_EQ(info->windowEnd, leaf.notBefore() + std::chrono::seconds(500));
  EXPECT_EQ(info->retryAfter, std::chrono::seconds(3600));

  acme::AccountRef ref{*out.accountKey, out.accountUrl};
  auto revoked = out.client->revoke(ref, leaf.der(), 1);
  ASSERT_TRUE(revoked.has_value()) << revoked.error().toString();
  auto again = out.client->revoke(ref, leaf.der(), 1);
  EXPECT_FALSE(again.has_value());

  auto crl = send("GET", lab_->baseUrl() + "/sti-pa/download/v1/crl");
  const auto* p = reinterpret_cast<const unsigned char*>(crl.body.data());
  X509_CRL* parsed = d2i_X509_CRL(nullptr, &p, static_cast<long>(crl.body.size()));
  ASSERT_NE(parsed, nullptr);
  STACK_OF(X509_REVOKED)* entries = X509_CRL_get_REVOKED(parsed);
  ASSERT_EQ(sk_X509_REVOKED_num(entries), 1);
  const ASN1_INTEGER* serial = X509_REVOKED_get0_serialNumber(sk_X509_REVOKED_value(entries, 0));
  EXPECT_EQ(ASN1_INTEGER_cmp(serial, X509_get0_serialNumber(static_cast<X509*>(leaf.native()))), 0);
  X509_CRL_free(parsed);
}

TEST_F(LabAcmeFlow, LabSwitchFingerprintMismatchFailsTheChallenge) {
  start({"--fingerprint", "jwk-thumbprint"});
  auto out = issue("spki");
  ASSERT_FALSE(out.issued.has_value());
  EXPECT_NE(out.issued.error().message.find("atc.fingerprint does not match the account key"), std::string::npos)
      << out.issued.error().toString();
  EXPECT_TRUE(issue("jwk-thumbprint").issued.has_value());
}

TEST_F(LabAcmeFlow, LabSwitchBrokenChainIsRejectedByTheClient) {
  start({"--broken-chain"});
  auto out = issue();
  ASSERT_FALSE(out.issued.has_value());
  // The decoy has the intermediate's name but another key (and SKI): no issuer for the leaf.
  EXPECT_NE(out.issued.error().toString().find("chain does not verify"), std::string::npos)
      << out.issued.error().toString();
}

TEST_F(LabAcmeFlow, LabSwitchChallengeMemberTkauth) {
  start({"--challenge-member", "tkauth"});
  auto out = issue();  // the solver answers {"atc": ...}
  ASSERT_FALSE(out.issued.has_value());
  EXPECT_NE(out.issued.error().toString().find("no string member 'tkauth'"), std::string::npos)
      << out.issued.error().toString();
}

TEST_F(LabAcmeFlow, LabSwitchIdentifierEncodingBase64Url) {
  start({"--identifier-encoding", "base64url"});
  auto out = issue();  // padded identifier
  ASSERT_FALSE(out.issued.has_value());
  EXPECT_NE(out.issued.error().toString().find("unpadded base64url"), std::string::npos)
      << out.issued.error().toString();
  acme::AccountRef ref{*out.accountKey, out.accountUrl};
  auto order = out.client->newOrder(ref, {{"TNAuthList", "MAigBhYEMTIzNA"}});
  EXPECT_TRUE(order.has_value()) << order.error().toString();
  auto dns = out.client->newOrder(ref, {{"dns", "example.net"}});
  ASSERT_FALSE(dns.has_value());
  EXPECT_EQ(dns.error().nativeName, "unsupportedIdentifier");
}

TEST_F(LabTest, LabSwitchIpAllowListAndSlowResponses) {
  start({"--sti-pa-allowed-ip", "10.9.9.9", "--slow-ms", "300"});
  auto begin = std::chrono::steady_clock::now();
  auto r = send("POST", stiPa("/auth/login"), R"({"userId":"kms-lab","password":"x"})");
  EXPECT_GE(std::chrono::steady_clock::now() - begin, 300ms);
  EXPECT_EQ(r.status, 403);
  EXPECT_EQ(json::parse(r.body)["message"], "IP address not allowed");
}

TEST_F(LabAcmeFlow, LabSwitchWrongTnAuthListIsRejectedByTheClient) {
  start({"--wrong-tnauthlist"});
  auto out = issue();
  ASSERT_FALSE(out.issued.has_value());
  EXPECT_NE(out.issued.error().message.find("TNAuthList"), std::string::npos) << out.issued.error().toString();
}

TEST_F(LabTest, LabSwitchesFromFileFailStiPaAndNoEab) {
  std::filesystem::create_directories(dir());
  sandbox_.write("lab/lab-switches.json", R"({"fail-sti-pa": true, "no-eab": true})");
  start();
  auto r = send("POST", stiPa("/auth/login"), R"({"userId":"kms-lab","password":"x"})");
  EXPECT_EQ(r.status, 500);
  auto client = acme::AcmeClient::create(*transport_, {lab_->baseUrl() + "/acme/directory"});
  ASSERT_TRUE(client.has_value());
  EXPECT_FALSE((*client)->directory().externalAccountRequired);
}

TEST_F(LabTest, LabRestartReusesPortAndPki) {
  start();
  std::string url = lab_->baseUrl();
  std::string root = readFile(lab_->file("sti-ca-root.pem"));
  lab_->stop();
  start();
  EXPECT_EQ(lab_->baseUrl(), url);
  EXPECT_EQ(readFile(lab_->file("sti-ca-root.pem")), root);
  EXPECT_FALSE(login().empty());
}

}  // namespace
}  // namespace kms::test
