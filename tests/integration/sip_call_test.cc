// A call path with the SIP parts carriers run: sipp (sip-tester) places calls through a
// Kamailio 5.6 acting as the SBC, which asks kmsd's TCP signing API (http_client, TLS, a
// bearer token) and adds the Identity header; a second Kamailio verifies it with the secsipid
// module (asipto's libsecsipid), fetching the x5u from kms-lab's STI-CR over HTTPS and checking
// the certificate against the STI-CA root, and answers 200 only when it verifies. A tampered
// signature gets 438, a call without Identity 428, a number kmsd refuses 500 from the SBC.
// The configurations and scenarios are in data/sip/.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "background_process.h"
#include "daemon_process.h"
#include "lab_process.h"
#include "openssl_pki.h"
#include "sandbox.h"

namespace kms {
namespace {

using namespace std::chrono_literals;

const std::string kData = KMS_SIP_DATA;
constexpr const char* kToken = "kamailio-sbc-4Tq9Wz2Lr7Xc5Vb8Nm1Kp3Hd6Gf0Js";
constexpr const char* kCalling = "12025550100";
constexpr const char* kCalled = "12025550101";


/// True once a SIP server on udp/`port` answers an OPTIONS (any status), within 30 s.
bool sipAnswers(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in local{};
  local.sin_family = AF_INET;
  local.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof local;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&local), sizeof local) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) != 0) {
    ::close(fd);
    return false;
  }
  sockaddr_in to = local;
  to.sin_port = htons(port);
  bool answered = false;
  for (auto end = std::chrono::steady_clock::now() + 30s; !answered && std::chrono::steady_clock::now() < end;) {
    const std::string branch = "z9hG4bKprobe" + std::to_string(::random());
    std::string msg = "OPTIONS sip:ping@127.0.0.1:" + std::to_string(port) + " SIP/2.0\r\n";
    msg += "Via: SIP/2.0/UDP 127.0.0.1:" + std::to_string(ntohs(local.sin_port)) + ";branch=" + branch + "\r\n";
    msg += "From: <sip:probe@127.0.0.1>;tag=p\r\nTo: <sip:ping@127.0.0.1>\r\nCall-ID: " + branch + "\r\n";
    msg += "CSeq: 1 OPTIONS\r\nMax-Forwards: 5\r\nContent-Length: 0\r\n\r\n";
    ::sendto(fd, msg.data(), msg.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to);
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 200) == 1) {
      char buf[2048];
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      answered = n > 8 && std::string(buf, 8) == "SIP/2.0 ";
    }
  }
  ::close(fd);
  return answered;
}

/// A server process (Kamailio) started with its output in `log`, stopped by PID.
using Background = test::BackgroundProcess;

class SipCall : public ::testing::Test {
 protected:
  void SetUp() override {
    lab_ = std::make_unique<test::LabProcess>(sandbox_.file("lab"));
    pki_.makeCa("tlsca", "/CN=Signing TLS CA");
    pki_.makeLeaf("server", "/CN=127.0.0.1", "tlsca", 7, "subjectAltName=IP:127.0.0.1");
    ::chmod(sandbox_.write("kamailio.token", std::string(kToken) + "\n").c_str(), 0600);
    signingPort_ = test::freePort(SOCK_STREAM);
    std::string config = test::readFile(lab_->file("kmsd.toml"));
    config += "\n[signing]\nlisten = \"127.0.0.1:" + std::to_string(signingPort_) + "\"\ntls_certificate = \"" +
              pki_.pem("server") + "\"\ntls_key = \"" + pki_.key("server") +
              "\"\n\n[[signing.client]]\nname = \"kamailio\"\ntoken_file = \"" + sandbox_.file("kamailio.token") +
              "\"\ncertificates = [\"main\"]\n";
    const std::string configFile = sandbox_.write("kmsd.toml", config);
    kmsd_ = std::make_unique<test::DaemonProcess>(lab_->file("softhsm2.conf"), configFile, sandbox_.file("kmsd.log"));
    ASSERT_TRUE(kmsd_->waitFor("KMS_CERT_ACTIVATED cert=main", 120s)) << kmsd_->log();

    signerPort_ = test::freePort(SOCK_DGRAM);
    verifierPort_ = test::freePort(SOCK_DGRAM);
    for (const char* dir : {"verifier", "signer", "sipp"}) {
      ::mkdir(sandbox_.file(dir).c_str(), 0700);
    }
    // The verifier: libsecsipid fetches the x5u with Go's HTTP client, which trusts what
    // SSL_CERT_FILE names (kms-lab's TLS CA); the certificate must chain to the STI-CA root.
    verifier_ = std::make_unique<Background>(
        std::vector<std::string>{"/usr/sbin/kamailio", "-f", kData + "/verifier.cfg", "-DD", "-E", "-m", "32", "-M",
                                 "8", "-Y", sandbox_.file("verifier"), "-w", sandbox_.file("verifier"), "-A",
                                 "LISTEN=udp:127.0.0.1:" + std::to_string(verifierPort_), "-A", "EXPIRE=300", "-A",
                                 "STI_CA_OPT=\"CertCAFile=" + lab_->file("sti-ca-root.pem") + "\""},
        sandbox_.file("verifier.log"), std::vector<std::string>{"SSL_CERT_FILE=" + lab_->file("tls-ca.pem")});
    signer_ = std::make_unique<Background>(
        std::vector<std::string>{"/usr/sbin/kamailio",
                                 "-f",
                                 kData + "/signer.cfg",
                                 "-DD",
                                 "-E",
                                 "-m",
                                 "32",
                                 "-M",
                                 "8",
                                 "-Y",
                                 sandbox_.file("signer"),
                                 "-w",
                                 sandbox_.file("signer"),
                                 "-A",
                                 "LISTEN=udp:127.0.0.1:" + std::to_string(signerPort_),
                                 "-A",
                                 "VERIFIER=\"sip:127.0.0.1:" + std::to_string(verifierPort_) + "\"",
                                 "-A",
                                 "SIGN_URL=\"https://127.0.0.1:" + std::to_string(signingPort_) + "\"",
                                 "-A",
                                 std::string("SIGN_TOKEN=\"") + kToken + "\"",
                                 "-A",
                                 "CA_FILE=\"" + pki_.pem("tlsca") + "\"",
                                 "-A",
                                 "WITH_TAMPER_HOOK"},
        sandbox_.file("signer.log"));
    ASSERT_TRUE(sipAnswers(verifierPort_)) << verifier_->log();
    ASSERT_TRUE(sipAnswers(signerPort_)) << signer_->log();
  }

