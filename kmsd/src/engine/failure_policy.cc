#include "engine/failure_policy.h"

#include <algorithm>

#include "common/time_format.h"

namespace kms::daemon {

FailureDecision decideFailure(const Error& error, const std::string& certName, const CertSnapshot* snap,
                              Action action, std::int64_t now, double random, const RetryPolicy& policy) {
  FailureDecision d;
  d.failures = (snap != nullptr ? snap->cert.failureCount : 0) + 1;
  std::int64_t delay = backoffSeconds(policy, d.failures, random);
  if (error.retryAfter) {
    delay = std::max<std::int64_t>(1, error.retryAfter->count());
  }
  d.retryAt = now + delay;

  const std::optional<storage::Order>* order = snap != nullptr ? &snap->order : nullptr;
  const bool hasActive = snap != nullptr && snap->active.has_value();
  d.abandonOrder = error.disposition == Disposition::permanent && order != nullptr && order->has_value();
  if (d.abandonOrder) {
    const storage::Order& o = **order;
    // A reused key (reuse_key) is the active certificate's: it stays.
    const bool activeKey = hasActive && o.keyUri && snap->active->keyUri == *o.keyUri;
    if (o.keyUri && !activeKey) {
      d.destroyKey = *o.keyUri;
    }
    d.markFailed = !hasActive;
  }
  if (error.disposition == Disposition::caPause && needsCa(action)) {
    d.pauseCaUntil = d.retryAt;
  }

  d.why = "retry " + isoTime(d.retryAt) + " after " + std::to_string(d.failures) + " failure(s)";
  d.event.cert = certName;
  if (d.abandonOrder) {
    d.event.id = "KMS_ISSUE_FAILED";
    d.event.level = storage::EventLevel::error;
    d.event.message = error.toString() + "; order abandoned";
    d.event.fields = {{"step", toString(action)}, {"retry_at", isoTime(d.retryAt)}};
  } else {
    d.event.id = "KMS_RENEW_FAILED";
    d.event.level = storage::EventLevel::warning;
    d.event.message = error.toString();
    d.event.fields = {{"step", toString(action)},
                      {"failures", std::to_string(d.failures)},
                      {"retry_at", isoTime(d.retryAt)}};
  }
  return d;
}

}  // namespace kms::daemon
