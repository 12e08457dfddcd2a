#pragma once
/// @file Certificates for tests, built with OpenSSL alone (not with the code under test), so a
/// test can break exactly one property of an otherwise good certificate.

#include <string>
#include <utility>
#include <vector>

namespace kms::test {

/// An EC key made by OpenSSL (P-256 unless asked otherwise). Move-only.
class TestKey {
 public:
  explicit TestKey(const char* curve = "P-256");
  ~TestKey();
  TestKey(TestKey&& other) noexcept;
  TestKey& operator=(TestKey&& other) noexcept;
  TestKey(const TestKey&) = delete;
  TestKey& operator=(const TestKey&) = delete;

  /// PKCS#8 PEM of the private key.
  [[nodiscard]] std::string privatePem() const;
  /// The EVP_PKEY* (borrowed).
  [[nodiscard]] void* native() const { return pkey_; }

 private:
  void* pkey_ = nullptr;
};

/// What goes into one certificate. Extensions are in OpenSSL's configuration syntax
/// (x509v3_config(5)): {"keyUsage", "critical,digitalSignature"}; `sections` holds the
/// [section] text that values such as crlDistributionPoints refer to.
struct CertSpec {
  std::vector<std::pair<std::string, std::string>> subject{{"CN", "Test"}};
  std::vector<std::pair<std::string, std::string>> extensions;
  std::string sections;
  std::string digest = "SHA256";
  long notBeforeSeconds = -60;  ///< offset from now
  long notAfterSeconds = 86400;
  /// An ASN.1 time ("99991231235959Z") for notAfter instead of notAfterSeconds.
  std::string notAfterTime;
  long serial = 1;

  /// Replaces the extension `name` (appends it when absent).
  CertSpec& set(const std::string& name, const std::string& value);
  /// Drops the extension `name`.
  CertSpec& remove(const std::string& name);
};

/// A certificate for `subjectKey` signed by `issuerKey`; `issuerPem` empty means self-signed.
/// Throws std::runtime_error (with OpenSSL's reason) when OpenSSL refuses the spec.
[[nodiscard]] std::string makeCertPem(const CertSpec& spec, const TestKey& subjectKey, const TestKey& issuerKey,
                                      const std::string& issuerPem = "");

/// The same for keys made elsewhere: the subject's public key as its DER
/// SubjectPublicKeyInfo, the issuer's private key as an OpenSSL EVP_PKEY* (for instance
/// pki::SoftwareKey::evpPkey()).
[[nodiscard]] std::string makeCertPemFor(const CertSpec& spec, const std::string& subjectSpkiDer, void* issuerKey,
                                         const std::string& issuerPem = "");

/// A CA certificate spec (critical basicConstraints cA TRUE, keyCertSign + cRLSign, SKI, AKI).
[[nodiscard]] CertSpec caSpec(const std::string& cn);

/// The DER, in OpenSSL's "DER:aa:bb" notation, of a TNAuthList holding one SPC (RFC 8226,
/// explicit tags: SEQUENCE { [0] IA5String spc }), written out by hand.
[[nodiscard]] std::string tnAuthListSpcDer(const std::string& spc);

/// A leaf that passes the SHAKEN profile for `spc`: CN "SHAKEN <spc>", critical
/// basicConstraints cA FALSE, critical keyUsage digitalSignature, one non-critical SHAKEN
/// policy, one CRL distribution point with fullName and cRLIssuer, SKI, AKI, TNAuthList.
[[nodiscard]] CertSpec shakenLeafSpec(const std::string& spc);

}  // namespace kms::test
