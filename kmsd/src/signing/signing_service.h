#pragma once
// PASSporT signing for the ATIS-1000082 routes, on threads of its own: a signature never
// waits behind the engine's workers, an ACME order or a trust refresh, only behind other
// signatures and the HSM.

#include <array>
#include <atomic>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <map>
#include <memory>
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

class SigningRecord;

/// Which certificates a caller may sign with (empty `certs`: every one) and the attestation
/// levels it may ask for (empty: every one).
struct SigningClient {
  std::string id;  ///< for messages and the record: "uid 0", a client name
  std::set<std::string> certs;
  std::set<std::string> attest;
};

/// One signed request: the Identity header value, what it was signed with, and the claims
/// the signing record keeps (never the token).
struct Signed {
  std::string identity;
  std::string cert;
  std::string serial;
  pki::PassportType type = pki::PassportType::shaken;
  std::string attest;  ///< "" on a div token
  std::string orig;
  std::size_t destCount = 0;
  std::string origid;  ///< "" on a div token
  std::int64_t iat = 0;
};

/// What signing has done since kmsd started, for the metrics: requests signed, refused by
/// messageId, and the time each request took (parse, pick, HSM signature, response), as
/// counts under upper bounds.
class SigningCounters {
 public:
  /// Upper bounds of the latency buckets, microseconds (the last one counts everything).
  static constexpr std::array<std::int64_t, 8> kBoundsMicros{100, 250, 500, 1000, 2500, 5000, 25000, INT64_MAX};

  void signedOne(std::chrono::nanoseconds took);
  void refused(const std::string& messageId, std::chrono::nanoseconds took);
  /// A request refused before it was parsed or signed (credentials, rate limit): counted,
  /// but no latency sample (it would pull the histogram towards 0).
  void refusedEarly(const std::string& messageId);

  struct Snapshot {
    std::uint64_t signedCount = 0;
    std::map<std::string, std::uint64_t> refused;  ///< by messageId
    std::array<std::uint64_t, kBoundsMicros.size()> latency{};  ///< cumulative, as Prometheus buckets
    double latencySumSeconds = 0;
  };
  [[nodiscard]] Snapshot snapshot() const;

 private:
  void observe(std::chrono::nanoseconds took);
  std::atomic<std::uint64_t> signed_{0};
  std::array<std::atomic<std::uint64_t>, kBoundsMicros.size()> buckets_{};
  std::atomic<std::uint64_t> sumNanos_{0};
  mutable std::mutex refusedMutex_;
  std::map<std::string, std::uint64_t> refused_;
};

class SigningService {
 public:
  SigningService(SigningKeys& keys, const Clock& clock, std::size_t threads);
  ~SigningService();
  SigningService(const SigningService&) = delete;
  SigningService& operator=(const SigningService&) = delete;

  /// Signs an ATIS-1000082 request body for `client`, on the calling thread, counted, and
  /// recorded in the signing record when there is one.
  [[nodiscard]] std::variant<Signed, AtisError> sign(std::string_view body, const SigningClient& client);
  /// Counts a request refused before it reached sign() (credentials, rate limit).
  void countRefusal(const AtisError& error) { counters_.refusedEarly(error.messageId); }
  /// Records every signature from now on (before the first request).
  void setRecord(std::unique_ptr<SigningRecord> record);
  [[nodiscard]] SigningRecord* record() const { return record_.get(); }
  [[nodiscard]] const SigningCounters& counters() const { return counters_; }
  /// Runs `job` on a signing thread.
  void post(std::function<void()> job);

 private:
  void run();
  [[nodiscard]] std::variant<Signed, AtisError> signUncounted(std::string_view body, const SigningClient& client) const;

  SigningKeys& keys_;
  const Clock& clock_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::function<void()>> jobs_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
  SigningCounters counters_;
  std::unique_ptr<SigningRecord> record_;
};

class Exposition;
/// The signing counters in Prometheus' text format: kms_passport_signed_total,
/// kms_passport_refused_total{reason} (the ATIS messageId), kms_passport_request_duration_seconds.
void writeSigningMetrics(const SigningCounters& counters, Exposition& out);

}  // namespace kms::daemon
