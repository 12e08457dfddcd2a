#include "publisher/web_root.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "kms/fs.h"

namespace kms::publisher {
namespace {

Result<void> ensureDir(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    return fail(ioError("cannot create directory", dir, ec.value()));
  }
  return ok();
}

bool validName(const std::string& s) {
  return !s.empty() && s.find('/') == std::string::npos && s != "." && s != "..";
}

}  // namespace

Result<void> writeFileAtomically(const std::string& path, const std::string& content, unsigned mode) {
  std::filesystem::path p(path);
  std::string dir = p.parent_path().string();
  std::string tmpl = dir + "/." + p.filename().string() + ".tmp-XXXXXX";
  int fd = ::mkstemp(tmpl.data());
  if (fd < 0) {
    return fail(ioError("cannot create temp file", dir, errno));
  }
  auto cleanup = [&](const Error& e) -> Result<void> {
    ::close(fd);
    ::unlink(tmpl.c_str());
    return fail(e);
  };
  std::size_t done = 0;
  while (done < content.size()) {
    ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return cleanup(ioError("cannot write", tmpl, errno));
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fchmod(fd, static_cast<mode_t>(mode)) != 0) {
    return cleanup(ioError("cannot chmod", tmpl, errno));
  }
  if (::fsync(fd) != 0) {
    return cleanup(ioError("cannot fsync", tmpl, errno));
  }
  if (::close(fd) != 0) {
    int err = errno;
    ::unlink(tmpl.c_str());
    return fail(ioError("cannot close", tmpl, err));
  }
  if (::rename(tmpl.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmpl.c_str());
    return fail(ioError("cannot rename into place", path, err));
  }
  return fsyncDirectory(dir);
}

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
    return fail(Errc::invalidArgument, "certificate name and serial must be plain file names", name);
  }
  const std::string dir = root_ + "/" + name;
  const std::string path = dir + "/" + serialHex + ".pem";
  if (::unlink(path.c_str()) != 0) {
    if (errno == ENOENT) {
      return ok();
    }
    return fail(ioError("cannot remove", path, errno));
  }
  return fsyncDirectory(dir);
}

Result<void> WebRoot::switchCurrent(const std::string& name, const std::string& chainPem) const {
  if (!validName(name)) {
    return fail(Errc::invalidArgument, "certificate name must be a plain file name", name);
  }
  return writeFileAtomically(root_ + "/" + name + ".pem", chainPem);
}

Result<Published> WebRoot::writeImmutable(const std::string& name, const std::string& serialHex,
                                          const std::string& chainPem) const {
  if (!validName(name) || !validName(serialHex)) {
    return fail(Errc::invalidArgument, "certificate name and serial must be plain file names", name);
  }
  Published out;
  std::string dir = root_ + "/" + name;
  out.immutablePath = dir + "/" + serialHex + ".pem";
  out.currentPath = root_ + "/" + name + ".pem";
  out.x5uUrl = baseUrl_ + name + "/" + serialHex + ".pem";
  if (auto r = ensureDir(dir); !r) {
    return fail(r.error());
  }
  struct stat st {};
  if (::stat(out.immutablePath.c_str(), &st) == 0) {
    std::ifstream in(out.immutablePath, std::ios::binary);
    std::ostringstream existing;
    existing << in.rdbuf();
    if (existing.str() != chainPem) {
      return fail(Errc::alreadyExists, "an immutable chain file with other content exists", out.immutablePath);
    }
  } else if (auto r = writeFileAtomically(out.immutablePath, chainPem); !r) {
    return fail(r.error());
  }
  return out;
}

}  // namespace kms::publisher
