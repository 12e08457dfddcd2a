#pragma once
// Private: JSON → ACME objects, with errors that name the URL and the member.

#include <string>

#include "acme/client.h"

namespace kms::acme::detail {

[[nodiscard]] Result<Directory> parseDirectory(const std::string& body, const std::string& url);
[[nodiscard]] Result<Account> parseAccount(const std::string& body, const std::string& url);
[[nodiscard]] Result<Order> parseOrder(const std::string& body, const std::string& url);
[[nodiscard]] Result<Authorization> parseAuthorization(const std::string& body, const std::string& url);
[[nodiscard]] Result<Challenge> parseChallenge(const std::string& body, const std::string& url);
[[nodiscard]] Result<RenewalInfo> parseRenewalInfo(const std::string& body, const std::string& url);
/// RFC 3339 timestamp ("2026-11-23T12:00:00Z", fractional seconds and offsets accepted).
[[nodiscard]] std::optional<pki::SystemTime> parseRfc3339(const std::string& text);

}  // namespace kms::acme::detail
