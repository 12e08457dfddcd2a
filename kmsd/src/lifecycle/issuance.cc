#include "lifecycle/issuance.h"

#include "common/failpoint.h"
#include "common/time_format.h"
#include "lifecycle/order_closer.h"
#include "lifecycle/order_record.h"

namespace kms::daemon {

using storage::CertState;

Result<StepOutcome> Issuance::finalize(const storage::Order& order, const config::CertificateConfig& c,
                                       PollState& poll) {
  auto ca = ctx_.services.ca().session();
  if (!ca) {
    return fail(ca.error());
  }
  auto keyed = withKey(order, c);
  if (!keyed) {
    return fail(keyed.error());
  }
  if (!*keyed) {
    return closer_.keyMissing(order, c.name);
  }
  auto& [key, request] = **keyed;
  auto csr = pki::buildCsr(request.csr, *key);
  if (!csr) {
    return fail(csr.error());
  }
  acme::Order o;
  o.url = order.orderUrl.value_or("");
  o.finalize = order.finalizeUrl.value_or("");
  auto finalized = ca->client.finalize(ca->account, o, *csr);
  if (!finalized) {
    return finalizedBefore(order, finalized.error(), *ca);
  }
  failpoint("finalize_sent");  // the CA issues; kmsd has not recorded it
  storage::OrderUpdate u = orderAt(CertState::finalizing);
  u.acmeStatus = finalized->status;
  u.certificateUrl = finalized->certificate;
  if (auto r = advanceOrder(ctx_, order, u); !r) {
    return fail(r.error());
  }
  failpoint("finalized");
  ctx_.events.emit({"KMS_ORDER_FINALIZED", storage::EventLevel::info, c.name,
                    "CSR sent, order " + finalized->status, {{"order", o.url}}});
  if (finalized->status == "processing") {
    // Honour the CA's Retry-After before the first poll.
    PollState fresh{0, std::nullopt, Action::awaitIssuance};
    auto wait = polls_.next(fresh, finalized->retryAfter, "order", o.url);
    if (!wait) {
      return fail(wait.error());
    }
    poll = fresh;
    return pollAgainAfter(*wait);
  }
  return StepOutcome{};  // valid already: downloaded at once
}

Result<std::optional<Issuance::KeyedRequest>> Issuance::withKey(const storage::Order& order,
                                                                 const config::CertificateConfig& c) {
  auto key = ctx_.services.keys().orderKey(c.name, order.keyUri.value_or(""));
  if (!key) {
    if (key.error().code == Errc::notFound) {
      return std::optional<KeyedRequest>();
    }
    return fail(key.error());
  }
  auto request = issueRequest(ctx_, c, key->get());
  if (!request) {
    return fail(request.error());
  }
  return std::optional<KeyedRequest>(KeyedRequest{std::move(*key), std::move(*request)});
}

Result<StepOutcome> Issuance::finalizedBefore(const storage::Order& order, const Error& refusal,
                                              CaSession& ca) {
  if (refusal.nativeName == "orderNotReady") {
    auto current = ca.client.getOrder(ca.account, order.orderUrl.value_or(""));
    if (current && (current->status == "processing" || current->status == "valid")) {
      if (auto r = advanceOrder(ctx_, order, orderAt(CertState::finalizing)); !r) {
        return fail(r.error());
      }
      return StepOutcome{};
    }
  }
  return fail(refusal);
}

Result<StepOutcome> Issuance::awaitIssuance(const storage::Order& order, const config::CertificateConfig& c,
                                            PollState& poll) {
  auto at = orderAtTheCa(ctx_, order);
  if (!at) {
    return fail(at.error());
  }
  CaSession& ca = at->ca;
  const acme::Order* o = &at->current;
  const std::string url = order.orderUrl.value_or("");
  if (o->status == "processing") {
    auto wait = polls_.next(poll, o->retryAfter, "order", url);
    if (!wait) {
      return fail(wait.error());
    }
    return pollAgainAfter(*wait);
  }
  if (o->status == "ready") {  // the finalize never reached the CA
    if (auto r = advanceOrder(ctx_, order, orderAt(CertState::authorized)); !r) {
      return fail(r.error());
    }
    return StepOutcome{};
  }
  if (o->status != "valid") {
    return fail(permanent(o->error.value_or(protocolError("order ended " + o->status, url))));
  }
  auto keyed = withKey(order, c);
  if (!keyed) {
    return fail(keyed.error());
  }
  if (!*keyed) {
    return closer_.keyMissing(order, c.name);
  }
  const acme::IssueRequest& request = (*keyed)->request;
  if (request.trustAnchors.empty() && ctx_.services.stiPa() != nullptr) {
    // Fail closed: a chain is never accepted unchecked while the CA list is not yet known.
    return fail(Errc::config,
                "no trust anchors to check the issued chain against: [acme] trust_anchors is not set and no "
                "STI-PA CA list has been kept yet",
                c.name);
  }
  auto chain = acme::downloadCheckedChain(ca.client, ca.account, request, *o);
  if (!chain) {
    return fail(chain.error());
  }
  failpoint("downloaded");
  return record(order, c, *o, *chain);
}

Result<StepOutcome> Issuance::record(const storage::Order& order, const config::CertificateConfig& c,
                                     const acme::Order& current, const acme::IssuedChain& chain) {
  const pki::Certificate& leaf = chain.chain.front();
  storage::IssuedCert row;
  row.certName = c.name;
  row.serial = leaf.serialHex();
  row.notBefore = unixSeconds(leaf.notBefore());
  row.notAfter = unixSeconds(leaf.notAfter());
  row.chainPem = chain.pem;
  row.keyUri = *order.keyUri;
  if (auto id = leaf.ariCertId()) {
    row.ariCertId = *id;
  }
  auto tx = ctx_.store().with([&](storage::Store& st) {
    return st.transact([&]() -> Result<void> {
      if (auto id = st.insertIssued(row); !id) {  // idempotent for a resumed order
        return fail(id.error());
      }
      storage::OrderUpdate u = orderAt(CertState::issued);
      u.acmeStatus = current.status;
      u.certificateUrl = current.certificate;
      if (auto r = st.advanceOrder(order.id, u); !r) {
        return fail(r.error());
      }
      return ok();
    });
  });
  if (!tx) {
    return fail(tx.error());
  }
  failpoint("recorded");
  ctx_.events.emit({"KMS_CERT_ISSUED", storage::EventLevel::info, c.name,
                    "serial " + row.serial + " not after " + isoTime(row.notAfter),
                    {{"serial", row.serial}, {"not_after", isoTime(row.notAfter)}}});
  return StepOutcome{};
}

}  // namespace kms::daemon
