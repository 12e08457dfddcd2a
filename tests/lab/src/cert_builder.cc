#include "cert_builder.h"

#include <ctime>
#include <string_view>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "kms/c_ptr.h"
#include "pki/tn_auth_list.h"
#include "util.h"

namespace kms::lab {

namespace {

using X509Ptr = CPtr<X509, &X509_free>;
using X509ReqPtr = CPtr<X509_REQ, &X509_REQ_free>;
using X509CrlPtr = CPtr<X509_CRL, &X509_CRL_free>;
using PkeyPtr = CPtr<EVP_PKEY, &EVP_PKEY_free>;
using ExtPtr = CPtr<X509_EXTENSION, &X509_EXTENSION_free>;
using BnPtr = CPtr<BIGNUM, &BN_free>;
using IntPtr = CPtr<ASN1_INTEGER, &ASN1_INTEGER_free>;
using TimePtr = CPtr<ASN1_TIME, &ASN1_TIME_free>;
using ObjPtr = CPtr<ASN1_OBJECT, &ASN1_OBJECT_free>;
using OctetPtr = CPtr<ASN1_OCTET_STRING, &ASN1_OCTET_STRING_free>;
using NamesPtr = CPtr<GENERAL_NAMES, &GENERAL_NAMES_free>;
using DistPointsPtr = CPtr<CRL_DIST_POINTS, &CRL_DIST_POINTS_free>;
using IdpPtr = CPtr<ISSUING_DIST_POINT, &ISSUING_DIST_POINT_free>;
using EnumPtr = CPtr<ASN1_ENUMERATED, &ASN1_ENUMERATED_free>;

/// Errc::crypto with what failed and OpenSSL's queued reasons (drained).
tl::unexpected<Error> sslFail(const std::string& what) {
  std::string reasons;
  while (unsigned long code = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(code, buf, sizeof buf);
    reasons += reasons.empty() ? "" : "; ";
    reasons += buf;
  }
  return fail(Errc::crypto, reasons.empty() ? what : what + ": " + reasons);
}

PkeyPtr publicKeyToEvp(const pki::EcPublicKey& key) {
  pki::Bytes spki = key.spkiDer();
  const unsigned char* p = spki.data();
  return PkeyPtr(d2i_PUBKEY(nullptr, &p, static_cast<long>(spki.size())));
}

X509* nativeX509(const pki::Certificate& cert) {
  return static_cast<X509*>(cert.native());
}

/// GENERAL_NAMES holding one directoryName (a copy of name).
NamesPtr directoryName(const X509_NAME* name) {
  NamesPtr names(GENERAL_NAMES_new());
  GENERAL_NAME* gn = GENERAL_NAME_new();
  X509_NAME* copy = X509_NAME_dup(name);
  if (!names || gn == nullptr || copy == nullptr) {
    GENERAL_NAME_free(gn);
    X509_NAME_free(copy);
    return nullptr;
  }
  GENERAL_NAME_set0_value(gn, GEN_DIRNAME, copy);
  sk_GENERAL_NAME_push(names.get(), gn);
  return names;
}

/// A DIST_POINT_NAME with fullName = one URI.
DIST_POINT_NAME* uriPointName(const std::string& url) {
  DIST_POINT_NAME* dpn = DIST_POINT_NAME_new();
  GENERAL_NAMES* full = GENERAL_NAMES_new();
  GENERAL_NAME* gn = GENERAL_NAME_new();
  ASN1_IA5STRING* uri = ASN1_IA5STRING_new();
  if (dpn == nullptr || full == nullptr || gn == nullptr || uri == nullptr ||
      ASN1_STRING_set(uri, url.data(), static_cast<int>(url.size())) != 1) {
    DIST_POINT_NAME_free(dpn);
    GENERAL_NAMES_free(full);
    GENERAL_NAME_free(gn);
    ASN1_IA5STRING_free(uri);
    return nullptr;
  }
  GENERAL_NAME_set0_value(gn, GEN_URI, uri);
  sk_GENERAL_NAME_push(full, gn);
  dpn->type = 0;
  dpn->name.fullname = full;
  return dpn;
}

std::optional<std::string> nameField(X509_NAME* name, int nid) {
  int idx = X509_NAME_get_index_by_NID(name, nid, -1);
  if (idx < 0) {
    return std::nullopt;
  }
  unsigned char* utf8 = nullptr;
  int len = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, idx)));
  if (len < 0) {
    return std::nullopt;
  }
  std::string out(reinterpret_cast<char*>(utf8), static_cast<std::size_t>(len));
  OPENSSL_free(utf8);
  return out;
}

