#pragma once
/// @file URL origins, for the rules on which URLs a peer may hand back.

#include <string>
#include <string_view>

namespace kms {

/// "scheme://host:port" of an absolute http or https URL, lower-cased, with the default
/// port made explicit; empty for anything else (no scheme, another scheme, userinfo).
[[nodiscard]] std::string urlOrigin(std::string_view url);

}  // namespace kms
