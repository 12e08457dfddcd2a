#pragma once
// PASSporT signing for the ATIS-1000082 routes, on threads of its own: a signature never
// waits behind the engine's workers, an ACME order or a trust refresh, only behind other
// signatures and the HSM.

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "common/clock.h"
#include "signing/signing_keys.h"
#include "signing/signing_request.h"

namespace kms::daemon {

/// Which certificates a caller may sign with (empty `certs`: every one).
struct SigningClient {
  std::string id;  ///< for events: "uid 0", a client name
  std::set<std::string> certs;
};

/// One signed request: the Identity header value, and what it was signed with.
struct Signed {
  std::string identity;
  std::string cert;
  std::string serial;
};

/// Signing threads (a SoftHSM2 signature takes ~40 µs: two keep two cores busy).
inline constexpr std::size_t kSigningThreads = 2;

class SigningService {
 public:
  SigningService(SigningKeys& keys, const Clock& clock, std::size_t threads);
  ~SigningService();
  SigningService(const SigningService&) = delete;
  SigningService& operator=(const SigningService&) = delete;

  /// Signs an ATIS-1000082 request body for `client`, on the calling thread.
  [[nodiscard]] std::variant<Signed, AtisError> sign(std::string_view body, const SigningClient& client) const;
  /// Runs `job` on a signing thread.
  void post(std::function<void()> job);

 private:
  void run();

  SigningKeys& keys_;
  const Clock& clock_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::function<void()>> jobs_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace kms::daemon
