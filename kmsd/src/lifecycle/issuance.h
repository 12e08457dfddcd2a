#pragma once
// Finalize (the CSR built and signed in the HSM, sent to the CA) and waiting for the
// certificate: polled, downloaded, checked (key, identifiers, validity, chain to the
// anchors, SHAKEN profile) and recorded.

#include "config/config.h"
#include "lifecycle/poll_timing.h"
#include "lifecycle/step_context.h"
#include "engine/step_outcome.h"

namespace kms::daemon {

class OrderCloser;

class Issuance {
 public:
  Issuance(const StepContext& ctx, PollTiming& polls, OrderCloser& closer)
      : ctx_(ctx), polls_(polls), closer_(closer) {}

  /// At authorized: the CSR sent (an order finalized before a kill carries on as it is).
  [[nodiscard]] Result<StepOutcome> finalize(const storage::Order& order, const config::CertificateConfig& c,
                                             PollState& poll);
  /// At finalizing: the order polled until valid, the chain downloaded, checked, recorded.
  [[nodiscard]] Result<StepOutcome> awaitIssuance(const storage::Order& order, const config::CertificateConfig& c,
                                                  PollState& poll);

 private:
  /// The finalize request was refused with orderNotReady: finalized by an earlier process
  /// when the order is processing or valid (then carried on), else the refusal.
  [[nodiscard]] Result<StepOutcome> finalizedBefore(const storage::Order& order, const Error& refusal,
                                                    CaSession& ca);
  /// The order's key and what is asked of the CA with it; nullopt when the key is gone
  /// from the token.
  struct KeyedRequest {
    std::shared_ptr<hsm::KeySigner> key;
    acme::IssueRequest request;
  };
  [[nodiscard]] Result<std::optional<KeyedRequest>> withKey(const storage::Order& order,
                                                           const config::CertificateConfig& c);
  [[nodiscard]] Result<StepOutcome> record(const storage::Order& order, const config::CertificateConfig& c,
                                           const acme::Order& current, const acme::IssuedChain& chain);

  const StepContext& ctx_;
  PollTiming& polls_;
  OrderCloser& closer_;
};

}  // namespace kms::daemon
