// Fuzzes Pkcs11Uri::parse (RFC 7512). A URI that parses must survive toString(): parsing the
// formatted text gives back an equal URI.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "fuzz_check.h"
#include "hsm/pkcs11_uri.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto uri = kms::hsm::Pkcs11Uri::parse(text);
  if (!uri) {
    return 0;
  }
  const std::string formatted = uri->toString();
  auto again = kms::hsm::Pkcs11Uri::parse(formatted);
  KMS_FUZZ_CHECK(again.has_value(), "toString() of a parsed URI must parse");
  KMS_FUZZ_CHECK(*again == *uri, "parse(toString(uri)) must equal uri");
  KMS_FUZZ_CHECK(again->toString() == formatted, "toString() must be stable");
  (void)uri->id();
  return 0;
}
