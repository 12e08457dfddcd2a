#pragma once
// kmsd in the foreground as a child process of a test, stderr to a log file, stopped by PID.

#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>

#include "cli.h"
#include "sandbox.h"

namespace kms::test {

/// kmsd in the foreground as a child process, stderr to a log file, stopped by PID.
class DaemonProcess {
 public:
  /// `http01`: a socket passed as systemd's socket activation does (fd 3, named http01).
  /// `nofile`: RLIMIT_NOFILE (soft and hard) for kmsd, when not 0.
  DaemonProcess(const std::string& softhsmConf, const std::string& config, const std::string& log,
                const PassedSocket* http01 = nullptr, rlim_t nofile = 0)
      : log_(log) {
    std::ofstream(log, std::ios::trunc).flush();  // exists before the child writes to it
    pid_ = ::fork();
    if (pid_ == 0) {
      if (nofile != 0) {
        const rlimit limit{nofile, nofile};
        ::setrlimit(RLIMIT_NOFILE, &limit);
      }
      ::setenv("SOFTHSM2_CONF", softhsmConf.c_str(), 1);
      if (http01 != nullptr) {
        if (http01->fd() != 3) {
          ::dup2(http01->fd(), 3);
        }
        ::setenv("LISTEN_FDS", "1", 1);
        ::setenv("LISTEN_FDNAMES", "http01", 1);
        ::setenv("LISTEN_PID", std::to_string(::getpid()).c_str(), 1);
      }
      FILE* f = std::freopen(log.c_str(), "a", stderr);
      (void)f;
      ::execl(kKmsd.c_str(), kKmsd.c_str(), "--config", config.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
  }
  ~DaemonProcess() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  /// Sends `sig` and waits for the exit; the exit status (or 128 + signal).
  int stop(int sig = SIGTERM) {
    ::kill(pid_, sig);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  void signal(int sig) const { ::kill(pid_, sig); }
  [[nodiscard]] pid_t pid() const { return pid_; }
  [[nodiscard]] std::string log() const { return test::readFile(log_); }
  /// Waits until the log has `text` (bounded: a missing line fails the caller's assertion).
  bool waitFor(const std::string& text, std::chrono::seconds limit = std::chrono::seconds(60)) const {
    for (auto end = std::chrono::steady_clock::now() + limit; std::chrono::steady_clock::now() < end;) {
      if (log().find(text) != std::string::npos) {
        return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }

 private:
  std::string log_;
  pid_t pid_ = -1;
};

}  // namespace kms::test
