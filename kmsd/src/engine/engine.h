#pragma once
// The lifecycle engine: the registry of managed certificates and their in-memory state,
// dispatch of each certificate's turn to a worker when the scheduler wakes it, completion
// back on the loop (rescheduling by the step's wait, the failure policy's retry time or the
// plan), order slots, and `--once` settling. Everything runs on an Executor: the daemon's
// (Asio) or a test's simulated one.

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "config/config.h"
#include "engine/executor.h"
#include "engine/failure_recorder.h"
#include "engine/lifecycle_port.h"
#include "engine/once.h"
#include "engine/order_slots.h"
#include "engine/runtime_view.h"
#include "engine/scheduler.h"
#include "engine/worker.h"

namespace kms::daemon {

struct EngineSettings {
  std::size_t maxOrders = 4;  ///< [daemon] max_concurrent_orders (0 in the file: 2 x cores)
  RetryPolicy retry;          ///< [daemon] retry_first, retry_max
  bool once = false;          ///< settle every certificate, then stop the executor
};

class Engine {
 public:
  Engine(Executor& executor, const Clock& clock, Random& random, Lifecycle& lifecycle, LockedStore& store,
         EventSink& events, EngineSettings settings);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // --- the registry (loop thread) ---
  /// A certificate to manage; scheduled at once when the engine has started. `definition`:
  /// the hash of what it is issued under (daemon/registration.h), recorded with failures.
  void add(config::CertificateConfig c, std::string definition = {});
  /// A managed certificate's definition and its hash as a reload found them (added when it
  /// is not managed). Plans nothing: the caller wakes or renews what the change needs.
  void update(config::CertificateConfig c, std::string definition = {});
  /// Stops renewing `name` (its step in flight finishes).
  void remove(const std::string& name);
  [[nodiscard]] bool manages(const std::string& name) const;
  /// The managed certificates, in the order they were added.
  [[nodiscard]] const std::vector<std::string>& names() const { return order_; }
  [[nodiscard]] std::shared_ptr<const config::CertificateConfig> definition(const std::string& name) const;

  // --- running (loop thread) ---
  /// Plans every certificate at once (after the first trust refresh, when there is one).
  void start();
  /// Plans `name` again now, unless its turn is running.
  void wake(const std::string& name);
  /// An operator asked to renew `name` (kmsctl renew): the next plan starts an order.
  void requestRenewal(const std::string& name);
  /// No step starts any more; `onStopped` runs once nothing is in flight.
  void stop(std::function<void()> onStopped);
  [[nodiscard]] bool stopping() const { return stopping_; }
  /// A job outside the certificates' turns (a trust refresh) that a stop waits for.
  void jobStarted() { ++running_; }
  void jobDone();
  /// Runs after a certificate became active (housekeeping).
  std::function<void()> onActivated;

  // --- settings a reload may change (loop thread) ---
  void setMaxOrders(std::size_t max);
  void setRetryPolicy(RetryPolicy policy) { failures_.setPolicy(policy); }

  // --- views ---
  /// The loop's view of the certificates (or of `only`), copied on the loop thread.
  [[nodiscard]] RuntimeViews runtimeInfo(const std::optional<std::string>& only = {}) const;
  struct Counters {
    std::size_t certificates = 0;
    std::size_t openOrders = 0;  ///< order slots in use
    std::size_t maxOrders = 0;
    int stepsRunning = 0;
    std::int64_t caPausedUntil = 0;
  };
  [[nodiscard]] Counters counters() const;
  /// --once: one outcome per configured certificate, in config order.
  [[nodiscard]] std::vector<CertOutcome> outcomes() const { return once_.outcomes(); }
  /// --once --force: what was overridden for `name`, said on its line.
  void overrode(const std::string& name, const std::string& what) { once_.overrode(name, what); }

 private:
  struct Runtime;
  using RuntimePtr = std::shared_ptr<Runtime>;

  void schedule(const RuntimePtr& rt, TimePoint at);
  void due(std::uint64_t key, std::uint64_t gen);
  void dispatch(const RuntimePtr& rt);
  void complete(const RuntimePtr& rt, WorkResult r);
  /// When the certificate runs next after `r` (nullopt: it waits for a slot).
  [[nodiscard]] TimePoint nextTurn(const RuntimePtr& rt, const WorkResult& r);
  void watchExit(const RuntimePtr& rt, const ChildProcess& child);
  void wakeSlotWaiters();
  void maybeStopped();

  Executor& executor_;
  const Clock& clock_;
  Lifecycle& lifecycle_;
  EventSink& events_;
  EngineSettings settings_;
  OrderSlots slots_;
  CaPause pause_;
  FailureRecorder failures_;
  Worker worker_;
  Scheduler scheduler_;
  OnceRun once_;

  // loop thread only
  std::map<std::string, RuntimePtr> certs_;
  std::vector<RuntimePtr> byKey_;   ///< scheduler keys: runtimes are never freed while the engine lives
  std::vector<std::string> order_;  ///< managed certificates, in config order
  std::deque<std::string> slotWaiters_;
  int running_ = 0;
  bool started_ = false;
  bool stopping_ = false;
  std::function<void()> onStopped_;
};

}  // namespace kms::daemon
