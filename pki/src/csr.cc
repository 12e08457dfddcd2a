#include "pki/csr.h"

#include <openssl/objects.h>

#include "openssl_util.h"
#include "pki/tn_auth_list.h"

namespace kms::pki {
namespace {

Result<void> addName(X509_NAME* name, const char* field, const std::string& value) {
  if (value.empty()) {
    return ok();
  }
  if (X509_NAME_add_entry_by_txt(name, field, MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(value.data()),
                                 static_cast<int>(value.size()), -1, 0) != 1) {
    return ossl::failSsl(std::string("cannot set subject ") + field + " to '" + value + "'");
  }
  return ok();
}

Result<X509_EXTENSION*> tnAuthListExtension(const Bytes& der) {
  ossl::Asn1Object oid(OBJ_txt2obj(kTnAuthListOid, 1));
  ossl::Asn1OctetString value(ASN1_OCTET_STRING_new());
  if (!oid || !value || ASN1_OCTET_STRING_set(value.get(), der.data(), static_cast<int>(der.size())) != 1) {
    return ossl::failSsl("cannot build TNAuthList extension");
  }
  X509_EXTENSION* ext = X509_EXTENSION_create_by_OBJ(nullptr, oid.get(), 0, value.get());
  if (ext == nullptr) {
    return ossl::failSsl("cannot build TNAuthList extension");
  }
  return ext;
}

Result<X509_EXTENSION*> sanExtension(const std::vector<std::string>& names) {
  ossl::GeneralNames gens(sk_GENERAL_NAME_new_null());
  if (!gens) {
    return ossl::failSsl("cannot allocate GENERAL_NAMES");
  }
  for (const std::string& n : names) {
    if (n.empty() || n.find_first_of(" ,/\\") != std::string::npos) {
      return fail(Errc::invalidArgument, "invalid DNS name in CSR: '" + n + "'");
    }
    GENERAL_NAME* gen = GENERAL_NAME_new();
    ASN1_IA5STRING* ia5 = ASN1_IA5STRING_new();
    if (gen == nullptr || ia5 == nullptr || ASN1_STRING_set(ia5, n.data(), static_cast<int>(n.size())) != 1) {
      GENERAL_NAME_free(gen);
      ASN1_IA5STRING_free(ia5);
      return ossl::failSsl("cannot build subjectAltName");
    }
    GENERAL_NAME_set0_value(gen, GEN_DNS, ia5);
    if (sk_GENERAL_NAME_push(gens.get(), gen) == 0) {
      GENERAL_NAME_free(gen);
      return ossl::failSsl("cannot build subjectAltName");
    }
  }
  X509_EXTENSION* ext = X509V3_EXT_i2d(NID_subject_alt_name, 0, gens.get());
  if (ext == nullptr) {
    return ossl::failSsl("cannot encode subjectAltName");
  }
  return ext;
}

Result<X509_EXTENSION*> basicConstraintsCa() {
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, nullptr, NID_basic_constraints, "critical,CA:TRUE,pathlen:0");
  if (ext == nullptr) {
    return ossl::failSsl("cannot build basicConstraints");
  }
  return ext;
}

}  // namespace

Result<CsrRequest> CsrRequest::shaken(const std::string& spc, std::string organization, std::string country) {
  if (!isValidSpc(spc)) {
    return fail(Errc::invalidArgument, "SPC must be one or more of 0-9 A-Z: '" + spc + "'");
  }
  auto der = TnAuthList::forSpc(spc).toDer();
  if (!der) {
    return fail(der.error());
  }
  CsrRequest r;
  r.country = std::move(country);
  r.organization = std::move(organization);
  r.commonName = "SHAKEN " + spc;
  r.tnAuthListDer = std::move(*der);
  return r;
}

