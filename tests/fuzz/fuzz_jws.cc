// Fuzzes the JWS parsers used for SPC tokens, EAB and challenge responses: parseCompactJws
// and parseFlattenedJws on the same input.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include <nlohmann/json.hpp>

#include "fuzz_check.h"
#include "pki/jose.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);

  if (auto jws = kms::pki::parseCompactJws(text)) {
    // The signature covers the first two parts exactly as sent.
    std::size_t lastDot = text.rfind('.');
    KMS_FUZZ_CHECK(text.substr(0, lastDot) == jws->signingInput, "compact signing input must be the sent bytes");
    KMS_FUZZ_CHECK(nlohmann::json::accept(jws->protectedJson), "an accepted protected header must be JSON");
  }

  if (auto jws = kms::pki::parseFlattenedJws(text)) {
    KMS_FUZZ_CHECK(jws->signingInput.find('.') != std::string_view::npos, "signing input must hold a '.'");
    KMS_FUZZ_CHECK(nlohmann::json::accept(jws->protectedJson), "an accepted protected header must be JSON");
  }
  return 0;
}
