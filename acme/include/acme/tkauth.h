#pragma once
/// @file tkauth-01 (RFC 9447/9448): the challenge is answered with {"atc": <SPC token>}
/// (or {"tkauth": …} for servers built on RFC 9447's generic example, docs/protocols.md). Where the
/// token comes from is not ACME's business: an SpcTokenSource supplies it (kmsd adapts its
/// STI-PA client), so acme/ and sti_pa/ do not include each other.

#include <string>

#include "acme/issuer.h"

namespace kms::acme {

/// Supplies SPC tokens for the ACME account in use.
class SpcTokenSource {
 public:
  virtual ~SpcTokenSource() = default;
  /// A verified SPC token (compact JWS) for `spc`, bound to the account key, not handed out
  /// before (a CA may treat its jti as single use).
  [[nodiscard]] virtual Result<std::string> spcToken(const std::string& spc) = 0;
};

class TkauthSolver : public ChallengeSolver {
 public:
  explicit TkauthSolver(SpcTokenSource& tokens, std::string member = "atc")
      : tokens_(tokens), member_(std::move(member)) {}
  /// Errc::unsupported when the authorization is not for a TNAuthList with one SPC or the
  /// challenge asks for another tkauth-type; the token source's errors as they are.
  [[nodiscard]] Result<std::string> present(const Authorization& authz, const Challenge& challenge,
                                            const std::string& keyAuthorization) override;
  void cleanup(const Authorization& authz, const Challenge& challenge, const std::string& keyAuthorization) override;

 private:
  SpcTokenSource& tokens_;
  std::string member_;
};

}  // namespace kms::acme
