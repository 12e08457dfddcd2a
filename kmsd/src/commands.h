#pragma once
// Operator-facing commands shared by kmsd and kmsctl. Each returns a process exit code
// and writes its report to out and its errors (one line each) to err.

#include <iosfwd>
#include <optional>
#include <string>

#include "config/config.h"

namespace kms::daemon {

/// Exit codes of kmsd and kmsctl.
enum ExitCode : int {
  kExitOk = 0,
  kExitCheckFailed = 1,  ///< config invalid, HSM unusable, state refused
  kExitUsage = 2,        ///< bad command line
  kExitRuntime = 3,      ///< a runtime failure
};

/// Loads and validates the config file; on errors prints them (one line each) to err.
[[nodiscard]] std::optional<config::Config> loadConfig(const std::string& path, std::ostream& err);

/// Validates the config file, logs in to the HSM token it names and, when the state DB
/// exists, checks its schema version. Prints "ok" or every error.
int checkConfig(const std::string& configPath, std::ostream& out, std::ostream& err);

/// Lists the EC keys on the configured token and whether kmsd's DB knows them.
int listKeys(const std::string& configPath, bool json, std::ostream& out, std::ostream& err);

/// Managed certificates and their lifecycle state, from the state DB.
int showStatus(const std::string& configPath, bool json, std::ostream& out, std::ostream& err);

/// The newest events of the append-only event log.
int showEvents(const std::string& configPath, int limit, std::ostream& out, std::ostream& err);

}  // namespace kms::daemon
