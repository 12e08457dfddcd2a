#pragma once
/// @file X.509 certificates and chains: parsing, the fields lifecycle checks need, and
/// verification to trust anchors.

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kms/error.h"
#include "pki/ec_key.h"
#include "pki/encoding.h"

namespace kms::pki {

using SystemTime = std::chrono::system_clock::time_point;

/// Unix seconds as a SystemTime, clamped to what it can hold (about 1678..2262: nanosecond
/// ticks): a notAfter of 99991231235959Z or a token exp of 10^12 is "far in the future",
/// never an overflow into the past.
[[nodiscard]] inline SystemTime fromUnixSeconds(std::int64_t seconds) {
  constexpr std::int64_t kLimit =
      std::chrono::duration_cast<std::chrono::seconds>(SystemTime::duration::max()).count() - 1;
  return SystemTime(std::chrono::seconds(std::clamp(seconds, -kLimit, kLimit)));
}

/// One parsed certificate (shared, immutable; copies share the OpenSSL object).
class Certificate {
 public:
  [[nodiscard]] static Result<Certificate> fromDer(ByteView der);
  /// The first CERTIFICATE block of pem.
  [[nodiscard]] static Result<Certificate> fromPem(std::string_view pem);

  [[nodiscard]] Bytes der() const;
  [[nodiscard]] std::string pem() const;
  /// DER SubjectPublicKeyInfo.
  [[nodiscard]] Bytes spkiDer() const;
  /// RFC 2253-style subject ("CN=SHAKEN 1234,O=Example,C=US").
  [[nodiscard]] std::string subject() const;
  [[nodiscard]] std::string issuer() const;
  /// The first value of a subject attribute ("CN", "O", "C"), if present.
  [[nodiscard]] std::optional<std::string> subjectField(std::string_view shortName) const;
  [[nodiscard]] SystemTime notBefore() const;
  [[nodiscard]] SystemTime notAfter() const;
  /// Serial number INTEGER content octets (with a leading 0x00 when the top bit is set),
  /// as RFC 9773 certID uses them.
  [[nodiscard]] Bytes serialContent() const;
  /// Upper-case hex of the serial (no leading zero byte).
  [[nodiscard]] std::string serialHex() const;
  /// Raw value (OCTET STRING content) of the extension with this dotted OID.
  [[nodiscard]] std::optional<Bytes> extensionValue(std::string_view oid) const;
  /// Whether that extension is marked critical (nullopt if absent).
  [[nodiscard]] std::optional<bool> extensionCritical(std::string_view oid) const;
  /// The TNAuthList extension value (DER), if present.
  [[nodiscard]] std::optional<Bytes> tnAuthListDer() const;
  /// dNSName subjectAltNames.
  [[nodiscard]] std::vector<std::string> dnsNames() const;
  /// keyIdentifier of the authorityKeyIdentifier extension.
  [[nodiscard]] std::optional<Bytes> authorityKeyId() const;
  /// RFC 9773 ARI certID: base64url(AKI keyIdentifier) "." base64url(serial content).
  [[nodiscard]] Result<std::string> ariCertId() const;
  /// True when the certificate's public key is key.
  [[nodiscard]] bool hasPublicKey(const EcPublicKey& key) const;

  /// Borrowed X509* for code that needs OpenSSL directly.
  [[nodiscard]] void* native() const { return x509_.get(); }

 private:
  explicit Certificate(std::shared_ptr<void> x509) : x509_(std::move(x509)) {}
  std::shared_ptr<void> x509_;  // X509*, opaque here
};

/// Parses every CERTIFICATE block of a PEM chain (leaf first). Fails on no certificate
/// or any block that does not parse; text outside blocks is ignored.
[[nodiscard]] Result<std::vector<Certificate>> parsePemChain(std::string_view pem);
/// parsePemChain of the file at `path`; Errc::io (context `path`) when it cannot be read.
[[nodiscard]] Result<std::vector<Certificate>> readPemFile(const std::string& path);

/// Verifies chain (leaf first, then intermediates in any order) up to one of anchors
/// at time `at`. The error names OpenSSL's verify reason and the failing depth.
[[nodiscard]] Result<void> verifyChain(const std::vector<Certificate>& chain, const std::vector<Certificate>& anchors,
                                       SystemTime at);

}  // namespace kms::pki
