#pragma once
// What kmsd and kmsctl share before anything runs: exit codes, loading the configuration
// with its errors printed, the trust settings refused, and `--check-config`.

#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

#include "config/config.h"
#include "hsm/token.h"

namespace kms::daemon {

/// Exit codes of kmsd and kmsctl.
enum ExitCode : int {
  kExitOk = 0,
  kExitCheckFailed = 1,  ///< config invalid, HSM unusable, state refused
  kExitUsage = 2,        ///< bad command line
  kExitRuntime = 3,      ///< a runtime failure
  /// Only the operator can mend it (sysexits' EX_CONFIG): the configuration is invalid or
  /// unreadable, the sockets passed are wrong, or the state DB is from a newer kmsd.
  /// kmsd.service does not restart on it (RestartPreventExitStatus=78).
  kExitConfig = 78,
};

/// The exit code for a start-up error: kExitConfig for a setting to change (Errc::config) or
/// a state DB from a newer kmsd (Errc::unsupported), kExitCheckFailed otherwise.
[[nodiscard]] int exitCodeFor(const Error& error);

/// Loads and validates the config file; on errors prints them (one line each) to err.
[[nodiscard]] std::optional<config::Config> loadConfig(const std::string& path, std::ostream& err);

/// What makes a configuration trust too much: no [sti_pa] trust_anchor (unless
/// insecure_skip_signer_check), and no anchors for issued chains, neither [acme]
/// trust_anchors nor an STI-PA CA list (unless insecure_skip_chain_check). One line each,
/// naming the setting and the way out.
[[nodiscard]] std::vector<std::string> trustSettingProblems(const config::Config& config);

/// Validates the config file, logs in to the HSM token it names and, when the state DB
/// exists, checks its schema version. Prints "ok" or every error.
int checkConfig(const std::string& configPath, std::ostream& out, std::ostream& err);

}  // namespace kms::daemon
