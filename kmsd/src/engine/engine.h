#pragma once
// The lifecycle engine on one event loop: a scheduler (one timer on the earliest deadline of
// a heap) wakes each certificate when its plan says; the planner decides the next action
// and one step function performs it on a bounded worker pool, results posted back to the
// loop. `kmsd --once` runs the same engine until every certificate has settled.

#include <cstdint>
#include <functional>
#include <iosfwd>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "config/config.h"
#include "kms/error.h"
#include "nlohmann/json_fwd.hpp"

namespace kms::daemon {

class Logger;

/// What happened to one certificate in a `--once` run.
struct CertOutcome {
  std::string name;
  enum class Kind { notDue, issued, failed } kind = Kind::notDue;
  std::string line;  ///< one human line: "main: issued serial …" / "web: FAILED: …"
};

class Engine {
 public:
  struct Options {
    bool once = false;       ///< settle every certificate, then stop
    std::string configPath;  ///< re-read on SIGHUP
    bool controlApi = true;  ///< serve [daemon] control_socket
    /// A listening socket passed by socket activation for the http-01 responder (taken over).
    std::optional<int> http01Socket;
  };
  /// Opens the state DB (taking its directory lock), the token, the transport and the
  /// control socket. Errors name the config field and the file or peer.
  [[nodiscard]] static Result<std::unique_ptr<Engine>> create(const config::Config& config, Logger& log,
                                                              Options options);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  /// Runs the loop until SIGTERM/SIGINT (daemon) or until settled (once). Returns the
  /// exit code.
  int run();
  /// --once: one outcome per configured certificate, in config order.
  [[nodiscard]] std::vector<CertOutcome> outcomes() const;

  class Impl;

 private:
  explicit Engine(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

/// kmsd --once: runs the engine and prints one line per certificate. Exit 0 when all
/// succeeded or nothing was due, 3 when some certificate failed.
int runOnceCommand(const std::string& configPath, std::ostream& out, std::ostream& err);

/// kmsd (the daemon, in the foreground).
int runDaemonCommand(const std::string& configPath, std::ostream& err);

}  // namespace kms::daemon
