#include "daemon/service_notify.h"

#include <systemd/sd-daemon.h>
#include <time.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>


namespace kms::daemon {
namespace {

/// "41d", "5h", "12m", "30s".
std::string inWords(std::int64_t seconds) {
  if (seconds >= std::int64_t{2} * 86400) {
    return std::to_string(seconds / 86400) + "d";
  }
  if (seconds >= std::int64_t{2} * 3600) {
    return std::to_string(seconds / 3600) + "h";
  }
  if (seconds >= 120) {
    return std::to_string(seconds / 60) + "m";
  }
  return std::to_string(seconds) + "s";
}

}  // namespace

ServiceNotify::ServiceNotify() {
  const char* socket = std::getenv("NOTIFY_SOCKET");
  active_ = socket != nullptr && socket[0] != '\0';
  if (!active_) {
    return;
  }
  std::uint64_t usec = 0;
  const int r = sd_watchdog_enabled(1, &usec);  // 1: unset WATCHDOG_USEC/WATCHDOG_PID
  if (r > 0 && usec > 0) {
    watchdogEvery_ = std::chrono::microseconds(usec / 2);
  } else if (r < 0) {
    problem_ = std::string("WATCHDOG_USEC is not a usable number of microseconds (") + std::strerror(-r) +
               "): no watchdog keep-alives";
  }
}

std::string ServiceNotify::send(const std::string& message) {
  if (!active_) {
    return {};
  }
  const int r = sd_notify(0, message.c_str());
  if (r < 0) {
    const char* socket = std::getenv("NOTIFY_SOCKET");
    return std::string("cannot notify systemd at ") + (socket != nullptr ? socket : "?") + ": " + std::strerror(-r);
  }
  return {};
}

std::string ServiceNotify::ready(const std::string& status) {
  return send("READY=1\nSTATUS=" + status);
}

std::string ServiceNotify::reloading() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  const auto usec = static_cast<std::uint64_t>(ts.tv_sec) * 1000000U + static_cast<std::uint64_t>(ts.tv_nsec) / 1000U;
  return send("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(usec) + "\nSTATUS=reloading the configuration");
}

std::string ServiceNotify::stopping() {
  return send("STOPPING=1\nSTATUS=stopping: finishing the steps in flight");
}

std::string ServiceNotify::watchdog() {
  return send("WATCHDOG=1");
}

std::string ServiceNotify::status(const std::string& status) {
  return send("STATUS=" + status);
}

void ServiceNotify::startFailed(int errnoValue, const std::string& why) {
  std::string line = why.substr(0, why.find('\n'));
  sd_notify(0, ("ERRNO=" + std::to_string(errnoValue) + "\nSTATUS=start failed: " + line).c_str());
}

std::string serviceStatusLine(const storage::ServiceSummary& summary, std::int64_t now) {
  std::string out = std::to_string(summary.active) + (summary.active == 1 ? " certificate" : " certificates") +
                    " active; ";
  if (summary.nextRenewal) {
    const std::int64_t left = summary.nextRenewal->second - now;
    out += "next renewal " + summary.nextRenewal->first + (left <= 0 ? " due now" : " in " + inWords(left));
  } else {
    out += "no renewal planned";
  }
  out += "; last error ";
  if (summary.lastError) {
    std::string text = summary.lastError->second.substr(0, summary.lastError->second.find('\n'));
    if (text.size() > 120) {
      text = text.substr(0, 117) + "...";
    }
    out += summary.lastError->first + ": " + text;
  } else {
    out += "none";
  }
  return out;
}

}  // namespace kms::daemon
