#pragma once
// Small shared pieces of the order steps: moving an order to its next step in the DB, the
// identifiers a certificate asks for, the request the CA's answer is checked against, and
// the certificate an order produced.

#include <string>
#include <vector>

#include "acme/issuer.h"
#include "config/config.h"
#include "lifecycle/step_context.h"
#include "storage/store.h"

namespace kms::daemon {

/// An OrderUpdate that only moves the order to `step`.
[[nodiscard]] storage::OrderUpdate orderAt(storage::CertState step);
/// The one write every step makes to its order: `update` recorded.
[[nodiscard]] Result<void> advanceOrder(const StepContext& ctx, const storage::Order& order,
                                        const storage::OrderUpdate& update);
/// An Errc::protocol error naming `context` (a CA URL).
[[nodiscard]] Error protocolError(std::string message, std::string context);
/// What `c` asks the CA for: a TNAuthList (value left empty) and its DNS names.
[[nodiscard]] std::vector<acme::Identifier> askedIdentifiers(const config::CertificateConfig& c);
/// The identifiers, CSR contents, checks and anchors of an order for `c` signed by `certKey`
/// (nullptr before the key is needed).
[[nodiscard]] Result<acme::IssueRequest> issueRequest(const StepContext& ctx, const config::CertificateConfig& c,
                                                      pki::Signer* certKey);
/// The CA session and the order as the CA has it now.
struct OrderAtCa {
  CaSession ca;
  acme::Order current;
};
[[nodiscard]] Result<OrderAtCa> orderAtTheCa(const StepContext& ctx, const storage::Order& order);

/// The certificate `order` produced (found by the order's key); Errc::internal naming `step`
/// when there is none.
[[nodiscard]] Result<storage::IssuedCert> orderCertificate(const StepContext& ctx, const storage::Order& order,
                                                           const std::string& cert, const char* step);

}  // namespace kms::daemon
