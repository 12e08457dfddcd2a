// systemd's notify protocol around the daemon's life: READY=1 once the state DB, the token
// and the schedule are loaded (the loop is about to run), STATUS= recomputed from the state DB
// on a worker after events (at most every 5 s) and each minute, WATCHDOG=1 from the loop's own
// timer.
#include <cerrno>

#include "common/clock.h"
#include "daemon/daemon_parts.h"

namespace kms::daemon {
namespace {

using storage::EventLevel;
constexpr std::chrono::seconds kStatusTick{5};
constexpr std::int64_t kStatusMaxAge = 60;

/// A notification that did not go through is said once (the journal has it), never again.
void said(Daemon::Parts& p, const std::string& problem) {
  if (problem.empty() || p.notifyWarned) {
    return;
  }
  p.notifyWarned = true;
  p.sink->emit({"KMS_NOTIFY_FAILED", EventLevel::warning, std::nullopt, problem, {}});
}

/// STATUS= from the state DB (thread-safe: refreshes run it on a worker).
std::string statusLine(Daemon::Parts& p) {
  const std::int64_t now = unixSeconds(p.clock->now());
  auto summary = p.state.locked->with([&](storage::Store& s) { return s.serviceSummary(now); });
  if (!summary) {
    return "state DB unreadable: " + summary.error().toString();
  }
  return serviceStatusLine(*summary, now);
}

/// Every kStatusTick, after events or at kStatusMaxAge: the summary is read on a worker (it
/// counts every certificate) and sent from the loop when it changed.
void refreshStatus(Daemon::Parts& p) {
  p.statusTimer->at(p.clock->now() + kStatusTick, [&p] {
    const std::int64_t now = unixSeconds(p.clock->now());
    if (!p.statusDirty && now - p.statusAt < kStatusMaxAge) {
      refreshStatus(p);
      return;
    }
    p.statusDirty = false;
    p.statusAt = now;
    p.executor->work([&p] {
      p.executor->post([&p, line = statusLine(p)]() mutable {
        if (line != p.statusSent) {
          said(p, p.notify.status(line));
          p.statusSent = std::move(line);
        }
        refreshStatus(p);
      });
    });
  });
}

/// WATCHDOG=1 from the loop: a loop that no longer runs its timers stops them.
void keepAlive(Daemon::Parts& p, std::chrono::microseconds every) {
  p.watchdogTimer->at(p.clock->now() + std::chrono::duration_cast<TimePoint::duration>(every), [&p, every] {
    said(p, p.notify.watchdog());
    keepAlive(p, every);
  });
}

}  // namespace

void superviseStart(Daemon::Parts& p) {
  if (!p.notify.active()) {
    return;
  }
  // A WATCHDOG_USEC kmsd cannot use is said on its own: it must not hide a socket that
  // does not take notifications, which `said` reports once after it.
  if (const std::string watchdog = p.notify.problem(); !watchdog.empty()) {
    p.sink->emit({"KMS_NOTIFY_FAILED", EventLevel::warning, std::nullopt, watchdog, {}});
  }
  p.sink->addListener([&p](const EventRecord&) { p.statusDirty = true; });
  p.statusAt = unixSeconds(p.clock->now());
  p.statusDirty = false;
  p.statusSent = statusLine(p);
  said(p, p.notify.ready(p.statusSent));
  p.statusTimer = p.executor->timer();
  refreshStatus(p);
  if (auto every = p.notify.watchdogEvery()) {
    p.watchdogTimer = p.executor->timer();
    said(p, p.notify.watchdog());
    keepAlive(p, *every);
  }
}

void superviseReloading(Daemon::Parts& p) {
  said(p, p.notify.reloading());
}

void superviseReloaded(Daemon::Parts& p) {
  if (!p.notify.active()) {
    return;
  }
  p.statusSent = statusLine(p);
  said(p, p.notify.ready(p.statusSent));
}

void superviseStopping(Daemon::Parts& p) {
  said(p, p.notify.stopping());
  if (p.statusTimer) {
    p.statusTimer->cancel();
  }
  // The watchdog keeps going while the steps in flight finish: a stop that hangs is killed.
}

}  // namespace kms::daemon
