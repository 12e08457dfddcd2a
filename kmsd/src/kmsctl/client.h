#pragma once
// kmsctl's side of the control API: where the daemon listens, and its JSON answers.

#include <iosfwd>
#include <optional>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "config/config.h"

namespace kms::daemon {

/// [daemon] control_socket read without parsing the whole file (a configuration with
/// 100,000 certificates takes a second to load; talking to the daemon needs one line).
/// KMSD_DAEMON_CONTROL_SOCKET wins as it does for kmsd. Empty when the simple scan cannot
/// tell (the caller then loads the file).
[[nodiscard]] std::optional<std::string> quickControlSocket(const std::string& path);

/// The daemon's JSON answer; nullopt when it does not run (err says nothing then, but a
/// daemon that runs and does not answer is named). `status` receives the HTTP status.
[[nodiscard]] std::optional<nlohmann::json> ask(const config::Config& cfg, const std::string& method,
                                                const std::string& target, const std::string& body,
                                                std::ostream& err, int* status = nullptr);

/// A string member of a JSON answer, or `dflt` when missing, empty or not a string.
[[nodiscard]] std::string str(const nlohmann::json& j, const char* key, const char* dflt = "-");

}  // namespace kms::daemon
