// [alerts] and its channels: what loads, and the mistakes with their `file:line:col` text.
#include <string>

#include <sys/stat.h>

#include <gtest/gtest.h>

#include "config/config.h"
#include "config_fixture.h"

namespace kms::config::test {
namespace {

class ConfigAlerts : public ConfigFixture {
 protected:
  ConfigAlerts() {
    sandbox_.write("hook.key", "whk-0123456789");
    sandbox_.write("smtp.pw", "mail-secret");
    ::chmod(sandbox_.file("hook.key").c_str(), 0600);
    ::chmod(sandbox_.file("smtp.pw").c_str(), 0600);
  }
  static std::string with(const std::string& alerts) { return std::string(kMinimal) + alerts; }
};

TEST_F(ConfigAlerts, ChannelsOfEachKindLoad) {
  const Config c = loadOk(with(R"(
[alerts]
interval = "10s"
repeat_interval = "2h"
failures = 5
warning_fraction = 0.25

[[alerts.alertmanager]]
name = "am"
url = "https://am.sp.test:9093/"
labels = ["team=voice", "site=east"]

[[alerts.webhook]]
name = "hook"
url = "https://hooks.sp.test/kms"
secret_file = "@DIR@/hook.key"

[[alerts.smtp]]
name = "mail"
url = "smtp://mail.sp.test:587"
from = "kmsd@sp.test"
to = ["noc@sp.test"]
username = "kmsd"
password_file = "@DIR@/smtp.pw"
)"));
  const AlertsConfig& a = c.alerts;
  EXPECT_EQ(a.interval.count(), 10);
  EXPECT_EQ(a.repeatInterval.count(), 7200);
  EXPECT_EQ(a.failures, 5);
  EXPECT_DOUBLE_EQ(a.warningFraction, 0.25);
  ASSERT_EQ(a.alertmanagers.size(), 1U);
  EXPECT_EQ(a.alertmanagers[0].labels,
            (std::vector<std::pair<std::string, std::string>>{{"team", "voice"}, {"site", "east"}}));
  ASSERT_EQ(a.webhooks.size(), 1U);
  EXPECT_EQ(a.webhooks[0].secretFile, dir() + "/hook.key");
  ASSERT_EQ(a.smtp.size(), 1U);
  EXPECT_EQ(a.smtp[0].startTls, StartTls::required);
  EXPECT_EQ(a.smtp[0].passwordFile, dir() + "/smtp.pw");
  // The summary names the secret files, never their content.
  const std::string summary = redactedSummary(c);
  EXPECT_NE(summary.find("secret_file = \"" + dir() + "/hook.key\"  # secret file; content not shown"),
            std::string::npos)
      << summary;
  EXPECT_EQ(summary.find("whk-0123456789"), std::string::npos);
  EXPECT_EQ(summary.find("mail-secret"), std::string::npos);
}

TEST_F(ConfigAlerts, MistakesAreNamed) {
  EXPECT_EQ(errors(with(R"(
[[alerts.webhook]]
name = "remote"
url = "http://hooks.sp.test/kms"
secret_file = "@DIR@/hook.key"

[[alerts.smtp]]
name = "remote"
url = "smtp://mail.sp.test"
starttls = "opportunistic"
from = "kmsd"
to = ["noc@sp.test", "a,b@sp.test"]
username = "kmsd"
password_file = "@DIR@/smtp.pw"

[[alerts.alertmanager]]
name = "am"
url = "https://am.sp.test"
labels = ["novalue="]
)")),
            (Lines{
                "kmsd.toml:18:7: [alerts.webhook.remote] url: must be https (http is accepted only for loopback hosts)",
                std::string("kmsd.toml:22:8: [alerts.smtp.remote] name: is also alerts.webhook.remote's: channel ") +
                    "names are unique across all kinds",
                std::string("kmsd.toml:24:12: [alerts.smtp.remote] starttls: must be \"required\" with a ") +
                    "password_file (else the password could travel in clear)",
                "kmsd.toml:25:8: [alerts.smtp.remote] from: must be a plain address (user@domain)",
                "kmsd.toml:26:22: [alerts.smtp.remote] to[1]: must be a plain address (user@domain)",
                std::string("kmsd.toml:33:11: [alerts.alertmanager.am] labels[0]: must be \"name=value\" with ") +
                    "both parts non-empty"}));
}

}  // namespace
}  // namespace kms::config::test
