#pragma once
/// @file Text from outside (a CA's problem detail, a hook's output, a certificate name)
/// made safe before it reaches a log line, the state DB or a terminal.

#include <cstddef>
#include <string>
#include <string_view>

namespace kms {

/// Control characters and DEL as `\xNN` (no escape sequence, no forged second line), cut
/// after `maxBytes` of output with "..." appended.
[[nodiscard]] std::string escapeControl(std::string_view text, std::size_t maxBytes = 2048);

}  // namespace kms
