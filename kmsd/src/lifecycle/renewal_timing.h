#pragma once
// When the active certificate renews: a share of its lifetime with jitter, or a random
// instant in the CA's ARI window (RFC 9773), bounded by the early-renewal budget so that a
// CA cannot have kmsd renew in a loop.

#include <cstdint>
#include <optional>
#include <utility>

#include "config/config.h"
#include "engine/planner.h"
#include "lifecycle/step_context.h"
#include "engine/step_outcome.h"

namespace kms::daemon {

class RenewalTiming {
 public:
  explicit RenewalTiming(const StepContext& ctx) : ctx_(ctx) {}

  /// Early renewals the CA may bring about for one certificate (an ARI window before kmsd's
  /// own time, a chain distrusted while its root is still approved) in any day and in any
  /// third of the lifetime. Revocation, a root that left the anchors and `kmsctl renew`
  /// are never counted or held back.
  static constexpr std::int64_t kEarlyRenewalBudget = 3;

  /// The refreshRenewal step: the renewal instant chosen (ARI when the CA offers it) and
  /// recorded with when to read the CA's window again.
  [[nodiscard]] Result<StepOutcome> refresh(const CertSnapshot& snap, const config::CertificateConfig& c);
  /// The CA-initiated early renewals of `c` in the budget's window (the longer of a day and
  /// a third of `active`'s lifetime), and that window in seconds.
  [[nodiscard]] std::pair<std::int64_t, std::int64_t> earlyRenewalsUsed(const config::CertificateConfig& c,
                                                                       const storage::IssuedCert& active) const;
  /// Whether an order started now is an early renewal the CA brought about (an ARI time
  /// before kmsd's own, a chain distrusted while its root is still approved).
  [[nodiscard]] bool earlyByTheCa(const CertSnapshot& snap, const config::CertificateConfig& c) const;

 private:
  /// kmsd's own renewal time when the CA's ARI time `ariTime` is earlier than it and the
  /// budget is spent (KMS_ARI_IGNORED); else nullopt.
  std::optional<std::int64_t> holdAriRenewal(const storage::IssuedCert& active, const config::CertificateConfig& c,
                                             std::int64_t ariTime);
  /// Reads renewalInfo: the instant and the next read, or nullopt (KMS_ARI_FAILED) keeping
  /// `renewAt` with the next read set on `nextCheck`.
  void readAri(const storage::IssuedCert& a, const config::CertificateConfig& c, acme::AcmeClient& client,
               std::int64_t& renewAt, std::optional<std::int64_t>& nextCheck);

  const StepContext& ctx_;
};

}  // namespace kms::daemon
