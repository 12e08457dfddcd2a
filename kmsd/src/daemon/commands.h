#pragma once
// Operator-facing commands shared by kmsd and kmsctl. Each returns a process exit code
// and writes its report to out and its errors (one line each) to err.

#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "config/config.h"
#include "hsm/token.h"
#include "storage/store.h"

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

/// What makes a configuration trust too much: no [sti_pa] trust_anchor (unless
/// insecure_skip_signer_check), and no anchors for issued chains, neither [acme]
/// trust_anchors nor an STI-PA CA list (unless insecure_skip_chain_check). One line each,
/// naming the setting and the way out.
[[nodiscard]] std::vector<std::string> trustSettingProblems(const config::Config& config);

/// Validates the config file, logs in to the HSM token it names and, when the state DB
/// exists, checks its schema version. Prints "ok" or every error.
int checkConfig(const std::string& configPath, std::ostream& out, std::ostream& err);

/// The keys report, a JSON array: every EC key on the token (label, uri, jwk_thumbprint,
/// spki_fingerprint, managed: the purpose the state DB records or "unmanaged", on_token:
/// true), then the keys the DB records as live that the token lacks (on_token: false).
/// With `usage` (Store::listKeyUsage), each managed key also carries "certificate", "state"
/// (account, order, active, previous, abandoned, expired) and, for "previous", "until".
[[nodiscard]] Result<std::string> keysJson(hsm::Token& token, const std::vector<storage::HsmKey>& known,
                                           const std::vector<storage::KeyUsage>& usage);
/// Prints a keys report for people.
void printKeys(const nlohmann::json& keys, const std::string& tokenLabel, std::ostream& out);

/// Lists the EC keys on the configured token and whether kmsd's DB knows them, opening the
/// token itself (only when the daemon does not run: kmsctl asks the daemon otherwise).
int listKeys(const config::Config& cfg, bool json, std::ostream& out, std::ostream& err);

/// Managed certificates and their lifecycle state, from the state DB.
int showStatus(const std::string& configPath, bool json, std::ostream& out, std::ostream& err);

/// The newest events of the append-only event log.
int showEvents(const std::string& configPath, int limit, std::ostream& out, std::ostream& err);
/// kmsctl trust with the daemon down: the CA list and CRL kept in the state DB.
int showTrust(const std::string& configPath, bool json, std::ostream& out, std::ostream& err);
/// The text form of a trust report (kmsctl trust).
void printTrust(const nlohmann::json& report, std::ostream& out);

}  // namespace kms::daemon
