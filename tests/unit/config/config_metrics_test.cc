// [daemon] metrics_listen with HTTPS (metrics_tls_certificate, metrics_tls_key) and HTTP
// basic authentication (metrics_basic_auth_file): what loads, and each mistake with its exact
// `file:line:col: [daemon] key:` text, never the password.
#include <sys/stat.h>

#include <string>

#include <gtest/gtest.h>

#include "config/config.h"
#include "config_fixture.h"

namespace kms::config::test {
namespace {

constexpr const char* kPassword = "s3cret-scrape";

class ConfigMetricsAccess : public ConfigFixture {
 protected:
  ConfigMetricsAccess() {
    sandbox_.write("metrics.pem", kms::test::kTestRootPem);
    sandbox_.write("metrics.key", "not parsed by the config");
    sandbox_.write("metrics.auth", std::string("prometheus:") + kPassword + "\n");
  }
  /// kMinimal with `lines` added to [daemon] from line 3.
  static std::string with(const std::string& lines) {
    std::string text = kMinimal;
    const std::string stateDir = "state_dir = \"/var/lib/kmsd\"\n";
    text.replace(text.find(stateDir), stateDir.size(), stateDir + lines);
    return text;
  }
  /// The error lines for [daemon] `lines` with metrics.auth holding `auth`.
  [[nodiscard]] Lines authErrors(const std::string& auth) {
    sandbox_.write("metrics.auth", auth);
    return errors(with("metrics_listen = \"127.0.0.1:9464\"\nmetrics_basic_auth_file = \"@DIR@/metrics.auth\"\n"));
  }
};

constexpr const char* kTlsAndAuth = R"(metrics_listen = "0.0.0.0:9464"
metrics_tls_certificate = "@DIR@/metrics.pem"
metrics_tls_key = "@DIR@/metrics.key"
metrics_basic_auth_file = "@DIR@/metrics.auth"
)";

TEST_F(ConfigMetricsAccess, TlsAndBasicAuthLoadAndTheSummaryNamesOnlyTheFiles) {
  const Config c = loadOk(with(kTlsAndAuth));
  EXPECT_EQ(c.daemon.metricsTlsCertificate, dir() + "/metrics.pem");
  EXPECT_EQ(c.daemon.metricsTlsKey, dir() + "/metrics.key");
  EXPECT_EQ(c.daemon.metricsBasicAuthFile, dir() + "/metrics.auth");
  const std::string summary = redactedSummary(c);
  EXPECT_NE(summary.find("metrics_tls_certificate = \"" + dir() + "/metrics.pem\"\n"), std::string::npos) << summary;
  EXPECT_NE(summary.find("metrics_tls_key = \"" + dir() + "/metrics.key\"  # secret file; content not shown\n"),
            std::string::npos)
      << summary;
  EXPECT_NE(summary.find("metrics_basic_auth_file = \"" + dir() + "/metrics.auth\"  # secret file; content not shown\n"),
            std::string::npos)
      << summary;
  EXPECT_EQ(summary.find(kPassword), std::string::npos) << summary;
  Config again = loadOk(summary);
  again.source = c.source;
  EXPECT_EQ(again, c) << redactedSummary(again);
  // None of them by default.
  const Config plain = loadOk(kMinimal);
  EXPECT_FALSE(plain.daemon.metricsTlsCertificate || plain.daemon.metricsTlsKey || plain.daemon.metricsBasicAuthFile);
}

TEST_F(ConfigMetricsAccess, BasicAuthWithoutTlsLoadsOnALoopbackAddressOnly) {
  for (const char* host : {"127.0.0.1", "[::1]", "localhost"}) {
    const Config c = loadOk(with(std::string("metrics_listen = \"") + host +
                                 ":9464\"\nmetrics_basic_auth_file = \"@DIR@/metrics.auth\"\n"));
    EXPECT_EQ(c.daemon.metricsBasicAuthFile, dir() + "/metrics.auth") << host;
  }
  EXPECT_EQ(errors(with("metrics_listen = \"0.0.0.0:9464\"\nmetrics_basic_auth_file = \"@DIR@/metrics.auth\"\n")),
            (Lines{"kmsd.toml:4:27: [daemon] metrics_basic_auth_file: would send the password in clear text to "
                   "0.0.0.0:9464: set metrics_tls_certificate and metrics_tls_key, or a loopback metrics_listen"}));
  // From the environment too.
  EXPECT_EQ(errors(kMinimal, {{"KMSD_DAEMON_METRICS_LISTEN", "192.0.2.7:9464"},
                              {"KMSD_DAEMON_METRICS_BASIC_AUTH_FILE", dir() + "/metrics.auth"}}),
            (Lines{"env KMSD_DAEMON_METRICS_BASIC_AUTH_FILE: [daemon] metrics_basic_auth_file: would send the "
                   "password in clear text to 192.0.2.7:9464: set metrics_tls_certificate and metrics_tls_key, or a "
                   "loopback metrics_listen"}));
}

TEST_F(ConfigMetricsAccess, TheTlsFilesGoTogetherAndEverySettingNeedsMetricsListen) {
  EXPECT_EQ(errors(with("metrics_listen = \"127.0.0.1:9464\"\nmetrics_tls_certificate = \"@DIR@/metrics.pem\"\n")),
            (Lines{"kmsd.toml:1:1: [daemon] metrics_tls_key: set metrics_tls_certificate and metrics_tls_key "
                   "together"}));
  EXPECT_EQ(errors(with("metrics_listen = \"127.0.0.1:9464\"\nmetrics_tls_key = \"@DIR@/metrics.key\"\n")),
            (Lines{"kmsd.toml:1:1: [daemon] metrics_tls_certificate: set metrics_tls_certificate and "
                   "metrics_tls_key together"}));
  EXPECT_EQ(errors(with("metrics_tls_certificate = \"@DIR@/metrics.pem\"\nmetrics_tls_key = \"@DIR@/metrics.key\"\n"
                        "metrics_basic_auth_file = \"@DIR@/metrics.auth\"\n")),
            (Lines{"kmsd.toml:3:27: [daemon] metrics_tls_certificate: needs metrics_listen",
                   "kmsd.toml:4:19: [daemon] metrics_tls_key: needs metrics_listen",
                   "kmsd.toml:5:27: [daemon] metrics_basic_auth_file: needs metrics_listen"}));
}

TEST_F(ConfigMetricsAccess, ABasicAuthFileNotOfTheFormUserColonPasswordIsNamedButNotShown) {
  const std::string wrong =
      "kmsd.toml:4:27: [daemon] metrics_basic_auth_file: \"@DIR@/metrics.auth\" must hold one line user:password "
      "(neither part empty)";
  for (const char* auth : {"prometheus-s3cret\n", ":s3cret\n", "prometheus:\n", "prometheus:s3cret\nsecond line\n",
                           "prometheus:s3cret\n\n"}) {
    const Lines lines = authErrors(auth);
    EXPECT_EQ(lines, (Lines{wrong})) << auth;
    for (const std::string& line : lines) {
      EXPECT_EQ(line.find("s3cret"), std::string::npos) << line;
    }
  }
  EXPECT_EQ(authErrors(""),
            (Lines{"kmsd.toml:4:27: [daemon] metrics_basic_auth_file: @DIR@/metrics.auth: secret file is empty"}));
  // One trailing newline (LF or CRLF) is not part of the password.
  for (const char* auth : {"prometheus:s3cret", "prometheus:s3cret\r\n", "pro:me:theus\n"}) {
    sandbox_.write("metrics.auth", auth);
    const Config c =
        loadOk(with("metrics_listen = \"127.0.0.1:9464\"\nmetrics_basic_auth_file = \"@DIR@/metrics.auth\"\n"));
    EXPECT_TRUE(c.daemon.metricsBasicAuthFile.has_value()) << auth;
  }
  // A secret file others may read is refused as every secret file is.
  sandbox_.write("metrics.auth", "prometheus:s3cret\n");
  ::chmod(sandbox_.file("metrics.auth").c_str(), 0644);
  const Lines open =
      errors(with("metrics_listen = \"127.0.0.1:9464\"\nmetrics_basic_auth_file = \"@DIR@/metrics.auth\"\n"));
  ASSERT_EQ(open.size(), 1U);
  EXPECT_NE(open[0].find("kmsd.toml:4:27: [daemon] metrics_basic_auth_file: "), std::string::npos) << open[0];
  EXPECT_NE(open[0].find("chmod 600"), std::string::npos) << open[0];
}

}  // namespace
}  // namespace kms::config::test
