#pragma once
/// @file Move-only secret bytes, wiped on destruction, never printed.

#include <cstddef>
#include <cstdint>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "kms/error.h"

namespace kms {

/// Holds a PIN, password, HMAC key or token. Move-only; the buffer is wiped with
/// OPENSSL_cleanse when destroyed or reassigned; streams print "***".
class SecretBytes {
 public:
  SecretBytes() = default;
  explicit SecretBytes(std::vector<std::uint8_t> bytes) : bytes_(std::move(bytes)) {}
  explicit SecretBytes(std::string_view text) : bytes_(text.begin(), text.end()) {}
  ~SecretBytes();
  SecretBytes(const SecretBytes&) = delete;
  SecretBytes& operator=(const SecretBytes&) = delete;
  SecretBytes(SecretBytes&& other) noexcept;
  SecretBytes& operator=(SecretBytes&& other) noexcept;

  [[nodiscard]] const std::uint8_t* data() const { return bytes_.data(); }
  [[nodiscard]] std::size_t size() const { return bytes_.size(); }
  [[nodiscard]] bool empty() const { return bytes_.empty(); }
  /// A view for APIs that take text; do not copy it into long-lived strings.
  [[nodiscard]] std::string_view view() const { return {reinterpret_cast<const char*>(bytes_.data()), bytes_.size()}; }
  /// Constant-time comparison.
  [[nodiscard]] bool equals(const SecretBytes& other) const;
  /// Wipes and empties.
  void clear();

 private:
  std::vector<std::uint8_t> bytes_;
};

inline std::ostream& operator<<(std::ostream& os, const SecretBytes& /*unused*/) {
  return os << "***";
}

/// Reads a secret file (PIN, password, key): opened without following a symlink, then
/// refused unless it is a regular file of this process's user with no group or other
/// access (the error says `chmod 600 PATH` / whom to chown it to). One trailing newline
/// (LF or CRLF) is stripped. Errors name the file; the content never appears in an error.
[[nodiscard]] Result<SecretBytes> readSecretFile(const std::string& path);

}  // namespace kms
