#pragma once
// An in-memory lifecycle for the engine's unit tests, behind the engine's own Lifecycle
// interface: no token, no CA. Each step writes what the real one records to a real SQLite
// store (orders, issued certificates, renewal times), so the engine, the planner and the
// failure policy see the state they see in kmsd. Failures and polls are scripted per
// (certificate, action); every action run is logged.

#include <deque>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "engine/lifecycle_port.h"
#include "events/event_sink.h"
#include "sim_executor.h"

namespace kms::daemon::test {

class StoreLifecycle final : public Lifecycle {
 public:
  StoreLifecycle(LockedStore& store, SimClock& clock) : store_(store), clock_(clock) {}

  Result<CertSnapshot> snapshot(const config::CertificateConfig& c, bool renewRequested) override;
  Result<StepOutcome> run(Action action, const CertSnapshot& snap, const config::CertificateConfig& c,
                          PollState& poll) override;
  Result<void> abandon(const storage::Order& order, const std::string& cert,
                       const std::optional<std::string>& destroyKey, const std::string& why) override;

  using Key = std::pair<std::string, Action>;
  std::map<Key, std::deque<Error>> failures;  ///< the next runs of (cert, action) fail with these
  std::map<Key, std::deque<Millis>> polls;    ///< ... or ask to be polled again after these
  std::vector<Key> log;                       ///< every action run, in order
  std::vector<std::string> destroyedKeys;     ///< keys abandon() was asked to destroy
  std::int64_t lifetime = std::int64_t{90} * 86400;
  /// Order steps (generateKey .. awaitIssuance) running for certificates at once, and the
  /// most seen: run() is called inside a worker, so this counts what the slots allow.
  int atCaNow = 0;
  int atCaMost = 0;

  [[nodiscard]] int count(const std::string& cert, Action action) const;

 private:
  Result<StepOutcome> perform(Action action, const CertSnapshot& snap, const config::CertificateConfig& c);
  Result<StepOutcome> issue(const CertSnapshot& snap, const config::CertificateConfig& c);
  Result<StepOutcome> activate(const CertSnapshot& snap, const config::CertificateConfig& c);
  Result<StepOutcome> advance(const CertSnapshot& snap, storage::CertState step);
  [[nodiscard]] std::int64_t now() const { return unixSeconds(clock_.now()); }

  LockedStore& store_;
  SimClock& clock_;
  int serial_ = 0;
};

}  // namespace kms::daemon::test
