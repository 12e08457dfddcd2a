#pragma once
// Giving an order up, written once: the order closed as abandoned, its challenge answers
// withdrawn, its key destroyed when asked, KMS_ORDER_ABANDONED naming why. Used by the
// engine's failure policy (an order the CA declared unusable) and by the steps (the order's
// key is gone from the token).

#include <optional>
#include <string>

#include "lifecycle/step_context.h"
#include "engine/step_outcome.h"

namespace kms::daemon {

class Authorizer;

class OrderCloser {
 public:
  OrderCloser(const StepContext& ctx, Authorizer& authorizer) : ctx_(ctx), authorizer_(authorizer) {}

  /// Gives `order` of certificate `cert` up; destroys `destroyKey` when set.
  [[nodiscard]] Result<void> abandon(const storage::Order& order, const std::string& cert,
                                     const std::optional<std::string>& destroyKey, const std::string& why);
  /// The order's key is gone from the token (a lost object file): the order is given up so
  /// that the next plan starts a new one with a new key.
  [[nodiscard]] Result<StepOutcome> keyMissing(const storage::Order& order, const std::string& cert);

 private:
  const StepContext& ctx_;
  Authorizer& authorizer_;
};

}  // namespace kms::daemon
