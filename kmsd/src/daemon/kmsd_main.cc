// kmsd: the SP-KMS certificate lifecycle daemon.
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <exception>
#include <iostream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "common/version.h"
#include "daemon/config_check.h"
#include "daemon/launch.h"

namespace {

int run(int argc, char** argv) {
  using namespace kms::daemon;
  CLI::App app{"kmsd: STIR/SHAKEN certificate lifecycle daemon (SP-KMS)", "kmsd"};
  std::string configPath = "/etc/kmsd/kmsd.toml";
  bool check = false;
  bool once = false;
  app.add_option("-c,--config", configPath, "configuration file")->envname("KMSD_CONFIG");
  app.add_flag("-t,--check-config", check, "validate the configuration, log in to the HSM, then exit");
  app.add_flag("--once", once, "do what is due, then exit");
  bool force = false;
  std::vector<std::string> names;
  app.add_flag("--force", force,
               "with --once: no stored wait (kmsd's backoff, a Retry-After the CA named) holds back NAME... (all "
               "certificates without names); each line says what was overridden");
  app.add_option("NAME", names, "certificates for --force");
  app.set_version_flag("--version", std::string("kmsd ") + kmsVersion());
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? kExitOk : kExitUsage;
  }
  try {
    if (check) {
      return checkConfig(configPath, std::cout, std::cerr);
    }
    if ((force || !names.empty()) && !once) {
      std::cerr << "kmsd: --force and certificate names go with --once\n";
      return kExitUsage;
    }
    if (!names.empty() && !force) {
      std::cerr << "kmsd: certificate names go with --once --force\n";
      return kExitUsage;
    }
    if (once) {
      return runOnceCommand(configPath, std::cout, std::cerr, force, names);
    }
    return runDaemonCommand(configPath, std::cerr);
  } catch (const std::exception& e) {
    std::cerr << "kmsd: fatal: " << e.what() << '\n';
    return kExitRuntime;
  }
}

}  // namespace

int main(int argc, char** argv) {
  // Files kmsd creates are its own (the state DB, hook output; web-root files get explicit
  // modes), and a crash never writes the PIN, a password or a token into a core file.
  ::umask(077);
  ::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  struct rlimit noCore {0, 0};
  ::setrlimit(RLIMIT_CORE, &noCore);
  try {
    return run(argc, argv);
  } catch (...) {
    return kms::daemon::kExitRuntime;
  }
}
