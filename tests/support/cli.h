#pragma once
/// @file Running kmsd and kmsctl the way an operator does, for system tests.

#include <sys/stat.h>

#include <string>

#include "sandbox.h"

namespace kms::test {

inline const std::string kKmsd = KMS_BINARY_DIR "/kmsd/kmsd";
inline const std::string kKmsctl = KMS_BINARY_DIR "/kmsd/kmsctl";

/// Exit status and combined stdout+stderr of one command.
struct CmdResult {
  int rc;
  std::string output;
};

/// `env tool --config config args` through the shell (env: "NAME=value …", may be empty).
inline CmdResult runTool(const std::string& env, const std::string& tool, const std::string& config,
                         const std::string& args) {
  CmdResult r{};
  r.rc = runCommand(env + " " + tool + " --config " + config + " " + args, &r.output);
  return r;
}

/// As if the backoff after a failed `kmsd --once` had passed: clears every certificate's
/// next attempt in the state DB at `dbPath`, so the next run tries again at once.
/// Returns false when sqlite3 failed.
inline bool backoffPassed(const std::string& dbPath) {
  std::string out;
  return runCommand("sqlite3 '" + dbPath + "' 'UPDATE managed_certificates SET next_attempt_at = NULL'", &out) == 0;
}

inline bool fileExists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

}  // namespace kms::test
