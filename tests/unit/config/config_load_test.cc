// Valid configurations: the full example, defaults, the redacted summary, environment
// overrides and the file-level API.

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

#include "config/config.h"
#include "config_fixture.h"

namespace kms::config::test {
namespace {

using namespace std::chrono_literals;

std::string readData(const std::string& name) {
  std::ifstream in(std::string(KMS_CONFIG_TEST_DATA) + "/" + name);
  std::ostringstream content;
  content << in.rdbuf();
  return content.str();
}

class ConfigLoad : public ConfigFixture {};

TEST_F(ConfigLoad, FullExampleSetsEveryField) {
  const std::string path = sandbox_.write("kmsd.toml", expand(readData("full.toml")));
  auto loaded = loadConfigFile(path, {});
  ASSERT_TRUE(loaded.has_value()) << formatErrors(loaded.error());
  const Config& c = loaded.value();

  EXPECT_EQ(c.source, path);
  EXPECT_EQ(c.daemon.stateDir, "/var/lib/kmsd");
  EXPECT_EQ(c.daemon.controlSocket, "/run/kmsd/ctl.sock");
  EXPECT_EQ(c.daemon.logFormat, LogFormat::json);

  EXPECT_EQ(c.hsm.module, dir() + "/libpkcs11.so");
  EXPECT_EQ(c.hsm.tokenLabel, "kms");
  EXPECT_EQ(c.hsm.pinFile, dir() + "/hsm.pin");
  EXPECT_EQ(c.hsm.sessionPool, 8);

  ASSERT_TRUE(c.stiPa.has_value());
  EXPECT_EQ(c.stiPa->url, "https://sti-pa.example/api/v1");
  EXPECT_EQ(c.stiPa->userId, "ops-api");
  EXPECT_EQ(c.stiPa->passwordFile, dir() + "/sti-pa.password");
  EXPECT_EQ(c.stiPa->trustAnchor, dir() + "/sti-pa-root.pem");
  EXPECT_EQ(c.stiPa->caBundle, dir() + "/sti-pa-tls-ca.pem");
  EXPECT_EQ(c.stiPa->crlSigner, dir() + "/sti-pa-crl.pem");
  EXPECT_EQ(c.stiPa->trustRefresh, 15min);
  EXPECT_EQ(c.stiPa->allowedHosts, (std::vector<std::string>{"cdn.sti-pa.example", "sti-pa.example:8443"}));
  EXPECT_TRUE(c.stiPa->insecureSkipSignerCheck);
  EXPECT_TRUE(c.acme.insecureSkipChainCheck);
  EXPECT_EQ(c.stiPa->fingerprint, Fingerprint::jwkThumbprint);

  EXPECT_EQ(c.acme.directoryUrl, "https://sti-ca.example/acme/directory");
  EXPECT_EQ(c.acme.caBundle, dir() + "/acme-tls-ca.pem");
  EXPECT_EQ(c.acme.trustAnchors, dir() + "/sti-ca-roots.pem");
  EXPECT_EQ(c.acme.eabKid, "kid-1");
  EXPECT_EQ(c.acme.eabHmacFile, dir() + "/eab.key");
  EXPECT_EQ(c.acme.contact, (std::vector<std::string>{"mailto:noc@example.net", "mailto:pki@example.net"}));
  EXPECT_EQ(c.acme.http01Listen, (HostPort{"::1", 8080}));
  EXPECT_EQ(c.acme.http01Listen.toString(), "[::1]:8080");
  EXPECT_EQ(c.acme.dns01Hook, dir() + "/dns01-hook.sh");

  EXPECT_EQ(c.publisher.webRoot, "/var/www/sti-cr");
  EXPECT_EQ(c.publisher.baseUrl, "https://cr.example.net/certs/");
  EXPECT_EQ(c.publisher.retain, 7 * 24h);

  ASSERT_EQ(c.certificates.size(), 3U);
  const CertificateConfig& main = c.certificates[0];
  EXPECT_EQ(main.name, "main");
  EXPECT_EQ(main.spc, "1234");
  EXPECT_TRUE(main.dnsNames.empty());
  EXPECT_EQ(main.challenge, Challenge::tkauth01);
  EXPECT_EQ(main.subjectO, "Example Telecom");
  EXPECT_EQ(main.subjectC, "CA");
  EXPECT_DOUBLE_EQ(main.renewBeforeFraction, 0.25);

  const CertificateConfig& web = c.certificates[1];
  EXPECT_EQ(web.name, "web");
  EXPECT_FALSE(web.spc.has_value());
  EXPECT_EQ(web.dnsNames, (std::vector<std::string>{"cr.example.net", "www.example.net"}));
  EXPECT_EQ(web.challenge, Challenge::http01);
  EXPECT_FALSE(web.subjectO.has_value());
  EXPECT_EQ(web.subjectC, "US");
  EXPECT_DOUBLE_EQ(web.renewBeforeFraction, 0.333);

  const CertificateConfig& wild = c.certificates[2];
  EXPECT_EQ(wild.name, "wild.card_1");
  EXPECT_EQ(wild.dnsNames, (std::vector<std::string>{"*.example.org"}));
  EXPECT_EQ(wild.challenge, Challenge::dns01);
  EXPECT_EQ(wild.subjectO, "Example Org");
  EXPECT_DOUBLE_EQ(wild.renewBeforeFraction, 0.5);

  EXPECT_TRUE(c.envOverrides.empty());
}

TEST_F(ConfigLoad, DefaultsFillOptionalKeys) {
  const Config c = loadOk(std::string(kMinimal) + kStiPa + R"(
[[certificate]]
name = "main"
spc = "1234"
subject_o = "Example Telecom"

[[certificate]]
name = "web"
identifiers = ["dns:cr.example.net"]
)");
  EXPECT_EQ(c.daemon.controlSocket, "/run/kmsd/control.sock");
  EXPECT_EQ(c.daemon.logFormat, LogFormat::text);
  EXPECT_EQ(c.hsm.sessionPool, 4);
  ASSERT_TRUE(c.stiPa.has_value());
  EXPECT_FALSE(c.stiPa->trustAnchor.has_value());
  EXPECT_FALSE(c.stiPa->crlSigner.has_value());
  EXPECT_EQ(c.stiPa->trustRefresh, 1h);
  EXPECT_FALSE(c.stiPa->insecureSkipSignerCheck);
  EXPECT_FALSE(c.acme.insecureSkipChainCheck);
  EXPECT_EQ(c.stiPa->fingerprint, Fingerprint::spki);
  EXPECT_FALSE(c.acme.caBundle.has_value());
  EXPECT_FALSE(c.acme.trustAnchors.has_value());
  EXPECT_FALSE(c.acme.eabKid.has_value());
  EXPECT_FALSE(c.acme.eabHmacFile.has_value());
  EXPECT_TRUE(c.acme.contact.empty());
  EXPECT_EQ(c.acme.http01Listen, (HostPort{"127.0.0.1", 80}));
  EXPECT_FALSE(c.acme.dns01Hook.has_value());
  EXPECT_EQ(c.publisher.retain, 24h);
  ASSERT_EQ(c.certificates.size(), 2U);
  EXPECT_EQ(c.certificates[0].challenge, Challenge::tkauth01);
  EXPECT_EQ(c.certificates[0].subjectC, "US");
  EXPECT_DOUBLE_EQ(c.certificates[0].renewBeforeFraction, 0.333);
  EXPECT_EQ(c.certificates[1].challenge, Challenge::http01);
}

TEST_F(ConfigLoad, NoStiPaSectionMeansNoStiPa) {
  const Config c = loadOk(kMinimal);
  EXPECT_FALSE(c.stiPa.has_value());
  EXPECT_TRUE(c.certificates.empty());
}

TEST_F(ConfigLoad, ModuleDefaultsToTheBuildTimeSoftHsm) {
  const std::string module = KMS_SOFTHSM2_MODULE_PATH;
  // deploy/install-deps.sh installs softhsm2; without it this is a broken machine, not a skip.
  ASSERT_EQ(::access(module.c_str(), R_OK), 0) << module << " is not installed (apt-get install softhsm2)";
  const Config c = loadOk(R"([daemon]
state_dir = "/var/lib/kmsd"
[hsm]
token_label = "kms"
pin_file = "@DIR@/hsm.pin"
[acme]
directory_url = "https://ca.example/dir"
[publisher]
web_root = "/var/www/cr"
base_url = "https://cr.example.net/"
)");
  EXPECT_EQ(c.hsm.module, module);
}

TEST_F(ConfigLoad, DurationsAndListenAddresses) {
  auto withRetain = [&](const std::string& retain) {
    return loadOk(std::string(kMinimal) + "retain = \"" + retain + "\"\n").publisher.retain;
  };
  EXPECT_EQ(withRetain("90s"), 90s);
  EXPECT_EQ(withRetain("30m"), 30min);
  EXPECT_EQ(withRetain("24h"), 24h);
  EXPECT_EQ(withRetain("7d"), 7 * 24h);

  const Config c = loadOk(R"([daemon]
state_dir = "/var/lib/kmsd"
[hsm]
module = "@DIR@/libpkcs11.so"
token_label = "kms"
pin_file = "@DIR@/hsm.pin"
[acme]
directory_url = "http://127.0.0.53:14000/dir"
http01_listen = "0.0.0.0:5002"
[publisher]
web_root = "/var/www/cr"
base_url = "http://[::1]:8080/"
)");
  EXPECT_EQ(c.acme.http01Listen, (HostPort{"0.0.0.0", 5002}));
  EXPECT_EQ(c.acme.directoryUrl, "http://127.0.0.53:14000/dir");
  EXPECT_EQ(c.publisher.baseUrl, "http://[::1]:8080/");
}

TEST_F(ConfigLoad, LoopbackHostsMayUseHttp) {
  for (const char* url :
       {"http://localhost/dir", "http://LOCALHOST:14000/dir", "http://127.0.0.1/dir", "http://127.1.2.3:80/x",
        "http://[::1]/dir", "https://ca.example", "HTTPS://ca.example:443/dir?x=1"}) {
    auto loaded = load(R"([daemon]
state_dir = "/var/lib/kmsd"
[hsm]
module = "@DIR@/libpkcs11.so"
token_label = "kms"
pin_file = "@DIR@/hsm.pin"
[acme]
directory_url = ")" + std::string(url) +
                       R"("
[publisher]
web_root = "/var/www/cr"
base_url = "https://cr.example.net/"
)");
    EXPECT_TRUE(loaded.has_value()) << url << ": " << formatErrors(loaded.error());
  }
}

class ConfigSummary : public ConfigFixture {};

TEST_F(ConfigSummary, ShowsFileNamesNeverSecrets) {
  const Config c = loadOk(expand(readData("full.toml")));
  const std::string summary = redactedSummary(c);
  EXPECT_NE(summary.find("pin_file = \"" + dir() + "/hsm.pin\"  # secret file; content not shown"), std::string::npos)
      << summary;
  EXPECT_NE(summary.find("eab_hmac_file = \"" + dir() + "/eab.key\""), std::string::npos);
  EXPECT_NE(summary.find("retain = \"7d\""), std::string::npos);
  EXPECT_NE(summary.find("identifiers = [\"dns:cr.example.net\", \"dns:www.example.net\"]"), std::string::npos);
  EXPECT_EQ(summary.find(kPin), std::string::npos);
  EXPECT_EQ(summary.find("sti-pa-password"), std::string::npos);
  EXPECT_EQ(summary.find("eab-hmac-key"), std::string::npos);
}

TEST_F(ConfigSummary, IsLoadableTomlGivingTheSameConfig) {
  const Config original = loadOk(expand(readData("full.toml")));
  Config reloaded = loadOk(redactedSummary(original));
  reloaded.source = original.source;
  EXPECT_EQ(reloaded, original) << redactedSummary(reloaded);

  const Config minimal = loadOk(kMinimal);
  Config minimalAgain = loadOk(redactedSummary(minimal));
  EXPECT_EQ(minimalAgain, minimal);
}

TEST_F(ConfigSummary, ListsEnvironmentOverrides) {
  const Config c = loadOk(kMinimal, {{"KMSD_HSM_SESSION_POOL", "2"}, {"KMSD_DAEMON_LOG_FORMAT", "json"}});
  const std::string summary = redactedSummary(c);
  EXPECT_EQ(summary.substr(0, summary.find("[daemon]")),
            "# kmsd effective configuration, loaded from kmsd.toml\n"
            "# environment overrides: KMSD_DAEMON_LOG_FORMAT, KMSD_HSM_SESSION_POOL\n\n");
}

class ConfigEnv : public ConfigFixture {};

TEST_F(ConfigEnv, OverrideReplacesFileValues) {
  const Config c = loadOk(kMinimal, {
                                        {"KMSD_ACME_DIRECTORY_URL", "https://other.example/d"},
                                        {"KMSD_DAEMON_STATE_DIR", "/srv/kmsd"},
                                        {"KMSD_HSM_PIN_FILE", dir() + "/eab.key"},
                                        {"KMSD_HSM_SESSION_POOL", "16"},
                                        {"KMSD_PUBLISHER_RETAIN", "2h"},
                                        {"PATH", "/usr/bin"},
                                        {"KMSD_UNRELATED", "x"},
                                        {"KMSD_CERTIFICATE_NAME", "x"},
                                    });
  EXPECT_EQ(c.acme.directoryUrl, "https://other.example/d");
  EXPECT_EQ(c.daemon.stateDir, "/srv/kmsd");
  EXPECT_EQ(c.hsm.pinFile, dir() + "/eab.key");
  EXPECT_EQ(c.hsm.sessionPool, 16);
  EXPECT_EQ(c.publisher.retain, 2h);
  EXPECT_EQ(c.envOverrides,
            (std::vector<std::string>{"KMSD_ACME_DIRECTORY_URL", "KMSD_DAEMON_STATE_DIR", "KMSD_HSM_PIN_FILE",
                                      "KMSD_HSM_SESSION_POOL", "KMSD_PUBLISHER_RETAIN"}));
}

TEST_F(ConfigEnv, ArrayOverrideIsCommaSeparated) {
  std::string text = kMinimal;
  text.replace(text.find("[publisher]"), 0, "contact = [\"mailto:old@example.net\"]\n\n");
  EXPECT_EQ(loadOk(text).acme.contact, (std::vector<std::string>{"mailto:old@example.net"}));

  const Config c = loadOk(text, {{"KMSD_ACME_CONTACT", " mailto:a@example.net ,mailto:b@example.net,"}});
  EXPECT_EQ(c.acme.contact, (std::vector<std::string>{"mailto:a@example.net", "mailto:b@example.net"}));
  EXPECT_TRUE(loadOk(text, {{"KMSD_ACME_CONTACT", ""}}).acme.contact.empty());
}

TEST_F(ConfigEnv, OverrideCreatesMissingSection) {
  const std::string shaken = std::string(kMinimal) + R"(
[[certificate]]
name = "main"
spc = "1234"
subject_o = "Example Telecom"
)";
  const Config c = loadOk(shaken, {
                                      {"KMSD_STI_PA_URL", "https://sti-pa.example/"},
                                      {"KMSD_STI_PA_USER_ID", "ops"},
                                      {"KMSD_STI_PA_PASSWORD_FILE", dir() + "/sti-pa.password"},
                                  });
  ASSERT_TRUE(c.stiPa.has_value());
  EXPECT_EQ(c.stiPa->url, "https://sti-pa.example/");
  EXPECT_EQ(c.stiPa->userId, "ops");
  EXPECT_EQ(c.stiPa->fingerprint, Fingerprint::spki);
}

TEST_F(ConfigEnv, SnapshotKeepsOnlyKmsdVariables) {
  ::setenv("KMSD_CONFIG_TEST_SNAPSHOT", "a=b", 1);
  const Environment env = environmentSnapshot();
  ::unsetenv("KMSD_CONFIG_TEST_SNAPSHOT");
  ASSERT_TRUE(env.contains("KMSD_CONFIG_TEST_SNAPSHOT"));
  EXPECT_EQ(env.at("KMSD_CONFIG_TEST_SNAPSHOT"), "a=b");
  for (const auto& [name, value] : env) {
    EXPECT_TRUE(name.starts_with("KMSD_")) << name;
  }
}

class ConfigFile : public ConfigFixture {};

TEST_F(ConfigFile, UnreadableFileIsOneErrorNamingIt) {
  auto missing = loadConfigFile(dir() + "/nope.toml", {});
  ASSERT_FALSE(missing.has_value());
  ASSERT_EQ(missing.error().size(), 1U);
  EXPECT_EQ(missing.error()[0].toString(), dir() + "/nope.toml: cannot read config file: No such file or directory");

  auto directory = loadConfigFile(dir(), {});
  ASSERT_FALSE(directory.has_value());
  EXPECT_EQ(formatErrors(directory.error()), dir() + ": cannot read config file: not a regular file\n");
}

TEST_F(ConfigFile, ErrorsNameTheFilePath) {
  const std::string path = sandbox_.write("bad.toml", "[daemon]\nstate_dir = 1\n");
  auto loaded = loadConfigFile(path, {});
  ASSERT_FALSE(loaded.has_value());
  EXPECT_EQ(loaded.error()[0].toString(), path + ":1:1: [hsm] token_label: missing required key");
  EXPECT_NE(formatErrors(loaded.error()).find(path + ":2:13: [daemon] state_dir: expected a string, got integer\n"),
            std::string::npos);
}

// The fuzz_config seeds named loads_*.toml must load (with @DIR@ expanded to the same kind of
// fixture the fuzz target makes), or the fuzzer never reaches the success path and its
// round-trip check. They are in tests/fuzz/corpus/fuzz_config.
TEST_F(ConfigLoad, FuzzSeedsMeantToLoadDoLoad) {
  int seeds = 0;
  for (const auto& entry : std::filesystem::directory_iterator(KMS_SOURCE_DIR "/tests/fuzz/corpus/fuzz_config")) {
    const std::string name = entry.path().filename().string();
    if (!name.starts_with("loads_")) {
      continue;
    }
    ++seeds;
    std::ifstream in(entry.path());
    std::stringstream text;
    text << in.rdbuf();
    auto loaded = load(text.str());
    EXPECT_TRUE(loaded.has_value()) << name << ":\n" << formatErrors(loaded.error());
  }
  EXPECT_GE(seeds, 3);
}

}  // namespace
}  // namespace kms::config::test
