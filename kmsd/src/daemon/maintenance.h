#pragma once
// The daemon's work beside the certificates' turns: the STI-PA CA list and CRL read at
// start and every [sti_pa] trust_refresh (the certificates they affect planned again), and
// housekeeping (the event log bounded, keys and chains nothing needs retired).

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/engine.h"

namespace kms::daemon {

class Steps;
class TrustKeeper;

class Maintenance {
 public:
  /// `settings`: the configuration in force (read on the loop; a reload swaps it).
  Maintenance(Executor& executor, Engine& engine, TrustKeeper& trust, Steps& steps, LockedStore& store,
              EventSink& events, const Clock& clock, std::function<std::shared_ptr<const config::Config>()> settings);

  /// Reads the CA list and CRL on a worker, then plans the certificates it affected (the
  /// `first` refresh starts the engine) and, with `interval`, arms the next refresh. False when
  /// a refresh is running already. `done(affected)` runs on the loop after it.
  bool refreshTrust(bool first, std::function<void(std::vector<std::string>)> done = {});
  /// The interval of the next refreshes (none: --once).
  void setTrustInterval(std::optional<std::chrono::seconds> interval) { interval_ = interval; }
  /// Bounds the event log ([daemon] events_keep, events_max) and retires keys and chains.
  void housekeeping();
  /// No more refreshes.
  void stop();

 private:
  void refreshed(bool first, const std::vector<std::string>& affected,
                 const std::function<void(std::vector<std::string>)>& done);
  void armNextRefresh();
  /// Runs `job` on a worker; what it throws becomes KMS_INTERNAL_ERROR.
  void guarded(const std::string& where, std::function<void()> job);

  Executor& executor_;
  Engine& engine_;
  TrustKeeper& trust_;
  Steps& steps_;
  LockedStore& store_;
  EventSink& events_;
  const Clock& clock_;
  std::unique_ptr<Timer> timer_;
  std::optional<std::chrono::seconds> interval_;
  bool running_ = false;
  bool stopped_ = false;
  std::function<std::shared_ptr<const config::Config>()> settings_;
};

}  // namespace kms::daemon
