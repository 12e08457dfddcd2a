#include "pki/ec_key.h"

#include <algorithm>
#include <cstring>

#include <openssl/core_names.h>
#include <openssl/ecdsa.h>

#include "openssl_util.h"

namespace kms::pki {
namespace {

// DER prefix of a P-256 SubjectPublicKeyInfo up to the 65-byte uncompressed point:
// SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING (0 unused bits) }.
constexpr std::uint8_t kSpkiPrefix[] = {0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x02, 0x01,
                                        0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00};

Result<ossl::PKey> parseSpki(ByteView der) {
  const unsigned char* p = der.data();
  ossl::PKey key(d2i_PUBKEY(nullptr, &p, static_cast<long>(der.size())));
  if (!key) {
    return ossl::failSsl("not a valid SubjectPublicKeyInfo");
  }
  if (p != der.data() + der.size()) {
    return fail(Errc::invalidArgument, "trailing bytes after SubjectPublicKeyInfo");
  }
  return key;
}

}  // namespace

Result<EcPublicKey> EcPublicKey::fromSpkiDer(ByteView der) {
  auto key = parseSpki(der);
  if (!key) {
    return fail(key.error());
  }
  if (EVP_PKEY_get_base_id(key->get()) != EVP_PKEY_EC) {
    return fail(Errc::unsupported, "public key is not an EC key");
  }
  char group[64] = {0};
  size_t groupLen = 0;
  if (EVP_PKEY_get_utf8_string_param(key->get(), OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, &groupLen) != 1 ||
      std::strcmp(group, "prime256v1") != 0) {
    return fail(Errc::unsupported, "EC public key is not on P-256");
  }
  std::uint8_t point[65];
  size_t pointLen = 0;
  if (EVP_PKEY_get_octet_string_param(key->get(), OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, point, sizeof point, &pointLen) !=
          1 ||
      pointLen != 65) {
    // A compressed point: re-encode through the uncompressed conversion.
    if (EVP_PKEY_set_utf8_string_param(key->get(), OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT, "uncompressed") != 1 ||
        EVP_PKEY_get_octet_string_param(key->get(), OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, point, sizeof point,
                                        &pointLen) != 1 ||
        pointLen != 65) {
      return ossl::failSsl("cannot read the EC public point");
    }
  }
  EcPublicKey out;
  std::memcpy(out.x_.data(), point + 1, 32);
  std::memcpy(out.y_.data(), point + 33, 32);
  return out;
}

Result<EcPublicKey> EcPublicKey::fromUncompressedPoint(ByteView point) {
  if (point.size() != 65 || point[0] != 0x04) {
    return fail(Errc::invalidArgument, "EC point is not a 65-byte uncompressed P-256 point");
  }
  // The curve check through EC_POINT is a few microseconds; decoding an SPKI through
  // OpenSSL 3's decoder framework costs milliseconds (measured in tests/bench).
  static const EC_GROUP* group = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1);
  CPtr<EC_POINT, &EC_POINT_free> p(group != nullptr ? EC_POINT_new(group) : nullptr);
  if (!p || EC_POINT_oct2point(group, p.get(), point.data(), point.size(), nullptr) != 1 ||
      EC_POINT_is_on_curve(group, p.get(), nullptr) != 1) {
    ERR_clear_error();
    return fail(Errc::invalidArgument, "EC point is not on P-256");
  }
  EcPublicKey out;
  std::memcpy(out.x_.data(), point.data() + 1, 32);
  std::memcpy(out.y_.data(), point.data() + 33, 32);
  return out;
}

Result<EcPublicKey> EcPublicKey::fromJwkCoordinates(std::string_view x, std::string_view y) {
  auto xb = base64UrlDecode(x);
  auto yb = base64UrlDecode(y);
  if (!xb || !yb || xb->size() != 32 || yb->size() != 32) {
    return fail(Errc::invalidArgument, "JWK x and y must be 32-byte base64url values");
  }
  Bytes point(65);
  point[0] = 0x04;
  std::copy(xb->begin(), xb->end(), point.begin() + 1);
  std::copy(yb->begin(), yb->end(), point.begin() + 33);
  return fromUncompressedPoint(point);
}

