#include "daemon/state_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace kms::daemon {

Result<std::unique_ptr<StateLock>> StateLock::take(const std::string& dir) {
  const std::string path = dir + "/kmsd.lock";
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    return fail(Errc::io, std::string("[daemon] state_dir: cannot open lock file: ") + std::strerror(errno), path);
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    // The holder wrote its pid into the file once it had the lock.
    char text[32] = {};
    const ssize_t n = ::pread(fd, text, sizeof text - 1, 0);
    ::close(fd);
    std::string pid(text, n > 0 ? static_cast<std::size_t>(n) : 0);
    while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) {
      pid.pop_back();
    }
    const bool digits = !pid.empty() && pid.find_first_not_of("0123456789") == std::string::npos;
    return fail(Errc::alreadyExists,
                "[daemon] state_dir: another kmsd" + (digits ? " (pid " + pid + ")" : std::string()) +
                    " holds this state directory",
                dir);
  }
  const std::string mine = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, mine.data(), mine.size(), 0) != static_cast<ssize_t>(mine.size())) {
    // Only the message of a second kmsd loses the pid; the lock itself holds.
  }
  return std::unique_ptr<StateLock>(new StateLock(fd));
}

StateLock::~StateLock() {
  ::close(fd_);
}

}  // namespace kms::daemon
