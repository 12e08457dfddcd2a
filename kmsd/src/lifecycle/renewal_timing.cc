#include "lifecycle/renewal_timing.h"

#include <algorithm>

#include "common/time_format.h"

namespace kms::daemon {
namespace {

/// The shortest wait after a failed renewalInfo read (a CA answering 503 with Retry-After: 1
/// is not read again every second).
constexpr std::int64_t kMinAriRetrySeconds = 60;

}  // namespace

bool RenewalTiming::earlyByTheCa(const CertSnapshot& snap, const config::CertificateConfig& c) const {
  if (!snap.active || snap.activeKeyMissing || snap.renewRequested) {
    return false;  // nothing valid, a lost key, or the operator: never counted
  }
  if (snap.activeDistrusted) {
    return ctx_.trust.distrustedWithItsRootApproved(snap.active->id);
  }
  // Renewing before the earliest lifetime-based time (its jitter at the full 10 %): the
  // CA's ARI window brought it forward.
  const std::int64_t earliestOwn =
      fractionRenewalTime(snap.active->notBefore, snap.active->notAfter, c.renewBeforeFraction, 1.0);
  return snap.cert.renewAt.has_value() && *snap.cert.renewAt < earliestOwn;
}

std::pair<std::int64_t, std::int64_t> RenewalTiming::earlyRenewalsUsed(const config::CertificateConfig& c,
                                                                      const storage::IssuedCert& active) const {
  const std::int64_t window = std::max<std::int64_t>(86400, (active.notAfter - active.notBefore) / 3);
  const std::int64_t since = ctx_.now() - window;
  auto used = ctx_.store().with([&](storage::Store& st) { return st.countOrdersWithCause(c.name, "ca", since); });
  // The count is a guard: a DB that cannot count does not stop a renewal.
  return {used ? *used : 0, window};
}

std::optional<std::int64_t> RenewalTiming::holdAriRenewal(const storage::IssuedCert& active,
                                                          const config::CertificateConfig& c, std::int64_t ariTime) {
  // A CA that asks for every new certificate to be renewed at once would have kmsd renew in a
  // loop, with a new HSM key each time. The CA may bring a renewal forward while the
  // certificate's early-renewal budget lasts; then its window no longer does.
  const std::int64_t ownTime =
      fractionRenewalTime(active.notBefore, active.notAfter, c.renewBeforeFraction, ctx_.random.unit());
  if (ariTime >= ownTime) {
    return std::nullopt;
  }
  const auto [used, window] = earlyRenewalsUsed(c, active);
  if (used < kEarlyRenewalBudget) {
    return std::nullopt;
  }
  ctx_.events.emit({"KMS_ARI_IGNORED", storage::EventLevel::warning, c.name,
                    "the CA asks for an early renewal again (" + std::to_string(used) +
                        " early renewals the CA brought about in the last " + std::to_string(window) +
                        " s, the budget); renewing at " + isoTime(ownTime) + " instead of " + isoTime(ariTime),
                    {{"renew_at", isoTime(ownTime)}, {"ari_time", isoTime(ariTime)}}});
  return ownTime;
}

void RenewalTiming::readAri(const storage::IssuedCert& a, const config::CertificateConfig& c,
                            acme::AcmeClient& client, std::int64_t& renewAt, std::optional<std::int64_t>& nextCheck) {
  auto info = client.renewalInfo(*a.ariCertId);
  if (!info) {
    // A failed read waits at least a minute, whatever Retry-After the CA sent with it.
    nextCheck = ctx_.now() + std::max<std::int64_t>(kMinAriRetrySeconds, info.error().retryAfter
                                                                             ? info.error().retryAfter->count()
                                                                             : 3600);
    ctx_.events.emit({"KMS_ARI_FAILED", storage::EventLevel::warning, c.name,
                      "renewalInfo: " + info.error().toString() + "; keeping " + isoTime(renewAt), {}});
    return;
  }
  // RFC 9773 §4.2: a random instant inside the window; read again when the CA says, and
  // at least daily.
  renewAt = unixSeconds(acme::pickRenewalTime(*info, ctx_.clock.now(), ctx_.random.next()));
  nextCheck = ctx_.now() + std::min<std::int64_t>(info->retryAfter.count(), 86400);
  if (auto held = holdAriRenewal(a, c, renewAt)) {
    renewAt = *held;
  }
  ctx_.events.emit({"KMS_RENEWAL_PLANNED", storage::EventLevel::info, c.name,
                    "renewal at " + isoTime(renewAt) + " (ARI window " + isoTime(unixSeconds(info->windowStart)) +
                        " .. " + isoTime(unixSeconds(info->windowEnd)) + ")",
                    {{"renew_at", isoTime(renewAt)}, {"source", "ari"}}});
}

Result<StepOutcome> RenewalTiming::refresh(const CertSnapshot& snap, const config::CertificateConfig& c) {
  if (!snap.active) {
    return StepOutcome{};
  }
  const storage::IssuedCert& a = *snap.active;
  std::int64_t renewAt = snap.cert.renewAt.value_or(
      fractionRenewalTime(a.notBefore, a.notAfter, c.renewBeforeFraction, ctx_.random.unit()));
  std::optional<std::int64_t> nextCheck;
  auto client = ctx_.services.ca().client();
  if (!client && snap.cert.ariNextCheck) {
    // The CA cannot be reached now: keep reading ARI later rather than forget it.
    nextCheck = ctx_.now() + 3600;
    ctx_.events.emit({"KMS_ARI_FAILED", storage::EventLevel::warning, c.name,
                      "renewalInfo: " + client.error().toString() + "; keeping " + isoTime(renewAt), {}});
  } else if (client && (*client)->directory().renewalInfo && a.ariCertId) {
    readAri(a, c, **client, renewAt, nextCheck);
  } else if (!snap.cert.renewAt) {
    ctx_.events.emit({"KMS_RENEWAL_PLANNED", storage::EventLevel::info, c.name, "renewal at " + isoTime(renewAt),
                      {{"renew_at", isoTime(renewAt)}, {"source", "lifetime"}}});
  }
  auto r = ctx_.store().with([&](storage::Store& st) { return st.setRenewal(c.name, renewAt, nextCheck); });
  if (!r) {
    return fail(r.error());
  }
  return StepOutcome{};
}

}  // namespace kms::daemon
