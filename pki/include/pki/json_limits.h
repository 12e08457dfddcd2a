#pragma once
/// @file Limits applied to JSON from outside (a CA, the STI-PA, the control socket) before
/// it is parsed: nlohmann::json parses and re-serializes recursively, so an 800 KB body
/// nested 400,000 levels deep would overflow the stack, and a million-key object would
/// take hundreds of MB. One linear scan, no recursion, no allocation.

#include <cstddef>
#include <string_view>

#include "kms/error.h"

namespace kms::pki {

inline constexpr std::size_t kMaxJsonDepth = 32;
inline constexpr std::size_t kMaxJsonValues = 100000;

/// Errc::protocol "JSON nested deeper than N levels" or "JSON holds more than N values"
/// (members and array elements counted); ok for text within both (or not JSON at all: the
/// parser reports that).
[[nodiscard]] Result<void> checkJsonLimits(std::string_view text, std::size_t maxDepth = kMaxJsonDepth,
                                           std::size_t maxValues = kMaxJsonValues);

}  // namespace kms::pki