Bytes EcPublicKey::uncompressedPoint() const {
  Bytes point(65);
  point[0] = 0x04;
  std::copy(x_.begin(), x_.end(), point.begin() + 1);
  std::copy(y_.begin(), y_.end(), point.begin() + 33);
  return point;
}

Bytes EcPublicKey::spkiDer() const {
  Bytes der(std::begin(kSpkiPrefix), std::end(kSpkiPrefix));
  Bytes point = uncompressedPoint();
  der.insert(der.end(), point.begin(), point.end());
  return der;
}

std::string EcPublicKey::jwkJson() const {
  return R"({"crv":"P-256","kty":"EC","x":")" + base64UrlEncode(x_) + R"(","y":")" + base64UrlEncode(y_) + "\"}";
}

std::string EcPublicKey::jwkThumbprint() const {
  return base64UrlEncode(sha256(asBytes(jwkJson())));
}

std::string EcPublicKey::spkiFingerprint() const {
  return sha256Fingerprint(spkiDer());
}

std::string EcPublicKey::thumbprintFingerprint() const {
  Digest d = sha256(asBytes(jwkJson()));
  return "SHA256 " + hexEncode(d, ":");
}

Result<bool> EcPublicKey::verifyEs256(ByteView message, ByteView rawSignature) const {
  auto der = rawSignatureToDer(rawSignature);
  if (!der) {
    return fail(der.error());
  }
  Bytes spki = spkiDer();
  auto key = parseSpki(spki);
  if (!key) {
    return fail(key.error());
  }
  ossl::MdCtx ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key->get()) != 1) {
    return ossl::failSsl("EVP_DigestVerifyInit failed");
  }
  int rc = EVP_DigestVerify(ctx.get(), der->data(), der->size(), message.data(), message.size());
  if (rc < 0) {
    return ossl::failSsl("EVP_DigestVerify failed");
  }
  ERR_clear_error();
  return rc == 1;
}

Result<Bytes> rawSignatureToDer(ByteView raw) {
  if (raw.size() != 64) {
    return fail(Errc::invalidArgument, "ES256 signature must be 64 bytes, got " + std::to_string(raw.size()));
  }
  ossl::EcdsaSig sig(ECDSA_SIG_new());
  BIGNUM* r = BN_bin2bn(raw.data(), 32, nullptr);
  BIGNUM* s = BN_bin2bn(raw.data() + 32, 32, nullptr);
  if (!sig || r == nullptr || s == nullptr || ECDSA_SIG_set0(sig.get(), r, s) != 1) {
    BN_free(r);
    BN_free(s);
    return ossl::failSsl("cannot build ECDSA-Sig-Value");
  }
  int len = i2d_ECDSA_SIG(sig.get(), nullptr);
  if (len <= 0) {
    return ossl::failSsl("cannot encode ECDSA-Sig-Value");
  }
  Bytes der(static_cast<size_t>(len));
  unsigned char* p = der.data();
  i2d_ECDSA_SIG(sig.get(), &p);
  return der;
}

Result<RawSignature> derSignatureToRaw(ByteView der) {
  const unsigned char* p = der.data();
  ossl::EcdsaSig sig(d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(der.size())));
  if (!sig || p != der.data() + der.size()) {
    ERR_clear_error();
    return fail(Errc::invalidArgument, "not a DER ECDSA-Sig-Value");
  }
  RawSignature raw{};
  const BIGNUM* r = ECDSA_SIG_get0_r(sig.get());
  const BIGNUM* s = ECDSA_SIG_get0_s(sig.get());
  if (BN_bn2binpad(r, raw.data(), 32) != 32 || BN_bn2binpad(s, raw.data() + 32, 32) != 32) {
    ERR_clear_error();
    return fail(Errc::invalidArgument, "ECDSA signature values are larger than 32 bytes");
  }
  return raw;
}

}  // namespace kms::pki
