#include "pki/shaken_profile.h"

#include <openssl/objects.h>

#include "openssl_util.h"
#include "pki/tn_auth_list.h"

namespace kms::pki {
namespace {

constexpr const char* kBasicConstraints = "2.5.29.19";
constexpr const char* kKeyUsage = "2.5.29.15";
constexpr const char* kCertificatePolicies = "2.5.29.32";
constexpr const char* kCrlDistributionPoints = "2.5.29.31";
constexpr const char* kSubjectKeyId = "2.5.29.14";
constexpr const char* kAuthorityKeyId = "2.5.29.35";
constexpr const char* kShakenPolicyPrefix = "2.16.840.1.114569.1.1.";

Result<void> broken(const Certificate& leaf, const std::string& rule) {
  Error e;
  e.code = Errc::protocol;
  e.message = "check profile: " + rule;
  e.context = leaf.subject();
  return fail(e);
}

}  // namespace

Result<void> checkShakenProfile(const Certificate& leaf, const std::string& spc) {
  X509* x = static_cast<X509*>(leaf.native());
  std::string wantCn = "SHAKEN " + spc;
  auto cn = leaf.subjectField("CN");
  if (!cn || *cn != wantCn) {
    return broken(leaf, "CN is '" + cn.value_or("") + "', expected '" + wantCn + "'");
  }
  if (leaf.extensionCritical(kBasicConstraints) != std::optional<bool>(true)) {
    return broken(leaf, "basicConstraints must be present and critical");
  }
  if ((X509_get_extension_flags(x) & EXFLAG_CA) != 0) {
    return broken(leaf, "basicConstraints must say cA FALSE");
  }
  if (leaf.extensionCritical(kKeyUsage) != std::optional<bool>(true)) {
    return broken(leaf, "keyUsage must be present and critical");
  }
  if (X509_get_key_usage(x) != KU_DIGITAL_SIGNATURE) {
    return broken(leaf, "keyUsage must be digitalSignature only");
  }
  if (leaf.extensionCritical(kCertificatePolicies) != std::optional<bool>(false)) {
    return broken(leaf, "certificatePolicies must be present and not critical");
  }
  {
    auto* policies = static_cast<CERTIFICATEPOLICIES*>(X509_get_ext_d2i(x, NID_certificate_policies, nullptr, nullptr));
    bool shaken = false;
    int count = policies != nullptr ? sk_POLICYINFO_num(policies) : 0;
    for (int i = 0; i < count; ++i) {
      char oid[80];
      OBJ_obj2txt(oid, sizeof oid, sk_POLICYINFO_value(policies, i)->policyid, 1);
      shaken = shaken || std::string(oid).rfind(kShakenPolicyPrefix, 0) == 0;
    }
    CERTIFICATEPOLICIES_free(policies);
    if (count != 1 || !shaken) {
      return broken(leaf, "certificatePolicies must hold exactly one SHAKEN policy (2.16.840.1.114569.1.1.x)");
    }
  }
  {
    auto* dps = static_cast<CRL_DIST_POINTS*>(X509_get_ext_d2i(x, NID_crl_distribution_points, nullptr, nullptr));
    bool good = dps != nullptr && sk_DIST_POINT_num(dps) == 1 && sk_DIST_POINT_value(dps, 0)->distpoint != nullptr &&
                sk_DIST_POINT_value(dps, 0)->distpoint->type == 0 && sk_DIST_POINT_value(dps, 0)->CRLissuer != nullptr;
    CRL_DIST_POINTS_free(dps);
    if (!leaf.extensionValue(kCrlDistributionPoints) || !good) {
      return broken(leaf, "CRL distribution points must hold one point with fullName and cRLIssuer");
    }
  }
  if (!leaf.extensionValue(kSubjectKeyId)) {
    return broken(leaf, "subjectKeyIdentifier is missing");
  }
  if (!leaf.extensionValue(kAuthorityKeyId)) {
    return broken(leaf, "authorityKeyIdentifier is missing");
  }
  auto tn = leaf.tnAuthListDer();
  if (!tn) {
    return broken(leaf, "TNAuthList is missing");
  }
  auto list = TnAuthList::fromDer(*tn);
  if (!list || list->singleSpc() != std::optional<std::string>(spc)) {
    return broken(leaf, "TNAuthList must hold exactly SPC " + spc);
  }
  if (X509_get_signature_nid(x) != NID_ecdsa_with_SHA256) {
    return broken(leaf, "signature algorithm must be ecdsa-with-SHA256");
  }
  if (!EcPublicKey::fromSpkiDer(leaf.spkiDer())) {
    return broken(leaf, "key must be EC P-256");
  }
  ERR_clear_error();
  return ok();
}

}  // namespace kms::pki
