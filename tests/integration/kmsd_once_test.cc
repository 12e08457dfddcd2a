// kmsd --once as an operator runs it, against a real Pebble, a real SoftHSM2 token and a
// real SQLite state directory.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <cctype>
#include <ctime>

#include "acme/http01_responder.h"
#include "cli.h"
#include "kmsd_toml.h"
#include "hsm/token.h"
#include "pebble_server.h"
#include "pki/encoding.h"
#include "pki/x509.h"
#include "storage/db.h"
#include "storage/store.h"
#include "sandbox.h"
#include "softhsm_token.h"

namespace kms {
namespace {

using test::PebbleOptions;
using test::PebbleServer;
using test::SoftHsmToken;

using test::CmdResult;
using test::kKmsctl;
using test::kKmsd;

bool exists(const std::string& p) {
  return test::fileExists(p);
}

class KmsdOnce : public ::testing::Test {
 protected:
  /// Pebble validates http-01 on the socket kmsd is handed (unless options name another port).
  void start(PebbleOptions options = {}, const std::string& acmeExtra = "") {
    if (options.httpPort == 0) {
      options.httpPort = http01_.port();
    }
    pebble_ = std::make_unique<PebbleServer>(options);
    roots_ = pebble_->writeIssuingRoots(softhsm_.sandbox().file("pebble-roots.pem"));
    writeConfig(acmeExtra);
  }

  void writeConfig(const std::string& acmeExtra = "", const std::string& anchors = "") {
    const auto& sb = softhsm_.sandbox();
    test::KmsdToml toml;
    toml.stateDir = sb.file("state");
    toml.pinFile = softhsm_.pinFile();
    toml.directoryUrl = pebble_->directoryUrl();
    toml.caBundle = pebble_->tlsCaFile();
    toml.trustAnchors = anchors.empty() ? roots_ : anchors;
    toml.acmeExtra = acmeExtra;
    toml.webRoot = sb.file("www");
    toml.dns("web", {"web.example.com"}).dns("api", {"api.example.com", "v2.example.com"});
    config_ = sb.write("kmsd.toml", toml.text());
  }

  /// kmsd gets the http-01 socket as systemd would pass it; kmsctl runs as it is.
  CmdResult run(const std::string& tool, const std::string& args) {
    return test::runTool("SOFTHSM2_CONF=" + softhsm_.confPath(), tool == kKmsd ? http01_.pass(tool) : tool, config_,
                         args);
  }

  std::string www(const std::string& rel) const { return softhsm_.sandbox().file("www/" + rel); }

  /// As if the backoff after a failed run had passed: the next run may try again.
  void backoffPassed() { ASSERT_TRUE(test::backoffPassed(softhsm_.sandbox().file("state/kmsd.db"))); }

