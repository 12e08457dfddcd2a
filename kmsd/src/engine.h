#pragma once
// The lifecycle engine: for each configured certificate, decide whether it is due and
// take it through key → order → authorized → finalizing → issued → published, writing
// each step to the state DB before relying on it.

#include <iosfwd>
#include <memory>
#include <string>
#include <vector>

#include "config/config.h"
#include "kms/error.h"

namespace kms::daemon {

/// What happened to one certificate in a run.
struct CertOutcome {
  std::string name;
  enum class Kind { notDue, issued, failed } kind = Kind::notDue;
  std::string line;  ///< one human line: "main: issued serial …" / "web: FAILED: …"
};

class EngineImpl;

class Engine {
 public:
  /// Opens the state DB (creating state_dir), the HSM token and the ACME transport.
  [[nodiscard]] static Result<std::unique_ptr<Engine>> create(const config::Config& config);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  /// Issues every certificate that has no valid certificate or is due, concurrently on a
  /// bounded worker pool. One outcome per configured certificate, in config order.
  [[nodiscard]] std::vector<CertOutcome> runOnce();

 private:
  explicit Engine(std::unique_ptr<EngineImpl> impl);
  std::unique_ptr<EngineImpl> impl_;
};

/// kmsd --once: runs the engine and prints one line per certificate. Exit 0 when all
/// succeeded or nothing was due.
int runOnceCommand(const std::string& configPath, std::ostream& out, std::ostream& err);

}  // namespace kms::daemon
