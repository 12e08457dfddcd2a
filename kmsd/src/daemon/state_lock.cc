#include "daemon/state_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace kms::daemon {

Result<std::unique_ptr<StateLock>> StateLock::take(const std::string& dir) {
  const std::string path = dir + "/kmsd.lock";
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    return fail(Errc::io, std::string("[daemon] state_dir: cannot open lock file: ") + std::strerror(errno), path);
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    ::close(fd);
    return fail(Errc::alreadyExists, "[daemon] state_dir: another kmsd holds this state directory", dir);
  }
  return std::unique_ptr<StateLock>(new StateLock(fd));
}

StateLock::~StateLock() {
  ::close(fd_);
}

}  // namespace kms::daemon
