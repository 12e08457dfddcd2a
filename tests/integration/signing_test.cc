// PASSporT signing through kmsd's ATIS-1000082 route on the control socket, against kms-lab:
// what an SBC sends (curl over the unix socket), what it gets back, and every token checked
// with the openssl command line against the chain its x5u serves (never kmsd's own code).
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/stat.h>

#include <chrono>
#include <thread>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli.h"
#include "daemon_process.h"
#include "lab_process.h"
#include "pki/ec_key.h"
#include "pki/encoding.h"
#include "pki/jose.h"
#include "pki/passport.h"
#include "sandbox.h"

namespace kms {
namespace {

/// What curl got: status, headers (lower-case names as sent), body.
struct Answer {
  int status = 0;
  std::string headers;
  std::string body;
};

class Signing : public ::testing::Test {
 protected:
  void SetUp() override {
    lab_ = std::make_unique<test::LabProcess>(sandbox_.file("lab"));
    kmsd_ = std::make_unique<test::DaemonProcess>(lab_->file("softhsm2.conf"), lab_->file("kmsd.toml"),
                                                  sandbox_.file("kmsd.log"));
    ASSERT_TRUE(kmsd_->waitFor("KMS_RENEWAL_PLANNED cert=main")) << kmsd_->log();
  }

  /// POST `body` to /stir/v1/signing over the control socket, as an SBC's HTTP client would.
  Answer post(const std::string& body, const std::string& extraHeader = "") {
    const std::string bodyFile = sandbox_.write("request.json", body);
    const std::string out = sandbox_.file("answer.body");
    const std::string hdr = sandbox_.file("answer.headers");
    std::string status;
    const int rc = test::runCommand(
        "curl -s -o " + out + " -D " + hdr + " -w '%{http_code}' --unix-socket " + lab_->file("kmsd.sock") +
            " -H 'Content-Type: application/json' " + (extraHeader.empty() ? "" : "-H '" + extraHeader + "' ") +
            "--data-binary @" + bodyFile + " http://kmsd/stir/v1/signing",
        &status);
    EXPECT_EQ(rc, 0) << status;
    return Answer{std::atoi(status.c_str()), test::readFile(hdr), test::readFile(out)};
  }

  /// Checks `identity` the way a verifier does, with curl and openssl only: the x5u's chain
  /// fetched over HTTPS, the leaf's key, the ES256 signature over the signing input.
  /// `secsipidx`: also with asipto's tool, which (1.2.0) takes only ppt "shaken".
  void expectVerifies(const std::string& identity, bool secsipidx = true) {
    auto header = pki::parseIdentityHeader(identity);
    ASSERT_TRUE(header.has_value()) << identity;
    auto jws = pki::parseCompactJws(header->jws);
    ASSERT_TRUE(jws.has_value());
    const auto protectedHeader = nlohmann::json::parse(jws->protectedJson);
    EXPECT_EQ(protectedHeader.value("x5u", ""), header->info);
    const std::string chain = sandbox_.file("chain.pem");
    std::string out;
    ASSERT_EQ(test::runCommand("curl -sf --cacert " + lab_->file("tls-ca.pem") + " -o " + chain + " '" +
                                   header->info + "'",
                               &out),
              0)
        << out;
    ASSERT_EQ(test::runCommand("openssl x509 -in " + chain + " -noout -pubkey > " + sandbox_.file("pub.pem"), &out),
              0)
        << out;
    auto der = pki::rawSignatureToDer(jws->signature);
    ASSERT_TRUE(der.has_value());
    sandbox_.write("sig.der", std::string(der->begin(), der->end()));
    sandbox_.write("input", jws->signingInput);
    EXPECT_EQ(test::runCommand("openssl dgst -sha256 -verify " + sandbox_.file("pub.pem") + " -signature " +
                                   sandbox_.file("sig.der") + " " + sandbox_.file("input"),
                               &out),
              0)
        << out;
    if (!secsipidx) {
      return;
    }
    // And asipto's secsipidx, the reference tool carriers run, with the served chain's leaf.
    const std::string identityFile = sandbox_.write("identity.txt", identity);
    EXPECT_EQ(test::runCommand("secsipidx -check -expire 600 -fidentity " + identityFile + " -p " + chain, &out), 0)
        << out;
    EXPECT_NE(out.find("ok"), std::string::npos) << out;
  }

