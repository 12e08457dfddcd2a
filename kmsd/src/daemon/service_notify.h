#pragma once
// systemd's notify protocol (sd_notify(3)) through libsystemd: READY=1 once the state, the
// token and the schedule are loaded, STATUS= a one-line summary kept current, WATCHDOG=1 from
// the event loop at half of WATCHDOG_USEC (a stuck loop, not a stuck thread, is what gets
// restarted), RELOADING=1 with MONOTONIC_USEC around SIGHUP, STOPPING=1 at SIGTERM, ERRNO= on
// a start-up failure. Without NOTIFY_SOCKET it does nothing.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "storage/store.h"

namespace kms::daemon {

class ServiceNotify {
 public:
  /// Reads NOTIFY_SOCKET and WATCHDOG_USEC/WATCHDOG_PID (which it then unsets, so that hooks
  /// do not inherit them).
  ServiceNotify();

  [[nodiscard]] bool active() const { return active_; }
  /// Half of WATCHDOG_USEC when systemd asks this process for keep-alives.
  [[nodiscard]] std::optional<std::chrono::microseconds> watchdogEvery() const { return watchdogEvery_; }
  /// Why notification or the watchdog is off although asked for (a garbage WATCHDOG_USEC);
  /// empty when all is well.
  [[nodiscard]] const std::string& problem() const { return problem_; }

  /// Each returns "" or why the message was not delivered (the socket is gone, ...).
  std::string ready(const std::string& status);
  std::string reloading();
  std::string stopping();
  std::string watchdog();
  std::string status(const std::string& status);
  /// After a start-up failure: ERRNO= and STATUS= (systemd shows both).
  static void startFailed(int errnoValue, const std::string& why);

 private:
  std::string send(const std::string& message);
  bool active_ = false;
  std::optional<std::chrono::microseconds> watchdogEvery_;
  std::string problem_;
};

/// The STATUS= line: "3 certificates active; next renewal main in 41d; last error none".
[[nodiscard]] std::string serviceStatusLine(const storage::ServiceSummary& summary, std::int64_t now);

}  // namespace kms::daemon
