// The README's "Using it" section, run as written: its commands, in order, in one shell, in
// a directory laid out as the quickstart leaves it (binaries in .kms-quickstart/bin, kms-lab
// and its kmsd configuration in .kms-quickstart/lab, kmsd running), and every output line
// the README shows checked. Placeholders (<time>, <serial>, <port>, ...) stand for what
// varies and match by pattern; whitespace runs match any whitespace run (columns align to
// their content). So the README cannot drift from the binaries.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "cli.h"
#include "daemon_process.h"
#include "lab_process.h"
#include "sandbox.h"

namespace kms {
namespace {

/// One `$ command` of a console block and the lines the README shows after it.
struct Step {
  std::string command;
  std::vector<std::string> expected;
};

/// The ```console blocks of the README section `heading` (up to the next "## ").
std::vector<Step> stepsOf(const std::string& readme, const std::string& heading) {
  std::vector<Step> steps;
  std::istringstream in(readme);
  bool inSection = false;
  bool inBlock = false;
  for (std::string line; std::getline(in, line);) {
    if (line.starts_with("## ")) {
      inSection = line == heading;
      continue;
    }
    if (!inSection) {
      continue;
    }
    if (line.starts_with("```")) {
      inBlock = !inBlock && line == "```console";
      continue;
    }
    if (!inBlock) {
      continue;
    }
    if (line.starts_with("$ ")) {
      steps.push_back(Step{line.substr(2), {}});
    } else if (!steps.empty()) {
      steps.back().expected.push_back(line);
    }
  }
  return steps;
}

/// A README output line as a pattern: placeholders match what varies, whitespace runs any
/// whitespace run, everything else itself.
std::regex patternOf(const std::string& line) {
  static const std::map<std::string, std::string> kPlaceholders{
      {"<time>", R"(\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d)?Z)"},
      {"<serial>", "[0-9A-F]+"},
      {"<hex>", "[0-9A-F:]+"},
      {"<pid>", "[0-9]+"},
      {"<port>", "[0-9]+"},
      {"<n>", "[0-9]+"},
      {"<id>", "[^ ;]+"},
      {"<jws>", R"([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)"},
  };
  std::string re = R"(^\s*)";
  std::size_t i = line.find_first_not_of(' ');
  while (i != std::string::npos && i < line.size()) {
    if (line[i] == ' ') {
      re += R"(\s+)";
      i = line.find_first_not_of(' ', i);
      continue;
    }
    bool placed = false;
    for (const auto& [name, pattern] : kPlaceholders) {
      if (line.compare(i, name.size(), name) == 0) {
        re += "(" + pattern + ")";
        i += name.size();
        placed = true;
        break;
      }
    }
    if (!placed) {
      if (std::string(R"(\^$.|?*+()[]{})").find(line[i]) != std::string::npos) {
        re += '\\';
      }
      re += line[i++];
    }
  }
  return std::regex(re + R"(\s*$)");
}

TEST(Readme, TheUsingItCommandsPrintWhatTheReadmeShows) {
  const std::vector<Step> steps = stepsOf(test::readFile(KMS_SOURCE_DIR "/README.md"), "## Using it");
  // The section must hold the walk-through, not shrink to nothing.
  ASSERT_GE(steps.size(), 8U) << "the README's \"## Using it\" has lost its ```console commands";
  std::size_t shown = 0;
  for (const Step& s : steps) {
    shown += s.expected.size();
  }
  ASSERT_GE(shown, 20U);

  // The quickstart's layout, under a fresh directory standing for the clone.
  test::Sandbox clone;
  const std::string root = clone.file(".kms-quickstart");
  ASSERT_EQ(::mkdir(root.c_str(), 0755), 0);
  ASSERT_EQ(::mkdir((root + "/bin").c_str(), 0755), 0);
  for (const std::string& binary : {test::kKmsd, test::kKmsctl, test::LabProcess::binary()}) {
    const std::string link = root + "/bin" + binary.substr(binary.rfind('/'));
    ASSERT_EQ(::symlink(binary.c_str(), link.c_str()), 0) << link;
  }
  test::LabProcess lab(root + "/lab");
  test::DaemonProcess kmsd(lab.file("softhsm2.conf"), lab.file("kmsd.toml"), root + "/kmsd.log");
  ASSERT_TRUE(kmsd.waitFor("KMS_RENEWAL_PLANNED cert=main")) << kmsd.log();

  // One shell for every command, as a reader types them (exports carry over); a marker line
  // before each command splits the output. PATH starts without the binaries: the README's
  // own export must put them there.
  std::string script = "cd '" + clone.path() + "' || exit 99\nexport PATH=/usr/sbin:/usr/bin:/sbin:/bin\n";
  for (std::size_t i = 0; i < steps.size(); ++i) {
    script += "echo '@@step " + std::to_string(i) + "@@'\n" + steps[i].command + " 2>&1\n";
  }
  const std::string scriptFile = clone.write("readme.sh", script);
  std::string output;
  ASSERT_EQ(test::runCommand("env -u KMSD_CONFIG -u SOFTHSM2_CONF bash " + scriptFile, &output), 0) << output;

  std::vector<std::vector<std::string>> printed;
  for (const std::string& line : test::linesOf(output)) {
    if (line.starts_with("@@step ")) {
      printed.emplace_back();
    } else if (!printed.empty()) {
      printed.back().push_back(line);
    }
  }
  ASSERT_EQ(printed.size(), steps.size()) << output;
  for (std::size_t i = 0; i < steps.size(); ++i) {
    SCOPED_TRACE("$ " + steps[i].command);
    const auto& want = steps[i].expected;
    const auto& got = printed[i];
    ASSERT_EQ(got.size(), want.size()) << "printed:\n" << output;
    for (std::size_t l = 0; l < want.size(); ++l) {
      EXPECT_TRUE(std::regex_match(got[l], patternOf(want[l]))) << "README: " << want[l] << "\nprinted: " << got[l];
    }
  }
  EXPECT_EQ(kmsd.stop(), 0) << kmsd.log();
}

/// The matcher itself: a placeholder matches only its kind, and literal text only itself.
TEST(Readme, PlaceholdersMatchOnlyWhatTheyStandFor) {
  const std::regex status = patternOf("main  active  <time>  <time>  …/<serial>….pem  -");
  EXPECT_TRUE(std::regex_match("main  active  2027-03-05T03:37Z  2027-02-14T12:48Z  …/6E6654AC….pem  -", status));
  EXPECT_TRUE(std::regex_match("main active 2027-03-05T03:37:08Z 2027-02-14T12:48Z …/6E6654AC….pem -", status));
  EXPECT_FALSE(std::regex_match("main  failed  2027-03-05T03:37Z  2027-02-14T12:48Z  …/6E6654AC….pem  -", status));
  EXPECT_FALSE(std::regex_match("main  active  tomorrow  2027-02-14T12:48Z  …/6E6654AC….pem  -", status));
  EXPECT_FALSE(std::regex_match("main  active  2027-03-05T03:37Z  2027-02-14T12:48Z  …/6e6654ac….pem  -", status));
  EXPECT_FALSE(std::regex_match("main  active  2027-03-05T03:37Z  2027-02-14T12:48Z  …/6E6654AC….pem  - extra", status));
  const std::regex url = patternOf("x5u https://127.0.0.1:<port>/sti-cr/main/<serial>.pem");
  EXPECT_TRUE(std::regex_match("x5u https://127.0.0.1:38877/sti-cr/main/7876F4CF.pem", url));
  EXPECT_FALSE(std::regex_match("x5u https://127.0.0.1:38877/sti-cr/mainX7876F4CF.pem", url));  // "/" is literal
  EXPECT_FALSE(std::regex_match("x5u https://127.0.0.1:38877/sti-cr/main/7876F4CFxpem", url));  // "." too
  const std::regex identity = patternOf("<jws>;info=<https://127.0.0.1:<port>/x.pem>;alg=ES256;ppt=shaken");
  EXPECT_TRUE(std::regex_match("eyJh.eyJ0_-.AbC;info=<https://127.0.0.1:4433/x.pem>;alg=ES256;ppt=shaken", identity));
  EXPECT_FALSE(std::regex_match("eyJh.eyJ0;info=<https://127.0.0.1:4433/x.pem>;alg=ES256;ppt=shaken", identity));
  EXPECT_FALSE(std::regex_match("eyJh.eyJ0.sig;info=<https://127.0.0.1:4433/x.pem>;alg=ES256;ppt=div", identity));
}

}  // namespace
}  // namespace kms
