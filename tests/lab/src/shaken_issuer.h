#pragma once
/// @file SHAKEN end-entity issuance by the lab STI-CA intermediate (docs/protocols.md).

#include <string>

#include "cert_builder.h"
#include "lab_context.h"

namespace kms::lab {

/// Issues the SHAKEN certificate for a checked CSR: subject C (CSR's or "US"), O (CSR's,
/// else "kms-lab subscriber"), CN "SHAKEN <spc>"; critical basicConstraints CA:FALSE,
/// critical keyUsage digitalSignature, certificatePolicies 2.16.840.1.114569.1.1.1, one CRL
/// DP (lab CRL URL + cRLIssuer), SKI, AKI, TNAuthList = tnAuthListDer (another SPC with
/// --wrong-tnauthlist). Lifetime from --cert-lifetime.
[[nodiscard]] Result<pki::Certificate> issueShakenCertificate(const LabContext& ctx, const CsrInfo& csr,
                                                              const std::string& spc, const pki::Bytes& tnAuthListDer);

}  // namespace kms::lab
