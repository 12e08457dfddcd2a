#pragma once
// One certificate's turn on a worker: read its snapshot, plan, hold it back while the CA
// pauses, take an order slot when the action needs one, run the step, and carry out the
// failure policy when it fails. The result goes back to the loop (engine.h).

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "engine/failure_recorder.h"
#include "engine/lifecycle_port.h"
#include "engine/order_slots.h"

namespace kms::daemon {

/// What a worker found and did for one certificate.
struct WorkResult {
  Plan plan;
  bool ranStep = false;
  std::optional<Error> error;
  std::optional<std::int64_t> retryAt;  ///< after a failure: when the policy tries again
  std::string retryWhy;
  std::optional<Millis> wait;
  std::shared_ptr<ChildProcess> waitFor;  ///< run again when this child exits
  std::optional<storage::IssuedCert> activated;
  bool holdsSlot = false;                      ///< the certificate holds an order slot after this work
  bool needSlot = false;                       ///< planned order work but no slot was free
  bool urgent = false;                         ///< a slot waiter that goes before routine renewals
  std::optional<std::int64_t> activeNotAfter;  ///< of the certificate verifiers get now
  PollState poll;
};

class Worker {
 public:
  Worker(Lifecycle& lifecycle, LockedStore& store, EventSink& events, const Clock& clock, OrderSlots& slots,
         CaPause& pause, FailureRecorder& failures)
      : lifecycle_(lifecycle),
        store_(store),
        events_(events),
        clock_(clock),
        slots_(slots),
        pause_(pause),
        failures_(failures) {}

  /// One turn of `cfg`; never throws (an exception is a failure like any other).
  [[nodiscard]] WorkResult run(const config::CertificateConfig& cfg, const std::string& definition,
                               const PollState& poll, bool renewRequested, bool holdsSlot);

 private:
  [[nodiscard]] WorkResult turn(const config::CertificateConfig& cfg, const std::string& definition, PollState poll,
                                bool renewRequested, bool holdsSlot);
  /// The plan of `snap`, held back while the CA pauses; false when nothing runs now.
  bool planned(const CertSnapshot& snap, std::int64_t now, WorkResult& r);
  void step(const config::CertificateConfig& cfg, const std::string& definition, const CertSnapshot& snap,
            PollState poll, std::int64_t now, WorkResult& r);

  Lifecycle& lifecycle_;
  LockedStore& store_;
  EventSink& events_;
  const Clock& clock_;
  OrderSlots& slots_;
  CaPause& pause_;
  FailureRecorder& failures_;
};

}  // namespace kms::daemon
