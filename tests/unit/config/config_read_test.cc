// readConfigFile (kmsctl's lenient read) and scanDaemonSetting: what can be used of a file
// that does not load, with every error beside it.

#include <sstream>
#include <string>

#include <gtest/gtest.h>

#include "config/config.h"
#include "config_fixture.h"

namespace kms::config::test {
namespace {

class ConfigRead : public ConfigFixture {
 protected:
  /// `text` (after expand) written as kmsd.toml and read leniently.
  config::ConfigRead read(const std::string& text, FileChecks files = FileChecks::off, const Environment& env = {}) {
    return readConfigFile(sandbox_.write("kmsd.toml", expand(text)), env, files);
  }
  static std::string controlSocketLine() { return "control_socket = \"/run/x/kmsd.sock\"\n"; }
};

TEST_F(ConfigRead, AFileWithErrorsGivesItsValidSettingsAndEveryError) {
  std::string text = std::string(kMinimal) + kStiPa + "\n[[certificate]]\nname = \"east\"\nspc = \"1234\"\n"
                     "subject_o = \"O\"\n";
  text.replace(text.find("[daemon]\n"), 9, "[daemon]\n" + controlSocketLine() + "retry_frist = \"1m\"\n");
  auto r = read(text);
  ASSERT_EQ(r.errors.size(), 1U) << formatErrors(r.errors);
  EXPECT_EQ(r.errors[0].key, "retry_frist");
  EXPECT_EQ(r.config.daemon.stateDir, "/var/lib/kmsd");
  EXPECT_EQ(r.config.daemon.controlSocket, "/run/x/kmsd.sock");
  ASSERT_EQ(r.config.certificates.size(), 1U);
  EXPECT_EQ(r.config.certificates[0].name, "east");
}

TEST_F(ConfigRead, AFileThatDoesNotParseStillGivesTheDaemonsPaths) {
  std::string text = kMinimal;
  text.replace(text.find("[daemon]\n"), 9, "[daemon]\n" + controlSocketLine());
  auto r = read(text + "x = = 1\n");
  ASSERT_EQ(r.errors.size(), 1U) << formatErrors(r.errors);
  EXPECT_EQ(r.errors[0].section, "toml");
  EXPECT_EQ(r.config.daemon.stateDir, "/var/lib/kmsd");
  EXPECT_EQ(r.config.daemon.controlSocket, "/run/x/kmsd.sock");
  EXPECT_TRUE(r.config.certificates.empty());
}

TEST_F(ConfigRead, AMissingFileGivesTheDefaultsAndTheOverrides) {
  auto r = readConfigFile(sandbox_.file("none.toml"), {{"KMSD_DAEMON_STATE_DIR", "/srv/kmsd"}}, FileChecks::off);
  ASSERT_EQ(r.errors.size(), 1U);
  EXPECT_NE(r.errors[0].toString().find("none.toml: cannot read config file: No such file or directory"),
            std::string::npos)
      << r.errors[0].toString();
  EXPECT_EQ(r.config.daemon.stateDir, "/srv/kmsd");
  EXPECT_EQ(r.config.daemon.controlSocket, "/run/kmsd/control.sock");
}

TEST_F(ConfigRead, FilesTheConfigurationNamesAreOpenedOnlyWhenAsked) {
  std::string text = kMinimal;
  text.replace(text.find("@DIR@/hsm.pin"), 13, "@DIR@/no-such.pin");
  EXPECT_TRUE(read(text, FileChecks::off).errors.empty());
  auto checked = read(text, FileChecks::on);
  ASSERT_EQ(checked.errors.size(), 1U) << formatErrors(checked.errors);
  EXPECT_EQ(checked.errors[0].key, "pin_file");
  // The same checks as loadConfigFile, which kmsd uses.
  EXPECT_FALSE(loadConfigFile(sandbox_.file("kmsd.toml"), {}).has_value());
}

TEST_F(ConfigRead, TheScanTakesOnlyAPlainStringInTheDaemonTable) {
  auto scan = [](const std::string& text, const char* key) {
    std::istringstream in(text);
    return scanDaemonSetting(in, key);
  };
  EXPECT_EQ(scan("# c\n[daemon]\n  state_dir = \"/a\" # x\n", "state_dir"), "/a");
  EXPECT_EQ(scan("[daemon]\nstate_dir_old = \"/b\"\nstate_dir=\"/a\"\n", "state_dir"), "/a");
  EXPECT_EQ(scan("[hsm]\nstate_dir = \"/a\"\n", "state_dir"), std::nullopt);
  EXPECT_EQ(scan("[daemon]\n[hsm]\nstate_dir = \"/a\"\n", "state_dir"), std::nullopt);
  EXPECT_EQ(scan("[daemon]\nstate_dir = \"/a\\\\b\"\n", "state_dir"), std::nullopt);  // an escape: not plain
  EXPECT_EQ(scan("[daemon]\nstate_dir = 7\n", "state_dir"), std::nullopt);
}

}  // namespace
}  // namespace kms::config::test
