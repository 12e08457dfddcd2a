#pragma once
/// @file X.509 CRLs (RFC 5280 §5) as the STI-PA publishes them: one indirect CRL whose
/// entries name the certificate issuer (certificateIssuer entry extension). Parsing, the
/// signer check and lookups by (issuer, serial). Times are Unix seconds (64-bit: no
/// overflow for dates past 2262).

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "kms/error.h"
#include "pki/encoding.h"
#include "pki/x509.h"

namespace kms::pki {

/// One revoked certificate as the CRL lists it.
struct CrlEntry {
  std::string serialHex;  ///< as Certificate::serialHex() spells it
  std::string issuer;     ///< RFC 2253 name (as Certificate::issuer() spells it)
  std::int64_t revokedAt = 0;
  int reason = 0;  ///< CRLReason code; 0 (unspecified) when absent
};

class Crl {
 public:
  /// Errc::invalidArgument when `der` is not one DER CRL (trailing bytes included).
  [[nodiscard]] static Result<Crl> fromDer(ByteView der);

  [[nodiscard]] const Bytes& der() const { return der_; }
  /// The CRL issuer's name (RFC 2253).
  [[nodiscard]] const std::string& issuer() const { return issuer_; }
  [[nodiscard]] std::int64_t thisUpdate() const { return thisUpdate_; }
  /// Empty when the CRL has no nextUpdate (RFC 5280 requires one; treated as stale).
  [[nodiscard]] std::optional<std::int64_t> nextUpdate() const { return nextUpdate_; }
  [[nodiscard]] const std::vector<CrlEntry>& entries() const { return entries_; }

  /// The CRL's issuer is `signer`'s subject and its signature verifies with `signer`'s key.
  /// Errors say which of the two failed.
  [[nodiscard]] Result<void> verifySignedBy(const Certificate& signer) const;
  /// The entry revoking the certificate (issuer, serialHex), if any.
  [[nodiscard]] std::optional<CrlEntry> find(const std::string& issuer, const std::string& serialHex) const;

 private:
  Crl() = default;
  Bytes der_;
  std::string issuer_;
  std::int64_t thisUpdate_ = 0;
  std::optional<std::int64_t> nextUpdate_;
  std::vector<CrlEntry> entries_;
  std::unordered_map<std::string, std::size_t> index_;  ///< issuer "\n" serial -> entry
  std::shared_ptr<void> crl_;  // X509_CRL*
};

}  // namespace kms::pki
