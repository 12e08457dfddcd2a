#include "kms/fs.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace kms {

Error ioError(const std::string& what, const std::string& path, int err) {
  Error e;
  e.code = err == ENOENT ? Errc::notFound : Errc::io;
  e.message = what + ": " + std::strerror(err);
  e.context = path;
  e.native = err;
  return e;
}

namespace {

std::string modeText(mode_t mode) {
  char text[8];
  (void)std::snprintf(text, sizeof text, "%04o", static_cast<unsigned>(mode & 07777));
  return text;
}

/// What is wrong with `path`'s owner or mode, if anything. `leaf`: the file itself (no
/// group or other write) rather than a directory on its way (no other write unless root's
/// and sticky).
std::optional<std::string> judge(const std::string& path, const struct stat& st, bool leaf) {
  const uid_t me = ::geteuid();
  const char* what = leaf ? "" : "directory ";
  if (st.st_uid != me && st.st_uid != 0) {
    return std::string(what) + "'" + path + "' is owned by uid " + std::to_string(st.st_uid) +
           ", neither kmsd's user (uid " + std::to_string(me) + ") nor root, who could change it; chown it";
  }
  if (leaf && (st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    return "'" + path + "' is writable by group or others (mode " + modeText(st.st_mode) + "); run chmod go-w " + path;
  }
  if (!leaf && (st.st_mode & S_IWOTH) != 0 && !(st.st_uid == 0 && (st.st_mode & S_ISVTX) != 0)) {
    return "directory '" + path + "' is writable by others (mode " + modeText(st.st_mode) +
           ") and not root's and sticky, so anyone could replace what it holds; run chmod o-w " + path;
  }
  return std::nullopt;
}

/// The directories on the way to `path` ("/a/b/c" -> "/a/b", "/a", "/").
std::vector<std::string> parents(const std::string& path) {
  std::vector<std::string> out;
  std::string p = path;
  while (p.size() > 1 && p.back() == '/') {
    p.pop_back();
  }
  for (auto slash = p.rfind('/'); slash != std::string::npos; slash = p.rfind('/')) {
    p = slash == 0 ? "/" : p.substr(0, slash);
    out.push_back(p);
    if (p == "/") {
      break;
    }
  }
  return out;
}

}  // namespace

std::optional<std::string> checkOwnership(const std::string& path) {
  char resolved[PATH_MAX];
  if (::realpath(path.c_str(), resolved) == nullptr) {
    return "cannot resolve '" + path + "': " + std::strerror(errno);
  }
  struct stat st {};
  if (::stat(resolved, &st) != 0) {
    return "cannot stat '" + std::string(resolved) + "': " + std::strerror(errno);
  }
  if (auto bad = judge(resolved, st, true)) {
    return bad;
  }
  std::vector<std::string> dirs = parents(resolved);
  if (path != resolved && !path.empty() && path.front() == '/') {
    for (auto& d : parents(path)) {
      dirs.push_back(std::move(d));  // a directory as written could swap a symlink
    }
  }
  for (const auto& dir : dirs) {
    struct stat ds {};
    if (::stat(dir.c_str(), &ds) != 0) {
      return "cannot stat directory '" + dir + "': " + std::strerror(errno);
    }
    if (auto bad = judge(dir, ds, false)) {
      return bad;
    }
  }
  return std::nullopt;
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
