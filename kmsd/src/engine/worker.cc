#include "engine/worker.h"

#include "common/time_format.h"

namespace kms::daemon {

WorkResult Worker::run(const config::CertificateConfig& cfg, const std::string& definition, const PollState& poll,
                       bool renewRequested, bool holdsSlot) {
  WorkResult r;
  const auto thrown = runReporting(events_, "the step of '" + cfg.name + "'",
                                   [&] { r = turn(cfg, definition, poll, renewRequested, holdsSlot); });
  if (!thrown) {
    return r;
  }
  // A bug, or a peer's bytes no check caught: reported, counted as a failure (so the step is
  // not run again at once), and kmsd goes on.
  const std::string& what = *thrown;
  r.holdsSlot = slots_.release(holdsSlot);
  r.poll = poll;
  r.error = Error{Errc::internal, "internal error: " + what, cfg.name, 0, {}, Disposition::retry, {}};
  try {
    auto retry = failures_.record(cfg, definition, *r.error, r.plan.action, nullptr);
    r.retryAt = retry.at;
    r.retryWhy = retry.why;
  } catch (...) {
    // Nothing recorded: the engine tries again a second later.
  }
  return r;
}

bool Worker::planned(const CertSnapshot& snap, std::int64_t now, WorkResult& r) {
  r.plan = plan(snap, now);
  if (snap.active) {
    r.activeNotAfter = snap.active->notAfter;
  }
  const std::int64_t caPause = pause_.until();
  if (needsCa(r.plan.action) && caPause > r.plan.at) {
    r.plan.at = caPause;
    r.plan.why = "the CA asked to wait until " + isoTime(caPause);
  }
  // Slots bound the orders being worked on at the CA, nothing else: a certificate that
  // waits (backoff, Retry-After), publishes, activates or deploys holds none.
  const bool idle = r.plan.action == Action::wait || r.plan.at > now;
  if (idle || !needsSlot(r.plan.action)) {
    r.holdsSlot = slots_.release(r.holdsSlot);
  }
  return !idle;
}

WorkResult Worker::turn(const config::CertificateConfig& cfg, const std::string& definition, PollState poll,
                        bool renewRequested, bool holdsSlot) {
  WorkResult r;
  r.holdsSlot = holdsSlot;
  r.poll = poll;
  const std::int64_t now = unixSeconds(clock_.now());
  auto snap = lifecycle_.snapshot(cfg, renewRequested);
  if (!snap) {
    r.holdsSlot = slots_.release(r.holdsSlot);
    r.error = snap.error();
    auto retry = failures_.record(cfg, definition, *r.error, Action::wait, nullptr);
    r.retryAt = retry.at;
    r.retryWhy = retry.why;
    return r;
  }
  if (!planned(*snap, now, r)) {
    return r;
  }
  if (needsSlot(r.plan.action) && !r.holdsSlot) {
    if (!slots_.take()) {
      r.needSlot = true;
      // An operator's renewal, a revoked, expired, distrusted or keyless certificate goes
      // before routine renewals.
      r.urgent = renewRequested || !snap->active || snap->activeDistrusted || snap->activeKeyMissing;
      return r;
    }
    r.holdsSlot = true;
  }
  step(cfg, definition, *snap, poll, now, r);
  return r;
}

void Worker::step(const config::CertificateConfig& cfg, const std::string& definition, const CertSnapshot& snap,
                  PollState poll, std::int64_t now, WorkResult& r) {
  r.ranStep = true;
  auto outcome = lifecycle_.run(r.plan.action, snap, cfg, poll);
  r.poll = poll;
  if (!outcome) {
    r.holdsSlot = slots_.release(r.holdsSlot);  // backoff follows
    r.error = outcome.error();
    if (r.error->code != Errc::cancelled) {  // stopping: not a failure of the CA's, no backoff
      auto retry = failures_.record(cfg, definition, *r.error, r.plan.action, &snap);
      r.retryAt = retry.at;
      r.retryWhy = retry.why;
    }
    return;
  }
  r.wait = outcome->wait;
  r.waitFor = outcome->waitFor;
  if (outcome->waitFor) {
    r.holdsSlot = slots_.release(r.holdsSlot);  // a hook runs: nothing happens at the CA meanwhile
  }
  if (outcome->wait && !outcome->waitFor) {
    // Kept in the DB too, so a restart does not poll a CA that asked to wait.
    const auto at = now + std::chrono::duration_cast<std::chrono::seconds>(*outcome->wait).count();
    auto w = store_.with([&](storage::Store& s) { return s.setNextAttempt(cfg.name, at); });
    if (!w) {
      storeWriteFailed(events_, cfg.name, "record the next poll", w.error());
    }
  }
  r.activated = outcome->activated;
  if (outcome->activated || outcome->orderClosed) {
    r.holdsSlot = slots_.release(r.holdsSlot);
  }
}

}  // namespace kms::daemon
