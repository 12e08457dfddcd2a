#include "lifecycle/snapshot.h"

namespace kms::daemon {

Result<void> SnapshotReader::readRows(const config::CertificateConfig& c, CertSnapshot& snap) {
  const std::int64_t t = ctx_.now();
  return ctx_.store().with([&](storage::Store& st) -> Result<void> {
    auto cert = st.getCertificate(c.name);
    if (!cert) {
      return fail(cert.error());
    }
    if (!*cert) {
      return fail(Errc::notFound, "certificate '" + c.name + "' is not in the state DB");
    }
    snap.cert = std::move(**cert);
    auto order = st.getOpenOrder(c.name);
    if (!order) {
      return fail(order.error());
    }
    snap.order = std::move(*order);
    auto issued = st.listIssued(c.name);  // newest notBefore first
    if (!issued) {
      return fail(issued.error());
    }
    // The newest published certificate is the current one; revoked or expired, there is
    // none: a certificate it superseded never becomes current again.
    for (auto& i : *issued) {
      if (i.publishedAt) {
        if (!i.revokedAt && i.notAfter > t) {
          snap.active = std::move(i);
        }
        break;
      }
    }
    return ok();
  });
}

void SnapshotReader::applyDistrustBudget(const config::CertificateConfig& c, CertSnapshot& snap) {
  if (!snap.activeDistrusted || snap.order || !ctx_.trust.distrustedWithItsRootApproved(snap.active->id)) {
    return;
  }
  const auto [used, window] = timing_.earlyRenewalsUsed(c, *snap.active);
  if (used < RenewalTiming::kEarlyRenewalBudget) {
    return;
  }
  snap.activeDistrusted = false;
  std::lock_guard<std::mutex> lock(mutex_);
  if (distrustHeld_.insert(snap.active->id).second) {
    ctx_.events.emit({"KMS_EARLY_RENEWAL_LIMITED", storage::EventLevel::error, c.name,
                      "serial " + snap.active->serial + " is distrusted while its root is still approved, but " +
                          std::to_string(used) + " early renewals the CA brought about in the last " +
                          std::to_string(window) + " s spent the budget; it renews at its usual time",
                      {{"serial", snap.active->serial}}});
  }
}

Result<bool> SnapshotReader::activeKeyMissing(const std::string& keyUri) {
  std::unique_lock<std::mutex> lock(mutex_);
  if (!tokenListed_) {
    // One pass over the token at start instead of a search per certificate.
    tokenListed_ = true;
    if (auto keys = ctx_.services.keys().token().listKeys()) {
      for (const auto& k : *keys) {
        keyChecked_.insert(k.uri.toString());
      }
    }
  }
  if (keyChecked_.count(keyUri) != 0) {
    return false;
  }
  lock.unlock();
  auto found = ctx_.services.keys().findKey(keyUri);
  if (!found && found.error().code != Errc::notFound) {
    return fail(found.error());
  }
  if (found) {
    keyPresent(keyUri);
  }
  return !found;
}

Result<CertSnapshot> SnapshotReader::read(const config::CertificateConfig& c, bool renewRequested) {
  CertSnapshot snap;
  if (auto r = readRows(c, snap); !r) {
    return fail(r.error());
  }
  snap.shaken = c.spc.has_value();
  snap.renewRequested = renewRequested;
  snap.renewBeforeFraction = c.renewBeforeFraction;
  snap.deployHook = c.deployHook.has_value();
  snap.activeDistrusted = snap.active && ctx_.trust.distrusted(snap.active->id);
  applyDistrustBudget(c, snap);
  if (snap.active && !snap.order) {
    auto missing = activeKeyMissing(snap.active->keyUri);
    if (!missing) {
      return fail(missing.error());
    }
    snap.activeKeyMissing = *missing;
  }
  return snap;
}

void SnapshotReader::keyPresent(const std::string& uri) {
  std::lock_guard<std::mutex> lock(mutex_);
  keyChecked_.insert(uri);
}

}  // namespace kms::daemon