/// Runs an i2d call that allocates into buf (evaluated first), then takes ownership.
template <class Encode>
std::optional<pki::Bytes> derOf(Encode encode, unsigned char*& buf) {
  int len = encode();
  if (len <= 0 || buf == nullptr) {
    return std::nullopt;
  }
  pki::Bytes out(buf, buf + len);
  OPENSSL_free(buf);
  return out;
}

}  // namespace

Result<pki::Certificate> buildCertificate(const CertSpec& spec) {
  if (spec.issuerKey == nullptr) {
    return fail(Errc::internal, "certificate without an issuer key");
  }
  X509Ptr x(X509_new());
  PkeyPtr subjectKey = publicKeyToEvp(spec.subjectKey);
  auto* issuerKey = static_cast<EVP_PKEY*>(spec.issuerKey->evpPkey());
  if (!x || !subjectKey || X509_set_version(x.get(), 2) != 1 || X509_set_pubkey(x.get(), subjectKey.get()) != 1) {
    return sslFail("cannot start certificate");
  }
  pki::Bytes serial = randomBytes(16);
  serial[0] = static_cast<std::uint8_t>((serial[0] & 0x7F) | 0x40);
  BnPtr bn(BN_bin2bn(serial.data(), static_cast<int>(serial.size()), nullptr));
  if (!bn || BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(x.get())) == nullptr) {
    return sslFail("cannot set serial");
  }
  if (ASN1_TIME_set(X509_getm_notBefore(x.get()), std::chrono::system_clock::to_time_t(spec.notBefore)) == nullptr ||
      ASN1_TIME_set(X509_getm_notAfter(x.get()), std::chrono::system_clock::to_time_t(spec.notAfter)) == nullptr) {
    return sslFail("cannot set validity");
  }
  X509_NAME* subject = X509_get_subject_name(x.get());
  for (const auto& [field, value] : spec.subject) {
    if (X509_NAME_add_entry_by_txt(subject, field.c_str(), MBSTRING_UTF8,
                                   reinterpret_cast<const unsigned char*>(value.c_str()), -1, -1, 0) != 1) {
      return sslFail("cannot add subject " + field);
    }
  }
  X509* issuer = spec.issuer != nullptr ? nativeX509(*spec.issuer) : x.get();
  if (X509_set_issuer_name(x.get(), X509_get_subject_name(issuer)) != 1) {
    return sslFail("cannot set issuer");
  }

  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer, x.get(), nullptr, nullptr, 0);
  auto addConf = [&](const char* name, const char* value) -> Result<void> {
    ExtPtr ext(X509V3_EXT_nconf(nullptr, &ctx, name, value));
    if (!ext || X509_add_ext(x.get(), ext.get(), -1) != 1) {
      return sslFail(std::string("cannot add extension ") + name + "=" + value);
    }
    return ok();
  };
  for (const auto& ext : spec.extensions) {
    if (auto r = addConf(ext.name.c_str(), ext.value.c_str()); !r) {
      return fail(r.error());
    }
  }
  if (auto r = addConf("subjectKeyIdentifier", "hash"); !r) {
    return fail(r.error());
  }
  if (spec.authorityKeyId) {
    if (auto r = addConf("authorityKeyIdentifier", "keyid:always"); !r) {
      return fail(r.error());
    }
  }
  for (const auto& raw : spec.raw) {
    ObjPtr obj(OBJ_txt2obj(raw.oid.c_str(), 1));
    OctetPtr value(ASN1_OCTET_STRING_new());
    if (!obj || !value || ASN1_OCTET_STRING_set(value.get(), raw.der.data(), static_cast<int>(raw.der.size())) != 1) {
      return sslFail("cannot encode extension " + raw.oid);
    }
    ExtPtr ext(X509_EXTENSION_create_by_OBJ(nullptr, obj.get(), raw.critical ? 1 : 0, value.get()));
    if (!ext || X509_add_ext(x.get(), ext.get(), -1) != 1) {
      return sslFail("cannot add extension " + raw.oid);
    }
  }
  if (X509_sign(x.get(), issuerKey, EVP_sha256()) <= 0) {
    return sslFail("cannot sign certificate");
  }
  unsigned char* der = nullptr;
  auto bytes = derOf([&] { return i2d_X509(x.get(), &der); }, der);
  if (!bytes) {
    return sslFail("cannot encode certificate");
  }
  return pki::Certificate::fromDer(*bytes);
}

