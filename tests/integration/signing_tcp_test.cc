// The TCP signing API ([signing] listen) against kms-lab with two providers' SHAKEN
// certificates: TLS, bearer tokens and client certificates (curl as the SBC), what each
// tenant may sign with, attestation levels, rate limits, SIGHUP reloads of clients and the
// TLS certificate, the signing record, and hostile clients (slowloris, bad bodies). Tokens are
// checked with the openssl command line against the chain their x5u serves.
#include <gtest/gtest.h>

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli.h"
#include "daemon_process.h"
#include "lab_process.h"
#include "pki/jose.h"
#include "pki/passport.h"
#include "openssl_pki.h"
#include "sandbox.h"

namespace kms {
namespace {

using namespace std::chrono_literals;


struct Answer {
  int status = 0;
  std::string headers;
  std::string body;
};

constexpr const char* kTokenA = "sbc-a-7Qm2v9Lx4Rt8Kp1Zc6Wn3Hy5Bd0Fg2Js";
constexpr const char* kTokenC = "sbc-c-1Aa2Bb3Cc4Dd5Ee6Ff7Gg8Hh9Ii0Jj1Kk";

class SigningTcp : public ::testing::Test {
 protected:
  void SetUp() override {
    lab_ = std::make_unique<test::LabProcess>(sandbox_.file("lab"), std::vector<std::string>{"--spc", "1234", "--spc", "5678"});
    makeCa("tlsca", "/CN=Signing TLS CA");
    makeLeaf("server", "/CN=127.0.0.1", "tlsca", 101, "subjectAltName=IP:127.0.0.1");
    makeCa("clientca", "/CN=SBC Client CA");
    makeLeaf("sbc-b", "/O=Carrier B/CN=sbc-b", "clientca", 201, "extendedKeyUsage=clientAuth");
    makeCa("rogueca", "/CN=Rogue CA");
    makeLeaf("rogue", "/O=Carrier B/CN=sbc-b", "rogueca", 301, "extendedKeyUsage=clientAuth");
    secret("sbc-a.token", kTokenA);
    secret("sbc-c.token", kTokenC);
    port_ = test::freePort();
    config_ = sandbox_.file("kmsd.toml");
    writeConfig(true);
    kmsd_ = std::make_unique<test::DaemonProcess>(lab_->file("softhsm2.conf"), config_, sandbox_.file("kmsd.log"));
    ASSERT_TRUE(kmsd_->waitFor("KMS_SIGNING_LISTENING")) << kmsd_->log();
    ASSERT_TRUE(kmsd_->waitFor("KMS_CERT_ACTIVATED cert=main", 120s)) << kmsd_->log();
    ASSERT_TRUE(kmsd_->waitFor("KMS_CERT_ACTIVATED cert=carrier-b", 120s)) << kmsd_->log();
  }

  /// kms-lab's kmsd.toml, a second provider's certificate, the TLS listener and three
  /// clients: A by token (main, attest A/B), B by client certificate (carrier-b), C by token
  /// (main, 5 requests per second). `withA` false: A removed (the reload test).
  void writeConfig(bool withA) {
    std::string text = test::readFile(lab_->file("kmsd.toml"));
    text += "\n[[certificate]]\nname = \"carrier-b\"\nspc = \"5678\"\nsubject_o = \"Carrier B\"\n";
    text += "\n[signing]\nlisten = \"127.0.0.1:" + std::to_string(port_) + "\"\ntls_certificate = \"" + pem("server") +
            "\"\ntls_key = \"" + key("server") + "\"\nclient_ca = \"" + pem("clientca") + "\"\nrecord = \"" +
            sandbox_.file("signing.jsonl") + "\"\n";
    if (withA) {
      text += "\n[[signing.client]]\nname = \"sbc-a\"\ntoken_file = \"" + sandbox_.file("sbc-a.token") +
              "\"\ncertificates = [\"main\"]\nattest = [\"A\", \"B\"]\n";
    }
    text += "\n[[signing.client]]\nname = \"sbc-b\"\ncertificate_subject = \"CN=sbc-b,O=Carrier B\"\n"
            "certificates = [\"carrier-b\"]\n";
    text += "\n[[signing.client]]\nname = \"sbc-c\"\ntoken_file = \"" + sandbox_.file("sbc-c.token") +
            "\"\ncertificates = [\"main\"]\nrate_limit = 5\n";
    std::ofstream(config_, std::ios::trunc) << text;
  }

