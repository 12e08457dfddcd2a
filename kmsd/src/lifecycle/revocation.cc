#include "lifecycle/revocation.h"

namespace kms::daemon {

Result<std::string> Revocation::revoke(const config::CertificateConfig& c, int reason, const Fields& caller) {
  auto snap = snapshots_.read(c, false);
  if (!snap) {
    return fail(snap.error());
  }
  if (!snap->active) {
    return fail(Errc::notFound, "no active certificate to revoke", c.name);
  }
  auto ca = ctx_.services.ca().session();
  if (!ca) {
    return fail(ca.error());
  }
  auto chain = pki::parsePemChain(snap->active->chainPem);
  if (!chain) {
    return fail(chain.error());
  }
  if (auto r = ca->client.revoke(ca->account, chain->front().der(), reason); !r) {
    return fail(r.error());
  }
  const std::int64_t t = ctx_.now();
  auto marked = ctx_.store().with([&](storage::Store& st) { return st.markRevoked(snap->active->id, t); });
  if (!marked) {
    return fail(marked.error());
  }
  Fields fields{{"serial", snap->active->serial}, {"reason", std::to_string(reason)}};
  fields.insert(fields.end(), caller.begin(), caller.end());  // who asked
  ctx_.events.emit({"KMS_CERT_REVOKED", storage::EventLevel::warning, c.name,
                    "serial " + snap->active->serial + " revoked (reason " + std::to_string(reason) + ")",
                    std::move(fields)});
  return snap->active->serial;
}

}  // namespace kms::daemon
