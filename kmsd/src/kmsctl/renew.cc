// kmsctl renew NAME [--wait]
#include <chrono>
#include <ostream>
#include <thread>

#include <nlohmann/json.hpp>

#include "daemon/config_check.h"
#include "events/event_sink.h"
#include "kmsctl/client.h"
#include "kmsctl/commands.h"

namespace kms::daemon {

int ctlRenew(Target& target, const std::string& name, bool wait, std::ostream& out, std::ostream& err) {
  const std::string socket = target.socket();
  auto before = ask(socket, "GET", "/v1/certificates/" + name, "", err);
  int code = 0;
  auto r = ask(socket, "POST", "/v1/certificates/" + name + "/renew", "", err, &code);
  if (!r) {
    err << "kmsctl: kmsd is not running (no answer on " << socket << "); nothing renewed\n";
    return kExitCheckFailed;
  }
  if (code != 202) {
    err << "kmsctl: " << str(*r, "detail", "renewal refused") << '\n';
    return kExitCheckFailed;
  }
  out << name << ": renewal requested";
  if (auto overrides = str(*r, "overrides", ""); !overrides.empty()) {
    out << " (overrides " << overrides << ")";
  }
  out << '\n';
  if (!wait) {
    return kExitOk;
  }
  const std::string oldSerial = before ? str(*before, "serial", "") : "";
  const std::int64_t oldFailures = before ? before->value("failures", 0) : 0;
  for (;;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    auto now = ask(socket, "GET", "/v1/certificates/" + name, "", err);
    if (!now) {
      err << "kmsctl: kmsd stopped while renewing " << name << '\n';
      return kExitRuntime;
    }
    const std::string serial = str(*now, "serial", "");
    if (!serial.empty() && serial != oldSerial && str(*now, "state") == "active") {
      out << name << ": active serial " << serial << ", not after " << str(*now, "not_after") << ", x5u "
          << str(*now, "x5u") << '\n';
      return kExitOk;
    }
    if (now->value("failures", 0) > oldFailures) {
      err << name << ": renewal failed: " << sanitize(str(*now, "last_error")) << '\n';
      return kExitRuntime;
    }
  }
}

}  // namespace kms::daemon
