#include "shaken_issuer.h"

#include <chrono>

#include "pki/tn_auth_list.h"

namespace kms::lab {

namespace {
constexpr const char* kCertificatePolicy = "2.16.840.1.114569.1.1.1";
}

Result<pki::Certificate> issueShakenCertificate(const LabContext& ctx, const CsrInfo& csr, const std::string& spc,
                                                const pki::Bytes& tnAuthListDer) {
  pki::Bytes tn = tnAuthListDer;
  if (ctx.options.wrongTnAuthList) {
    auto other = pki::TnAuthList::forSpc(spc == "9999" ? "9998" : "9999").toDer();
    if (!other) {
      return fail(other.error());
    }
    tn = *other;
  }
  auto cdp = crlDistributionPointsDer(ctx.crlUrl(), ctx.pki->stiPaCrl->cert);
  if (!cdp) {
    return fail(cdp.error());
  }
  auto policies = certificatePoliciesDer(kCertificatePolicy);
  if (!policies) {
    return fail(policies.error());
  }
  auto now = std::chrono::system_clock::now();
  const std::string& broken = ctx.options.breakProfile;
  std::vector<RawExtension> extensions{{"2.5.29.32", *policies, false}, {"2.5.29.31", *cdp, false},
                                    {pki::kTnAuthListOid, tn, false}};
  if (broken == "no-policy" || broken == "no-crl-dp") {
    extensions.erase(extensions.begin() + (broken == "no-policy" ? 0 : 1));
  }
  const std::string keyUsage =
      broken == "key-usage" ? "critical,digitalSignature,keyEncipherment" : "critical,digitalSignature";
  CertSpec spec{{{"C", csr.country.value_or("US")},
                 {"O", csr.organization.value_or("kms-lab subscriber")},
                 {"CN", "SHAKEN " + spc}},
                csr.key,
                &ctx.pki->stiCaIntermediate->cert,
                ctx.pki->stiCaIntermediate->key.get(),
                now,
                now + std::chrono::seconds(ctx.options.certLifetime),
                {{"basicConstraints", "critical,CA:FALSE"}, {"keyUsage", keyUsage}},
                extensions,
                true};
  return buildCertificate(spec);
}

}  // namespace kms::lab
