#pragma once
// Who may sign over the TCP listener: the [[signing.client]] table with each client's bearer
// token (read from its file) or certificate subject, its certificates, attestation levels and
// rate limit. Built whole at start and at each SIGHUP and swapped: a client removed from the
// file is refused from the next request on.

#include <chrono>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <variant>
#include <vector>

#include "config/config.h"
#include "http/server.h"
#include "kms/error.h"
#include "kms/secret.h"
#include "signing/signing_request.h"
#include "signing/signing_service.h"

namespace kms::daemon {

/// At most `perSecond` requests in any second, in bursts up to `perSecond` (a token bucket).
class RateLimit {
 public:
  explicit RateLimit(int perSecond);
  /// True when one more request fits at `now`.
  [[nodiscard]] bool admit(std::chrono::steady_clock::time_point now);
  [[nodiscard]] int perSecond() const { return rate_; }

 private:
  const int rate_;
  std::mutex mutex_;
  double tokens_;
  std::chrono::steady_clock::time_point last_{};
};

/// One client, as a request found it.
struct SigningCaller {
  SigningClient client;             ///< its name, certificates and attestation levels
  std::shared_ptr<RateLimit> limit;  ///< null: no limit
};

/// The least a bearer token must hold, in characters.
inline constexpr std::size_t kMinTokenLength = 32;

class SigningClients {
 public:
  /// Reads each client's token file (secret-file rules; at least kMinTokenLength printable
  /// characters; two clients may not share a token). Errc::config naming the client and file.
  [[nodiscard]] static Result<std::shared_ptr<const SigningClients>> load(const config::SigningConfig& config);

  /// The client a request authenticates as: a bearer token (Authorization: Bearer) or, on TLS,
  /// a verified client certificate whose subject a client names. 401 POL4001 without a
  /// credential or with a token no client has; 403 POL4002 for a certificate that does not
  /// verify or is no client's. Tokens are compared in constant time.
  [[nodiscard]] std::variant<const SigningCaller*, AtisError> authenticate(const http::ServerRequest& request) const;

  [[nodiscard]] std::size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    SigningCaller caller;
    SecretBytes token;        ///< empty for a certificate client
    std::string subject;      ///< empty for a token client
  };
  std::vector<Entry> entries_;
};

}  // namespace kms::daemon