  SoftHsmToken softhsm_{"kms-test"};
  std::unique_ptr<PebbleServer> pebble_;
  std::string roots_;
  std::string config_;
  test::PassedSocket http01_;  ///< kmsd's http-01 socket (socket activation)
};

TEST_F(KmsdOnce, IssuesPublishesThenNothingIsDue) {
  start();
  CmdResult first = run(kKmsd, "--once");
  ASSERT_EQ(first.rc, 0) << first.output;
  EXPECT_NE(first.output.find("web: issued serial "), std::string::npos) << first.output;
  EXPECT_NE(first.output.find("api: issued serial "), std::string::npos) << first.output;
  EXPECT_NE(first.output.find(", published https://cr.example.net/web/"), std::string::npos) << first.output;

  // The published chain is the one for the HSM key and verifies to Pebble's root.
  ASSERT_TRUE(exists(www("web.pem")));
  auto chain = pki::parsePemChain(test::readFile(www("web.pem")));
  ASSERT_TRUE(chain.has_value());
  EXPECT_EQ(chain->front().dnsNames(), std::vector<std::string>{"web.example.com"});
  auto anchors = pki::parsePemChain(test::readFile(roots_));
  EXPECT_TRUE(pki::verifyChain(*chain, *anchors, std::chrono::system_clock::now()).has_value());
  EXPECT_TRUE(exists(www("web/" + chain->front().serialHex() + ".pem")));

  CmdResult second = run(kKmsd, "--once");
  EXPECT_EQ(second.rc, 0) << second.output;
  EXPECT_NE(second.output.find("web: valid until "), std::string::npos) << second.output;
  EXPECT_NE(second.output.find("not due (renewal due "), std::string::npos) << second.output;

  CmdResult status = run(kKmsctl, "status");
  EXPECT_EQ(status.rc, 0) << status.output;
  EXPECT_NE(status.output.find("\nweb   active  "), std::string::npos) << status.output;
  CmdResult keys = run(kKmsctl, "keys");
  EXPECT_NE(keys.output.find("3 key(s)"), std::string::npos) << keys.output;  // account + 2 certificates
  EXPECT_EQ(keys.output.find("unmanaged"), std::string::npos) << keys.output;
}

TEST_F(KmsdOnce, PebbleDownFailsThenTheNextRunSucceeds) {
  start();
  pebble_->stop();
  CmdResult down = run(kKmsd, "--once");
  EXPECT_EQ(down.rc, 3) << down.output;
  EXPECT_NE(down.output.find("web: FAILED: " + pebble_->directoryUrl()), std::string::npos) << down.output;
  EXPECT_FALSE(exists(www("web.pem")));

  pebble_->start();  // a fresh Pebble: new issuing roots, no accounts
  roots_ = pebble_->writeIssuingRoots(softhsm_.sandbox().file("pebble-roots.pem"));
  // The failure set a backoff, and the next run honours it without touching the CA.
  CmdResult early = run(kKmsd, "--once");
  EXPECT_EQ(early.rc, 3) << early.output;
  EXPECT_NE(early.output.find("web: FAILED: not attempted: retry "), std::string::npos) << early.output;
  EXPECT_NE(early.output.find(" after 1 failure(s)"), std::string::npos) << early.output;
  backoffPassed();
  CmdResult up = run(kKmsd, "--once");
  EXPECT_EQ(up.rc, 0) << up.output;
  EXPECT_TRUE(exists(www("web.pem")));

  // With valid certificates, an unreachable CA is not a failure: nothing is due.
  pebble_->stop();
  CmdResult idle = run(kKmsd, "--once");
  EXPECT_EQ(idle.rc, 0) << idle.output;
  EXPECT_NE(idle.output.find("web: valid until "), std::string::npos) << idle.output;
}

TEST_F(KmsdOnce, FailedPublicationIsRetriedWithoutANewOrder) {
  start();
  // The web root cannot be created (a file is in the way): the certificates are issued and
  // recorded, publication fails, and the orders stay at "issued".
  std::ofstream(softhsm_.sandbox().file("www")) << "in the way\n";
  CmdResult failed = run(kKmsd, "--once");
  EXPECT_EQ(failed.rc, 3) << failed.output;
  EXPECT_NE(failed.output.find("KMS_PUBLISH_FAILED cert=web"), std::string::npos) << failed.output;
  CmdResult status = run(kKmsctl, "status --json");
  EXPECT_NE(status.output.find("\"state\":\"issued\""), std::string::npos) << status.output;
  const std::string db = softhsm_.sandbox().file("state/kmsd.db");
  const std::string counts = "SELECT count(*) FROM orders; SELECT count(*) FROM issued_certificates";
  const std::string before = test::sql(db, counts);

  // The disk mended and the backoff over: published from the recorded chain, no new order.
  ::unlink(softhsm_.sandbox().file("www").c_str());
  ASSERT_TRUE(test::backoffPassed(db));
  CmdResult published = run(kKmsd, "--once");
  EXPECT_EQ(published.rc, 0) << published.output;
  EXPECT_NE(published.output.find("web: issued serial "), std::string::npos) << published.output;
  EXPECT_TRUE(exists(www("web.pem")));
  EXPECT_EQ(published.output.find("KMS_ORDER_CREATED"), std::string::npos) << published.output;
  EXPECT_EQ(test::sql(db, counts), before);
}

TEST_F(KmsdOnce, ChainThatDoesNotVerifyIsNotPublishedAndLeavesNoKey) {
  start();
  writeConfig("", pebble_->tlsCaFile());  // the wrong roots
  CmdResult r = run(kKmsd, "--once");
  EXPECT_EQ(r.rc, 3) << r.output;
  EXPECT_NE(r.output.find("web: FAILED: "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("check chain: chain does not verify"), std::string::npos) << r.output;
  EXPECT_FALSE(exists(www("web.pem")));
  EXPECT_FALSE(exists(www("api.pem")));
  CmdResult keys = run(kKmsctl, "keys");
  EXPECT_NE(keys.output.find("1 key(s)"), std::string::npos) << keys.output;  // only the account key
  CmdResult events = run(kKmsctl, "events");
  EXPECT_NE(events.output.find("KMS_ISSUE_FAILED web"), std::string::npos) << events.output;
}

TEST_F(KmsdOnce, ExternalAccountBindingFromTheConfig) {
  PebbleOptions options;
  options.eabRequired = true;
  options.eabKeys = {{"kid-1", "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"}};
  options.httpPort = http01_.port();
  pebble_ = std::make_unique<PebbleServer>(options);
  roots_ = pebble_->writeIssuingRoots(softhsm_.sandbox().file("pebble-roots.pem"));
  writeConfig();
  CmdResult refused = run(kKmsd, "--once");
  EXPECT_EQ(refused.rc, 3) << refused.output;
  EXPECT_NE(refused.output.find("externalAccountRequired"), std::string::npos) << refused.output;

  std::string key =
      softhsm_.sandbox().write("eab.key", "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W\n");
  writeConfig("eab_kid = \"kid-1\"\neab_hmac_file = \"" + key + "\"\n");
  backoffPassed();
  CmdResult r = run(kKmsd, "--once");
  EXPECT_EQ(r.rc, 0) << r.output;
}

TEST_F(KmsdOnce, WrongHttp01AnswerFailsTypedAndPublishesNothing) {
  // Pebble validates http-01 against a responder that knows no token (404), not kmsd's.
  auto decoy = acme::Http01Responder::start("127.0.0.1", 0);
  ASSERT_TRUE(decoy.has_value()) << decoy.error().toString();
  PebbleOptions options;
  options.httpPort = (*decoy)->port();
  pebble_ = std::make_unique<PebbleServer>(options);
  roots_ = pebble_->writeIssuingRoots(softhsm_.sandbox().file("pebble-roots.pem"));
  writeConfig();  // kmsd answers on its own socket, which Pebble does not ask
  CmdResult r = run(kKmsd, "--once");
  EXPECT_EQ(r.rc, 3) << r.output;
  // The line names the authorization, the challenge and the CA's own words (404).
  std::size_t at = r.output.find("web: FAILED: https://127.0.0.1:" + std::to_string(pebble_->acmePort()) + "/authZ/");
  ASSERT_NE(at, std::string::npos) << r.output;
  std::string line = r.output.substr(at, r.output.find('\n', at) - at);
  EXPECT_NE(line.find("http-01 challenge for web.example.com failed: ACME unauthorized"), std::string::npos) << line;
  EXPECT_NE(line.find("returned 404 (unauthorized)"), std::string::npos) << line;
  EXPECT_FALSE(exists(www("web.pem")));
  EXPECT_FALSE(exists(www("api.pem")));
  CmdResult keys = run(kKmsctl, "keys");
  EXPECT_NE(keys.output.find("1 key(s)"), std::string::npos) << keys.output;  // only the account key
  EXPECT_EQ(keys.output.find("NOT on the token"), std::string::npos) << keys.output;
  CmdResult status = run(kKmsctl, "status");
  EXPECT_NE(status.output.find("\nweb   failed  "), std::string::npos) << status.output;
}

TEST_F(KmsdOnce, ResumesFromWhatCrashesLeft) {
  // The state two crashes leave behind: an account key recorded and generated but never
  // registered, and an open order for "web" whose key was recorded but never generated.
  start();
  const auto& sb = softhsm_.sandbox();
  ASSERT_EQ(::mkdir(sb.file("state").c_str(), 0700), 0);
  auto lowerHex = [](const pki::Bytes& b) {
    std::string h = pki::hexEncode(b);
    std::transform(h.begin(), h.end(), h.begin(), [](unsigned char ch) { return std::tolower(ch); });
    return h;
  };
  std::string accountUri;
  std::string missingUri;
  {
    auto token = hsm::Token::open({SoftHsmToken::modulePath(), "kms-test", softhsm_.pinFile(), 2});
    ASSERT_TRUE(token.has_value()) << token.error().toString();
    auto db = storage::Db::open(sb.file("state/kmsd.db"));
    ASSERT_TRUE(db.has_value()) << db.error().toString();
    auto store = storage::makeSqliteStore(**db);
    const std::int64_t now = std::time(nullptr);

    auto accountId = hsm::Token::newKeyId();
    auto account = (*token)->generateSigner("acme-account-1", *accountId);
    ASSERT_TRUE(account.has_value()) << account.error().toString();
    accountUri = (*account)->info().uri.toString();
    storage::HsmKey a{0, accountUri, lowerHex(*accountId), "acme-account-1", storage::KeyPurpose::account, now, {}};
    ASSERT_TRUE(store->recordKey(a).has_value());

    auto webId = hsm::Token::newKeyId();
    missingUri = (*token)->keyUri("web-1", *webId).toString();
    storage::HsmKey w{0, missingUri, lowerHex(*webId), "web-1", storage::KeyPurpose::certificate, now, {}};
    ASSERT_TRUE(store->recordKey(w).has_value());
    ASSERT_TRUE(store->upsertCertificate("web", storage::CertKind::acme, R"(["dns:web.example.com"])").has_value());
    auto order = store->createOrder("web", storage::CertState::keyReady);
    ASSERT_TRUE(order.has_value()) << order.error().toString();
    storage::OrderUpdate u;
    u.step = storage::CertState::keyReady;
    u.keyUri = missingUri;
    ASSERT_TRUE(store->advanceOrder(order->id, u).has_value());
  }
  CmdResult before = run(kKmsctl, "keys");
  EXPECT_NE(before.output.find("1 recorded key(s) NOT on the token\n  web-1  [certificate]"), std::string::npos)
      << before.output;

  CmdResult r = run(kKmsd, "--once");
  ASSERT_EQ(r.rc, 0) << r.output;
  EXPECT_NE(r.output.find("web: issued serial "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("api: issued serial "), std::string::npos) << r.output;

  // The unregistered account key was registered, no second one made; the missing
  // certificate key was retired and replaced; nothing on the token is unknown to the DB.
  CmdResult keys = run(kKmsctl, "keys");
  EXPECT_NE(keys.output.find("3 key(s)"), std::string::npos) << keys.output;
  EXPECT_NE(keys.output.find("acme-account-1  [account]  account\n    " + accountUri), std::string::npos) << keys.output;
  EXPECT_EQ(keys.output.find("unmanaged"), std::string::npos) << keys.output;
  EXPECT_EQ(keys.output.find("NOT on the token"), std::string::npos) << keys.output;
  EXPECT_EQ(keys.output.find(missingUri), std::string::npos) << keys.output;
  CmdResult events = run(kKmsctl, "events");
  EXPECT_NE(events.output.find("KMS_KEY_MISSING web"), std::string::npos) << events.output;
}

TEST_F(KmsdOnce, WithoutAPassedSocketHttp01ListenIsBoundAndItsFailureNamed) {
  start();
  // No socket passed: kmsd binds [acme] http01_listen itself, here an address it cannot have.
  CmdResult r = test::runTool("SOFTHSM2_CONF=" + softhsm_.confPath(), kKmsd, config_, "--once");
  EXPECT_EQ(r.rc, 1) << r.output;
  EXPECT_NE(r.output.find("kmsd: http-01 responder: [acme] http01_listen 192.0.2.1:80: cannot bind 192.0.2.1:80: "),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("(EADDRNOTAVAIL)"), std::string::npos) << r.output;
  EXPECT_FALSE(exists(www("web.pem")));
}

TEST_F(KmsdOnce, ASocketPassedUnderAnotherNameIsRefusedByName) {
  start();
  CmdResult r = test::runTool("SOFTHSM2_CONF=" + softhsm_.confPath(), http01_.pass(kKmsd, "metrics"), config_, "--once");
  EXPECT_EQ(r.rc, 78) << "EX_CONFIG: kmsd.service does not restart on it\n" << r.output;
  EXPECT_NE(r.output.find("kmsd: socket activation (LISTEN_FDNAMES): a socket named 'metrics' was passed; kmsd takes "
                          "only one, named 'http01' (FileDescriptorName=)"),
            std::string::npos)
      << r.output;
}

}  // namespace
}  // namespace kms
