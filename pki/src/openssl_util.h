#pragma once
// Private OpenSSL helpers of kms_pki: owned handle aliases and error draining.

#include <string>

#include <openssl/bio.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "kms/c_ptr.h"
#include "kms/error.h"

namespace kms::pki::ossl {

using Bio = CPtr<BIO, &BIO_free_all>;
using PKey = CPtr<EVP_PKEY, &EVP_PKEY_free>;
using PKeyCtx = CPtr<EVP_PKEY_CTX, &EVP_PKEY_CTX_free>;
using MdCtx = CPtr<EVP_MD_CTX, &EVP_MD_CTX_free>;
using X509Ptr = CPtr<X509, &X509_free>;
using X509Req = CPtr<X509_REQ, &X509_REQ_free>;
using X509Store = CPtr<X509_STORE, &X509_STORE_free>;
using X509StoreCtx = CPtr<X509_STORE_CTX, &X509_STORE_CTX_free>;
using X509Name = CPtr<X509_NAME, &X509_NAME_free>;
using X509Ext = CPtr<X509_EXTENSION, &X509_EXTENSION_free>;
using EcdsaSig = CPtr<ECDSA_SIG, &ECDSA_SIG_free>;
using Bn = CPtr<BIGNUM, &BN_free>;
using Asn1Object = CPtr<ASN1_OBJECT, &ASN1_OBJECT_free>;
using Asn1OctetString = CPtr<ASN1_OCTET_STRING, &ASN1_OCTET_STRING_free>;
using Asn1BitString = CPtr<ASN1_BIT_STRING, &ASN1_BIT_STRING_free>;
using GeneralNames = CPtr<GENERAL_NAMES, &GENERAL_NAMES_free>;

inline void freeExtensionStack(STACK_OF(X509_EXTENSION) * s) {
  sk_X509_EXTENSION_pop_free(s, X509_EXTENSION_free);
}
inline void freeX509StackShallow(STACK_OF(X509) * s) {
  sk_X509_free(s);
}
using ExtensionStack = CPtr<STACK_OF(X509_EXTENSION), &freeExtensionStack>;
/// Does not free the certificates it holds.
using X509StackShallow = CPtr<STACK_OF(X509), &freeX509StackShallow>;

/// Drains the whole OpenSSL error queue into one Error: "what: lib:reason; lib:reason".
[[nodiscard]] Error error(std::string what, std::string context = {});

/// An X509_NAME in RFC 2253 form ("CN=…,O=…,C=US"), UTF-8 kept as is; "" on failure.
[[nodiscard]] std::string nameText(const X509_NAME* name);

/// fail(error(...)) shorthand.
[[nodiscard]] inline tl::unexpected<Error> failSsl(std::string what, std::string context = {}) {
  return tl::unexpected<Error>(error(std::move(what), std::move(context)));
}

}  // namespace kms::pki::ossl