  /// Runs one sipp call with `scenario` to udp/`port`; sipp's exit status (0: the scenario's
  /// expected answer came), its logs in the failure message.
  void call(const std::string& scenario, std::uint16_t port, const std::string& called, const std::string& what) {
    const std::string name = scenario.substr(0, scenario.find('.'));
    std::string out;
    const int rc = test::runCommand(
        "cd " + sandbox_.file("sipp") + " && sipp -sf " + kData + "/" + scenario +
            " -m 1 -nostdin -i 127.0.0.1 -p " + std::to_string(test::freePort(SOCK_DGRAM)) + " -s " + called +
            " -key from_tn " + kCalling + " -timeout 30s -timeout_error -recv_timeout 20000 -trace_err -error_file " +
            sandbox_.file("sipp/" + name + ".errors") + " -trace_msg -message_file " +
            sandbox_.file("sipp/" + name + ".messages") + " 127.0.0.1:" + std::to_string(port),
        &out);
    std::string messages;
    std::string errors;
    try {
      messages = test::readFile(sandbox_.file("sipp/" + name + ".messages"));
      errors = test::readFile(sandbox_.file("sipp/" + name + ".errors"));
    } catch (const std::exception&) {
    }
    EXPECT_EQ(rc, 0) << what << "\n--- sipp:\n"
                     << out << "\n--- errors:\n"
                     << errors << "\n--- messages:\n"
                     << messages << "\n--- signer:\n"
                     << signer_->log() << "\n--- verifier:\n"
                     << verifier_->log();
  }

  test::Sandbox sandbox_;
  test::OpensslPki pki_{sandbox_};
  std::unique_ptr<test::LabProcess> lab_;
  std::unique_ptr<test::DaemonProcess> kmsd_;
  std::unique_ptr<Background> verifier_;
  std::unique_ptr<Background> signer_;
  std::uint16_t signingPort_ = 0;
  std::uint16_t signerPort_ = 0;
  std::uint16_t verifierPort_ = 0;
};

TEST_F(SipCall, TheSbcSignsThroughKmsdAndTheVerifierAcceptsOnlyAnUntamperedIdentity) {
  call("uac.xml", signerPort_, kCalled, "a call signed by kmsd verifies: 200 (X-Secsipid-Ret: 1)");
  call("uac_tamper.xml", signerPort_, kCalled, "a changed signature: 438");
  call("uac_noident.xml", verifierPort_, kCalled, "no Identity at all: 428");
  call("uac_signfail.xml", signerPort_, "abc123", "a called number kmsd refuses: 500 from the SBC");

  // kmsd signed the two calls that reached it with a valid number and refused the third,
  // naming the member; each request carried the call's Call-ID as X-RequestID.
  std::string status;
  test::OpensslPki::run("curl -s --unix-socket " + lab_->file("kmsd.sock") + " http://kmsd/v1/status", &status);
  const auto signing = nlohmann::json::parse(status)["daemon"]["signing"];
  EXPECT_EQ(signing["signed"], 2) << signing.dump();
  EXPECT_EQ(signing["refused"].value("SVC4005", 0), 1) << signing.dump();
  EXPECT_NE(signer_->log().find("\"messageId\":\"SVC4005\""), std::string::npos) << signer_->log();
}

}  // namespace
}  // namespace kms
