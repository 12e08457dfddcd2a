// deploy/systemd as systemd itself judges it: `systemd-analyze verify` is clean on the units
// (and with the web-root drop-in) in a root holding the kmsd binary, and `systemd-analyze
// security` scores kmsd.service at most 2.0 ("OK"). The boot under systemd-nspawn is the
// system test's.
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <regex>
#include <string>

#include "sandbox.h"

namespace kms {
namespace {

const std::string kUnits = KMS_SOURCE_DIR "/deploy/systemd";

class SystemdUnits : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = sandbox_.file("root");
    run("mkdir -p " + root_ + "/usr/bin " + root_ + "/bin " + root_ + "/usr/lib/systemd " + root_ +
        "/etc/systemd/system/kmsd.service.d");
    run("cp " KMS_BINARY_DIR "/kmsd/kmsd " + root_ + "/usr/bin/kmsd");
    run("cp /bin/kill " + root_ + "/bin/kill");
    run("cp -a /usr/lib/systemd/system " + root_ + "/usr/lib/systemd/");  // targets the units name
    run("cp " + kUnits + "/kmsd.service " + kUnits + "/kmsd-http01.socket " + root_ + "/etc/systemd/system/");
  }
  std::string run(const std::string& command) {
    std::string out;
    EXPECT_EQ(test::runCommand(command, &out), 0) << command << "\n" << out;
    return out;
  }

  test::Sandbox sandbox_;
  std::string root_;
};

TEST_F(SystemdUnits, VerifyIsCleanWithAndWithoutTheDropIn) {
  // The units' Documentation= pages are found where the package puts them (MANPATH here).
  run("mkdir -p " + sandbox_.file("man/man8") + " " + sandbox_.file("man/man5"));
  run("cp " KMS_SOURCE_DIR "/deploy/man/kmsd.8 " KMS_SOURCE_DIR "/deploy/man/kmsctl.8 " + sandbox_.file("man/man8"));
  run("cp " KMS_SOURCE_DIR "/deploy/man/kmsd.toml.5 " + sandbox_.file("man/man5"));
  const std::string verify = "MANPATH=" + sandbox_.file("man") + " systemd-analyze verify --root=" + root_ +
                             " /etc/systemd/system/kmsd.service /etc/systemd/system/kmsd-http01.socket";
  EXPECT_EQ(run(verify), "");
  run("cp " + kUnits + "/kmsd.service.d/web-root.conf " + root_ + "/etc/systemd/system/kmsd.service.d/");
  EXPECT_EQ(run(verify), "");
  // The check can fail: a unit with an unknown setting is reported.
  run("printf '[Service]\\nReadWritePath=/srv\\n' > " + root_ + "/etc/systemd/system/kmsd.service.d/typo.conf");
  std::string out;
  test::runCommand(verify, &out);
  EXPECT_NE(out.find("Unknown key 'ReadWritePath'"), std::string::npos) << out;
}

TEST_F(SystemdUnits, TheServiceScoresOkInSystemdAnalyzeSecurity) {
  const std::string out = run("systemd-analyze security --no-pager --offline=true --root=" + root_ +
                              " /etc/systemd/system/kmsd.service");
  std::smatch m;
  ASSERT_TRUE(std::regex_search(out, m, std::regex(R"(Overall exposure level for kmsd\.service: ([0-9.]+) (\w+))")))
      << out;
  EXPECT_LE(std::stod(m[1]), 2.0) << out;
  EXPECT_EQ(m[2], "OK") << out;
  EXPECT_NE(out.find("✓ CapabilityBoundingSet=~CAP_SYS_ADMIN"), std::string::npos) << out;
}

}  // namespace
}  // namespace kms

namespace kms {
namespace {

TEST(ManPages, RenderWithoutWarnings) {
  for (const char* page : {"kmsd.8", "kmsctl.8", "kmsd.toml.5", "kms-lab.1"}) {
    std::string out;
    EXPECT_EQ(test::runCommand(std::string("man --warnings -l -Tutf8 -Z " KMS_SOURCE_DIR "/deploy/man/") + page +
                                   " 2>&1 >/dev/null",
                               &out),
              0)
        << page;
    EXPECT_EQ(out, "") << page;
  }
}

}  // namespace
}  // namespace kms
