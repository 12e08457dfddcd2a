#pragma once
/// @file PKCS#10 CSR builder whose signature comes from a Signer (the HSM).

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kms/error.h"
#include "pki/encoding.h"
#include "pki/signer.h"

namespace kms::pki {

/// What goes into a CSR.
struct CsrRequest {
  std::string country;       ///< subject C (empty: omitted)
  std::string organization;  ///< subject O (empty: omitted)
  std::string commonName;    ///< subject CN (empty: omitted)
  /// DER of the TNAuthList extension value, copied byte for byte (SHAKEN).
  std::optional<Bytes> tnAuthListDer;
  /// dNSName subjectAltNames (generic ACME).
  std::vector<std::string> dnsNames;
  /// basicConstraints cA=TRUE (critical, pathLen 0) for an STI-SCA request.
  bool ca = false;

  /// The SHAKEN form: C, O, CN "SHAKEN <SPC>" and a TNAuthList with that one SPC.
  [[nodiscard]] static Result<CsrRequest> shaken(const std::string& spc, std::string organization,
                                                 std::string country = "US");
};

/// Builds the CSR for signer's public key and signs it (ecdsa-with-SHA256) through
/// signer. Returns DER. Fails on an empty request (no subject, no SAN, no TNAuthList),
/// an invalid name, or the signer's error.
[[nodiscard]] Result<Bytes> buildCsr(const CsrRequest& request, Signer& signer);

/// PEM armour of DER with the given label ("CERTIFICATE REQUEST", "CERTIFICATE").
[[nodiscard]] std::string derToPem(ByteView der, std::string_view label);

}  // namespace kms::pki