Result<CsrInfo> parseCsr(pki::ByteView der) {
  const unsigned char* p = der.data();
  X509ReqPtr req(d2i_X509_REQ(nullptr, &p, static_cast<long>(der.size())));
  ERR_clear_error();
  if (!req || p != der.data() + der.size()) {
    return fail(Errc::invalidArgument, "CSR is not a DER PKCS#10 request");
  }
  EVP_PKEY* pkey = X509_REQ_get0_pubkey(req.get());
  unsigned char* spki = nullptr;
  auto spkiDer = pkey == nullptr ? std::nullopt : derOf([&] { return i2d_PUBKEY(pkey, &spki); }, spki);
  Result<pki::EcPublicKey> key = fail(Errc::invalidArgument, "no key");
  if (spkiDer) {
    key = pki::EcPublicKey::fromSpkiDer(*spkiDer);
  }
  if (!key) {
    return fail(Errc::invalidArgument, "CSR public key is not an EC P-256 key");
  }
  if (X509_REQ_get_signature_nid(req.get()) != NID_ecdsa_with_SHA256) {
    return fail(Errc::invalidArgument, "CSR signature algorithm is not ecdsa-with-SHA256");
  }
  if (X509_REQ_verify(req.get(), pkey) != 1) {
    ERR_clear_error();
    return fail(Errc::invalidArgument, "CSR signature does not verify");
  }
  CsrInfo info{*key, std::nullopt, std::nullopt, std::nullopt, false};
  X509_NAME* subject = X509_REQ_get_subject_name(req.get());
  info.country = nameField(subject, NID_countryName);
  info.organization = nameField(subject, NID_organizationName);

  STACK_OF(X509_EXTENSION)* exts = X509_REQ_get_extensions(req.get());
  ERR_clear_error();
  for (int i = 0; exts != nullptr && i < sk_X509_EXTENSION_num(exts); ++i) {
    X509_EXTENSION* ext = sk_X509_EXTENSION_value(exts, i);
    char oid[80];
    OBJ_obj2txt(oid, sizeof oid, X509_EXTENSION_get_object(ext), 1);
    if (std::string_view(oid) == pki::kTnAuthListOid) {
      const ASN1_OCTET_STRING* data = X509_EXTENSION_get_data(ext);
      info.tnAuthList = pki::Bytes(ASN1_STRING_get0_data(data), ASN1_STRING_get0_data(data) + ASN1_STRING_length(data));
    } else if (OBJ_obj2nid(X509_EXTENSION_get_object(ext)) == NID_basic_constraints) {
      auto* bc = static_cast<BASIC_CONSTRAINTS*>(X509V3_EXT_d2i(ext));
      info.caRequested = bc != nullptr && bc->ca != 0;
      BASIC_CONSTRAINTS_free(bc);
    }
  }
  sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
  return info;
}

Result<pki::Bytes> crlDistributionPointsDer(const std::string& url, const pki::Certificate& crlIssuer) {
  DistPointsPtr points(sk_DIST_POINT_new_null());
  DIST_POINT* dp = DIST_POINT_new();
  if (!points || dp == nullptr) {
    DIST_POINT_free(dp);
    return sslFail("cannot allocate CRL distribution point");
  }
  sk_DIST_POINT_push(points.get(), dp);
  dp->distpoint = uriPointName(url);
  dp->CRLissuer = directoryName(X509_get_subject_name(nativeX509(crlIssuer))).release();
  if (dp->distpoint == nullptr || dp->CRLissuer == nullptr) {
    return sslFail("cannot build CRL distribution point");
  }
  unsigned char* der = nullptr;
  auto bytes = derOf([&] { return i2d_CRL_DIST_POINTS(points.get(), &der); }, der);
  if (!bytes) {
    return sslFail("cannot encode CRL distribution points");
  }
  return *bytes;
}

Result<pki::Bytes> certificatePoliciesDer(const std::string& policyOid) {
  using PoliciesPtr = CPtr<CERTIFICATEPOLICIES, &CERTIFICATEPOLICIES_free>;
  PoliciesPtr policies(CERTIFICATEPOLICIES_new());
  POLICYINFO* info = POLICYINFO_new();
  if (!policies || info == nullptr) {
    POLICYINFO_free(info);
    return sslFail("cannot allocate certificate policies");
  }
  sk_POLICYINFO_push(policies.get(), info);
  ASN1_OBJECT_free(info->policyid);
  info->policyid = OBJ_txt2obj(policyOid.c_str(), 1);
  if (info->policyid == nullptr) {
    return sslFail("bad policy OID " + policyOid);
  }
  unsigned char* der = nullptr;
  auto bytes = derOf([&] { return i2d_CERTIFICATEPOLICIES(policies.get(), &der); }, der);
  if (!bytes) {
    return sslFail("cannot encode certificate policies");
  }
  return *bytes;
}

