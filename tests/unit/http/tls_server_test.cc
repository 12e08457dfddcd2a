// The HTTPS listener against real clients (curl and openssl s_client): the certificate it
// serves and a reload that swaps it, the client certificate each request carries (trusted,
// untrusted, none), the secret-file rule on the key, and a client that never finishes its
// handshake. Certificates are made with the openssl command line, not the code under test.
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <chrono>
#include <string>

#include "http/server.h"
#include "openssl_pki.h"
#include "sandbox.h"

namespace kms::http {
namespace {

using namespace std::chrono_literals;

class TlsServer : public ::testing::Test {
 protected:
  void SetUp() override {
    makeCa("ca", "/CN=Test TLS CA");
    makeCa("clientca", "/CN=Test Client CA");
    makeLeaf("server", "/CN=127.0.0.1", "ca", 11, "subjectAltName=IP:127.0.0.1");
    makeLeaf("client", "/O=Carrier A/CN=sbc1", "clientca", 21, "extendedKeyUsage=clientAuth");
    // The same subject, issued by a CA the listener does not trust.
    makeCa("rogueca", "/CN=Rogue CA");
    makeLeaf("rogue", "/O=Carrier A/CN=sbc1", "rogueca", 31, "extendedKeyUsage=clientAuth");
  }
  void TearDown() override {
    thread_.stop();
    server_.reset();
  }

  void run(const std::string& command, std::string* out = nullptr) { test::OpensslPki::run(command, out); }
  void makeCa(const std::string& name, const std::string& subject) { pki_.makeCa(name, subject); }
  void makeLeaf(const std::string& name, const std::string& subject, const std::string& ca, int serial,
                const std::string& extension) {
    pki_.makeLeaf(name, subject, ca, serial, extension);
  }
  std::string key(const std::string& name) { return pki_.key(name); }
  std::string pem(const std::string& name) { return pki_.pem(name); }
  TlsIdentity::Files files(const std::string& name, bool clientCa = true) {
    TlsIdentity::Files f{pem(name), key(name), std::nullopt};
    if (clientCa) {
      f.clientCa = pem("clientca");
    }
    return f;
  }

  void start(const TlsIdentity::Files& f) {
    auto identity = TlsIdentity::load(f);
    ASSERT_TRUE(identity.has_value()) << identity.error().toString();
    identity_ = *identity;
    ServerOptions o;
    o.limits.headerTimeout = 2s;
    // Says what the request carried: the handler is the code that judges clients.
    auto handler = [](const ServerRequest& r, const Reply& reply) {
      std::string body = "remote=" + r.remote + "\n";
      if (r.tls) {
        body += "presented=" + std::to_string(int{r.tls->presented}) + "\nverified=" +
                std::to_string(int{r.tls->verified}) + "\nsubject=" + r.tls->subject + "\nerror=" + r.tls->verifyError +
                "\n";
      }
      reply(textResponse(200, body));
    };
    auto s = Server::listenTls(thread_.io(), "127.0.0.1", 0, identity_, handler, o);
    ASSERT_TRUE(s.has_value()) << s.error().toString();
    server_ = std::move(*s);
    thread_.start();
  }
  std::string url() const { return "https://127.0.0.1:" + std::to_string(server_->port()) + "/x"; }
  /// curl's answer body, trusting the test CA; `client` names a certificate to present.
  std::string get(const std::string& client = "") {
    std::string out;
    run("curl -sS --cacert " + pem("ca") +
            (client.empty() ? std::string() : " --cert " + pem(client) + " --key " + key(client)) + " " + url() +
            " 2>&1",
        &out);
    return out;
  }
  /// The serial of the certificate the listener serves now.
  std::string servedSerial() {
    std::string out;
    run("openssl s_client -connect 127.0.0.1:" + std::to_string(server_->port()) +
            " </dev/null 2>/dev/null | openssl x509 -noout -serial",
        &out);
    return out;
  }