Result<Bytes> buildCsr(const CsrRequest& request, Signer& signer) {
  if (request.commonName.empty() && request.organization.empty() && request.country.empty() &&
      request.dnsNames.empty() && !request.tnAuthListDer) {
    return fail(Errc::invalidArgument, "CSR would carry no subject, SAN or TNAuthList");
  }
  ossl::X509Req req(X509_REQ_new());
  if (!req || X509_REQ_set_version(req.get(), X509_REQ_VERSION_1) != 1) {
    return ossl::failSsl("X509_REQ_new failed");
  }
  X509_NAME* subject = X509_REQ_get_subject_name(req.get());
  for (auto [field, value] : {std::pair<const char*, const std::string*>{"C", &request.country},
                              {"O", &request.organization},
                              {"CN", &request.commonName}}) {
    if (auto r = addName(subject, field, *value); !r) {
      return fail(r.error());
    }
  }

  Bytes spki = signer.publicKey().spkiDer();
  const unsigned char* p = spki.data();
  ossl::PKey pub(d2i_PUBKEY(nullptr, &p, static_cast<long>(spki.size())));
  if (!pub || X509_REQ_set_pubkey(req.get(), pub.get()) != 1) {
    return ossl::failSsl("cannot set the CSR public key");
  }

  ossl::ExtensionStack exts(sk_X509_EXTENSION_new_null());
  auto push = [&](Result<X509_EXTENSION*> ext) -> Result<void> {
    if (!ext) {
      return fail(ext.error());
    }
    if (sk_X509_EXTENSION_push(exts.get(), *ext) == 0) {
      X509_EXTENSION_free(*ext);
      return ossl::failSsl("cannot collect CSR extensions");
    }
    return ok();
  };
  if (request.tnAuthListDer) {
    if (auto r = push(tnAuthListExtension(*request.tnAuthListDer)); !r) {
      return fail(r.error());
    }
  }
  if (!request.dnsNames.empty()) {
    if (auto r = push(sanExtension(request.dnsNames)); !r) {
      return fail(r.error());
    }
  }
  if (request.ca) {
    if (auto r = push(basicConstraintsCa()); !r) {
      return fail(r.error());
    }
  }
  if (sk_X509_EXTENSION_num(exts.get()) > 0 && X509_REQ_add_extensions(req.get(), exts.get()) != 1) {
    return ossl::failSsl("cannot add CSR extensions");
  }

  // Signature algorithm first: it is not part of the signed CertificationRequestInfo,
  // but set it before encoding so the final DER is complete.
  X509_ALGOR* alg = X509_ALGOR_new();
  if (alg == nullptr || X509_ALGOR_set0(alg, OBJ_nid2obj(NID_ecdsa_with_SHA256), V_ASN1_UNDEF, nullptr) != 1 ||
      X509_REQ_set1_signature_algo(req.get(), alg) != 1) {
    X509_ALGOR_free(alg);
    return ossl::failSsl("cannot set the CSR signature algorithm");
  }
  X509_ALGOR_free(alg);

  unsigned char* tbs = nullptr;
  int tbsLen = i2d_re_X509_REQ_tbs(req.get(), &tbs);
  if (tbsLen <= 0) {
    return ossl::failSsl("cannot encode CertificationRequestInfo");
  }
  Digest digest = sha256(ByteView(tbs, static_cast<size_t>(tbsLen)));
  OPENSSL_free(tbs);

  auto raw = signer.signDigest(digest);
  if (!raw) {
    return fail(raw.error());
  }
  auto sigDer = rawSignatureToDer(*raw);
  if (!sigDer) {
    return fail(sigDer.error());
  }
  ASN1_BIT_STRING* sig = ASN1_BIT_STRING_new();
  if (sig == nullptr || ASN1_BIT_STRING_set(sig, sigDer->data(), static_cast<int>(sigDer->size())) != 1) {
    ASN1_BIT_STRING_free(sig);
    return ossl::failSsl("cannot store the CSR signature");
  }
  sig->flags &= ~(ASN1_STRING_FLAG_BITS_LEFT | 0x07);
  sig->flags |= ASN1_STRING_FLAG_BITS_LEFT;
  X509_REQ_set0_signature(req.get(), sig);

  int len = i2d_X509_REQ(req.get(), nullptr);
  if (len <= 0) {
    return ossl::failSsl("cannot encode the CSR");
  }
  Bytes out(static_cast<size_t>(len));
  unsigned char* q = out.data();
  i2d_X509_REQ(req.get(), &q);
  return out;
}

std::string derToPem(ByteView der, std::string_view label) {
  std::string b64 = base64Encode(der);
  std::string out = "-----BEGIN " + std::string(label) + "-----\n";
  for (std::size_t i = 0; i < b64.size(); i += 64) {
    out += b64.substr(i, 64);
    out += '\n';
  }
  out += "-----END " + std::string(label) + "-----\n";
  return out;
}

}  // namespace kms::pki