Result<pki::Bytes> buildCrl(const pki::Certificate& signer, pki::SoftwareKey& signerKey,
                            const std::vector<RevokedEntry>& entries, const std::string& url,
                            std::chrono::seconds validity, std::chrono::seconds backdate) {
  X509CrlPtr crl(X509_CRL_new());
  std::time_t now = std::time(nullptr);
  TimePtr thisUpdate(ASN1_TIME_set(nullptr, now - backdate.count()));
  TimePtr nextUpdate(ASN1_TIME_set(nullptr, now + validity.count()));
  if (!crl || !thisUpdate || !nextUpdate || X509_CRL_set_version(crl.get(), 1) != 1 ||
      X509_CRL_set_issuer_name(crl.get(), X509_get_subject_name(nativeX509(signer))) != 1 ||
      X509_CRL_set1_lastUpdate(crl.get(), thisUpdate.get()) != 1 ||
      X509_CRL_set1_nextUpdate(crl.get(), nextUpdate.get()) != 1) {
    return sslFail("cannot start CRL");
  }
  for (const auto& entry : entries) {
    X509_REVOKED* rev = X509_REVOKED_new();
    if (rev == nullptr) {
      return sslFail("cannot allocate CRL entry");
    }
    BnPtr bn(BN_bin2bn(entry.serial.data(), static_cast<int>(entry.serial.size()), nullptr));
    IntPtr serial(bn ? BN_to_ASN1_INTEGER(bn.get(), nullptr) : nullptr);
    TimePtr when(ASN1_TIME_set(nullptr, entry.revokedAt));
    bool good = serial && when && X509_REVOKED_set_serialNumber(rev, serial.get()) == 1 &&
                X509_REVOKED_set_revocationDate(rev, when.get()) == 1;
    if (good && entry.reason != 0) {
      EnumPtr reason(ASN1_ENUMERATED_new());
      good = reason && ASN1_ENUMERATED_set(reason.get(), entry.reason) == 1 &&
             X509_REVOKED_add1_ext_i2d(rev, NID_crl_reason, reason.get(), 0, 0) == 1;
    }
    if (good && entry.revoked) {
      NamesPtr names = directoryName(X509_get_issuer_name(nativeX509(*entry.revoked)));
      good = names && X509_REVOKED_add1_ext_i2d(rev, NID_certificate_issuer, names.get(), 1, 0) == 1;
    }
    if (!good || X509_CRL_add0_revoked(crl.get(), rev) != 1) {
      X509_REVOKED_free(rev);
      return sslFail("cannot add CRL entry");
    }
  }
  IntPtr number(ASN1_INTEGER_new());
  if (!number || ASN1_INTEGER_set_int64(number.get(), unixNow()) != 1 ||
      X509_CRL_add1_ext_i2d(crl.get(), NID_crl_number, number.get(), 0, 0) != 1) {
    return sslFail("cannot add CRL number");
  }
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, nativeX509(signer), nullptr, nullptr, crl.get(), 0);
  ExtPtr aki(X509V3_EXT_nconf(nullptr, &ctx, "authorityKeyIdentifier", "keyid:always"));
  if (!aki || X509_CRL_add_ext(crl.get(), aki.get(), -1) != 1) {
    return sslFail("cannot add CRL authority key identifier");
  }
  IdpPtr idp(ISSUING_DIST_POINT_new());
  if (!idp) {
    return sslFail("cannot allocate issuing distribution point");
  }
  idp->indirectCRL = 1;
  idp->distpoint = uriPointName(url);
  if (idp->distpoint == nullptr ||
      X509_CRL_add1_ext_i2d(crl.get(), NID_issuing_distribution_point, idp.get(), 1, 0) != 1) {
    return sslFail("cannot add issuing distribution point");
  }
  if (X509_CRL_sort(crl.get()) != 1 ||
      X509_CRL_sign(crl.get(), static_cast<EVP_PKEY*>(signerKey.evpPkey()), EVP_sha256()) <= 0) {
    return sslFail("cannot sign CRL");
  }
  unsigned char* der = nullptr;
  auto bytes = derOf([&] { return i2d_X509_CRL(crl.get(), &der); }, der);
  if (!bytes) {
    return sslFail("cannot encode CRL");
  }
  return *bytes;
}

}  // namespace kms::lab
