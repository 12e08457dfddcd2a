#pragma once
/// @file A child process started without a shell and watched through a pidfd, so a caller
/// can wait for it on an event loop (the pidfd turns readable when it exits) instead of
/// blocking a thread. Used by the operator hooks (dns-01, deploy hooks).

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kms/error.h"

namespace kms {

class ChildProcess {
 public:
  /// Starts `argv[0]` (a path, no PATH search) with `argv`, in its own process group, with
  /// a minimal environment (PATH and LANG from this process, then `extraEnv` "NAME=value")
  /// and no descriptor of this process but stdin (/dev/null) and stdout/stderr (with
  /// `outputFile`, that file, created 0600 and truncated). Errors name argv[0] and errno.
  [[nodiscard]] static Result<std::unique_ptr<ChildProcess>> spawn(const std::vector<std::string>& argv,
                                                                   const std::vector<std::string>& extraEnv,
                                                                   const std::optional<std::string>& outputFile = {});

  /// A child still running is killed (SIGKILL) and reaped.
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  [[nodiscard]] pid_t pid() const { return pid_; }
  /// Readable once the child has exited (for poll/epoll); owned by this object.
  [[nodiscard]] int pidfd() const { return pidfd_; }

  /// The wait status (as waitpid gives it) once the child has exited, nullopt while it runs.
  /// Never blocks.
  [[nodiscard]] std::optional<int> exitStatus();

  /// Blocks until the child exits, at most `timeout`; a child running longer is killed and
  /// Errc::timeout returned.
  [[nodiscard]] Result<int> wait(std::chrono::milliseconds timeout);

  /// Sends SIGKILL to the child's process group (no-op once reaped).
  void kill();

 private:
  ChildProcess(pid_t pid, int pidfd) : pid_(pid), pidfd_(pidfd) {}
  pid_t pid_;
  int pidfd_;
  std::optional<int> status_;
};

/// "exit status N" or "signal N" for a wait status.
[[nodiscard]] std::string describeExit(int status);

/// True when a wait status is a normal exit with status 0.
[[nodiscard]] bool exitedCleanly(int status);

}  // namespace kms
