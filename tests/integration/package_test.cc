// The kmsd and kms-lab .deb packages deploy/build-packages.sh makes from the Release tree
// (deploy/run-tests.sh builds them before the tests and names their directory in
// KMS_PACKAGE_DIR): what an operator installs, read with dpkg-deb, and lintian's verdict.
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "sandbox.h"

namespace kms {
namespace {

class Package : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* dir = std::getenv("KMS_PACKAGE_DIR");
    ASSERT_NE(dir, nullptr) << "KMS_PACKAGE_DIR is not set: deploy/run-tests.sh builds the packages "
                               "(deploy/build-packages.sh) and sets it";
    dir_ = dir;
  }
  std::string run(const std::string& command) {
    std::string out;
    EXPECT_EQ(test::runCommand(command, &out), 0) << command << "\n" << out;
    return out;
  }
  std::string deb(const std::string& name) const { return dir_ + "/" + name + "_" KMS_PROJECT_VERSION "_amd64.deb"; }
  std::string dir_;
};

TEST_F(Package, KmsdShipsTheServiceItsUserAndDocsButNoConfiguration) {
  const std::string files = run("dpkg-deb -c " + deb("kmsd") + " | awk '{print $6}'");
  for (const char* path :
       {"./usr/bin/kmsd", "./usr/bin/kmsctl", "./lib/systemd/system/kmsd.service",
        "./lib/systemd/system/kmsd-http01.socket", "./usr/lib/sysusers.d/kmsd.conf", "./usr/lib/tmpfiles.d/kmsd.conf",
        "./usr/share/man/man8/kmsd.8.gz", "./usr/share/man/man8/kmsctl.8.gz", "./usr/share/man/man5/kmsd.toml.5.gz",
        "./usr/share/doc/kmsd/EVENTS.md.gz", "./usr/share/doc/kmsd/SECURITY.md.gz",
        "./usr/share/doc/kmsd/examples/kmsd.toml", "./usr/share/doc/kmsd/examples/web-root.conf",
        "./usr/share/doc/kmsd/copyright", "./usr/share/doc/kmsd/changelog.Debian.gz"}) {
    EXPECT_NE(files.find(std::string(path) + "\n"), std::string::npos) << path << " missing:\n" << files;
  }
  // The operator writes /etc/kmsd/kmsd.toml: the package ships nothing under /etc.
  EXPECT_EQ(files.find("./etc/"), std::string::npos) << files;

  // Installed: the user before its directories, the service enabled (it starts once a
  // configuration exists), the port-80 socket left to the operator.
  const std::string postinst = run("dpkg-deb -I " + deb("kmsd") + " postinst");
  const auto sysusers = postinst.find("systemd-sysusers");
  const auto tmpfiles = postinst.find("systemd-tmpfiles");
  ASSERT_NE(sysusers, std::string::npos) << postinst;
  ASSERT_NE(tmpfiles, std::string::npos) << postinst;
  EXPECT_LT(sysusers, tmpfiles) << postinst;
  EXPECT_NE(postinst.find("deb-systemd-helper enable 'kmsd.service'"), std::string::npos) << postinst;
  // debhelper's "don't enable" snippet: the socket is enabled again only where the operator
  // had enabled it (debian-installed), never on a new installation.
  const auto socket = postinst.find("'kmsd-http01.socket'");
  ASSERT_NE(socket, std::string::npos) << postinst;
  const auto lineStart = postinst.rfind('\n', socket) + 1;
  const std::string firstLine = postinst.substr(lineStart, postinst.find('\n', socket) - lineStart);
  EXPECT_NE(firstLine.find("deb-systemd-helper debian-installed"), std::string::npos) << postinst;
}

TEST_F(Package, KmsLabIsAPackageOfItsOwn) {
  const std::string files = run("dpkg-deb -c " + deb("kms-lab") + " | awk '{print $6}'");
  EXPECT_NE(files.find("./usr/bin/kms-lab\n"), std::string::npos) << files;
  EXPECT_NE(files.find("./usr/share/man/man1/kms-lab.1.gz\n"), std::string::npos) << files;
  EXPECT_EQ(files.find("./usr/bin/kmsd\n"), std::string::npos) << files;
  EXPECT_NE(run("dpkg-deb -f " + deb("kms-lab") + " Depends").find("softhsm2"), std::string::npos);
}

TEST_F(Package, LintianFindsNoErrorOrWarning) {
  std::string out;
  test::runCommand("lintian --tag-display-limit 0 " + deb("kmsd") + " " + deb("kms-lab") + " 2>&1", &out);
  EXPECT_EQ(out.find("\nE: "), std::string::npos) << out;
  EXPECT_EQ(out.find("E: "), std::string::npos) << out;
  EXPECT_EQ(out.find("W: "), std::string::npos) << out;
}

}  // namespace
}  // namespace kms
