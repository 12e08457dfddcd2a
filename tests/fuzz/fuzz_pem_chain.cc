// Fuzzes parsePemChain, which reads the certificate chain downloaded from the CA and the
// configured trust anchors, then every accessor the daemon uses on such a certificate.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "fuzz_check.h"
#include "pki/tn_auth_list.h"
#include "pki/x509.h"

namespace {

void inspect(const kms::pki::Certificate& cert) {
  (void)cert.subject();
  (void)cert.issuer();
  (void)cert.subjectField("CN");
  (void)cert.notBefore();
  (void)cert.notAfter();
  (void)cert.serialContent();
  (void)cert.serialHex();
  (void)cert.spkiDer();
  (void)cert.extensionCritical(kms::pki::kTnAuthListOid);
  (void)cert.dnsNames();
  (void)cert.authorityKeyId();
  (void)cert.ariCertId();
  if (auto tn = cert.tnAuthListDer()) {
    (void)kms::pki::TnAuthList::fromDer(*tn);
  }
  auto der = cert.der();
  auto again = kms::pki::Certificate::fromDer(der);
  KMS_FUZZ_CHECK(again.has_value(), "the DER of a parsed certificate must parse");
  KMS_FUZZ_CHECK(again->der() == der, "certificate DER must be stable");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto chain = kms::pki::parsePemChain(text);
  if (!chain) {
    return 0;
  }
  KMS_FUZZ_CHECK(!chain->empty(), "a parsed chain must hold a certificate");
  for (const auto& cert : *chain) {
    inspect(cert);
  }
  return 0;
}
