#pragma once
// ISO 8601 UTC text for unix seconds, as kmsd and kmsctl print times.

#include <cstdint>
#include <ctime>
#include <string>

namespace kms::daemon {

inline std::string isoTime(std::int64_t t) {
  std::time_t tt = static_cast<std::time_t>(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[32];
  if (std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) {
    return std::to_string(t);
  }
  return buf;
}

}  // namespace kms::daemon
