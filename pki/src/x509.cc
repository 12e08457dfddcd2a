#include "pki/x509.h"

#include <openssl/pem.h>

#include <fstream>
#include <sstream>

#include "openssl_util.h"
#include "pki/csr.h"
#include "pki/tn_auth_list.h"

namespace kms::pki {
namespace {

X509* raw(const std::shared_ptr<void>& p) {
  return static_cast<X509*>(p.get());
}

std::shared_ptr<void> own(X509* x) {
  return {x, [](void* q) { X509_free(static_cast<X509*>(q)); }};
}

SystemTime toTime(const ASN1_TIME* t) {
  struct tm tm {};
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) {
    return SystemTime{};
  }
  return fromUnixSeconds(static_cast<std::int64_t>(timegm(&tm)));
}

int extIndex(X509* x, std::string_view oid) {
  ossl::Asn1Object obj(OBJ_txt2obj(std::string(oid).c_str(), 1));
  if (!obj) {
    ERR_clear_error();
    return -1;
  }
  return X509_get_ext_by_OBJ(x, obj.get(), -1);
}

}  // namespace

Result<Certificate> Certificate::fromDer(ByteView der) {
  const unsigned char* p = der.data();
  X509* x = d2i_X509(nullptr, &p, static_cast<long>(der.size()));
  if (x == nullptr) {
    return ossl::failSsl("not a DER certificate");
  }
  if (p != der.data() + der.size()) {
    X509_free(x);
    return fail(Errc::invalidArgument, "trailing bytes after the certificate");
  }
  return Certificate(own(x));
}

Result<Certificate> Certificate::fromPem(std::string_view pem) {
  auto chain = parsePemChain(pem);
  if (!chain) {
    return fail(chain.error());
  }
  return chain->front();
}

Bytes Certificate::der() const {
  int len = i2d_X509(raw(x509_), nullptr);
  Bytes out(len > 0 ? static_cast<size_t>(len) : 0);
  unsigned char* p = out.data();
  if (len > 0) {
    i2d_X509(raw(x509_), &p);
  }
  return out;
}

std::string Certificate::pem() const {
  return derToPem(der(), "CERTIFICATE");
}

Bytes Certificate::spkiDer() const {
  X509_PUBKEY* pk = X509_get_X509_PUBKEY(raw(x509_));
  int len = i2d_X509_PUBKEY(pk, nullptr);
  Bytes out(len > 0 ? static_cast<size_t>(len) : 0);
  unsigned char* p = out.data();
  if (len > 0) {
    i2d_X509_PUBKEY(pk, &p);
  }
  return out;
}

std::string Certificate::subject() const {
  return ossl::nameText(X509_get_subject_name(raw(x509_)));
}
std::string Certificate::issuer() const {
  return ossl::nameText(X509_get_issuer_name(raw(x509_)));
}

std::optional<std::string> Certificate::subjectField(std::string_view shortName) const {
  int nid = OBJ_txt2nid(std::string(shortName).c_str());
  if (nid == NID_undef) {
    return std::nullopt;
  }
  X509_NAME* name = X509_get_subject_name(raw(x509_));
  int idx = X509_NAME_get_index_by_NID(name, nid, -1);
  if (idx < 0) {
    return std::nullopt;
  }
  ASN1_STRING* data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, idx));
  unsigned char* utf8 = nullptr;
  int len = ASN1_STRING_to_UTF8(&utf8, data);
  if (len < 0) {
    ERR_clear_error();
    return std::nullopt;
  }
  std::string out(reinterpret_cast<char*>(utf8), static_cast<size_t>(len));
  OPENSSL_free(utf8);
  return out;
}

SystemTime Certificate::notBefore() const {
  return toTime(X509_get0_notBefore(raw(x509_)));
}
SystemTime Certificate::notAfter() const {
  return toTime(X509_get0_notAfter(raw(x509_)));
}

Bytes Certificate::serialContent() const {
  const ASN1_INTEGER* serial = X509_get0_serialNumber(raw(x509_));
  int len = i2d_ASN1_INTEGER(serial, nullptr);
  Bytes der(len > 0 ? static_cast<size_t>(len) : 0);
  unsigned char* p = der.data();
  if (len > 0) {
    i2d_ASN1_INTEGER(serial, &p);
  }
  // Strip tag and length: serials are at most 20 octets, so the length is one byte.
  if (der.size() < 2) {
    return {};
  }
  return Bytes(der.begin() + 2, der.end());
}

std::string Certificate::serialHex() const {
  Bytes c = serialContent();
  std::size_t skip = (c.size() > 1 && c[0] == 0) ? 1 : 0;
  return hexEncode(ByteView(c).subspan(skip));
}

std::optional<Bytes> Certificate::extensionValue(std::string_view oid) const {
  int idx = extIndex(raw(x509_), oid);
  if (idx < 0) {
    return std::nullopt;
  }
  const ASN1_OCTET_STRING* v = X509_EXTENSION_get_data(X509_get_ext(raw(x509_), idx));
  const unsigned char* d = ASN1_STRING_get0_data(v);
  return Bytes(d, d + ASN1_STRING_length(v));
}

std::optional<bool> Certificate::extensionCritical(std::string_view oid) const {
  int idx = extIndex(raw(x509_), oid);
  if (idx < 0) {
    return std::nullopt;
  }
  return X509_EXTENSION_get_critical(X509_get_ext(raw(x509_), idx)) == 1;
}

