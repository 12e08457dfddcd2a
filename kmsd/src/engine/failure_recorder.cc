#include "engine/failure_recorder.h"

#include "common/time_format.h"

namespace kms::daemon {

FailureRecorder::Retry FailureRecorder::record(const config::CertificateConfig& c, const std::string& definition,
                                               const Error& error, Action action, const CertSnapshot* snap) {
  const std::int64_t now = unixSeconds(clock_.now());
  const RetryPolicy policy{first_.load(), max_.load()};
  FailureDecision d = decideFailure(error, c.name, snap, action, now, random_.unit(), policy);
  // A wait the peer named (Retry-After, a rate limit) outlives a configuration change.
  const bool peerWait = error.retryAfter.has_value() || error.disposition == Disposition::caPause;
  auto rec = store_.with([&](storage::Store& s) {
    return s.transact([&]() -> Result<void> {
      if (auto r = s.recordFailure(c.name, sanitize(error.toString()), d.retryAt,
                                   d.markFailed ? std::optional(storage::CertState::failed) : std::nullopt);
          !r) {
        return r;
      }
      return s.noteFailureCause(c.name, definition, peerWait);
    });
  });
  if (!rec) {
    storeWriteFailed(events_, c.name, "record a failure", rec.error());
  }
  if (d.abandonOrder) {
    (void)lifecycle_.abandon(*snap->order, c.name, d.destroyKey, error.toString());
  }
  events_.emit(d.event);
  if (d.pauseCaUntil && pause_.extend(*d.pauseCaUntil)) {
    events_.emit({"KMS_CA_BACKOFF", storage::EventLevel::warning, std::nullopt,
                  "the CA asked to wait; all orders wait until " + isoTime(*d.pauseCaUntil),
                  {{"until", isoTime(*d.pauseCaUntil)}}});
  }
  return Retry{d.retryAt, d.why};
}

}  // namespace kms::daemon
