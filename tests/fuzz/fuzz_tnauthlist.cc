// Fuzzes TnAuthList::fromDer and fromIdentifierValue (the TNAuthList identifier of an ACME
// order and the certificate extension). A list that parses must encode back to the same DER:
// the CSR extension has to be byte-identical to the identifier (RFC 9448).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "fuzz_check.h"
#include "pki/tn_auth_list.h"

namespace {

void checkRoundTrip(const kms::pki::TnAuthList& list) {
  auto der = list.toDer();
  KMS_FUZZ_CHECK(der.has_value(), "a parsed TNAuthList must encode");
  auto again = kms::pki::TnAuthList::fromDer(*der);
  KMS_FUZZ_CHECK(again.has_value(), "the encoding of a parsed TNAuthList must parse");
  KMS_FUZZ_CHECK(*again == list, "decode(encode(list)) must equal list");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  kms::pki::ByteView input(data, size);
  if (auto list = kms::pki::TnAuthList::fromDer(input)) {
    auto der = list->toDer();
    KMS_FUZZ_CHECK(der.has_value(), "a TNAuthList that fromDer accepts must encode");
    KMS_FUZZ_CHECK(kms::pki::Bytes(input.begin(), input.end()) == *der, "toDer(fromDer(x)) must equal x");
    checkRoundTrip(*list);
    (void)list->singleSpc();
  }

  std::string_view text(reinterpret_cast<const char*>(data), size);
  if (auto list = kms::pki::TnAuthList::fromIdentifierValue(text)) {
    checkRoundTrip(*list);
  }
  return 0;
}
