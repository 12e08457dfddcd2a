#pragma once
// `kmsd --once`: the engine runs until every certificate has settled, and each gets one
// line. A certificate settles when it failed, when its plan is a wait with no order in
// flight, or when it was held back (backoff, the CA's pause) before doing anything.

#include <map>
#include <string>
#include <vector>

#include "engine/worker.h"

namespace kms::daemon {

/// What happened to one certificate in a `--once` run.
struct CertOutcome {
  std::string name;
  enum class Kind { notDue, issued, failed } kind = Kind::notDue;
  std::string line;  ///< one human line: "main: issued serial …" / "web: FAILED: …"
};

class OnceRun {
 public:
  /// A certificate takes part (in config order).
  void add(const std::string& name);
  /// A wait that held it back was overridden (kmsd --once --force): said on its line.
  void overrode(const std::string& name, const std::string& what);
  /// Its order activated a certificate.
  void issued(const std::string& name, const storage::IssuedCert& cert);
  /// After each turn of `name` (`pollStarted`: it polled earlier in this run): true when it
  /// settled now or before.
  bool settle(const std::string& name, const WorkResult& r, std::int64_t now, bool pollStarted);
  [[nodiscard]] bool allSettled() const;
  /// One outcome per certificate, in config order.
  [[nodiscard]] std::vector<CertOutcome> outcomes() const;

 private:
  struct Entry {
    CertOutcome outcome;
    bool settled = false;
    std::string overrode;  ///< "a wait until … after 2 failure(s)"
  };
  std::vector<std::string> order_;
  std::map<std::string, Entry> entries_;
};

}  // namespace kms::daemon
