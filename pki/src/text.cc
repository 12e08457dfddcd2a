#include "kms/text.h"

#include <algorithm>

namespace kms {

namespace {

/// The length of the well-formed UTF-8 sequence at the start of `t` (RFC 3629: no overlong
/// form, no surrogate, at most U+10FFFF), or 0 when it is not one.
std::size_t utf8Length(std::string_view t) {
  const auto b = [&](std::size_t i) { return static_cast<unsigned char>(t[i]); };
  const auto cont = [&](std::size_t i) { return i < t.size() && (b(i) & 0xC0U) == 0x80U; };
  const unsigned char c = b(0);
  if (c >= 0xC2 && c <= 0xDF) {
    return cont(1) ? 2 : 0;
  }
  if (c >= 0xE0 && c <= 0xEF) {
    if (!cont(1) || !cont(2) || (c == 0xE0 && b(1) < 0xA0) || (c == 0xED && b(1) > 0x9F)) {
      return 0;
    }
    return 3;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    if (!cont(1) || !cont(2) || !cont(3) || (c == 0xF0 && b(1) < 0x90) || (c == 0xF4 && b(1) > 0x8F)) {
      return 0;
    }
    return 4;
  }
  return 0;
}

/// `\xNN` for a byte, `\u00NN` for a C1 control (value 0x80..0x9f).
void appendEscape(std::string& out, bool unicode, unsigned value) {
  static constexpr char kHex[] = "0123456789abcdef";
  out += unicode ? "\\u00" : "\\x";
  out += kHex[(value >> 4U) & 0xFU];
  out += kHex[value & 0xFU];
}

}  // namespace

std::string escapeControl(std::string_view text, std::size_t maxBytes) {
  std::string out;
  out.reserve(std::min(text.size(), maxBytes));
  for (std::size_t i = 0; i < text.size();) {
    if (out.size() >= maxBytes) {
      out += "...";
      break;
    }
    const auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x80) {
      if (c < 0x20 || c == 0x7f) {
        appendEscape(out, false, c);
      } else {
        out += static_cast<char>(c);
      }
      ++i;
      continue;
    }
    const std::size_t n = utf8Length(text.substr(i));
    if (n == 0) {
      appendEscape(out, false, c);  // not UTF-8: the byte, escaped
      ++i;
    } else if (n == 2 && c == 0xC2 && static_cast<unsigned char>(text[i + 1]) < 0xA0) {
      appendEscape(out, true, static_cast<unsigned char>(text[i + 1]));  // C1 control (U+0080..U+009F)
      i += 2;
    } else {
      out.append(text.substr(i, n));
      i += n;
    }
  }
  return out;
}

std::string_view trimBlanks(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) {
    text.remove_prefix(1);
  }
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) {
    text.remove_suffix(1);
  }
  return text;
}

bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  const auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; };
  return std::equal(a.begin(), a.end(), b.begin(), b.end(), [&](char x, char y) { return lower(x) == lower(y); });
}

}  // namespace kms
