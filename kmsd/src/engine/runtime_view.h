#pragma once
// The engine's in-memory view of one certificate, as status reports show it.

#include <string>
#include <unordered_map>

namespace kms::daemon {

struct RuntimeView {
  std::string action = "wait";  ///< the next action planned
  std::string why;              ///< the plan's reason
  bool renewRequested = false;  ///< kmsctl renew is pending
};
using RuntimeViews = std::unordered_map<std::string, RuntimeView>;

}  // namespace kms::daemon