  void run(const std::string& command, std::string* out = nullptr) { test::OpensslPki::run(command, out); }
  void makeCa(const std::string& name, const std::string& subject) { pki_.makeCa(name, subject); }
  void makeLeaf(const std::string& name, const std::string& subject, const std::string& ca, int serial,
                const std::string& extension) {
    pki_.makeLeaf(name, subject, ca, serial, extension);
  }
  void secret(const std::string& name, const std::string& text) {
    ::chmod(sandbox_.write(name, text + "\n").c_str(), 0600);
  }
  std::string key(const std::string& name) { return pki_.key(name); }
  std::string pem(const std::string& name) { return pki_.pem(name); }
  std::string url() const { return "https://127.0.0.1:" + std::to_string(port_) + "/stir/v1/signing"; }

  /// POSTs `body` as an SBC would; `auth`: curl options for the credential.
  Answer post(const std::string& body, const std::string& auth) {
    const std::string bodyFile = sandbox_.write("request.json", body);
    const std::string out = sandbox_.file("answer.body");
    const std::string hdr = sandbox_.file("answer.headers");
    std::string status;
    const int rc = test::runCommand("curl -s -o " + out + " -D " + hdr + " -w '%{http_code}' --cacert " +
                                        pem("tlsca") + " " + auth + " -H 'Content-Type: application/json' " +
                                        "--data-binary @" + bodyFile + " " + url(),
                                    &status);
    EXPECT_EQ(rc, 0) << status;
    return Answer{std::atoi(status.c_str()), test::readFile(hdr), test::readFile(out)};
  }
  static std::string bearer(const std::string& token) { return "-H 'Authorization: Bearer " + token + "'"; }
  std::string clientCert(const std::string& name) { return "--cert " + pem(name) + " --key " + key(name); }

  static std::string request(const std::string& attest = "A", const std::string& extra = "") {
    return R"({"signingRequest":{"attest":")" + attest + R"(","dest":{"tn":["12155551213"]},"orig":{"tn":"12155551212"})" +
           extra + "}}";
  }
  static std::string identityOf(const Answer& a) {
    return nlohmann::json::parse(a.body)["signingResponse"].value("identity", "");
  }
  static std::string messageIdOf(const Answer& a) {
    const auto j = nlohmann::json::parse(a.body, nullptr, false);
    for (const char* kind : {"policyException", "serviceException"}) {
      if (j.contains("requestError") && j["requestError"].contains(kind)) {
        return j["requestError"][kind].value("messageId", "");
      }
    }
    return "";
  }

  /// The token verifies with openssl against the leaf its x5u serves; returns that x5u.
  std::string expectVerifies(const std::string& identity) {
    auto header = pki::parseIdentityHeader(identity);
    EXPECT_TRUE(header.has_value()) << identity;
    if (!header) {
      return "";
    }
    auto jws = pki::parseCompactJws(header->jws);
    EXPECT_TRUE(jws.has_value());
    const std::string chain = sandbox_.file("chain.pem");
    run("curl -sf --cacert " + lab_->file("tls-ca.pem") + " -o " + chain + " '" + header->info + "'");
    run("openssl x509 -in " + chain + " -noout -pubkey > " + sandbox_.file("pub.pem"));
    auto der = pki::rawSignatureToDer(jws->signature);
    EXPECT_TRUE(der.has_value());
    sandbox_.write("sig.der", std::string(der->begin(), der->end()));
    sandbox_.write("input", jws->signingInput);
    run("openssl dgst -sha256 -verify " + sandbox_.file("pub.pem") + " -signature " + sandbox_.file("sig.der") + " " +
        sandbox_.file("input"));
    return header->info;
  }

  /// daemon.signing from GET /v1/status.
  nlohmann::json signingCounters() {
    std::string out;
    run("curl -s --unix-socket " + lab_->file("kmsd.sock") + " http://kmsd/v1/status", &out);
    return nlohmann::json::parse(out)["daemon"]["signing"];
  }

