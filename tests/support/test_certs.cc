#include "test_certs.h"

#include <openssl/bio.h>
#include <openssl/conf.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <memory>
#include <stdexcept>

namespace kms::test {
namespace {

[[noreturn]] void opensslFailed(const std::string& what) {
  char reason[256] = "no reason given";
  unsigned long code = ERR_get_error();
  if (code != 0) {
    ERR_error_string_n(code, reason, sizeof reason);
  }
  ERR_clear_error();
  throw std::runtime_error("test certificate: " + what + ": " + reason);
}

EVP_PKEY* pkeyOf(const TestKey& k) { return static_cast<EVP_PKEY*>(k.native()); }

struct Freer {
  void operator()(X509* x) const { X509_free(x); }
  void operator()(BIO* b) const { BIO_free(b); }
  void operator()(CONF* c) const { NCONF_free(c); }
  void operator()(X509_EXTENSION* e) const { X509_EXTENSION_free(e); }
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
template <typename T>
using Owned = std::unique_ptr<T, Freer>;

std::string hexBytes(const std::string& bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    if (!out.empty()) {
      out += ':';
    }
    out += kHex[c >> 4];
    out += kHex[c & 0x0f];
  }
  return out;
}

}  // namespace

TestKey::TestKey(const char* curve) : pkey_(EVP_EC_gen(curve)) {
  if (pkey_ == nullptr) {
    opensslFailed(std::string("EVP_EC_gen ") + curve);
  }
}

TestKey::~TestKey() { EVP_PKEY_free(static_cast<EVP_PKEY*>(pkey_)); }

TestKey::TestKey(TestKey&& other) noexcept : pkey_(std::exchange(other.pkey_, nullptr)) {}

TestKey& TestKey::operator=(TestKey&& other) noexcept {
  if (this != &other) {
    EVP_PKEY_free(static_cast<EVP_PKEY*>(pkey_));
    pkey_ = std::exchange(other.pkey_, nullptr);
  }
  return *this;
}

std::string TestKey::privatePem() const {
  Owned<BIO> bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PrivateKey(bio.get(), pkeyOf(*this), nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    opensslFailed("PEM_write_bio_PrivateKey");
  }
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

CertSpec& CertSpec::set(const std::string& name, const std::string& value) {
  auto it = std::find_if(extensions.begin(), extensions.end(), [&](const auto& e) { return e.first == name; });
  if (it != extensions.end()) {
    it->second = value;
  } else {
    extensions.emplace_back(name, value);
  }
  return *this;
}

CertSpec& CertSpec::remove(const std::string& name) {
  std::erase_if(extensions, [&](const auto& e) { return e.first == name; });
  return *this;
}

namespace {

std::string buildCertPem(const CertSpec& spec, EVP_PKEY* subjectKey, EVP_PKEY* issuerKey, const std::string& issuerPem) {
  Owned<X509> issuer;
  if (!issuerPem.empty()) {
    Owned<BIO> in(BIO_new_mem_buf(issuerPem.data(), static_cast<int>(issuerPem.size())));
    issuer.reset(PEM_read_bio_X509(in.get(), nullptr, nullptr, nullptr));
    if (!issuer) {
      opensslFailed("issuer PEM");
    }
  }
  Owned<X509> x(X509_new());
  X509_set_version(x.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x.get()), spec.serial);
  X509_gmtime_adj(X509_getm_notBefore(x.get()), spec.notBeforeSeconds);
  if (spec.notAfterTime.empty()) {
    X509_gmtime_adj(X509_getm_notAfter(x.get()), spec.notAfterSeconds);
  } else if (ASN1_TIME_set_string(X509_getm_notAfter(x.get()), spec.notAfterTime.c_str()) != 1) {
    opensslFailed("notAfter " + spec.notAfterTime);
  }
  for (const auto& [field, value] : spec.subject) {
    if (X509_NAME_add_entry_by_txt(X509_get_subject_name(x.get()), field.c_str(), MBSTRING_UTF8,
                                   reinterpret_cast<const unsigned char*>(value.c_str()), -1, -1, 0) != 1) {
      opensslFailed("subject field " + field);
    }
  }
  X509_set_issuer_name(x.get(), issuer ? X509_get_subject_name(issuer.get()) : X509_get_subject_name(x.get()));
  X509_set_pubkey(x.get(), subjectKey);

  Owned<CONF> conf(NCONF_new(nullptr));
  if (!spec.sections.empty()) {
    Owned<BIO> text(BIO_new_mem_buf(spec.sections.data(), static_cast<int>(spec.sections.size())));
    long line = 0;
    if (NCONF_load_bio(conf.get(), text.get(), &line) != 1) {
      opensslFailed("sections, line " + std::to_string(line));
    }
  }
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer ? issuer.get() : x.get(), x.get(), nullptr, nullptr, 0);
  X509V3_set_nconf(&ctx, conf.get());
  for (const auto& [name, value] : spec.extensions) {
    Owned<X509_EXTENSION> ext(X509V3_EXT_nconf(conf.get(), &ctx, name.c_str(), value.c_str()));
    if (!ext || X509_add_ext(x.get(), ext.get(), -1) != 1) {
      opensslFailed(std::string("extension ").append(name).append(" = ").append(value));
    }
  }
  const EVP_MD* md = EVP_get_digestbyname(spec.digest.c_str());
  if (md == nullptr || X509_sign(x.get(), issuerKey, md) == 0) {
    opensslFailed("X509_sign with " + spec.digest);
  }
  Owned<BIO> out(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509(out.get(), x.get());
  char* data = nullptr;
  long len = BIO_get_mem_data(out.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

}  // namespace

std::string makeCertPem(const CertSpec& spec, const TestKey& subjectKey, const TestKey& issuerKey,
                        const std::string& issuerPem) {
  return buildCertPem(spec, pkeyOf(subjectKey), pkeyOf(issuerKey), issuerPem);
}

std::string makeCertPemFor(const CertSpec& spec, const std::string& subjectSpkiDer, void* issuerKey,
                           const std::string& issuerPem) {
  const auto* p = reinterpret_cast<const unsigned char*>(subjectSpkiDer.data());
  Owned<EVP_PKEY> subject(d2i_PUBKEY(nullptr, &p, static_cast<long>(subjectSpkiDer.size())));
  if (!subject) {
    opensslFailed("subject SubjectPublicKeyInfo");
  }
  return buildCertPem(spec, subject.get(), static_cast<EVP_PKEY*>(issuerKey), issuerPem);
}

CertSpec caSpec(const std::string& cn) {
  CertSpec s;
  s.subject = {{"CN", cn}};
  s.extensions = {{"basicConstraints", "critical,CA:TRUE"},
                  {"keyUsage", "critical,keyCertSign,cRLSign"},
                  {"subjectKeyIdentifier", "hash"},
                  {"authorityKeyIdentifier", "keyid:always"}};
  s.notBeforeSeconds = -3600;
  s.notAfterSeconds = 30L * 86400;
  return s;
}

std::string tnAuthListSpcDer(const std::string& spc) {
  // SEQUENCE { [0] EXPLICIT { IA5String spc } }, each length in one byte (spc is short).
  std::string ia5 = std::string("\x16", 1) + static_cast<char>(spc.size()) + spc;
  std::string tagged = std::string("\xa0", 1) + static_cast<char>(ia5.size()) + ia5;
  std::string seq = std::string("\x30", 1) + static_cast<char>(tagged.size()) + tagged;
  return "DER:" + hexBytes(seq);
}

CertSpec shakenLeafSpec(const std::string& spc) {
  CertSpec s;
  s.subject = {{"CN", "SHAKEN " + spc}, {"O", "Test Carrier"}, {"C", "US"}};
  s.extensions = {{"basicConstraints", "critical,CA:FALSE"},
                  {"keyUsage", "critical,digitalSignature"},
                  {"certificatePolicies", "2.16.840.1.114569.1.1.3"},
                  {"crlDistributionPoints", "crl_point"},
                  {"subjectKeyIdentifier", "hash"},
                  {"authorityKeyIdentifier", "keyid:always"},
                  {"1.3.6.1.5.5.7.1.26", tnAuthListSpcDer(spc)}};
  s.sections =
      "[crl_point]\n"
      "fullname = URI:https://sti-pa.test/crl\n"
      "CRLissuer = dirName:crl_issuer\n"
      "[crl_issuer]\n"
      "CN = Test STI-PA CRL\n";
  return s;
}

}  // namespace kms::test
