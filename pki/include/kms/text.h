#pragma once
/// @file Text from outside (a CA's problem detail, a hook's output, a certificate name)
/// made safe before it reaches a log line, the state DB or a terminal.

#include <cstddef>
#include <string>
#include <string_view>

namespace kms {

/// C0 control characters and DEL as `\xNN`, C1 control characters (U+0080..U+009F, e.g.
/// U+009B, a one-character CSI) as `\u00NN`, and bytes that are not well-formed UTF-8 as
/// `\xNN`: no escape sequence, no forged second line, and the result is always UTF-8. Cut
/// after `maxBytes` of output with "..." appended.
[[nodiscard]] std::string escapeControl(std::string_view text, std::size_t maxBytes = 2048);

/// `text` without leading and trailing spaces and tabs.
[[nodiscard]] std::string_view trimBlanks(std::string_view text);

/// Whether `a` and `b` are equal but for the case of ASCII letters (header names, an HTTP
/// auth scheme, DNS names).
[[nodiscard]] bool equalsIgnoreCase(std::string_view a, std::string_view b);

}  // namespace kms