  test::Sandbox sandbox_;
  test::OpensslPki pki_{sandbox_};
  std::unique_ptr<test::LabProcess> lab_;
  std::unique_ptr<test::DaemonProcess> kmsd_;
  std::uint16_t port_ = 0;
  std::string config_;
};

TEST_F(SigningTcp, EachTenantSignsWithItsOwnCertificateOnly) {
  // A, by bearer token: its only certificate, without naming it.
  const Answer a = post(request(), bearer(kTokenA) + " -H 'X-RequestID: a-1'");
  ASSERT_EQ(a.status, 200) << a.body;
  EXPECT_NE(a.headers.find("X-RequestID: a-1\r\n"), std::string::npos) << a.headers;
  EXPECT_NE(expectVerifies(identityOf(a)).find("/sti-cr/main/"), std::string::npos);
  // B, by client certificate: carrier-b's key and x5u.
  const Answer b = post(request("C"), clientCert("sbc-b"));
  ASSERT_EQ(b.status, 200) << b.body;
  EXPECT_NE(expectVerifies(identityOf(b)).find("/sti-cr/carrier-b/"), std::string::npos);
  const std::uint64_t signedBefore = signingCounters()["signed"];

  // Neither may use the other's certificate, nor A an attestation level it was not given.
  Answer refused = post(request("A", R"(,"cert":"carrier-b")"), bearer(kTokenA));
  EXPECT_EQ(refused.status, 403) << refused.body;
  EXPECT_EQ(messageIdOf(refused), "POL4002");
  EXPECT_NE(refused.body.find("sbc-a may not sign with certificate 'carrier-b'"), std::string::npos) << refused.body;
  refused = post(request("A", R"(,"cert":"main")"), clientCert("sbc-b"));
  EXPECT_EQ(refused.status, 403) << refused.body;
  refused = post(request("C"), bearer(kTokenA));
  EXPECT_EQ(refused.status, 403) << refused.body;
  EXPECT_NE(refused.body.find("sbc-a may not attest 'C'"), std::string::npos) << refused.body;

  // No credential, a wrong token, a certificate from another CA with B's subject.
  refused = post(request(), "");
  EXPECT_EQ(refused.status, 401) << refused.body;
  EXPECT_EQ(messageIdOf(refused), "POL4001");
  EXPECT_NE(refused.headers.find("WWW-Authenticate: Bearer"), std::string::npos) << refused.headers;
  refused = post(request(), bearer(std::string(kTokenA) + "x"));
  EXPECT_EQ(refused.status, 401) << refused.body;
  EXPECT_NE(refused.body.find("the bearer token is no client's"), std::string::npos) << refused.body;
  refused = post(request(), clientCert("rogue"));
  EXPECT_EQ(refused.status, 403) << refused.body;
  EXPECT_NE(refused.body.find("is not trusted"), std::string::npos) << refused.body;
  // Without TLS trust of kmsd's certificate, curl itself refuses (the listener is TLS only).
  std::string out;
  EXPECT_NE(test::runCommand("curl -sS -d x " + bearer(kTokenA) + " " + url(), &out), 0) << out;

  // Nothing of that was signed; each refusal was counted by its reason.
  const auto counters = signingCounters();
  EXPECT_EQ(counters["signed"].get<std::uint64_t>(), signedBefore);
  EXPECT_GE(counters["refused"].value("POL4002", 0), 4);
  EXPECT_GE(counters["refused"].value("POL4001", 0), 2);
  // Tokens never reach kmsd's log.
  EXPECT_EQ(kmsd_->log().find(kTokenA), std::string::npos);
}

TEST_F(SigningTcp, AClientOverItsRateLimitIsToldToWait) {
  // 200 requests on one keep-alive connection from client C (5 per second): the first ones
  // pass, then 429 POL4003 with Retry-After; however fast the machine, no more pass than the
  // bucket allows over the time they took.
  const std::string bodyFile = sandbox_.write("c.json", request("B"));
  std::string urls;
  for (int i = 0; i < 200; ++i) {
    urls += " -o /dev/null " + url();
  }
  const auto start = std::chrono::steady_clock::now();
  std::string out;
  run("curl -s -w '%{http_code}\\n' --cacert " + pem("tlsca") + " " + bearer(kTokenC) +
          " --data-binary @" + bodyFile + urls,
      &out);
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  int passed = 0;
  int limited = 0;
  std::istringstream lines(out);
  for (std::string line; std::getline(lines, line);) {
    passed += line == "200" ? 1 : 0;
    limited += line == "429" ? 1 : 0;
  }
  EXPECT_EQ(passed + limited, 200) << out;
  EXPECT_GE(passed, 5);
  EXPECT_LE(passed, 5 + static_cast<int>(5 * took) + 1) << "in " << took << " s";
  EXPECT_GT(limited, 0) << "200 requests took " << took << " s";
  const Answer a = post(request("B"), bearer(kTokenC));
  if (a.status == 429) {
    EXPECT_EQ(messageIdOf(a), "POL4003");
    EXPECT_NE(a.headers.find("Retry-After: 1"), std::string::npos) << a.headers;
  }
  EXPECT_GE(signingCounters()["refused"].value("POL4003", 0), limited);
}

TEST_F(SigningTcp, SighupRemovesAClientAtOnceAndServesANewTlsCertificate) {
  ASSERT_EQ(post(request(), bearer(kTokenA)).status, 200);
  std::string served;
  run("openssl s_client -connect 127.0.0.1:" + std::to_string(port_) +
          " </dev/null 2>/dev/null | openssl x509 -noout -serial",
      &served);
  EXPECT_NE(served.find("serial=65"), std::string::npos) << served;  // 101

  // A leaves the file and the TLS certificate is replaced, in place, then SIGHUP.
  writeConfig(false);
  makeLeaf("server", "/CN=127.0.0.1", "tlsca", 102, "subjectAltName=IP:127.0.0.1");
  kmsd_->signal(SIGHUP);
  ASSERT_TRUE(kmsd_->waitFor("KMS_SIGNING_RELOADED")) << kmsd_->log();
  EXPECT_NE(kmsd_->log().find("2 client(s)"), std::string::npos);
  const Answer gone = post(request(), bearer(kTokenA));
  EXPECT_EQ(gone.status, 401) << gone.body;
  run("openssl s_client -connect 127.0.0.1:" + std::to_string(port_) +
          " </dev/null 2>/dev/null | openssl x509 -noout -serial",
      &served);
  EXPECT_NE(served.find("serial=66"), std::string::npos) << served;  // 102
  EXPECT_EQ(post(request("C"), clientCert("sbc-b")).status, 200);

  // A key that is not the certificate's: the reload is refused, naming the files, and the
  // listener keeps its certificate and clients.
  run("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out " + key("server"));
  ::chmod(key("server").c_str(), 0600);
  kmsd_->signal(SIGHUP);
  ASSERT_TRUE(kmsd_->waitFor("KMS_SIGNING_RELOAD_FAILED")) << kmsd_->log();
  EXPECT_NE(kmsd_->log().find("the key in " + key("server") + " does not match"), std::string::npos) << kmsd_->log();
  EXPECT_EQ(post(request("C"), clientCert("sbc-b")).status, 200);
}

TEST_F(SigningTcp, TheSigningRecordHasEachSignatureAndNeverTheToken) {
  std::vector<std::string> origids;
  for (int i = 0; i < 3; ++i) {
    const std::string origid = pki::randomUuid();
    ASSERT_EQ(post(request("B", R"(,"origid":")" + origid + "\""), bearer(kTokenA)).status, 200);
    origids.push_back(origid);
  }
  ASSERT_EQ(post(request("C"), clientCert("sbc-b")).status, 200);
  ASSERT_EQ(post(request("Z"), bearer(kTokenA)).status, 400);  // refused: not recorded
  // Written by a thread of its own: wait for the four lines (bounded).
  std::vector<nlohmann::json> lines;
  for (auto end = std::chrono::steady_clock::now() + 30s; std::chrono::steady_clock::now() < end;) {
    lines.clear();
    std::istringstream in(test::readFile(sandbox_.file("signing.jsonl")));
    for (std::string line; std::getline(in, line);) {
      lines.push_back(nlohmann::json::parse(line));
    }
    if (lines.size() >= 4) {
      break;
    }
    std::this_thread::sleep_for(100ms);
  }
  ASSERT_EQ(lines.size(), 4U);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(lines[i]["client"], "sbc-a");
    EXPECT_EQ(lines[i]["cert"], "main");
    EXPECT_EQ(lines[i]["attest"], "B");
    EXPECT_EQ(lines[i]["orig"], "12155551212");
    EXPECT_EQ(lines[i]["dest_count"], 1);
    EXPECT_EQ(lines[i]["origid"], origids[i]);
    EXPECT_FALSE(lines[i].value("serial", "").empty());
    EXPECT_FALSE(lines[i].value("time", "").empty());
  }
  EXPECT_EQ(lines[3]["client"], "sbc-b");
  EXPECT_EQ(lines[3]["cert"], "carrier-b");
  const std::string text = test::readFile(sandbox_.file("signing.jsonl"));
  EXPECT_EQ(text.find("eyJ"), std::string::npos) << "a token (or its header) in the record";
  EXPECT_EQ(text.find(kTokenA), std::string::npos);
  struct stat st {};
  ASSERT_EQ(::stat(sandbox_.file("signing.jsonl").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0007, 0U) << "readable by others";
}

TEST_F(SigningTcp, HostileClientsGetAReasonOrAClosedConnectionAndOthersStillSign) {
  // A body that is not JSON, one over the 64 KiB cap, a GET, another path.
  Answer a = post("{not json", bearer(kTokenA));
  EXPECT_EQ(a.status, 400) << a.body;
  EXPECT_EQ(messageIdOf(a), "SVC4006");
  a = post(std::string(std::size_t{1024} * 1024, 'x'), bearer(kTokenA));
  EXPECT_EQ(a.status, 413) << a.body;
  std::string out;
  run("curl -s -o /dev/null -w '%{http_code}' --cacert " + pem("tlsca") + " " + bearer(kTokenA) + " " + url(), &out);
  EXPECT_EQ(out, "405");
  run("curl -s -o /dev/null -w '%{http_code}' --cacert " + pem("tlsca") + " " + bearer(kTokenA) +
          " https://127.0.0.1:" + std::to_string(port_) + "/other",
      &out);
  EXPECT_EQ(out, "404");
  // Slowloris: 8 connections that never finish their TLS handshake or their headers hold
  // nothing up, and each is closed by the listener's header timeout (awaited, not timed).
  std::vector<pid_t> slow;
  for (int i = 0; i < 8; ++i) {
    const std::string cmd = i % 2 == 0
                                ? "exec timeout 120 bash -c 'exec 3<>/dev/tcp/127.0.0.1/" + std::to_string(port_) +
                                      "; cat <&3 >/dev/null'"
                                : "(printf 'POST /stir/v1/signing HTTP/1.1\\r\\nHost: x\\r\\n'; sleep 600) | "
                                  "openssl s_client -quiet -connect 127.0.0.1:" +
                                      std::to_string(port_) + " >/dev/null 2>&1";
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::setpgid(0, 0);
      ::execl("/bin/bash", "bash", "-c", cmd.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    slow.push_back(pid);
  }
  EXPECT_EQ(post(request(), bearer(kTokenA)).status, 200);
  // The raw TCP ones end when kmsd closes them (header timeout, 5 s by default).
  for (std::size_t i = 0; i < slow.size(); i += 2) {
    int status = 0;
    EXPECT_EQ(::waitpid(slow[i], &status, 0), slow[i]);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "not closed by kmsd within 120 s";
  }
  for (std::size_t i = 1; i < slow.size(); i += 2) {
    ::kill(-slow[i], SIGKILL);
    ::waitpid(slow[i], nullptr, 0);
  }
  EXPECT_EQ(post(request(), bearer(kTokenA)).status, 200);
}

TEST_F(SigningTcp, CheckConfigAppliesTheTokenRules) {
  ASSERT_EQ(kmsd_->stop(SIGTERM), 0);
  const std::string env = "SOFTHSM2_CONF=" + lab_->file("softhsm2.conf");
  auto check = [&] {
    std::string out;
    const int rc = test::runCommand(env + " " + test::kKmsd + " --check-config --config " + config_, &out);
    return std::pair{rc, out};
  };
  EXPECT_EQ(check().first, 0) << check().second;
  secret("sbc-c.token", "short-token");
  auto [rc, out] = check();
  EXPECT_EQ(rc, 78) << out;
  EXPECT_NE(out.find(config_ + ": [[signing.client]] sbc-c: token_file: " + sandbox_.file("sbc-c.token") +
                     " must hold one token of at least 32 printable characters (no spaces)"),
            std::string::npos)
      << out;
  EXPECT_EQ(out.find("short-token"), std::string::npos) << "the token itself is never shown";
  secret("sbc-c.token", kTokenA);
  std::tie(rc, out) = check();
  EXPECT_EQ(rc, 78) << out;
  EXPECT_NE(out.find("[[signing.client]] sbc-c: token_file: " + sandbox_.file("sbc-c.token") +
                     " holds the same token as client sbc-a's: each client needs its own"),
            std::string::npos)
      << out;
}

}  // namespace
}  // namespace kms
