#include "kms/secret.h"

#include <cerrno>
#include <cstring>
#include <fstream>

#include <openssl/crypto.h>
#include <sys/stat.h>

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
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    int err = errno;
    return fail(Errc::io, std::string("cannot read secret file: ") + std::strerror(err), path);
  }
  if (!S_ISREG(st.st_mode)) {
    return fail(Errc::io, "secret file is not a regular file", path);
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    int err = errno;
    return fail(Errc::io, std::string("cannot read secret file: ") + std::strerror(err), path);
  }
  // Sized once from stat so the secret is never copied by a growing buffer.
  constexpr off_t kMaxSecret = off_t{64} * 1024;
  if (st.st_size > kMaxSecret) {
    return fail(Errc::io, "secret file is larger than 64 KiB", path);
  }
  std::vector<std::uint8_t> bytes(static_cast<std::size_t>(st.st_size));
  in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (static_cast<std::size_t>(in.gcount()) != bytes.size()) {
    OPENSSL_cleanse(bytes.data(), bytes.size());
    return fail(Errc::io, "error while reading secret file", path);
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
