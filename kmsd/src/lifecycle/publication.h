#pragma once
// The issued chain to the STI-CR: written under its immutable name, checked where
// verifiers will fetch it (publication_check = "fetch"), then made the current one and
// the certificate active with its renewal instant.

#include <optional>
#include <string>

#include "config/config.h"
#include "lifecycle/snapshot.h"
#include "lifecycle/step_context.h"
#include "engine/step_outcome.h"

namespace kms::daemon {

class Publication {
 public:
  Publication(const StepContext& ctx, SnapshotReader& snapshots) : ctx_(ctx), snapshots_(snapshots) {}

  /// At issued: the chain written to the web root, checked, recorded as published.
  [[nodiscard]] Result<StepOutcome> publish(const storage::Order& order, const config::CertificateConfig& c,
                                            PollState& poll);
  /// At published: web_root/<name>.pem switched, the order closed, the certificate active.
  [[nodiscard]] Result<StepOutcome> activate(const storage::Order& order, const config::CertificateConfig& c);

 private:
  /// The publication check: nullopt when `url` serves exactly `expected`, else what was wrong.
  [[nodiscard]] std::optional<std::string> checkServed(const std::string& url, const std::string& expected);
  /// A failed write to the web root: named as such, retried, and KMS_PUBLISH_FAILED.
  Error publishFailed(const std::string& cert, Error e);

  const StepContext& ctx_;
  SnapshotReader& snapshots_;
};

}  // namespace kms::daemon
