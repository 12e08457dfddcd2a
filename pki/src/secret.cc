#include "kms/secret.h"

#include "kms/fs.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include <openssl/crypto.h>

namespace kms {

SecretBytes::~SecretBytes() {
  clear();
}

SecretBytes::SecretBytes(SecretBytes&& other) noexcept : bytes_(std::move(other.bytes_)) {
  other.bytes_.clear();
}

SecretBytes& SecretBytes::operator=(SecretBytes&& other) noexcept {
  if (this != &other) {
    clear();
    bytes_ = std::move(other.bytes_);
    other.bytes_.clear();
  }
  return *this;
}

bool SecretBytes::equals(const SecretBytes& other) const {
  if (bytes_.size() != other.bytes_.size()) {
    return false;
  }
  return bytes_.empty() || CRYPTO_memcmp(bytes_.data(), other.bytes_.data(), bytes_.size()) == 0;
}

void SecretBytes::clear() {
  if (!bytes_.empty()) {
    OPENSSL_cleanse(bytes_.data(), bytes_.size());
  }
  bytes_.clear();
}

Result<SecretBytes> readSecretFile(const std::string& path) {
  // O_NOFOLLOW: a symlink swapped in by someone else is not followed; the checks below are
  // made on the descriptor that is read, so the file cannot change between check and read.
  // O_NONBLOCK: a FIFO put in its place does not block the open; fstat then refuses it.
  int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) {
    int err = errno;
    if (err == ELOOP) {
      return fail(Errc::io, "secret file is a symbolic link (not followed); point the setting at the file itself",
                  path);
    }
    return fail(Errc::io, std::string("cannot read secret file: ") + std::strerror(err), path);
  }
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    return fail(Errc::io, std::string("cannot read secret file: ") + std::strerror(err), path);
  }
  if (!S_ISREG(st.st_mode)) {
    return fail(Errc::io, "secret file is not a regular file", path);
  }
  if ((st.st_mode & 077) != 0) {
    char mode[8];
    (void)std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return fail(Errc::io,
                std::string("secret file is accessible to group or others (mode ") + mode + "); run chmod 600 " + path,
                path);
  }
  if (st.st_uid != ::geteuid()) {
    return fail(Errc::io,
                "secret file is owned by uid " + std::to_string(st.st_uid) + ", not by uid " +
                    std::to_string(::geteuid()) + " that reads it; chown it to that user",
                path);
  }
  // The directories on its way: nobody else may swap the file (the one ownership rule).
  if (auto bad = checkOwnership(path)) {
    return fail(Errc::io, "secret file: " + *bad, path);
  }
  // Sized once from fstat so the secret is never copied by a growing buffer.
  constexpr off_t kMaxSecret = off_t{64} * 1024;
  if (st.st_size > kMaxSecret) {
    return fail(Errc::io, "secret file is larger than 64 KiB", path);
  }
  std::vector<std::uint8_t> bytes(static_cast<std::size_t>(st.st_size));
  std::size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::read(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      OPENSSL_cleanse(bytes.data(), bytes.size());
      return fail(Errc::io, "error while reading secret file", path);
    }
    done += static_cast<std::size_t>(n);
  }
  if (!bytes.empty() && bytes.back() == '\n') {
    bytes.pop_back();
    if (!bytes.empty() && bytes.back() == '\r') {
      bytes.pop_back();
    }
  }
  if (bytes.empty()) {
    return fail(Errc::io, "secret file is empty", path);
  }
  return SecretBytes(std::move(bytes));
}

}  // namespace kms
