// kmsctl revoke NAME [--reason R]
#include <algorithm>
#include <array>
#include <cctype>
#include <ostream>

#include <nlohmann/json.hpp>

#include "daemon/config_check.h"
#include "events/event_sink.h"
#include "kmsctl/client.h"
#include "kmsctl/commands.h"

namespace kms::daemon {

namespace {

/// RFC 5280 5.3.1 CRLReason names by code (7 is not used).
constexpr std::array<const char*, 11> kReasonNames{
    "unspecified",          "keyCompromise",   "cACompromise", "affiliationChanged", "superseded",        "cessationOfOperation",
    "certificateHold",      nullptr,           "removeFromCRL", "privilegeWithdrawn", "aACompromise"};

std::string lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(), [](unsigned char c) { return std::tolower(c); });
  return text;
}

}  // namespace

std::optional<int> parseRevocationReason(const std::string& text) {
  if (!text.empty() && text.size() <= 2 && std::all_of(text.begin(), text.end(), [](unsigned char c) {
        return std::isdigit(c) != 0;
      })) {
    const int code = std::stoi(text);
    return code <= 10 && code != 7 ? std::optional<int>(code) : std::nullopt;
  }
  const std::string want = lower(text);
  for (std::size_t code = 0; code < kReasonNames.size(); ++code) {
    if (kReasonNames[code] != nullptr && lower(kReasonNames[code]) == want) {
      return static_cast<int>(code);
    }
  }
  return std::nullopt;
}

std::string revocationReasonName(int code) {
  if (code >= 0 && static_cast<std::size_t>(code) < kReasonNames.size() && kReasonNames[code] != nullptr) {
    return kReasonNames[code];
  }
  return std::to_string(code);
}

int ctlRevoke(Target& target, const std::string& name, int reason, std::ostream& out, std::ostream& err) {
  const std::string socket = target.socket();
  int code = 0;
  auto r =
      ask(socket, "POST", "/v1/certificates/" + name + "/revoke", nlohmann::json{{"reason", reason}}.dump(), err, &code);
  if (!r) {
    err << "kmsctl: kmsd is not running (no answer on " << socket << "); nothing revoked\n";
    return kExitCheckFailed;
  }
  if (code != 200) {
    err << "kmsctl: " << sanitize(str(*r, "detail", "revocation refused")) << '\n';
    return kExitRuntime;
  }
  out << name << ": revoked serial " << str(*r, "revoked_serial") << " (reason " << reason << " "
      << revocationReasonName(reason) << "); a new certificate is being issued\n";
  return kExitOk;
}

}  // namespace kms::daemon
