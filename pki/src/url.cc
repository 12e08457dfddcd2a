#include "kms/url.h"

#include <algorithm>
#include <cctype>

namespace kms {

std::string urlOrigin(std::string_view url) {
  auto lower = [](std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
    return s;
  };
  auto colon = url.find("://");
  if (colon == std::string_view::npos) {
    return {};
  }
  const std::string scheme = lower(std::string(url.substr(0, colon)));
  if (scheme != "https" && scheme != "http") {
    return {};
  }
  std::string authority = lower(std::string(url.substr(colon + 3, url.find_first_of("/?#", colon + 3) - (colon + 3))));
  if (authority.empty() || authority.find('@') != std::string::npos) {
    return {};
  }
  const bool hasPort = authority.back() != ']' && authority.rfind(':') != std::string::npos &&
                       (authority.front() != '[' || authority.rfind(':') > authority.find(']'));
  if (!hasPort) {
    authority += scheme == "https" ? ":443" : ":80";
  }
  return scheme + "://" + authority;
}

}  // namespace kms
