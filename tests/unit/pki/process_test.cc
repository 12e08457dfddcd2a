// ChildProcess as the hooks use it: a minimal environment, no descriptor of the parent, and
// a timeout that kills what the hook started, not only the hook.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

#include "kms/process.h"
#include "sandbox.h"

namespace kms {
namespace {

using namespace std::chrono_literals;

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

/// Gone, or a zombie nobody reaped yet (PID 1 of a container may not): not running.
bool running(pid_t pid) {
  std::string stat = slurp("/proc/" + std::to_string(pid) + "/stat");
  if (stat.empty()) {
    return false;
  }
  auto close = stat.rfind(')');
  return close == std::string::npos || stat.substr(close + 2, 1) != "Z";
}

TEST(ChildProcess, HookSeesAMinimalEnvironmentAndNoInheritedDescriptor) {
  test::Sandbox sb;
  ::setenv("KMSD_STI_PA_PASSWORD_FILE", "/secret/path", 1);
  ::setenv("SOFTHSM2_CONF", "/etc/softhsm/softhsm2.conf", 1);
  // A descriptor the parent did not mark close-on-exec (as a library might leave one).
  int fd = ::open(sb.write("open-file", "x").c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::dup2(fd, 57), 57);
  const std::string out = sb.file("out.txt");
  auto child = ChildProcess::spawn({"/bin/sh", "-c", "env | sort; echo fds: $(ls /proc/$$/fd | tr '\\n' ' ')"},
                                   {"KMS_NAME=main"}, out);
  ASSERT_TRUE(child.has_value()) << child.error().toString();
  auto status = (*child)->wait(30s);
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(exitedCleanly(*status));
  ::close(57);
  ::close(fd);
  ::unsetenv("KMSD_STI_PA_PASSWORD_FILE");
  ::unsetenv("SOFTHSM2_CONF");
  const std::string text = slurp(out);
  std::istringstream lines(text);
  std::string line;
  std::string fds;
  while (std::getline(lines, line)) {
    if (line.rfind("fds: ", 0) == 0) {
      fds = line;
      continue;
    }
    const std::string name = line.substr(0, line.find('='));
    // sh adds PWD, SHLVL and _ itself; everything else must come from kmsd's short list.
    EXPECT_TRUE(name == "PATH" || name == "LANG" || name == "KMS_NAME" || name == "PWD" || name == "SHLVL" ||
                name == "_")
        << line;
  }
  EXPECT_NE(text.find("KMS_NAME=main"), std::string::npos) << text;
  EXPECT_NE(text.find("PATH="), std::string::npos) << text;
  // The shell's own descriptors only: 0, 1, 2 (and one it opens for the listing).
  EXPECT_EQ(fds.find(" 57 "), std::string::npos) << fds;
  EXPECT_EQ(fds.find("fds: 0 1 2 "), 0U) << fds;
}

TEST(ChildProcess, TimeoutKillsWhatTheHookStarted) {
  test::Sandbox sb;
  const std::string pidFile = sb.file("grandchild.pid");
  auto child = ChildProcess::spawn({"/bin/sh", "-c", "sleep 60 & echo $! > '" + pidFile + "'; wait"}, {});
  ASSERT_TRUE(child.has_value()) << child.error().toString();
  for (int i = 0; i < 300 && slurp(pidFile).empty(); ++i) {
    std::this_thread::sleep_for(10ms);
  }
  const pid_t grandchild = static_cast<pid_t>(std::atoi(slurp(pidFile).c_str()));
  ASSERT_GT(grandchild, 0);
  auto status = (*child)->wait(100ms);
  ASSERT_FALSE(status.has_value());
  EXPECT_EQ(status.error().code, Errc::timeout);
  // SIGKILL to the group is delivered at once; the kernel needs a moment to tear it down.
  bool gone = false;
  for (int i = 0; i < 500 && !gone; ++i) {
    gone = !running(grandchild);
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_TRUE(gone) << "the hook's child " << grandchild << " still runs";
}

}  // namespace
}  // namespace kms
