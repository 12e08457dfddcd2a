#include "daemon/launch.h"

#include <malloc.h>

#include <cerrno>

#include <memory>
#include <ostream>

#include "daemon/activation.h"
#include "daemon/config_check.h"
#include "daemon/daemon.h"
#include "daemon/service_notify.h"
#include "events/event_sink.h"

namespace kms::daemon {
namespace {

struct Launched {
  std::unique_ptr<Logger> log;
  std::unique_ptr<Daemon> daemon;
};

/// The shared launch sequence; nullptr after an error was printed, with `rc` to exit with.
std::unique_ptr<Launched> launch(const std::string& configPath, Daemon::Options options, std::ostream& err,
                                 int& rc) {
  auto cfg = loadConfig(configPath, err);
  if (!cfg) {
    ServiceNotify::startFailed(EINVAL, "the configuration " + configPath + " has errors (see the log)");
    rc = kExitConfig;
    return nullptr;
  }
  auto sockets = takeActivatedSockets();
  if (!sockets) {
    err << "kmsd: " << sockets.error().toString() << '\n';
    ServiceNotify::startFailed(EINVAL, sockets.error().toString());
    rc = kExitConfig;
    return nullptr;
  }
  auto out = std::make_unique<Launched>();
  out->log = std::make_unique<Logger>(cfg->daemon.logFormat);
  options.configPath = configPath;
  options.controlApi = !options.once;
  options.http01Socket = sockets->http01;
  auto daemon = Daemon::open(std::move(*cfg), *out->log, std::move(options));
  if (!daemon) {
    err << "kmsd: " << daemon.error().toString() << '\n';
    const Error& e = daemon.error();
    ServiceNotify::startFailed(e.code == Errc::config || e.code == Errc::invalidArgument ? EINVAL : EIO, e.toString());
    rc = exitCodeFor(e);
    return nullptr;
  }
  out->daemon = std::move(*daemon);
  // The configuration's parse tree is gone (the daemon took the configuration over): give
  // its memory back to the system (100,000 certificates leave ~100 MB of free heap otherwise).
  ::malloc_trim(0);
  return out;
}

}  // namespace

int runOnceCommand(const std::string& configPath, std::ostream& out, std::ostream& err, bool force,
                   const std::vector<std::string>& forceNames) {
  int rc = 0;
  Daemon::Options options;
  options.once = true;
  options.force = force;
  options.forceNames = forceNames;
  auto launched = launch(configPath, std::move(options), err, rc);
  if (!launched) {
    return rc;
  }
  launched->daemon->run();
  bool allGood = true;
  for (const CertOutcome& o : launched->daemon->outcomes()) {
    out << sanitize(o.line, 8192) << '\n';
    allGood = allGood && o.kind != CertOutcome::Kind::failed;
  }
  return allGood ? 0 : 3;
}

int runDaemonCommand(const std::string& configPath, std::ostream& err) {
  int rc = 0;
  auto launched = launch(configPath, Daemon::Options{}, err, rc);
  if (!launched) {
    return rc;
  }
  return launched->daemon->run();
}

}  // namespace kms::daemon
