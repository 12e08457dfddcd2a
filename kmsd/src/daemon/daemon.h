#pragma once
// kmsd put together: the launch sequence shared by the daemon and `kmsd --once` (state dir
// checked and locked, state DB, services, steps, trust keeper, engine, control API), the
// run (start-up warnings, first trust refresh, signals), the stop (a grace for steps in
// flight, then their requests cancelled) and reloads (daemon/reloader.h).

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "config/config.h"
#include "engine/once.h"
#include "kms/error.h"

namespace kms::daemon {

class Logger;

class Daemon {
 public:
  struct Options {
    bool once = false;       ///< settle every certificate, then stop
    std::string configPath;  ///< re-read on SIGHUP
    bool controlApi = true;  ///< serve [daemon] control_socket
    /// A listening socket passed by socket activation for the http-01 responder (taken over).
    std::optional<int> http01Socket;
    /// --once --force: no stored wait (kmsd's backoff, a Retry-After the CA named) holds back
    /// these certificates (every one when `forceNames` is empty).
    bool force = false;
    std::vector<std::string> forceNames;
  };
  /// Opens the state DB (taking its directory lock), the token, the transport and the
  /// control socket. Errors name the config field and the file or peer. Takes `config`
  /// over: its certificates move into the engine (100,000 of them are not copied).
  [[nodiscard]] static Result<std::unique_ptr<Daemon>> open(config::Config config, Logger& log, Options options);
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  /// Runs until SIGTERM/SIGINT (daemon) or until settled (once). Returns the exit code.
  int run();
  /// --once: one outcome per configured certificate, in config order.
  [[nodiscard]] std::vector<CertOutcome> outcomes() const;

  struct Parts;

 private:
  explicit Daemon(std::unique_ptr<Parts> parts);
  std::unique_ptr<Parts> parts_;
};

}  // namespace kms::daemon
