// Fuzzes what the ACME client reads from a CA: the first byte selects which object parser
// (directory, account, order, authorization, challenge, renewalInfo) gets the rest as its
// body. The rest is also fed to problemError (as an error response body, its first line as
// the Retry-After header), parseRetryAfter and parseRfc3339.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

#include "acme/client.h"
#include "http/transport.h"
#include "fuzz_check.h"
#include "objects.h"

namespace {

constexpr const char* kUrl = "https://ca.example/acme/fuzz";

void parseObject(std::uint8_t selector, const std::string& body) {
  namespace detail = kms::acme::detail;
  switch (selector % 6) {
    case 0:
      (void)detail::parseDirectory(body, kUrl);
      break;
    case 1:
      (void)detail::parseAccount(body, kUrl);
      break;
    case 2:
      (void)detail::parseOrder(body, kUrl);
      break;
    case 3:
      (void)detail::parseAuthorization(body, kUrl);
      break;
    case 4:
      (void)detail::parseChallenge(body, kUrl);
      break;
    default:
      if (auto info = detail::parseRenewalInfo(body, kUrl)) {
        KMS_FUZZ_CHECK(info->windowStart < info->windowEnd, "a renewal window must end after it starts");
      }
      break;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) {
    return 0;
  }
  const std::uint8_t selector = data[0];
  std::string body(reinterpret_cast<const char*>(data + 1), size - 1);

  parseObject(selector, body);

  kms::http::HttpResponse response;
  response.status = 400 + (selector >> 3) * 3;  // 400 .. 493, including 429
  response.headers.emplace_back("content-type", "application/problem+json");
  response.headers.emplace_back("retry-after", body.substr(0, body.find('\n')));
  response.body = body;
  kms::Error error = kms::acme::problemError(response, kUrl);
  KMS_FUZZ_CHECK(!error.nativeName.empty(), "a problem must name its type or HTTP status");
  (void)error.toString();

  const auto now = std::chrono::system_clock::now();
  if (auto delay = kms::acme::parseRetryAfter(body, now)) {
    KMS_FUZZ_CHECK(delay->count() >= 0, "Retry-After must not be negative");
  }
  (void)kms::acme::detail::parseRfc3339(body);
  return 0;
}
