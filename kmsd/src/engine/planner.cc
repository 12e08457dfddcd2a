#include "engine/planner.h"

#include <algorithm>
#include <cmath>

#include "common/time_format.h"

namespace kms::daemon {

const char* toString(Action action) noexcept {
  switch (action) {
    case Action::wait:
      return "wait";
    case Action::startOrder:
      return "start_order";
    case Action::generateKey:
      return "generate_key";
    case Action::fetchToken:
      return "fetch_token";
    case Action::newOrder:
      return "new_order";
    case Action::authorize:
      return "authorize";
    case Action::finalize:
      return "finalize";
    case Action::awaitIssuance:
      return "await_issuance";
    case Action::publish:
      return "publish";
    case Action::activate:
      return "activate";
    case Action::refreshRenewal:
      return "refresh_renewal";
    case Action::deploy:
      return "deploy";
  }
  return "unknown";
}

bool needsCa(Action action) noexcept {
  switch (action) {
    case Action::newOrder:
    case Action::authorize:
    case Action::finalize:
    case Action::awaitIssuance:
    case Action::refreshRenewal:
      return true;
    default:
      return false;
  }
}

bool needsSlot(Action action) noexcept {
  switch (action) {
    case Action::startOrder:
    case Action::generateKey:
    case Action::fetchToken:
    case Action::newOrder:
    case Action::authorize:
    case Action::finalize:
    case Action::awaitIssuance:
      return true;
    default:
      return false;
  }
}

std::int64_t fractionRenewalTime(std::int64_t notBefore, std::int64_t notAfter, double fraction, double jitter) {
  const double lifetime = static_cast<double>(notAfter - notBefore);
  const double before = lifetime * fraction * (1.0 + 0.1 * std::clamp(jitter, 0.0, 1.0));
  return notAfter - static_cast<std::int64_t>(std::ceil(before));
}

std::int64_t backoffSeconds(const RetryPolicy& policy, std::int64_t failures, double jitter) {
  const std::int64_t doublings = std::clamp<std::int64_t>(failures - 1, 0, 30);
  double base = static_cast<double>(policy.firstSeconds) * std::pow(2.0, static_cast<double>(doublings));
  base = std::min(base, static_cast<double>(policy.maxSeconds));
  const double factor = 0.8 + 0.4 * std::clamp(jitter, 0.0, 1.0);
  return std::max<std::int64_t>(1, static_cast<std::int64_t>(std::llround(base * factor)));
}

namespace {

Action continueOrder(const storage::Order& order, bool shaken) {
  switch (order.step) {
    case storage::CertState::planned:
      return Action::generateKey;
    case storage::CertState::keyReady:
      return shaken ? Action::fetchToken : Action::newOrder;
    case storage::CertState::tokenReady:
      return Action::newOrder;
    case storage::CertState::orderPending:
      return Action::authorize;
    case storage::CertState::authorized:
      return Action::finalize;
    case storage::CertState::finalizing:
      return Action::awaitIssuance;
    case storage::CertState::issued:
      return Action::publish;
    case storage::CertState::published:
      return Action::activate;
    case storage::CertState::active:
    case storage::CertState::renewalDue:
    case storage::CertState::failed:
      break;
  }
  // An order recorded at a step orders never take: start over from the key.
  return Action::generateKey;
}

}  // namespace

Plan plan(const CertSnapshot& s, std::int64_t now) {
  const std::int64_t notBefore = std::max(now, s.cert.nextAttemptAt.value_or(now));
  const bool backingOff = notBefore > now;
  const std::string backoffWhy = s.cert.failureCount > 0 ? "retry " + isoTime(notBefore) + " after " +
                                                               std::to_string(s.cert.failureCount) + " failure(s)"
                                                         : "next attempt " + isoTime(notBefore);

  if (s.order) {
    Action next = continueOrder(*s.order, s.shaken);
    return Plan{next, notBefore, backingOff ? backoffWhy : std::string("order at ") + toString(s.order->step)};
  }
  if (!s.active) {
    return Plan{Action::startOrder, notBefore, backingOff ? backoffWhy : std::string("no valid certificate")};
  }
  if (s.activeKeyMissing) {
    return Plan{Action::startOrder, notBefore, backingOff ? backoffWhy : std::string("the active key is missing")};
  }
  if (s.activeDistrusted) {
    return Plan{Action::startOrder, notBefore,
                backingOff ? backoffWhy
                           : "the root of serial " + s.active->serial + " left the STI-PA CA list"};
  }
  if (s.deployHook && !s.active->deployedAt) {
    return Plan{Action::deploy, notBefore,
                backingOff ? backoffWhy : "deploy hook not yet run for serial " + s.active->serial};
  }
  if (s.renewRequested) {
    return Plan{Action::startOrder, notBefore, backingOff ? backoffWhy : std::string("renewal requested")};
  }
  if (!s.cert.renewAt) {
    return Plan{Action::refreshRenewal, now, "renewal time not chosen yet"};
  }
  const std::int64_t renewAt = *s.cert.renewAt;
  if (renewAt <= now) {
    return Plan{Action::startOrder, notBefore, backingOff ? backoffWhy : "renewal due " + isoTime(renewAt)};
  }
  // ariNextCheck is set only while the CA offers ARI (each read sets it again, or clears it
  // when the CA stopped): it holds in a fresh process too, before the directory is read.
  if (s.cert.ariNextCheck && *s.cert.ariNextCheck < renewAt) {
    if (*s.cert.ariNextCheck <= now) {
      return Plan{Action::refreshRenewal, now, "renewal information is due for a re-read"};
    }
    return Plan{Action::wait, *s.cert.ariNextCheck, "renewal due " + isoTime(renewAt)};
  }
  return Plan{Action::wait, renewAt, "renewal due " + isoTime(renewAt)};
}

}  // namespace kms::daemon
