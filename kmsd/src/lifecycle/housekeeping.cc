#include "lifecycle/housekeeping.h"

#include "common/failpoint.h"

namespace kms::daemon {

Result<int> Housekeeping::run() {
  const std::int64_t t = ctx_.now();
  const std::int64_t retain = ctx_.services.config()->publisher.retain.count();
  auto destroyed = destroyKeys(t, retain);
  if (!destroyed) {
    return fail(destroyed.error());
  }
  if (auto r = unpublishChains(t, retain); !r) {
    return fail(r.error());
  }
  return *destroyed;
}

Result<int> Housekeeping::destroyKeys(std::int64_t now, std::int64_t retain) {
  auto keys = ctx_.store().with([&](storage::Store& st) { return st.listRetirableKeys(now, retain); });
  if (!keys) {
    return fail(keys.error());
  }
  int destroyed = 0;
  for (const auto& [uri, cert] : *keys) {
    if (auto r = ctx_.services.keys().destroyKey(cert, uri); !r) {
      ctx_.events.emit({"KMS_KEY_DESTROY_FAILED", storage::EventLevel::warning, cert,
                        "could not destroy " + uri + ": " + r.error().toString(), {{"key", uri}}});
      continue;
    }
    failpoint("old_key_destroyed");
    ++destroyed;
  }
  return destroyed;
}

Result<void> Housekeeping::unpublishChains(std::int64_t now, std::int64_t retain) {
  // Chains no verifier needs any more leave the web root (a verifier may hold a call
  // signed a minute before a switch: the old x5u keeps working for [publisher] retain).
  auto stale = ctx_.store().with([&](storage::Store& st) { return st.listStaleChains(now, retain, 1000); });
  if (!stale) {
    return fail(stale.error());
  }
  for (const auto& chain : *stale) {
    if (auto r = ctx_.services.webRoot().removeImmutable(chain.certName, chain.serial); !r) {
      ctx_.events.emit({"KMS_PUBLISH_FAILED", storage::EventLevel::warning, chain.certName,
                        "could not remove the replaced chain: " + r.error().toString(), {{"serial", chain.serial}}});
      continue;
    }
    auto marked = ctx_.store().with([&](storage::Store& st) { return st.markUnpublished(chain.issuedId, now); });
    if (!marked) {
      storeWriteFailed(ctx_.events, chain.certName, "record an unpublished chain", marked.error());
      continue;
    }
    ctx_.events.emit({"KMS_CHAIN_UNPUBLISHED", storage::EventLevel::info, chain.certName,
                      "serial " + chain.serial + " removed from the web root (replaced, expired or revoked)",
                      {{"serial", chain.serial}}});
  }
  return ok();
}

}  // namespace kms::daemon
