#include "publisher/web_root.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <optional>
#include <random>
#include <string_view>

#include "kms/fs.h"

namespace kms::publisher {
namespace {

/// An open directory: writes go through it, so no path component under it is looked up
/// again (a symlink swapped in later cannot redirect them).
class Dir {
 public:
  Dir(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  ~Dir() {
    if (fd_ >= 0) {
      ::close(fd_);
    }
  }
  Dir(Dir&& o) noexcept : fd_(o.fd_), path_(std::move(o.path_)) { o.fd_ = -1; }
  Dir& operator=(Dir&&) = delete;
  Dir(const Dir&) = delete;
  Dir& operator=(const Dir&) = delete;
  [[nodiscard]] int fd() const { return fd_; }
  [[nodiscard]] const std::string& path() const { return path_; }
  [[nodiscard]] std::string file(std::string_view name) const { return path_ + "/" + std::string(name); }

 private:
  int fd_;
  std::string path_;
};

/// Opens (creating it, 0755, when missing) a directory given by full path: the operator
/// chose it, so a symlink there is followed.
Result<Dir> openPath(const std::string& dir) {
  std::error_code ec;
  if (std::filesystem::create_directories(dir, ec)) {
    (void)::chmod(dir.c_str(), 0755);  // whatever the umask: verifiers' web server reads it
  }
  if (ec) {
    return fail(ioError("cannot create directory", dir, ec.value()));
  }
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    return fail(ioError("cannot open directory", dir, errno));
  }
  return Dir(fd, dir);
}

/// Opens (creating it, 0755) the directory `name` inside `parent` without following a
/// symlink: one placed there is refused, not written through.
Result<Dir> openChild(const Dir& parent, const std::string& name) {
  const std::string path = parent.file(name);
  if (::mkdirat(parent.fd(), name.c_str(), 0755) == 0) {
    // 0755 whatever the umask (kmsd.service's is 0077): the web server reads it. Best effort:
    // a directory it cannot read shows as a failed publication check.
    if (::fchmodat(parent.fd(), name.c_str(), 0755, 0) != 0) {
      errno = 0;
    }
  } else if (errno != EEXIST) {
    return fail(ioError("cannot create directory", path, errno));
  }
  int fd = ::openat(parent.fd(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    if (err == ELOOP || err == ENOTDIR) {
      struct stat st {};
      if (::fstatat(parent.fd(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode)) {
        return fail(Errc::io, "is a symbolic link, not a directory: refusing to write through it", path);
      }
    }
    return fail(ioError("cannot open directory", path, err));
  }
  return Dir(fd, path);
}

/// Writes `name` in `dir` atomically: a temp file (O_EXCL, not following links), fsync,
/// rename over `name`, fsync of the directory. `mode` is set explicitly (not umask's).
Result<void> writeAt(const Dir& dir, const std::string& name, const std::string& content, unsigned mode) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  static constexpr char kChars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  std::string tmp;
  int fd = -1;
  for (int attempt = 0; attempt < 16 && fd < 0; ++attempt) {
    tmp = "." + name + ".tmp-";
    for (int i = 0; i < 6; ++i) {
      tmp += kChars[rng() % (sizeof kChars - 1)];
    }
    fd = ::openat(dir.fd(), tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0 && errno != EEXIST) {
      return fail(ioError("cannot create temp file", dir.path(), errno));
    }
  }
  if (fd < 0) {
    return fail(ioError("cannot create temp file", dir.path(), EEXIST));
  }
  const std::string tmpPath = dir.file(tmp);
  auto cleanup = [&](const Error& e) -> Result<void> {
    ::close(fd);
    ::unlinkat(dir.fd(), tmp.c_str(), 0);
    return fail(e);
  };
  std::size_t done = 0;
  while (done < content.size()) {
    ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return cleanup(ioError("cannot write", tmpPath, errno));
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fchmod(fd, static_cast<mode_t>(mode)) != 0) {
    return cleanup(ioError("cannot chmod", tmpPath, errno));
  }
  if (::fsync(fd) != 0) {
    return cleanup(ioError("cannot fsync", tmpPath, errno));
  }
  if (::close(fd) != 0) {
    int err = errno;
    ::unlinkat(dir.fd(), tmp.c_str(), 0);
    return fail(ioError("cannot close", tmpPath, err));
  }
  if (::renameat(dir.fd(), tmp.c_str(), dir.fd(), name.c_str()) != 0) {
    int err = errno;
    ::unlinkat(dir.fd(), tmp.c_str(), 0);
    return fail(ioError("cannot rename into place", dir.file(name), err));
  }
  if (::fsync(dir.fd()) != 0) {
    return fail(ioError("cannot fsync directory", dir.path(), errno));
  }
  return ok();
}

/// The content of `name` in `dir` (not following a link); nullopt when it does not exist.
Result<std::optional<std::string>> readAt(const Dir& dir, const std::string& name) {
  // O_NONBLOCK: a FIFO planted here does not block the open; fstat then refuses it.
  int fd = ::openat(dir.fd(), name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    if (errno == ENOENT) {
      return std::optional<std::string>();
    }
    return fail(ioError("cannot read", dir.file(name), errno));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return fail(Errc::io, "not a regular file", dir.file(name));
  }
  std::string out;
  auto read = readToEnd(fd, dir.file(name), out);
  ::close(fd);
  if (!read) {
    return fail(read.error());
  }
  return std::optional<std::string>(std::move(out));
}

/// web_root (followed if a symlink) and web_root/<name> (never a symlink), opened.
Result<Dir> certificateDir(const std::string& root, const std::string& name) {
  auto top = openPath(root);
  if (!top) {
    return fail(top.error());
  }
  return openChild(*top, name);
}

bool validName(const std::string& s) {
  return !s.empty() && s.find('/') == std::string::npos && s != "." && s != "..";
}

}  // namespace

Result<Published> WebRoot::publish(const std::string& name, const std::string& serialHex,
                                   const std::string& chainPem) const {
  auto out = writeImmutable(name, serialHex, chainPem);
  if (!out) {
    return out;
  }
  if (auto r = switchCurrent(name, chainPem); !r) {
    return fail(r.error());
  }
  return out;
}

Result<void> WebRoot::removeImmutable(const std::string& name, const std::string& serialHex) const {
  if (!validName(name) || !validName(serialHex)) {
    return fail(Errc::invalidArgument, "certificate name and serial must be plain file names",
                validName(name) ? serialHex : name);
  }
  auto dir = certificateDir(root_, name);
  if (!dir) {
    return fail(dir.error());
  }
  const std::string file = serialHex + ".pem";
  if (::unlinkat(dir->fd(), file.c_str(), 0) != 0) {
    if (errno == ENOENT) {
      return ok();
    }
    return fail(ioError("cannot remove", dir->file(file), errno));
  }
  if (::fsync(dir->fd()) != 0) {
    return fail(ioError("cannot fsync directory", dir->path(), errno));
  }
  return ok();
}

Result<void> WebRoot::switchCurrent(const std::string& name, const std::string& chainPem) const {
  if (!validName(name)) {
    return fail(Errc::invalidArgument, "certificate name must be a plain file name", name);
  }
  auto root = openPath(root_);
  if (!root) {
    return fail(root.error());
  }
  return writeAt(*root, name + ".pem", chainPem, 0644);
}

Published WebRoot::where(const std::string& name, const std::string& serialHex) const {
  Published out;
  out.immutablePath = root_ + "/" + name + "/" + serialHex + ".pem";
  out.currentPath = root_ + "/" + name + ".pem";
  out.x5uUrl = baseUrl_ + name + "/" + serialHex + ".pem";
  return out;
}

Result<Published> WebRoot::writeImmutable(const std::string& name, const std::string& serialHex,
                                          const std::string& chainPem) const {
  if (!validName(name) || !validName(serialHex)) {
    return fail(Errc::invalidArgument, "certificate name and serial must be plain file names",
                validName(name) ? serialHex : name);
  }
  Published out = where(name, serialHex);
  auto dir = certificateDir(root_, name);
  if (!dir) {
    return fail(dir.error());
  }
  const std::string file = serialHex + ".pem";
  auto existing = readAt(*dir, file);
  if (!existing) {
    return fail(existing.error());
  }
  if (*existing) {
    if (**existing != chainPem) {
      return fail(Errc::alreadyExists, "an immutable chain file with other content exists", out.immutablePath);
    }
  } else if (auto r = writeAt(*dir, file, chainPem, 0644); !r) {
    return fail(r.error());
  }
  return out;
}

}  // namespace kms::publisher
