#pragma once
// The two ways kmsd runs: as the daemon (in the foreground) and `kmsd --once`. Both load
// the configuration, take the sockets socket activation passed, and run one Daemon.

#include <iosfwd>
#include <string>
#include <vector>

namespace kms::daemon {

/// kmsd --once: runs until every certificate settled and prints one line per certificate.
/// Exit 0 when all succeeded or nothing was due, 3 when some certificate failed.
/// `force`: no stored wait holds back `forceNames` (every certificate when empty); each
/// line says what was overridden.
int runOnceCommand(const std::string& configPath, std::ostream& out, std::ostream& err, bool force = false,
                   const std::vector<std::string>& forceNames = {});

/// kmsd (the daemon, in the foreground).
int runDaemonCommand(const std::string& configPath, std::ostream& err);

}  // namespace kms::daemon
