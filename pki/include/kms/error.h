#pragma once
/// @file Error and Result types shared by every component.
///
/// Runtime paths return `kms::Result<T>`; exceptions are kept for startup, config and bugs.
/// Only the members that std::expected shares are used (has_value, value, error, and_then),
/// so moving to C++23 is an alias change.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>

#include <tl/expected.hpp>

namespace kms {

/// Broad class of a failure; the message carries the detail.
enum class Errc {
  invalidArgument,  ///< caller passed something malformed
  notFound,         ///< a named object, token, file or row does not exist
  alreadyExists,    ///< uniqueness violated
  io,               ///< file system or OS call failed
  crypto,           ///< OpenSSL or signature failure
  hsm,              ///< PKCS#11 call failed
  storage,          ///< SQLite failure
  config,           ///< configuration is invalid
  protocol,         ///< a peer answered something we cannot accept
  network,          ///< connection-level failure
  timeout,          ///< deadline passed
  unauthorized,     ///< credentials rejected
  unsupported,      ///< feature or version not supported
  internal,         ///< a bug: "cannot happen"
  cancelled,        ///< given up on purpose (the daemon is stopping)
};

/// Printable name of an error class ("hsm", "storage", ...).
const char* errcName(Errc code) noexcept;

/// What an unattended caller (kmsd) may do after a failure. The default is the one that
/// costs nothing: only code that knows the request can never succeed as made says
/// `permanent`, and only a CA's own request to slow down says `caPause`. Nothing defaults to
/// a disposition that gives up an order or destroys a key.
enum class Disposition {
  retry,      ///< try again later, with backoff (the default)
  permanent,  ///< cannot succeed as made: an order the CA declared invalid, a refused CSR or
              ///< identifier, an issued chain that fails its checks
  caPause,    ///< the CA asked its clients to slow down (rate limit): every request to it waits
};
[[nodiscard]] const char* toString(Disposition d) noexcept;

/// A failure with enough context for an operator: what, where, and the native code.
struct Error {
  Errc code = Errc::internal;
  std::string message;      ///< what went wrong, in words
  std::string context;      ///< where: file, function, peer, table...
  std::int64_t native = 0;  ///< native code (CK_RV, sqlite rc, CURLcode, HTTP status)
  std::string nativeName;   ///< symbolic native code ("CKR_PIN_INCORRECT", "SQLITE_BUSY")
  Disposition disposition = Disposition::retry;  ///< see Disposition
  /// When the peer said when to come back (HTTP Retry-After), that delay.
  std::optional<std::chrono::seconds> retryAfter;

  /// "context: message (nativeName)" — one line, no secrets.
  [[nodiscard]] std::string toString() const;
};

template <class T>
using Result = tl::expected<T, Error>;

/// `return kms::fail(Errc::io, "cannot open", path);`
[[nodiscard]] inline tl::unexpected<Error> fail(Errc code, std::string message, std::string context = {}) {
  return tl::unexpected<Error>(Error{code, std::move(message), std::move(context), 0, {}, Disposition::retry, std::nullopt});
}

/// `e` marked as one that cannot succeed as made (see Disposition::permanent).
[[nodiscard]] inline Error permanent(Error e) {
  e.disposition = Disposition::permanent;
  return e;
}

/// Wraps an already built Error.
[[nodiscard]] inline tl::unexpected<Error> fail(Error error) {
  return tl::unexpected<Error>(std::move(error));
}

/// Result<void> success value.
[[nodiscard]] inline Result<void> ok() {
  return {};
}

}  // namespace kms
