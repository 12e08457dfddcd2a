#pragma once
/// @file The SHAKEN end-entity certificate profile (docs/protocols.md: ATIS-1000080 + US SHAKEN CP).

#include <string>

#include "kms/error.h"
#include "pki/x509.h"

namespace kms::pki {

/// Checks an issued SHAKEN end-entity certificate for one SPC: CN "SHAKEN <SPC>", critical
/// basicConstraints cA=FALSE, critical keyUsage digitalSignature only, a SHAKEN certificate
/// policy (2.16.840.1.114569.1.1.x), one CRL distribution point with fullName and cRLIssuer,
/// SKI and AKI, TNAuthList with exactly that SPC, a P-256 key and ecdsa-with-SHA256.
/// The error message starts with "check profile: " and names the rule broken.
[[nodiscard]] Result<void> checkShakenProfile(const Certificate& leaf, const std::string& spc);

}  // namespace kms::pki
