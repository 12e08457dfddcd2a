#pragma once
/// @file P-256 public keys in the forms ACME and SHAKEN need: SPKI DER, JWK (RFC 7517),
/// RFC 7638 thumbprint, the two SPC-token fingerprint flavours, and ES256 signatures.

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "kms/error.h"
#include "pki/encoding.h"

namespace kms::pki {

/// Raw ES256 signature: r || s, 32 bytes each (JWS form, and what CKM_ECDSA returns).
using RawSignature = std::array<std::uint8_t, 64>;

/// An EC P-256 public key (affine x, y).
class EcPublicKey {
 public:
  /// Parses DER SubjectPublicKeyInfo; fails unless it is id-ecPublicKey on P-256 with a
  /// point on the curve.
  [[nodiscard]] static Result<EcPublicKey> fromSpkiDer(ByteView der);
  /// Parses an uncompressed point 04 || x || y (65 bytes) and checks it is on P-256.
  [[nodiscard]] static Result<EcPublicKey> fromUncompressedPoint(ByteView point);
  /// Parses the base64url `x` and `y` members of a P-256 JWK.
  [[nodiscard]] static Result<EcPublicKey> fromJwkCoordinates(std::string_view x, std::string_view y);

  [[nodiscard]] const std::array<std::uint8_t, 32>& x() const { return x_; }
  [[nodiscard]] const std::array<std::uint8_t, 32>& y() const { return y_; }
  /// 04 || x || y
  [[nodiscard]] Bytes uncompressedPoint() const;
  /// DER SubjectPublicKeyInfo (91 bytes).
  [[nodiscard]] Bytes spkiDer() const;
  /// Canonical JWK JSON in RFC 7638 member order: {"crv":"P-256","kty":"EC","x":..,"y":..}.
  [[nodiscard]] std::string jwkJson() const;
  /// RFC 7638 thumbprint: base64url(SHA-256(jwkJson())).
  [[nodiscard]] std::string jwkThumbprint() const;
  /// "SHA256 AA:..." over the SPKI DER (docs/protocols.md default flavour).
  [[nodiscard]] std::string spkiFingerprint() const;
  /// "SHA256 AA:..." over the JWK thumbprint digest (docs/protocols.md RFC flavour).
  [[nodiscard]] std::string thumbprintFingerprint() const;

  /// Verifies an ES256 signature (raw r||s) over message (hashed here with SHA-256).
  [[nodiscard]] Result<bool> verifyEs256(ByteView message, ByteView rawSignature) const;

  friend bool operator==(const EcPublicKey&, const EcPublicKey&) = default;

 private:
  std::array<std::uint8_t, 32> x_{};
  std::array<std::uint8_t, 32> y_{};
};

/// Raw r||s (64 bytes) to DER ECDSA-Sig-Value, as X.509 and CSRs carry it.
[[nodiscard]] Result<Bytes> rawSignatureToDer(ByteView raw);
/// DER ECDSA-Sig-Value to raw r||s, each left-padded to 32 bytes.
[[nodiscard]] Result<RawSignature> derSignatureToRaw(ByteView der);

}  // namespace kms::pki
