#pragma once
/// @file The seam between key holders (the HSM, a software key) and what signs with them
/// (CSR builder, JWS, PASSporT).

#include <memory>

#include "kms/error.h"
#include "pki/ec_key.h"
#include "pki/encoding.h"

namespace kms::pki {

/// An ES256 (P-256, SHA-256) signing key whose private half may live elsewhere.
class Signer {
 public:
  virtual ~Signer() = default;
  /// Signs a SHA-256 digest; returns raw r||s. Thread-safe for implementations in this
  /// project. Fails with the holder's error (e.g. Errc::hsm naming the PKCS#11 function).
  [[nodiscard]] virtual Result<RawSignature> signDigest(const Digest& digest) = 0;
  /// The matching public key.
  [[nodiscard]] virtual const EcPublicKey& publicKey() const = 0;

  /// sha256(message) then signDigest.
  [[nodiscard]] Result<RawSignature> signMessage(ByteView message) { return signDigest(sha256(message)); }
};

/// A P-256 key held in process memory (OpenSSL EVP). For kms-lab, tests of the wire
/// formats and benchmark references; managed certificate keys live in the HSM.
class SoftwareKey : public Signer {
 public:
  /// Generates a fresh P-256 key.
  [[nodiscard]] static Result<std::unique_ptr<SoftwareKey>> generate();
  /// Loads a PEM private key (PKCS#8 or SEC1); fails unless it is P-256.
  [[nodiscard]] static Result<std::unique_ptr<SoftwareKey>> fromPem(std::string_view pem);
  ~SoftwareKey() override;
  SoftwareKey(const SoftwareKey&) = delete;
  SoftwareKey& operator=(const SoftwareKey&) = delete;

  [[nodiscard]] Result<RawSignature> signDigest(const Digest& digest) override;
  [[nodiscard]] const EcPublicKey& publicKey() const override { return public_; }
  /// PKCS#8 PEM of the private key (for kms-lab's own files only).
  [[nodiscard]] Result<std::string> privateKeyPem() const;
  /// The underlying EVP_PKEY* (borrowed), for code that signs certificates with OpenSSL.
  [[nodiscard]] void* evpPkey() const { return pkey_; }

 private:
  SoftwareKey(void* pkey, EcPublicKey pub) : pkey_(pkey), public_(pub) {}
  void* pkey_;  // EVP_PKEY*, kept opaque so this header needs no OpenSSL include
  EcPublicKey public_;
};

}  // namespace kms::pki
