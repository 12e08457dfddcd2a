#pragma once
// Revoking the active certificate at the CA (kmsctl revoke), recorded at once: the planner
// then has no valid certificate and starts a new order.

#include <string>

#include "config/config.h"
#include "lifecycle/snapshot.h"
#include "lifecycle/step_context.h"

namespace kms::daemon {

class Revocation {
 public:
  Revocation(const StepContext& ctx, SnapshotReader& snapshots) : ctx_(ctx), snapshots_(snapshots) {}

  /// Revokes the active certificate of `c` with RFC 5280 `reason`; its serial.
  /// `caller`: fields naming who asked (the control API's uid), added to KMS_CERT_REVOKED.
  [[nodiscard]] Result<std::string> revoke(const config::CertificateConfig& c, int reason, const Fields& caller);

 private:
  const StepContext& ctx_;
  SnapshotReader& snapshots_;
};

}  // namespace kms::daemon
