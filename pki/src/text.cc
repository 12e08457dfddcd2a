#include "kms/text.h"

#include <algorithm>
#include <cstdio>

namespace kms {

std::string escapeControl(std::string_view text, std::size_t maxBytes) {
  std::string out;
  out.reserve(std::min(text.size(), maxBytes));
  for (unsigned char c : text) {
    if (out.size() >= maxBytes) {
      out += "...";
      break;
    }
    if (c < 0x20 || c == 0x7f) {
      char buf[8];
      (void)std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

}  // namespace kms
