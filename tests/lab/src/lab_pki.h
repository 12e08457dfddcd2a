#pragma once
/// @file The lab's PKI under D/pki: created on the first start, reused afterwards.

#include <memory>
#include <string>

#include "kms/error.h"
#include "pki/signer.h"
#include "pki/x509.h"

namespace kms::lab {

/// A certificate, its private key and the PEM file holding the certificate.
struct KeyedCert {
  pki::Certificate cert;
  std::unique_ptr<pki::SoftwareKey> key;
  std::string certFile;
};

/// Every key pair the lab uses. All EC P-256.
struct LabPki {
  std::unique_ptr<KeyedCert> tlsCa;              ///< issues the HTTPS listener's certificate
  std::unique_ptr<KeyedCert> tls;                ///< 127.0.0.1 / localhost
  std::unique_ptr<KeyedCert> stiPaRoot;          ///< STI-PA trust anchor
  std::unique_ptr<KeyedCert> stiPaSigner;        ///< signs SPC tokens and the CA list (x5u)
  std::unique_ptr<KeyedCert> stiPaCrl;           ///< signs the STI-PA CRL (cRLIssuer)
  std::unique_ptr<KeyedCert> stiCaRoot;          ///< the STI-CA root (approved in the CA list)
  std::unique_ptr<KeyedCert> stiCaIntermediate;  ///< issues SHAKEN certificates
  std::unique_ptr<KeyedCert> decoyIntermediate;  ///< same name, other key (--broken-chain)

  /// Loads D/pki, or creates all of it when any file is missing, and copies the public
  /// files clients need to D (tls-ca.pem, sti-pa-root.pem, sti-ca-root.pem).
  [[nodiscard]] static Result<std::unique_ptr<LabPki>> loadOrCreate(const std::string& dir);

  /// Replaces the STI-CA root and intermediate with new ones ("... G<generation>" in their
  /// names), written over D/pki and D/sti-ca-root.pem: certificates issued from now on
  /// chain to the new root. Certificates issued before keep their old chain.
  [[nodiscard]] Result<void> rotateStiCa(const std::string& dir, int generation);
};

}  // namespace kms::lab
