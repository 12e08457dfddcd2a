// [signing] with its TCP listener and [[signing.client]] entries: what loads, and each
// mistake an operator can make, with its exact `file:line:col: [section] key:` text.
#include <string>

#include <gtest/gtest.h>

#include "config/config.h"
#include "config_fixture.h"

namespace kms::config::test {
namespace {

/// Two SHAKEN certificates and a web one, from line 20.
constexpr const char* kCertificates = R"(
[[certificate]]
name = "carrier-a"
spc = "1234"
subject_o = "Carrier A"

[[certificate]]
name = "carrier-b"
spc = "5678"
subject_o = "Carrier B"

[[certificate]]
name = "web"
identifiers = ["dns:a.example"]
)";
constexpr int kSigningLine = 35;  // the [signing] header below kCertificates

class ConfigSigning : public ConfigFixture {
 protected:
  ConfigSigning() {
    sandbox_.write("tls.pem", kms::test::kTestRootPem);
    sandbox_.write("tls.key", "not parsed by the config");
    sandbox_.write("clients-ca.pem", kms::test::kTestRootPem);
    sandbox_.write("sbc-a.token", "0123456789abcdef0123456789abcdef");
  }
  /// kMinimal + kStiPa + kCertificates + "\n[signing]\n" + `signing`.
  static std::string with(const std::string& signing) {
    return std::string(kMinimal) + kStiPa + kCertificates + "\n[signing]\n" + signing;
  }
  static std::string at(int line, int column, const std::string& rest) {
    return "kmsd.toml:" + std::to_string(line) + ":" + std::to_string(column) + ": " + rest;
  }
};

constexpr const char* kTls = R"(listen = "0.0.0.0:8443"
tls_certificate = "@DIR@/tls.pem"
tls_key = "@DIR@/tls.key"
client_ca = "@DIR@/clients-ca.pem"
)";

