#pragma once
/// @file X.509 issuance for the lab: CA certificates, the TLS leaf, SHAKEN end-entity
/// certificates (docs/protocols.md), CSR parsing and the STI-PA CRL. OpenSSL 3 underneath.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "kms/error.h"
#include "pki/ec_key.h"
#include "pki/encoding.h"
#include "pki/signer.h"
#include "pki/x509.h"

namespace kms::lab {

/// One extension in OpenSSL config syntax ("basicConstraints", "critical,CA:TRUE").
struct ConfExtension {
  std::string name;
  std::string value;
};

/// One extension given as DER (the OCTET STRING content).
struct RawExtension {
  std::string oid;  ///< dotted
  pki::Bytes der;
  bool critical = false;
};

/// A certificate to build.
struct CertSpec {
  std::vector<std::pair<std::string, std::string>> subject;  ///< {"C","US"}, {"O",..}, {"CN",..}
  pki::EcPublicKey subjectKey;
  const pki::Certificate* issuer = nullptr;  ///< nullptr: self-signed with issuerKey
  pki::SoftwareKey* issuerKey = nullptr;
  std::chrono::system_clock::time_point notBefore;
  std::chrono::system_clock::time_point notAfter;
  /// Applied in order, after subjectKeyIdentifier (always added) and before the raw ones.
  std::vector<ConfExtension> extensions;
  std::vector<RawExtension> raw;
  bool authorityKeyId = true;  ///< add AKI keyid (from the issuer's SKI)
};

/// Builds and signs (ecdsa-with-SHA256) a v3 certificate with a random positive 127-bit
/// serial. Errors are Errc::crypto naming the OpenSSL call.
[[nodiscard]] Result<pki::Certificate> buildCertificate(const CertSpec& spec);

/// A parsed and signature-checked PKCS#10 request.
struct CsrInfo {
  pki::EcPublicKey key;
  std::optional<pki::Bytes> tnAuthList;  ///< the extension value, as requested
  std::optional<std::string> country;
  std::optional<std::string> organization;
  bool caRequested = false;  ///< basicConstraints cA=TRUE requested
};

/// Parses DER CSR; the error message is the badCSR detail (P-256 key, ecdsa-with-SHA256,
/// signature valid).
[[nodiscard]] Result<CsrInfo> parseCsr(pki::ByteView der);

/// DER of a CRLDistributionPoints extension value with one DistributionPoint:
/// fullName = URI url, cRLIssuer = directoryName of crlIssuer's subject.
[[nodiscard]] Result<pki::Bytes> crlDistributionPointsDer(const std::string& url, const pki::Certificate& crlIssuer);

/// DER of a certificatePolicies extension value holding exactly one policy OID.
[[nodiscard]] Result<pki::Bytes> certificatePoliciesDer(const std::string& policyOid);

/// One revoked certificate on the CRL.
struct RevokedEntry {
  pki::Bytes serial;  ///< INTEGER content octets
  std::int64_t revokedAt = 0;
  int reason = 0;
  /// The revoked certificate: its issuer goes into the certificateIssuer entry extension.
  std::optional<pki::Certificate> revoked;
};

/// An indirect CRL (issuingDistributionPoint indirectCRL, certificateIssuer on entries)
/// naming `signer` as its issuer and signed with `signerKey` (another key for a forged
/// CRL); thisUpdate = now - backdate, nextUpdate = now + validity.
[[nodiscard]] Result<pki::Bytes> buildCrl(const pki::Certificate& signer, pki::SoftwareKey& signerKey,
                                          const std::vector<RevokedEntry>& entries, const std::string& url,
                                          std::chrono::seconds validity,
                                          std::chrono::seconds backdate = std::chrono::seconds(60));

}  // namespace kms::lab
