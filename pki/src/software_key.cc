#include <openssl/pem.h>

#include "openssl_util.h"
#include "pki/signer.h"

namespace kms::pki {
namespace {

EVP_PKEY* asKey(void* p) {
  return static_cast<EVP_PKEY*>(p);
}

Result<EcPublicKey> publicOf(EVP_PKEY* key) {
  int len = i2d_PUBKEY(key, nullptr);
  if (len <= 0) {
    return ossl::failSsl("cannot encode public key");
  }
  Bytes der(static_cast<size_t>(len));
  unsigned char* p = der.data();
  i2d_PUBKEY(key, &p);
  return EcPublicKey::fromSpkiDer(der);
}

}  // namespace

Result<std::unique_ptr<SoftwareKey>> SoftwareKey::generate() {
  ossl::PKey key(EVP_EC_gen("P-256"));
  if (!key) {
    return ossl::failSsl("EVP_EC_gen(P-256) failed");
  }
  auto pub = publicOf(key.get());
  if (!pub) {
    return fail(pub.error());
  }
  return std::unique_ptr<SoftwareKey>(new SoftwareKey(key.release(), *pub));
}

Result<std::unique_ptr<SoftwareKey>> SoftwareKey::fromPem(std::string_view pem) {
  ossl::Bio bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) {
    return ossl::failSsl("BIO_new_mem_buf failed");
  }
  ossl::PKey key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (!key) {
    return ossl::failSsl("not a PEM private key");
  }
  auto pub = publicOf(key.get());
  if (!pub) {
    return fail(pub.error());
  }
  return std::unique_ptr<SoftwareKey>(new SoftwareKey(key.release(), *pub));
}

SoftwareKey::~SoftwareKey() {
  EVP_PKEY_free(asKey(pkey_));
}

Result<RawSignature> SoftwareKey::signDigest(const Digest& digest) {
  ossl::PKeyCtx ctx(EVP_PKEY_CTX_new(asKey(pkey_), nullptr));
  if (!ctx || EVP_PKEY_sign_init(ctx.get()) != 1) {
    return ossl::failSsl("EVP_PKEY_sign_init failed");
  }
  unsigned char der[80];
  size_t len = sizeof der;
  if (EVP_PKEY_sign(ctx.get(), der, &len, digest.data(), digest.size()) != 1) {
    return ossl::failSsl("EVP_PKEY_sign failed");
  }
  return derSignatureToRaw(ByteView(der, len));
}

Result<std::string> SoftwareKey::privateKeyPem() const {
  ossl::Bio bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PrivateKey(bio.get(), asKey(pkey_), nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    return ossl::failSsl("cannot write private key PEM");
  }
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

}  // namespace kms::pki