  /// secsipidx refuses a token whose signature was changed (the check can fail).
  void expectSecsipidxRefusesTampering(const std::string& identity) {
    std::string tampered = identity;
    const auto sig = tampered.rfind('.') + 5;
    tampered[sig] = tampered[sig] == 'A' ? 'B' : 'A';
    const std::string file = sandbox_.write("tampered.txt", tampered);
    std::string out;
    EXPECT_NE(test::runCommand("secsipidx -check -expire 600 -fidentity " + file + " -p " + sandbox_.file("chain.pem"),
                               &out),
              0)
        << out;
  }

  static std::string request(const std::string& members) {
    return R"({"signingRequest":{)" + members + "}}";
  }

  test::Sandbox sandbox_;
  std::unique_ptr<test::LabProcess> lab_;
  std::unique_ptr<test::DaemonProcess> kmsd_;
};

TEST_F(Signing, ASignedTokenVerifiesAgainstTheChainItsX5uServes) {
  const std::int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                               std::chrono::system_clock::now().time_since_epoch())
                               .count();
  Answer a = post(request(R"("attest":"A","dest":{"tn":["+1 (235) 555-1212"]},"iat":)" + std::to_string(now) +
                          R"(,"orig":{"tn":"12155551212"},"origid":"de305d54-75b4-431b-adb2-eb6b9e546014")"),
                  "X-RequestID: req-42");
  ASSERT_EQ(a.status, 200) << a.body;
  EXPECT_NE(a.headers.find("X-RequestID: req-42\r\n"), std::string::npos) << a.headers;
  const auto j = nlohmann::json::parse(a.body);
  const std::string identity = j["signingResponse"].value("identity", "");
  ASSERT_FALSE(identity.empty()) << a.body;
  expectVerifies(identity);
  expectSecsipidxRefusesTampering(identity);
  auto header = pki::parseIdentityHeader(identity);
  ASSERT_TRUE(header.has_value());
  EXPECT_EQ(header->ppt, "shaken");
  EXPECT_EQ(header->alg, "ES256");
  EXPECT_NE(header->info.find("/sti-cr/main/"), std::string::npos) << header->info;  // the active certificate's
  auto jws = pki::parseCompactJws(header->jws);
  ASSERT_TRUE(jws.has_value());
  EXPECT_EQ(jws->payload, R"({"attest":"A","dest":{"tn":["12355551212"]},"iat":)" + std::to_string(now) +
                              R"(,"orig":{"tn":"12155551212"},"origid":"de305d54-75b4-431b-adb2-eb6b9e546014"})");
  // The log never holds a token.
  EXPECT_EQ(kmsd_->log().find(header->jws.substr(0, 40)), std::string::npos);
}

TEST_F(Signing, DiversionAndRichCallDataAndAnOrigidMadeForTheCaller) {
  Answer rcd = post(request(R"("attest":"B","dest":{"tn":["12355551212"]},"orig":{"tn":"12155551212"},)"
                            R"("rcd":{"nam":"Example Telecom"},"crn":"Billing")"));
  ASSERT_EQ(rcd.status, 200) << rcd.body;
  const std::string identity = nlohmann::json::parse(rcd.body)["signingResponse"].value("identity", "");
  expectVerifies(identity);
  auto payload = nlohmann::json::parse(pki::parseCompactJws(pki::parseIdentityHeader(identity)->jws)->payload);
  EXPECT_TRUE(pki::isUuid(payload.value("origid", ""))) << payload.dump();
  EXPECT_EQ(payload["rcd"].value("nam", ""), "Example Telecom");
  EXPECT_EQ(payload.value("crn", ""), "Billing");

  Answer div = post(request(R"("dest":{"tn":["12355550000"]},"orig":{"tn":"12155551212"},"div":{"tn":"12355551212"})"));
  ASSERT_EQ(div.status, 200) << div.body;
  const std::string divIdentity = nlohmann::json::parse(div.body)["signingResponse"].value("identity", "");
  expectVerifies(divIdentity, false);  // secsipidx refuses ppt=div ("invalid value for ppt header parameter")
  auto divHeader = pki::parseIdentityHeader(divIdentity);
  EXPECT_EQ(divHeader->ppt, "div");
  auto divJws = pki::parseCompactJws(divHeader->jws);
  EXPECT_NE(divJws->protectedJson.find(R"("ppt":"div")"), std::string::npos);
  EXPECT_EQ(divJws->payload.find("attest"), std::string::npos) << divJws->payload;
  EXPECT_NE(divJws->payload.find(R"("div":{"tn":"12355551212"})"), std::string::npos) << divJws->payload;
}

TEST_F(Signing, BadRequestsGetAtisErrorsThatNameTheMember) {
  struct Case {
    std::string body;
    int status;
    std::string messageId;
    std::string mentions;
  };
  const std::string fine = R"("attest":"A","dest":{"tn":["12355551212"]},"orig":{"tn":"12155551212"})";
  std::string manyDest = R"("attest":"A","orig":{"tn":"1"},"dest":{"tn":[)";
  for (int i = 0; i < 10000; ++i) {
    manyDest += (i ? ",\"" : "\"") + std::to_string(12000000000 + i) + "\"";
  }
  manyDest += "]}";
  std::string manyDest101 = R"("attest":"A","orig":{"tn":"1"},"dest":{"tn":[)";
  for (int i = 0; i < 101; ++i) {
    manyDest101 += (i ? ",\"" : "\"") + std::to_string(12000000000 + i) + "\"";
  }
  manyDest101 += "]}";
  const std::vector<Case> cases{
      {"", 400, "SVC4000", ""},
      {"{not json", 400, "SVC4006", "not JSON"},
      {request(fine + R"(,"attest":"B")"), 400, "SVC4006", "attest"},  // a duplicate member
      {std::string(50, '[') + std::string(50, ']'), 400, "SVC4006", "nested"},
      {request(R"("attest":"A","dest":{"tn":["1215555CALL"]},"orig":{"tn":"12155551212"})"), 400, "SVC4005",
       "dest.tn[0]"},
      {request(R"("attest":"D","dest":{"tn":["12355551212"]},"orig":{"tn":"12155551212"})"), 400, "SVC4005",
       "attest"},
      {request(R"("dest":{"tn":["12355551212"]},"orig":{"tn":"12155551212"})"), 400, "SVC4001", "attest"},
      {request(fine + R"(,"iat":1)"), 400, "SVC4005", "iat"},
      {request(fine + R"(,"origid":"nope")"), 400, "SVC4005", "origid"},
      {request(fine + R"(,"colour":"red")"), 400, "SVC4005", "colour"},
      {request(manyDest101), 400, "SVC4005", "dest.tn"},
      {request(fine + R"(,"cert":"nosuch")"), 503, "SVC5000", "nosuch"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.body.substr(0, 80));
    Answer a = post(c.body);
    EXPECT_EQ(a.status, c.status) << a.body;
    auto j = nlohmann::json::parse(a.body, nullptr, false);
    ASSERT_TRUE(j.is_object()) << a.body;
    const char* kind = c.messageId.starts_with("POL") ? "policyException" : "serviceException";
    ASSERT_TRUE(j["requestError"].contains(kind)) << a.body;
    const auto& e = j["requestError"][kind];
    EXPECT_EQ(e.value("messageId", ""), c.messageId) << a.body;
    EXPECT_NE(e.dump().find(c.mentions), std::string::npos) << a.body;
    EXPECT_NE(a.headers.find("X-RequestID: "), std::string::npos) << a.headers;  // made up when not sent
  }
  // 10,000 dest TNs are over the control socket's body cap: refused before being read.
  EXPECT_EQ(post(request(manyDest)).status, 413);
  // kmsd is still there, and still signs.
  EXPECT_EQ(post(request(fine)).status, 200);

  // The counters the metrics will read: one signed, each refusal by its messageId (the 413
  // never reached the signer), every request in the latency buckets.
  std::string status;
  ASSERT_EQ(test::runCommand("curl -sf --unix-socket " + lab_->file("kmsd.sock") + " http://kmsd/v1/status", &status), 0)
      << status;
  const auto signing = nlohmann::json::parse(status)["daemon"]["signing"];
  EXPECT_EQ(signing.value("signed", 0), 1) << signing.dump();
  EXPECT_EQ(signing["refused"],
            nlohmann::json({{"SVC4000", 1}, {"SVC4001", 1}, {"SVC4005", 6}, {"SVC4006", 3}, {"SVC5000", 1}}))
      << signing.dump();
  ASSERT_TRUE(signing["latency_buckets"].is_array());
  EXPECT_EQ(signing["latency_buckets"].back(), 13) << signing.dump();  // cumulative: all of them
  EXPECT_GT(signing.value("latency_seconds_sum", 0.0), 0.0);
}

TEST_F(Signing, ARevokedCertificateSignsNothingUntilItsReplacementIsActive) {
  const std::string fine = request(R"("attest":"A","dest":{"tn":["12355551212"]},"orig":{"tn":"12155551212"})");
  ASSERT_EQ(post(fine).status, 200);
  // The CA now wants the other fingerprint: the replacement's tkauth-01 fails, so the
  // certificate stays without a successor for as long as the test needs.
  ASSERT_TRUE(lab_->labSwitch("/lab/hostile", R"({"fingerprint":"jwk-thumbprint"})"));
  ASSERT_EQ(test::runTool("", test::kKmsctl, lab_->file("kmsd.toml"), "revoke main").rc, 0);
  ASSERT_TRUE(kmsd_->waitFor("FAILED cert=main")) << kmsd_->log();
  for (int i = 0; i < 3; ++i) {
    Answer a = post(fine);
    EXPECT_EQ(a.status, 503) << a.body;
    EXPECT_NE(a.body.find("SVC5000"), std::string::npos) << a.body;
    EXPECT_NE(a.body.find("no current certificate"), std::string::npos) << a.body;
  }
  const std::string log = kmsd_->log();
  const auto refused = log.find("KMS_SIGNING_REFUSED cert=main");
  EXPECT_NE(refused, std::string::npos) << log;
  EXPECT_EQ(log.find("KMS_SIGNING_REFUSED cert=main", refused + 1), std::string::npos) << "said once, not per request";

  // The CA is mended and the renewal asked for: the replacement signs, with its own x5u.
  ASSERT_TRUE(lab_->labSwitch("/lab/hostile", R"({"fingerprint":"spki"})"));
  ASSERT_EQ(test::runTool("", test::kKmsctl, lab_->file("kmsd.toml"), "renew main --wait").rc, 0) << kmsd_->log();
  Answer after = post(fine);
  ASSERT_EQ(after.status, 200) << after.body;
  expectVerifies(nlohmann::json::parse(after.body)["signingResponse"].value("identity", ""));
}

TEST_F(Signing, SignaturesDoNotWaitForAnOrderHeldAtTheCa) {
  // Every ACME request held until released: the renewal asked for now sits in a worker.
  ASSERT_TRUE(lab_->labSwitch("/lab/hostile", R"({"acme_hold":true})"));
  ASSERT_EQ(test::runTool("", test::kKmsctl, lab_->file("kmsd.toml"), "renew main").rc, 0);
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (lab_->log().find("kms-lab: holding POST /acme/") == std::string::npos &&
         std::chrono::steady_clock::now() < end) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_NE(lab_->log().find("kms-lab: holding POST /acme/"), std::string::npos) << lab_->log();
  const std::string fine = request(R"("attest":"A","dest":{"tn":["12355551212"]},"orig":{"tn":"12155551212"})");
  for (int i = 0; i < 20; ++i) {
    Answer a = post(fine);
    ASSERT_EQ(a.status, 200) << a.body;
    if (i == 0) {
      expectVerifies(nlohmann::json::parse(a.body)["signingResponse"].value("identity", ""));
    }
  }
  // All of that while the order was held: it is released only now.
  auto activations = [&] {
    const std::string log = kmsd_->log();
    int n = 0;
    for (auto at = log.find("KMS_CERT_ACTIVATED cert=main"); at != std::string::npos;
         at = log.find("KMS_CERT_ACTIVATED cert=main", at + 1)) {
      ++n;
    }
    return n;
  };
  EXPECT_EQ(activations(), 1);
  ASSERT_TRUE(lab_->labSwitch("/lab/hostile", R"({"acme_hold":false})"));
  const auto renewed = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (activations() < 2 && std::chrono::steady_clock::now() < renewed) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(activations(), 2) << kmsd_->log();
}

TEST_F(Signing, OnlyTheAdminGroupMaySignOnTheControlSocket) {
  // kmsd again with [daemon] control_admin_group = "root"; the socket opened to group
  // nogroup, so uid 65534 (gid nogroup) can connect but is not in the admin group.
  ASSERT_EQ(kmsd_->stop(), 0);
  std::string toml = test::readFile(lab_->file("kmsd.toml"));
  toml.replace(toml.find("[daemon]\n"), 9, "[daemon]\ncontrol_admin_group = \"root\"\n");
  sandbox_.write("admin.toml", toml);
  kmsd_ = std::make_unique<test::DaemonProcess>(lab_->file("softhsm2.conf"), sandbox_.file("admin.toml"),
                                                sandbox_.file("kmsd2.log"));
  ASSERT_TRUE(kmsd_->waitFor("KMS_STARTED")) << kmsd_->log();
  ASSERT_EQ(::chmod(sandbox_.path().c_str(), 0755), 0);
  ASSERT_EQ(::chmod(lab_->file("").c_str(), 0755), 0);
  std::string out;
  ASSERT_EQ(test::runCommand("chgrp nogroup " + lab_->file("kmsd.sock"), &out), 0) << out;
  const std::string body = sandbox_.write(
      "nobody.json", request(R"("attest":"A","dest":{"tn":["12355551212"]},"orig":{"tn":"12155551212"})"));
  ::chmod(body.c_str(), 0644);
  std::string answer;
  ASSERT_EQ(test::runCommand("setpriv --reuid=65534 --regid=65534 --clear-groups curl -s -w ' %{http_code}' "
                             "--unix-socket " + lab_->file("kmsd.sock") + " --data-binary @" + body +
                                 " http://kmsd/stir/v1/signing",
                             &answer),
            0)
      << answer;
  EXPECT_NE(answer.find(R"("policyException":{"messageId":"POL4002")"), std::string::npos) << answer;
  EXPECT_EQ(answer.substr(answer.size() - 4), " 403") << answer;
  EXPECT_EQ(answer.find("signingResponse"), std::string::npos) << answer;
  // root is.
  EXPECT_EQ(post(test::readFile(body)).status, 200);
}

TEST_F(Signing, KmsctlPassportSignPrintsTheIdentityHeader) {
  auto kmsctl = [&](const std::string& args) { return test::runTool("", test::kKmsctl, lab_->file("kmsd.toml"), args); };
  test::CmdResult shaken = kmsctl("passport sign --orig +12155551212 --dest 12355551212,12355551213 --attest B");
  ASSERT_EQ(shaken.rc, 0) << shaken.output;
  ASSERT_EQ(shaken.output.back(), '\n');
  const std::string identity = shaken.output.substr(0, shaken.output.size() - 1);
  expectVerifies(identity);
  auto payload = nlohmann::json::parse(pki::parseCompactJws(pki::parseIdentityHeader(identity)->jws)->payload);
  EXPECT_EQ(payload["dest"]["tn"], nlohmann::json::array({"12355551212", "12355551213"}));
  EXPECT_EQ(payload.value("attest", ""), "B");

  test::CmdResult div = kmsctl("passport sign --cert main --orig 12155551212 --dest 12355550000 --div 12355551212");
  ASSERT_EQ(div.rc, 0) << div.output;
  EXPECT_NE(div.output.find(";ppt=div\n"), std::string::npos) << div.output;

  test::CmdResult usage = kmsctl("passport sign --orig 12155551212 --dest 12355551212");
  EXPECT_EQ(usage.rc, 2) << usage.output;  // no --attest, no --div
  test::CmdResult letters = kmsctl("passport sign --orig 1215555CALL --dest 12355551212 --attest A");
  EXPECT_EQ(letters.rc, 1) << letters.output;
  EXPECT_NE(letters.output.find("kmsctl: kmsd did not sign (HTTP 400): SVC4005: Invalid value for parameter orig.tn"),
            std::string::npos)
      << letters.output;
  test::CmdResult other = kmsctl("passport sign --cert nosuch --orig 12155551212 --dest 12355551212 --attest A");
  EXPECT_EQ(other.rc, 1) << other.output;
  EXPECT_NE(other.output.find("no SHAKEN certificate named 'nosuch'"), std::string::npos) << other.output;

  ASSERT_EQ(kmsd_->stop(), 0) << kmsd_->log();
  test::CmdResult down = kmsctl("passport sign --orig 12155551212 --dest 12355551212 --attest A");
  EXPECT_EQ(down.rc, 1) << down.output;
  EXPECT_NE(down.output.find("kmsctl: kmsd is not running (no answer on " + lab_->file("kmsd.sock") +
                             "); signing needs the daemon"),
            std::string::npos)
      << down.output;
}

}  // namespace
}  // namespace kms
