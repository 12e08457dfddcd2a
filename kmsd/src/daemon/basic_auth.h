#pragma once
// HTTP basic authentication (RFC 7617) in front of a listener's routes: [daemon]
// metrics_basic_auth_file on metrics_listen. The file is read once, at start; only the
// SHA-256 of its "user:password" is kept, and a request's credentials are compared by their
// own SHA-256 with CRYPTO_memcmp, so neither the time taken nor a memory dump gives the
// password away.

#include <memory>
#include <string>
#include <utility>

#include "http/server.h"
#include "kms/error.h"
#include "kms/secret.h"

namespace kms::daemon {

class BasicAuth {
 public:
  /// Reads `path`, a secret file (kms::readSecretFile) of one line "user:password", neither
  /// part empty. Errc::config naming the file, never its content, when it cannot be used.
  [[nodiscard]] static Result<std::shared_ptr<const BasicAuth>> load(const std::string& path);

  /// Whether `request` carries "Authorization: Basic base64(user:password)" with this user
  /// and password (the scheme's name in any case).
  [[nodiscard]] bool admits(const http::ServerRequest& request) const;

  /// `handler` behind this check: a request without the right credentials is answered 401
  /// with `WWW-Authenticate: Basic realm="kmsd"` and never reaches it.
  [[nodiscard]] static http::Handler guard(std::shared_ptr<const BasicAuth> auth, http::Handler handler);

 private:
  explicit BasicAuth(SecretBytes digest) : digest_(std::move(digest)) {}

  SecretBytes digest_;  ///< SHA-256 of "user:password"
};

}  // namespace kms::daemon
