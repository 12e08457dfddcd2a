#pragma once
// The ATIS-1000082 signing API's bodies: a signingRequest read and checked into PASSporT
// claims, the signingResponse, and the error body deployed ATIS-1000082 servers answer (the
// OMA REST shape: {"requestError":{"serviceException"|"policyException":{"messageId",
// "text","variables"}}}, `text` naming its variables %1, %2, ...). docs/protocols.md lists
// the messageIds and statuses kmsd uses.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "pki/passport.h"

namespace kms::daemon {

/// One refusal: the HTTP status and the OMA REST exception.
struct AtisError {
  int status = 400;
  std::string messageId;  ///< "SVC4001", "POL4001", ...
  std::string text;       ///< with %1, %2 for `variables`
  std::vector<std::string> variables;

  [[nodiscard]] std::string body() const;
  /// The text with its variables filled in, for logs and kmsctl.
  [[nodiscard]] std::string describe() const;
};

/// SVC4000 (400): no body. SVC4001 (400): a missing member. SVC4005 (400): a member with a
/// value kmsd refuses, and why. SVC4006 (400): not JSON (or duplicate members, or nested too
/// deep). POL4001 (401): no or wrong client credential. POL4002 (403): a certificate or
/// attestation the client may not use. SVC5000 (503): no usable certificate to sign with.
/// POL4003 (429): over the client's rate limit. SVC4004 (404): no such resource.
/// POL5000 (500): an internal error.
[[nodiscard]] AtisError missingBody();
[[nodiscard]] AtisError missingParameter(std::string name);
[[nodiscard]] AtisError invalidParameter(std::string name, std::string why);
[[nodiscard]] AtisError notJson(std::string why);
[[nodiscard]] AtisError unauthorized(std::string why);
[[nodiscard]] AtisError forbidden(std::string why);
[[nodiscard]] AtisError rateLimited(std::string client, int perSecond);
[[nodiscard]] AtisError notFound(std::string target);
[[nodiscard]] AtisError unavailable(std::string why);
[[nodiscard]] AtisError internalError(std::string why);

/// A signing request, checked: claims canonical, `iat` and `origid` filled in when absent.
struct SigningRequest {
  pki::PassportClaims claims;
  std::optional<std::string> cert;  ///< kmsd's extension: which certificate signs
};

/// The most dest TNs one request may carry.
inline constexpr std::size_t kMaxDestTns = 100;
/// How far a given iat may be from now, seconds (RFC 8224's freshness window).
inline constexpr std::int64_t kIatWindow = 60;

/// Reads `{"signingRequest":{attest, dest{tn[]}, iat?, orig{tn}, origid?, cert?, div{tn}?,
/// rcd{nam}?, crn?}}` at `now`. With `div` it asks for a diversion PASSporT (RFC 8946) and
/// must not carry attest, origid, rcd or crn. Unknown members are refused, as are duplicate
/// ones.
[[nodiscard]] std::variant<SigningRequest, AtisError> parseSigningRequest(std::string_view body, std::int64_t now);

/// {"signingResponse":{"identity":…}}
[[nodiscard]] std::string signingResponseBody(const std::string& identity);

}  // namespace kms::daemon
