#include "kms/process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "kms/fs.h"

namespace kms {

Result<std::unique_ptr<ChildProcess>> ChildProcess::spawn(const std::vector<std::string>& argv,
                                                          const std::vector<std::string>& extraEnv,
                                                          const std::optional<std::string>& outputFile) {
  if (argv.empty() || argv.front().empty()) {
    return fail(Errc::invalidArgument, "no program to run");
  }
  // A minimal environment: a hook sees PATH, LANG and what the caller passes, not kmsd's
  // own variables (KMSD_* overrides, SOFTHSM2_CONF, proxies...).
  std::vector<std::string> envStore;
  const char* path = std::getenv("PATH");
  envStore.emplace_back(std::string("PATH=") + (path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin"));
  if (const char* lang = std::getenv("LANG"); lang != nullptr) {
    envStore.emplace_back(std::string("LANG=") + lang);
  }
  envStore.insert(envStore.end(), extraEnv.begin(), extraEnv.end());
  std::vector<char*> envp;
  envp.reserve(envStore.size() + 1);
  for (auto& s : envStore) {
    envp.push_back(s.data());
  }
  envp.push_back(nullptr);
  std::vector<std::string> argStore = argv;
  std::vector<char*> args;
  args.reserve(argStore.size() + 1);
  for (auto& s : argStore) {
    args.push_back(s.data());
  }
  args.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  ::posix_spawn_file_actions_init(&actions);
  ::posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  if (outputFile) {
    ::posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, outputFile->c_str(),
                                       O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, 0600);
    ::posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  }
  // Nothing of kmsd's beyond stdin/out/err: no socket to the CA, no DB, no token file.
  ::posix_spawn_file_actions_addclosefrom_np(&actions, 3);
  // Its own process group, so a timeout kills whatever it started too.
  posix_spawnattr_t attr;
  ::posix_spawnattr_init(&attr);
  ::posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
  ::posix_spawnattr_setpgroup(&attr, 0);
  pid_t pid = 0;
  int rc = ::posix_spawn(&pid, argv.front().c_str(), &actions, &attr, args.data(), envp.data());
  ::posix_spawnattr_destroy(&attr);
  ::posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    return fail(ioError("cannot run", argv.front(), rc));
  }
  int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (pidfd < 0) {
    int err = errno;
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    return fail(ioError("pidfd_open failed", argv.front(), err));
  }
  ::fcntl(pidfd, F_SETFD, FD_CLOEXEC);
  return std::unique_ptr<ChildProcess>(new ChildProcess(pid, pidfd));
}

ChildProcess::~ChildProcess() {
  if (!status_) {
    ::kill(-pid_, SIGKILL);
    ::kill(pid_, SIGKILL);
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
  }
  ::close(pidfd_);
}

std::optional<int> ChildProcess::exitStatus() {
  if (status_) {
    return status_;
  }
  int status = 0;
  pid_t r = 0;
  do {
    r = ::waitpid(pid_, &status, WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r == pid_) {
    status_ = status;
  }
  return status_;
}

Result<int> ChildProcess::wait(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!exitStatus()) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      kill();
      int status = 0;
      while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
      }
      status_ = status;
      return fail(Errc::timeout, "ran longer than " + std::to_string(timeout.count() / 1000) + " s and was killed");
    }
    pollfd pfd{pidfd_, POLLIN, 0};
    (void)::poll(&pfd, 1, static_cast<int>(left.count()));  // EINTR and timeouts re-check above
  }
  return *status_;
}

void ChildProcess::kill() {
  if (!status_) {
    ::kill(-pid_, SIGKILL);  // the hook's process group: what it started goes too
    ::kill(pid_, SIGKILL);
  }
}

std::string describeExit(int status) {
  if (WIFEXITED(status)) {
    return "exit status " + std::to_string(WEXITSTATUS(status));
  }
  if (WIFSIGNALED(status)) {
    return "signal " + std::to_string(WTERMSIG(status));
  }
  return "wait status " + std::to_string(status);
}

bool exitedCleanly(int status) { return WIFEXITED(status) && WEXITSTATUS(status) == 0; }

}  // namespace kms