TEST_F(ConfigSigning, ListenerTlsAndClientsLoad) {
  const Config c = loadOk(with(std::string(kTls) + R"(record = "/var/log/kmsd/signing.jsonl"
record_keep = 3

[[signing.client]]
name = "sbc-a"
token_file = "@DIR@/sbc-a.token"
certificates = ["carrier-a"]
attest = ["A", "B"]
rate_limit = 500

[[signing.client]]
name = "sbc-b"
certificate_subject = "CN=sbc1,O=Carrier B"
certificates = ["carrier-b", "carrier-a"]
)"));
  const SigningConfig& s = c.signing;
  ASSERT_TRUE(s.listen.has_value());
  EXPECT_EQ(s.listen->toString(), "0.0.0.0:8443");
  EXPECT_EQ(s.tlsKey, dir() + "/tls.key");
  EXPECT_EQ(s.clientCa, dir() + "/clients-ca.pem");
  EXPECT_EQ(s.record, "/var/log/kmsd/signing.jsonl");
  EXPECT_EQ(s.recordKeep, 3);
  EXPECT_EQ(s.recordMaxBytes, 64 * 1024 * 1024);
  ASSERT_EQ(s.clients.size(), 2U);
  EXPECT_EQ(s.clients[0].name, "sbc-a");
  EXPECT_EQ(s.clients[0].tokenFile, dir() + "/sbc-a.token");
  EXPECT_EQ(s.clients[0].attest, (std::vector<std::string>{"A", "B"}));
  EXPECT_EQ(s.clients[0].rateLimit, 500);
  EXPECT_EQ(s.clients[1].certificateSubject, "CN=sbc1,O=Carrier B");
  EXPECT_EQ(s.clients[1].certificates, (std::vector<std::string>{"carrier-b", "carrier-a"}));
  EXPECT_EQ(s.clients[1].attest, (std::vector<std::string>{"A", "B", "C"}));
  EXPECT_EQ(s.clients[1].rateLimit, 0);
  // The summary names the token file, never its content.
  const std::string summary = redactedSummary(c);
  EXPECT_NE(summary.find("[[signing.client]]"), std::string::npos) << summary;
  EXPECT_EQ(summary.find("0123456789abcdef"), std::string::npos) << summary;
  // Clear text on a loopback address needs no TLS.
  EXPECT_TRUE(load(with("listen = \"127.0.0.1:8080\"\n\n[[signing.client]]\nname = \"a\"\ntoken_file = "
                        "\"@DIR@/sbc-a.token\"\ncertificates = [\"carrier-a\"]\n"))
                  .has_value());
}

TEST_F(ConfigSigning, ListenerMistakesNameTheKey) {
  const int l = kSigningLine + 1;
  const std::string client = "\n[[signing.client]]\nname = \"a\"\ntoken_file = \"@DIR@/sbc-a.token\"\n"
                             "certificates = [\"carrier-a\"]\n";
  EXPECT_EQ(errors(with("listen = \"0.0.0.0:8080\"\n" + client)),
            (Lines{at(l, 10,
                      "[signing] listen: would carry bearer tokens in clear text: set tls_certificate and tls_key, "
                      "or listen on a loopback address")}));
  EXPECT_EQ(errors(with("listen = \"127.0.0.1:8080\"\ntls_key = \"@DIR@/tls.key\"\n" + client)),
            (Lines{at(kSigningLine, 1, "[signing] tls_certificate: tls_certificate and tls_key go together")}));
  EXPECT_EQ(errors(with("listen = \"127.0.0.1:8080\"\nclient_ca = \"@DIR@/clients-ca.pem\"\n" + client)),
            (Lines{at(l + 1, 13, "[signing] client_ca: client certificates need TLS: set tls_certificate and "
                                 "tls_key")}));
  EXPECT_EQ(errors(with("listen = \"127.0.0.1:8080\"\n")),
            (Lines{at(l, 10, "[signing] listen: needs at least one [[signing.client]] (who may sign over TCP)")}));
  EXPECT_EQ(errors(with("record = \"signing.log\"\n")),
            (Lines{at(l, 10, "[signing] record: must be an absolute path")}));
  EXPECT_EQ(errors(with("listen = \"8443\"\n" + client)),
            (Lines{at(l, 10, "[signing] listen: must be host:port (e.g. 127.0.0.1:9464 or [::1]:9464)")}));
  // Clients without a listener have nothing to sign through.
  EXPECT_EQ(errors(with(client)),
            (Lines{at(kSigningLine + 2, 1, "[signing] client: clients sign over the TCP listener: set listen (the "
                                       "control socket admits its admins only)")}));
}

TEST_F(ConfigSigning, ClientMistakesNameTheClientAndKey) {
  const std::string head = std::string(kTls) + "\n[[signing.client]]\nname = \"a\"\n";
  const int l = kSigningLine + 8;  // the client's first key
  EXPECT_EQ(errors(with(head + "certificates = [\"carrier-a\"]\n")),
            (Lines{at(l - 2, 1, "[signing.client.a] token_file: a client has exactly one credential: token_file or "
                                "certificate_subject")}));
  EXPECT_EQ(errors(with(head + "token_file = \"@DIR@/sbc-a.token\"\ncertificate_subject = \"CN=x\"\n"
                               "certificates = [\"carrier-a\"]\n")),
            (Lines{at(l + 1, 23, "[signing.client.a] certificate_subject: a client has exactly one credential: "
                                 "token_file or certificate_subject")}));
  EXPECT_EQ(errors(with(head + "token_file = \"@DIR@/sbc-a.token\"\ncertificates = [\"carrier-a\", \"web\", "
                               "\"nobody\"]\nattest = [\"A\", \"D\"]\nrate_limit = -1\n")),
            (Lines{at(l + 1, 30, "[signing.client.a] certificates[1]: \"web\" is not a SHAKEN certificate (it has no "
                                 "spc)"),
                   at(l + 1, 37, "[signing.client.a] certificates[2]: no [[certificate]] is named \"nobody\""),
                   at(l + 2, 16, "[signing.client.a] attest[1]: must be \"A\", \"B\" or \"C\""),
                   at(l + 3, 14, "[signing.client.a] rate_limit: must be between 0 (no limit) and 1000000 requests "
                                 "per second")}));
  EXPECT_EQ(errors(with(head + "token_file = \"@DIR@/sbc-a.token\"\ncertificates = []\n")),
            (Lines{at(l + 1, 16, "[signing.client.a] certificates: must name at least one SHAKEN [[certificate]]")}));
  // One name, one subject, per client.
  const std::string twice = head + "certificate_subject = \"CN=x\"\ncertificates = [\"carrier-a\"]\n" +
                            "\n[[signing.client]]\nname = \"a\"\ncertificate_subject = \"CN=x\"\n"
                            "certificates = [\"carrier-b\"]\n";
  EXPECT_EQ(errors(with(twice)),
            (Lines{at(l + 4, 8,
                      "[signing.client.a] name: duplicate client name (first defined at kmsd.toml:" +
                          std::to_string(l - 1) + ":8)"),
                   at(l + 5, 23, "[signing.client.a] certificate_subject: is also signing.client.a's: a credential "
                                 "names one client")}));
  // A subject needs the CAs it must chain to.
  EXPECT_EQ(errors(with("listen = \"127.0.0.1:8080\"\n\n[[signing.client]]\nname = \"a\"\ncertificate_subject = "
                        "\"CN=x\"\ncertificates = [\"carrier-a\"]\n")),
            (Lines{at(kSigningLine + 5, 23, "[signing.client.a] certificate_subject: needs [signing] client_ca (the "
                                            "CAs its certificate must chain to)")}));
  // A token file follows the secret-file rules.
  ::chmod((dir() + "/sbc-a.token").c_str(), 0644);
  const Lines loose = errors(with(head + "token_file = \"@DIR@/sbc-a.token\"\ncertificates = [\"carrier-a\"]\n"));
  ASSERT_EQ(loose.size(), 1U);
  EXPECT_NE(loose[0].find(at(l, 14, "[signing.client.a] token_file: ")), std::string::npos) << loose[0];
  EXPECT_NE(loose[0].find("chmod 600"), std::string::npos) << loose[0];
  // Clients are not settings an environment variable can make.
  EXPECT_EQ(errors(kMinimal, {{"KMSD_SIGNING_CLIENT", "x"}}),
            (Lines{"env KMSD_SIGNING_CLIENT: [signing] client: cannot be set from the environment"}));
}

}  // namespace
}  // namespace kms::config::test
