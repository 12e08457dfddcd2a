#include "kms/fs.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace kms {

Error ioError(const std::string& what, const std::string& path, int err) {
  Error e;
  e.code = err == ENOENT ? Errc::notFound : Errc::io;
  e.message = what + ": " + std::strerror(err);
  e.context = path;
  e.native = err;
  return e;
}

Result<void> fsyncDirectory(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    return fail(ioError("cannot open directory", dir, errno));
  }
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) {
    return fail(ioError("cannot fsync directory", dir, err));
  }
  return ok();
}

Result<void> readToEnd(int fd, const std::string& path, std::string& out) {
  char buf[8192];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      return fail(ioError("cannot read", path, errno));
    }
    if (n == 0) {
      return ok();
    }
    out.append(buf, static_cast<std::size_t>(n));
  }
}

}  // namespace kms
