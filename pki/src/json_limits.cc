#include "pki/json_limits.h"

#include <string>

namespace kms::pki {

Result<void> checkJsonLimits(std::string_view text, std::size_t maxDepth, std::size_t maxValues) {
  std::size_t depth = 0;
  std::size_t values = 1;
  bool inString = false;
  bool escaped = false;
  for (char c : text) {
    if (inString) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        inString = false;
      }
      continue;
    }
    switch (c) {
      case '"':
        inString = true;
        break;
      case '{':
      case '[':
        if (++depth > maxDepth) {
          return fail(Errc::protocol, "JSON nested deeper than " + std::to_string(maxDepth) + " levels");
        }
        break;
      case '}':
      case ']':
        if (depth > 0) {
          --depth;
        }
        break;
      case ',':
        if (++values > maxValues) {
          return fail(Errc::protocol, "JSON holds more than " + std::to_string(maxValues) + " values");
        }
        break;
      default:
        break;
    }
  }
  return ok();
}

}  // namespace kms::pki
