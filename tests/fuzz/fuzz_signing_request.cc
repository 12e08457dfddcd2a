// Fuzzes the ATIS-1000082 signing request body kmsd's signing route reads from its clients
// (parseSigningRequest). A refusal must be a well-formed OMA REST error body; an accepted
// request must hold claims a verifier accepts, in a canonical payload that parses back.
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <variant>

#include <nlohmann/json.hpp>

#include "fuzz_check.h"
#include "pki/passport.h"
#include "signing/signing_request.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  constexpr std::int64_t kNow = 1767225600;
  auto parsed = kms::daemon::parseSigningRequest(body, kNow);
  if (const auto* e = std::get_if<kms::daemon::AtisError>(&parsed)) {
    KMS_FUZZ_CHECK(e->status >= 400 && e->status < 600, "a refusal is a 4xx or 5xx");
    const auto j = nlohmann::json::parse(e->body(), nullptr, false);
    KMS_FUZZ_CHECK(j.is_object() && j.contains("requestError"), "a refusal body is the OMA REST shape");
    return 0;
  }
  const auto& request = std::get<kms::daemon::SigningRequest>(parsed);
  KMS_FUZZ_CHECK(kms::pki::checkClaims(request.claims).has_value(), "accepted claims must pass checkClaims");
  KMS_FUZZ_CHECK(request.claims.iat >= kNow - kms::daemon::kIatWindow && request.claims.iat <= kNow + kms::daemon::kIatWindow,
                 "iat within the window");
  for (const auto& tn : request.claims.dest) {
    KMS_FUZZ_CHECK(!tn.empty() && tn.find_first_not_of("0123456789") == std::string::npos, "dest TNs are digits");
  }
  std::string payload;
  try {
    payload = kms::pki::passportPayloadJson(request.claims);
  } catch (const nlohmann::json::exception&) {
    return 0;  // text that is not UTF-8 (an rcd name): signPassport refuses it
  }
  const auto again = nlohmann::json::parse(payload, nullptr, false);
  KMS_FUZZ_CHECK(!again.is_discarded(), "the canonical payload is JSON");
  KMS_FUZZ_CHECK(again.dump() == payload, "the payload is in canonical form");
  return 0;
}
