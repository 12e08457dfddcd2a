#pragma once
// kmsd's own alerts: a thread evaluates the conditions (alerts/conditions.h) against the state
// DB every [alerts] interval and soon after an event that may change one; an alert fires and
// resolves once per (certificate, condition); each channel has a thread of its own that
// delivers what is due (a new alert, a repeat after repeat_interval, a resolve), retried with
// backoff. Everything that decides what was said lives in the DB (storage::AlertLog), so a
// restart neither pages twice nor loses a resolve. Nothing here runs on the engine's workers
// or waits for them: a hanging channel never delays a renewal or a signature.

#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "alerts/channels.h"
#include "common/clock.h"
#include "config/config.h"
#include "events/event_sink.h"
#include "storage/alert_log.h"

namespace kms::daemon {

class Exposition;

class Notifier {
 public:
  Notifier(std::unique_ptr<storage::AlertLog> log, std::vector<std::unique_ptr<AlertChannel>> channels,
           const config::AlertsConfig& settings, std::set<std::string> certificates, EventSink& sink,
           const Clock& clock);
  ~Notifier();
  Notifier(const Notifier&) = delete;
  Notifier& operator=(const Notifier&) = delete;

  /// Starts the evaluation thread and one thread per channel.
  void start();
  /// Cancels the sends in progress and joins the threads (idempotent).
  void stop();
  /// Whether `id` is one of the events the notifier itself emits.
  [[nodiscard]] static bool isOwnEvent(std::string_view id);
  /// Evaluates again soon (an event that may change a condition; any thread, never blocks).
  void wake();
  /// The certificates in the configuration (after a reload); others raise nothing.
  void setCertificates(std::set<std::string> names);

  /// One evaluation and dispatch now, on the caller's thread (the unit tests; the thread
  /// runs the same).
  void evaluate();

  /// What `kmsctl alerts` and the status listing show.
  struct View {
    std::vector<storage::AlertRow> alerts;
    std::vector<storage::DeliveryRow> deliveries;
  };
  [[nodiscard]] Result<View> view();

  /// kms_alerts_firing{condition} and kms_alert_notifications_total{channel,result}.
  void writeMetrics(Exposition& out) const;

 private:
  struct Job {
    Notification notification;
    std::string channel;
  };
  struct Worker;

  void evaluateLocked(std::int64_t now);
  void dispatchLocked(std::int64_t now);
  void deliver(AlertChannel& channel, const Job& job);
  void record(const AlertChannel& channel, const Job& job, const Result<void>& sent);
  [[nodiscard]] std::int64_t backoff(std::int64_t attempts, bool lasting) const;

  std::unique_ptr<storage::AlertLog> log_;
  std::vector<std::unique_ptr<AlertChannel>> channels_;
  config::AlertsConfig settings_;
  EventSink& sink_;
  const Clock& clock_;

  std::mutex dbMutex_;  ///< the AlertLog's connection: the evaluation, the workers' results, view()
  std::set<std::string> certificates_;  ///< under dbMutex_
  std::set<std::pair<std::string, std::string>> inFlight_;  ///< (channel, cert/condition) queued or sending; under dbMutex_

  std::mutex wakeMutex_;
  std::condition_variable wakeCv_;
  bool woken_ = false;
  bool stopping_ = false;
  std::thread thread_;
  std::vector<std::unique_ptr<Worker>> workers_;

  mutable std::mutex countersMutex_;
  std::map<std::pair<std::string, std::string>, std::uint64_t> notifications_;  ///< (channel, result)
  std::map<std::string, std::int64_t> firing_;                                 ///< by condition
};

}  // namespace kms::daemon
