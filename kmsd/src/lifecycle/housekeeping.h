#pragma once
// Retiring what nothing needs any more: keys of abandoned or superseded orders (after
// [publisher] retain), of expired or revoked certificates; chains no verifier needs left
// the web root.

#include "lifecycle/step_context.h"

namespace kms::daemon {

class Housekeeping {
 public:
  explicit Housekeeping(const StepContext& ctx) : ctx_(ctx) {}

  /// Destroys retirable keys and removes stale chains; how many keys were destroyed.
  [[nodiscard]] Result<int> run();

 private:
  [[nodiscard]] Result<int> destroyKeys(std::int64_t now, std::int64_t retain);
  [[nodiscard]] Result<void> unpublishChains(std::int64_t now, std::int64_t retain);

  const StepContext& ctx_;
};

}  // namespace kms::daemon
