#pragma once
// The certificate's deploy hook, run for each newly active certificate: started, waited
// for on the engine's loop (the step runs again when it exits), recorded when it exits 0.

#include "config/config.h"
#include "lifecycle/hook_runner.h"
#include "lifecycle/step_context.h"
#include "engine/step_outcome.h"

namespace kms::daemon {

class Deployment {
 public:
  Deployment(const StepContext& ctx, HookRunner& hooks) : ctx_(ctx), hooks_(hooks) {}

  /// The deploy step for the active certificate of `snap`.
  [[nodiscard]] Result<StepOutcome> deploy(const CertSnapshot& snap, const config::CertificateConfig& c);

 private:
  [[nodiscard]] Result<std::unique_ptr<ChildProcess>> start(const storage::IssuedCert& active,
                                                            const config::CertificateConfig& c,
                                                            const std::string& outFile);
  [[nodiscard]] Result<StepOutcome> finished(const storage::IssuedCert& active, const config::CertificateConfig& c,
                                             std::optional<int> status, const std::string& outFile, Millis timeout);

  const StepContext& ctx_;
  HookRunner& hooks_;
};

}  // namespace kms::daemon
