#include "acme/tkauth.h"

#include <nlohmann/json.hpp>

#include "pki/tn_auth_list.h"

namespace kms::acme {

Result<std::string> TkauthSolver::present(const Authorization& authz, const Challenge& challenge,
                                          const std::string& /*keyAuthorization*/) {
  if (authz.identifier.type != "TNAuthList") {
    return fail(Errc::unsupported, "tkauth-01 needs a TNAuthList identifier, got " + authz.identifier.type,
                challenge.url);
  }
  if (challenge.tkauthType && *challenge.tkauthType != "atc") {
    return fail(Errc::unsupported, "tkauth-01 challenge asks for tkauth-type '" + *challenge.tkauthType + "'",
                challenge.url);
  }
  auto list = pki::TnAuthList::fromIdentifierValue(authz.identifier.value);
  if (!list || !list->singleSpc()) {
    return fail(Errc::unsupported, "tkauth-01: the identifier is not a TNAuthList with one SPC", challenge.url);
  }
  auto token = tokens_.spcToken(*list->singleSpc());
  if (!token) {
    return fail(token.error());
  }
  return nlohmann::json{{member_, *token}}.dump();
}

void TkauthSolver::cleanup(const Authorization& /*authz*/, const Challenge& /*challenge*/,
                           const std::string& /*keyAuthorization*/) {}

}  // namespace kms::acme