  test::Sandbox sandbox_;
  test::OpensslPki pki_{sandbox_};
  ServerThread thread_;
  std::shared_ptr<TlsIdentity> identity_;
  std::unique_ptr<Server> server_;
};

TEST_F(TlsServer, RequestsCarryWhetherTheClientCertificateVerified) {
  start(files("server"));
  // A client certificate from the client CA: verified, with its subject.
  const std::string trusted = get("client");
  EXPECT_NE(trusted.find("presented=1\nverified=1\nsubject=CN=sbc1,O=Carrier A\n"), std::string::npos) << trusted;
  EXPECT_NE(trusted.find("remote=127.0.0.1\n"), std::string::npos) << trusted;
  // The same subject from another CA: presented, not verified, and why.
  const std::string rogue = get("rogue");
  EXPECT_NE(rogue.find("presented=1\nverified=0\nsubject=CN=sbc1,O=Carrier A\n"), std::string::npos) << rogue;
  EXPECT_NE(rogue.find("error=unable to verify the first certificate"), std::string::npos) << rogue;
  // None at all: the handshake still completes; the handler decides.
  const std::string none = get();
  EXPECT_NE(none.find("presented=0\nverified=0\n"), std::string::npos) << none;
}

TEST_F(TlsServer, WithoutAClientCaNoCertificateIsAskedFor) {
  start(files("server", false));
  const std::string answer = get("client");
  EXPECT_NE(answer.find("presented=0\n"), std::string::npos) << answer;
}

TEST_F(TlsServer, AReloadServesTheNewCertificateAndABadOneKeepsTheOld) {
  start(files("server"));
  EXPECT_NE(servedSerial().find("serial=0B"), std::string::npos);
  makeLeaf("server2", "/CN=127.0.0.1", "ca", 12, "subjectAltName=IP:127.0.0.1");
  // A certificate with another certificate's key is refused, naming both files.
  auto mismatched = identity_->reload({pem("server2"), key("server"), pem("clientca")});
  ASSERT_FALSE(mismatched.has_value());
  EXPECT_NE(mismatched.error().message.find(key("server")), std::string::npos) << mismatched.error().message;
  EXPECT_NE(mismatched.error().message.find("does not match"), std::string::npos) << mismatched.error().message;
  EXPECT_NE(servedSerial().find("serial=0B"), std::string::npos);
  ASSERT_TRUE(identity_->reload(files("server2")).has_value());
  EXPECT_NE(servedSerial().find("serial=0C"), std::string::npos);
  EXPECT_NE(get("client").find("verified=1"), std::string::npos);
}

TEST_F(TlsServer, TheKeyFileFollowsTheSecretFileRules) {
  ::chmod(key("server").c_str(), 0644);
  auto identity = TlsIdentity::load(files("server"));
  ASSERT_FALSE(identity.has_value());
  EXPECT_NE(identity.error().toString().find(key("server")), std::string::npos) << identity.error().toString();
  EXPECT_NE(identity.error().toString().find("chmod 600"), std::string::npos) << identity.error().toString();
  auto missing = TlsIdentity::load({sandbox_.file("absent.pem"), key("server"), std::nullopt});
  ASSERT_FALSE(missing.has_value());
  EXPECT_NE(missing.error().message.find("absent.pem"), std::string::npos) << missing.error().message;
}

TEST_F(TlsServer, AClientThatNeverCompletesItsHandshakeIsClosed) {
  start(files("server"));
  // Plain HTTP on the TLS port gets no answer; a silent client is closed after the header
  // timeout (the test waits for the close, however long the machine takes).
  std::string out;
  EXPECT_NE(test::runCommand("curl -sS -m 60 http://127.0.0.1:" + std::to_string(server_->port()) + "/x 2>&1", &out),
            0)
      << out;
  EXPECT_EQ(test::runCommand("timeout 60 bash -c 'exec 3<>/dev/tcp/127.0.0.1/" + std::to_string(server_->port()) +
                                 "; cat <&3 >/dev/null'",
                             &out),
            0)
      << "the silent connection was not closed: " << out;
  // And the listener still serves.
  EXPECT_NE(get().find("presented=0"), std::string::npos);
}

}  // namespace
}  // namespace kms::http
