#pragma once
// A server a test starts (Kamailio, Prometheus, ...): fork/exec with its output in a log file,
// stopped by PID (SIGTERM, then SIGKILL after `grace`). It also dies with the test process
// (PR_SET_PDEATHSIG), so a crashed test leaves nothing holding ctest's output.

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "sandbox.h"

namespace kms::test {

class BackgroundProcess {
 public:
  /// argv[0] is a path; `env` entries ("NAME=value") are added to the environment.
  BackgroundProcess(const std::vector<std::string>& argv, const std::string& log,
                    const std::vector<std::string>& env = {}, std::chrono::seconds grace = std::chrono::seconds(10))
      : log_(log), grace_(grace) {
    const pid_t parent = ::getpid();
    pid_ = ::fork();
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) {
        ::_exit(127);  // the test went before the prctl
      }
      for (const auto& e : env) {
        ::putenv(const_cast<char*>(e.c_str()));
      }
      FILE* out = std::freopen(log.c_str(), "w", stdout);
      (void)out;
      ::dup2(STDOUT_FILENO, STDERR_FILENO);
      std::vector<char*> args;
      args.reserve(argv.size() + 1);
      for (const auto& a : argv) {
        args.push_back(const_cast<char*>(a.c_str()));
      }
      args.push_back(nullptr);
      ::execv(args[0], args.data());
      ::_exit(127);
    }
  }
  ~BackgroundProcess() {
    ::kill(pid_, SIGTERM);
    int status = 0;
    for (auto end = std::chrono::steady_clock::now() + grace_; std::chrono::steady_clock::now() < end;) {
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, &status, 0);
  }
  BackgroundProcess(const BackgroundProcess&) = delete;
  BackgroundProcess& operator=(const BackgroundProcess&) = delete;
  [[nodiscard]] std::string log() const { return readFile(log_); }
  [[nodiscard]] pid_t pid() const { return pid_; }
  /// False once it has exited (reaped here).
  [[nodiscard]] bool running() {
    int status = 0;
    return ::waitpid(pid_, &status, WNOHANG) == 0;
  }

 private:
  std::string log_;
  std::chrono::seconds grace_;
  pid_t pid_ = -1;
};

}  // namespace kms::test
