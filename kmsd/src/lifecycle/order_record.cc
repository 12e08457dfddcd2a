#include "lifecycle/order_record.h"

#include "pki/encoding.h"
#include "pki/shaken_profile.h"
#include "pki/tn_auth_list.h"

namespace kms::daemon {

storage::OrderUpdate orderAt(storage::CertState step) {
  storage::OrderUpdate u;
  u.step = step;
  return u;
}

Result<void> advanceOrder(const StepContext& ctx, const storage::Order& order, const storage::OrderUpdate& update) {
  auto r = ctx.store().with([&](storage::Store& st) { return st.advanceOrder(order.id, update); });
  if (!r) {
    return fail(r.error());
  }
  return ok();
}

Error protocolError(std::string message, std::string context) {
  Error e;
  e.code = Errc::protocol;
  e.message = std::move(message);
  e.context = std::move(context);
  return e;
}

std::vector<acme::Identifier> askedIdentifiers(const config::CertificateConfig& c) {
  std::vector<acme::Identifier> asked;
  if (c.spc) {
    asked.push_back({"TNAuthList", ""});
  }
  for (const std::string& n : c.dnsNames) {
    asked.push_back({"dns", n});
  }
  return asked;
}

Result<acme::IssueRequest> issueRequest(const StepContext& ctx, const config::CertificateConfig& c,
                                        pki::Signer* certKey) {
  acme::IssueRequest request;
  if (c.spc) {
    auto der = pki::TnAuthList::forSpc(*c.spc).toDer();
    if (!der) {
      return fail(der.error());
    }
    // US practice: padded standard base64, the same bytes as the token's tkvalue (docs/protocols.md).
    request.identifiers.push_back({"TNAuthList", pki::base64Encode(*der)});
    auto csr = pki::CsrRequest::shaken(*c.spc, c.subjectO.value_or(""), c.subjectC);
    if (!csr) {
      return fail(csr.error());
    }
    request.csr = std::move(*csr);
    std::string spc = *c.spc;
    request.extraCheck = [spc](const std::vector<pki::Certificate>& chain) {
      return pki::checkShakenProfile(chain.front(), spc);
    };
  } else {
    request.csr.dnsNames = c.dnsNames;
  }
  for (const std::string& n : c.dnsNames) {
    request.identifiers.push_back({"dns", n});
  }
  request.challengeType = config::toString(c.challenge);
  request.certKey = certKey;
  request.trustAnchors = ctx.trust.anchors();
  return request;
}

Result<OrderAtCa> orderAtTheCa(const StepContext& ctx, const storage::Order& order) {
  auto ca = ctx.services.ca().session();
  if (!ca) {
    return fail(ca.error());
  }
  auto current = ca->client.getOrder(ca->account, order.orderUrl.value_or(""));
  if (!current && current.error().native == 404) {
    // The CA no longer knows the order (expired and purged, or lost): reading it again
    // cannot help; it is given up like an invalid one and the next attempt orders anew.
    Error gone = current.error();
    gone.message = "the CA no longer knows this order (404): " + gone.message;
    return fail(permanent(gone));
  }
  if (!current) {
    return fail(current.error());
  }
  return OrderAtCa{*ca, std::move(*current)};
}

Result<storage::IssuedCert> orderCertificate(const StepContext& ctx, const storage::Order& order,
                                             const std::string& cert, const char* step) {
  auto issued = ctx.store().with([&](storage::Store& st) { return st.listIssued(cert); });
  if (!issued) {
    return fail(issued.error());
  }
  for (auto& i : *issued) {  // newest first: the one this order produced
    if (i.keyUri == order.keyUri.value_or("")) {
      return std::move(i);
    }
  }
  return fail(Errc::internal, std::string("order at ") + step + " has no recorded certificate", cert);
}

}  // namespace kms::daemon
