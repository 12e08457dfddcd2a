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

}  // namespace kms