std::optional<Bytes> Certificate::tnAuthListDer() const {
  return extensionValue(kTnAuthListOid);
}

std::vector<std::string> Certificate::dnsNames() const {
  std::vector<std::string> out;
  ossl::GeneralNames gens(
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(raw(x509_), NID_subject_alt_name, nullptr, nullptr)));
  if (!gens) {
    return out;
  }
  for (int i = 0; i < sk_GENERAL_NAME_num(gens.get()); ++i) {
    const GENERAL_NAME* g = sk_GENERAL_NAME_value(gens.get(), i);
    if (g->type == GEN_DNS) {
      const unsigned char* d = ASN1_STRING_get0_data(g->d.dNSName);
      out.emplace_back(reinterpret_cast<const char*>(d), static_cast<size_t>(ASN1_STRING_length(g->d.dNSName)));
    }
  }
  return out;
}

std::optional<Bytes> Certificate::authorityKeyId() const {
  const ASN1_OCTET_STRING* id = X509_get0_authority_key_id(raw(x509_));
  if (id == nullptr) {
    return std::nullopt;
  }
  const unsigned char* d = ASN1_STRING_get0_data(id);
  return Bytes(d, d + ASN1_STRING_length(id));
}

Result<std::string> Certificate::ariCertId() const {
  auto aki = authorityKeyId();
  if (!aki) {
    return fail(Errc::invalidArgument, "certificate has no authorityKeyIdentifier keyIdentifier");
  }
  return base64UrlEncode(*aki) + "." + base64UrlEncode(serialContent());
}

bool Certificate::hasPublicKey(const EcPublicKey& key) const {
  return spkiDer() == key.spkiDer();
}

Result<std::vector<Certificate>> readPemFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  if (!in || !(text << in.rdbuf())) {
    return fail(Errc::io, "cannot read PEM file", path);
  }
  auto certs = parsePemChain(text.str());
  if (!certs) {
    Error e = certs.error();
    e.context = path;
    return fail(e);
  }
  return certs;
}

Result<std::vector<Certificate>> parsePemChain(std::string_view pem) {
  ossl::Bio bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) {
    return ossl::failSsl("BIO_new_mem_buf failed");
  }
  std::vector<Certificate> out;
  while (true) {
    char* name = nullptr;
    char* header = nullptr;
    unsigned char* data = nullptr;
    long len = 0;
    if (PEM_read_bio(bio.get(), &name, &header, &data, &len) != 1) {
      unsigned long e = ERR_peek_last_error();
      if (ERR_GET_REASON(e) == PEM_R_NO_START_LINE) {
        ERR_clear_error();
        break;
      }
      return ossl::failSsl("malformed PEM block " + std::to_string(out.size() + 1));
    }
    std::string label(name);
    OPENSSL_free(name);
    OPENSSL_free(header);
    Bytes der(data, data + len);
    OPENSSL_free(data);
    if (label != "CERTIFICATE") {
      continue;
    }
    auto cert = Certificate::fromDer(der);
    if (!cert) {
      Error e = cert.error();
      e.context = "PEM certificate " + std::to_string(out.size() + 1);
      return fail(e);
    }
    out.push_back(std::move(*cert));
  }
  if (out.empty()) {
    return fail(Errc::invalidArgument, "no CERTIFICATE block in PEM");
  }
  return out;
}

Result<void> verifyChain(const std::vector<Certificate>& chain, const std::vector<Certificate>& anchors,
                         SystemTime at) {
  if (chain.empty()) {
    return fail(Errc::invalidArgument, "empty certificate chain");
  }
  if (anchors.empty()) {
    return fail(Errc::invalidArgument, "no trust anchors to verify the chain against");
  }
  ossl::X509Store store(X509_STORE_new());
  ossl::X509StackShallow untrusted(sk_X509_new_null());
  if (!store || !untrusted) {
    return ossl::failSsl("cannot allocate X509 store");
  }
  for (const Certificate& a : anchors) {
    if (X509_STORE_add_cert(store.get(), static_cast<X509*>(a.native())) != 1) {
      return ossl::failSsl("cannot add trust anchor");
    }
  }
  for (std::size_t i = 1; i < chain.size(); ++i) {
    sk_X509_push(untrusted.get(), static_cast<X509*>(chain[i].native()));
  }
  ossl::X509StoreCtx ctx(X509_STORE_CTX_new());
  if (!ctx ||
      X509_STORE_CTX_init(ctx.get(), store.get(), static_cast<X509*>(chain[0].native()), untrusted.get()) != 1) {
    return ossl::failSsl("cannot initialise chain verification");
  }
  X509_STORE_CTX_set_time(ctx.get(), 0, std::chrono::system_clock::to_time_t(at));
  int rc = X509_verify_cert(ctx.get());
  if (rc != 1) {
    int err = X509_STORE_CTX_get_error(ctx.get());
    int depth = X509_STORE_CTX_get_error_depth(ctx.get());
    ERR_clear_error();
    Error e{Errc::crypto,
            std::string("chain does not verify: ") + X509_verify_cert_error_string(err) + " at depth " +
                std::to_string(depth),
            {},
            err,
            "X509_V_ERR " + std::to_string(err),
            Disposition::retry,
            std::nullopt};
    return fail(e);
  }
  return ok();
}

}  // namespace kms::pki
