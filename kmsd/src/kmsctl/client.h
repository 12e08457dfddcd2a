#pragma once
// kmsctl's side of the control API: which kmsd it operates, where that kmsd listens, its
// JSON answers, and its state DB for the views that work with kmsd down.

#include <iosfwd>
#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "config/config.h"
#include "storage/db.h"

namespace kms::daemon {

/// What kmsctl knows of the kmsd it operates. It needs the control socket, not a valid
/// configuration: the file is read as far as it is valid, its errors printed once as a
/// warning (a kmsd that refused it on SIGHUP runs on its last good one), and `--socket`
/// names the socket outright. The files the configuration names (PIN, trust anchors,
/// hooks) are kmsd's and are not opened.
class Target {
 public:
  /// `socket` empty: the configuration's [daemon] control_socket.
  Target(std::string configPath, std::string socket, std::ostream& err);

  /// The configuration as far as it is valid (read on first use).
  [[nodiscard]] const config::Config& config();
  /// True when the file has no error (read first).
  [[nodiscard]] bool valid();
  /// --socket, else the configuration's control socket (its default when unreadable).
  [[nodiscard]] std::string socket();
  /// --socket or KMSD_DAEMON_CONTROL_SOCKET or the file's control_socket line, found
  /// without reading the whole file (`status --json` on 100,000 certificates); else nullopt.
  [[nodiscard]] std::optional<std::string> quickSocket() const;
  [[nodiscard]] const std::string& configPath() const { return configPath_; }

 private:
  std::string configPath_;
  std::string socket_;
  std::ostream& err_;
  std::optional<config::ConfigRead> read_;
};

/// Thrown by ask (after its line on err) when the control socket exists but this user may
/// not connect to it: "not running" would be wrong, and the offline view is not theirs.
struct SocketRefused {};

/// Throws SocketRefused when kmsd's control socket is there but this user may not connect.
void checkSocketAccess(const std::string& socket, std::ostream& err);

/// The daemon's JSON answer; nullopt when it does not run (err says nothing then, but a
/// daemon that runs and does not answer is named). `status` receives the HTTP status.
[[nodiscard]] std::optional<nlohmann::json> ask(const std::string& socket, const std::string& method,
                                                const std::string& target, const std::string& body,
                                                std::ostream& err, int* status = nullptr);

/// The state DB for a view with kmsd down. nullptr when there is none yet; nullopt (after
/// one line on err naming the directory and who may read it, or what is wrong) when it
/// cannot be read: no state_dir in a broken configuration, or no permission.
[[nodiscard]] std::optional<std::unique_ptr<storage::Db>> openStateForReading(Target& target, std::ostream& err);

/// A string member of a JSON answer, or `dflt` when missing, empty or not a string.
[[nodiscard]] std::string str(const nlohmann::json& j, const char* key, const char* dflt = "-");

}  // namespace kms::daemon
