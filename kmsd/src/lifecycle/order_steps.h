#pragma once
// A new order, up to the CA's answer: the key recorded with the order (or the active one
// reused), generated on the token, the SPC token fetched (SHAKEN), and ACME newOrder sent.

#include <mutex>
#include <set>
#include <string>

#include "config/config.h"
#include "lifecycle/renewal_timing.h"
#include "lifecycle/step_context.h"
#include "engine/step_outcome.h"

namespace kms::daemon {

class OrderCloser;

class OrderSteps {
 public:
  OrderSteps(const StepContext& ctx, const RenewalTiming& timing, OrderCloser& closer)
      : ctx_(ctx), timing_(timing), closer_(closer) {}

  /// A key recorded (planned) with a new order, or the active key reused (reuse_key).
  [[nodiscard]] Result<StepOutcome> startOrder(const CertSnapshot& snap, const config::CertificateConfig& c);
  /// The recorded key generated on the token (found there when an earlier run did it).
  [[nodiscard]] Result<StepOutcome> generateKey(const storage::Order& order, const config::CertificateConfig& c);
  /// SHAKEN: an SPC token from the STI-PA for the ACME account's key.
  [[nodiscard]] Result<StepOutcome> fetchToken(const storage::Order& order, const config::CertificateConfig& c);
  /// ACME newOrder (replacing the active certificate when the CA offers ARI).
  [[nodiscard]] Result<StepOutcome> newOrder(const CertSnapshot& snap, const config::CertificateConfig& c);

 private:
  [[nodiscard]] Result<void> recordOrder(const CertSnapshot& snap, const config::CertificateConfig& c,
                                         const std::optional<KeyManager::PlannedKey>& planned,
                                         const std::string& keyUri);

  const StepContext& ctx_;
  const RenewalTiming& timing_;
  OrderCloser& closer_;
  std::mutex mutex_;
  std::set<std::string> plannedHere_;  ///< order keys this process recorded and not yet generated
};

}  // namespace kms::daemon
