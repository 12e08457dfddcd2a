// kmsctl: the operator CLI of kmsd.
#include <exception>
#include <iostream>
#include <string>

#include <CLI/CLI.hpp>

#include "commands.h"

namespace {

int run(int argc, char** argv) {
  using namespace kms::daemon;
  CLI::App app{"kmsctl: operate kmsd, the STIR/SHAKEN certificate lifecycle daemon", "kmsctl"};
  std::string configPath = "/etc/kmsd/kmsd.toml";
  app.add_option("-c,--config", configPath, "kmsd configuration file")->envname("KMSD_CONFIG");
  app.set_version_flag("--version", "kmsctl " KMS_VERSION);
  app.require_subcommand(1);

  bool json = false;
  int limit = 50;
  auto* status = app.add_subcommand("status", "managed certificates and their lifecycle state");
  status->add_flag("--json", json, "machine-readable output");
  auto* keys = app.add_subcommand("keys", "keys on the HSM token");
  keys->add_flag("--json", json, "machine-readable output");
  auto* events = app.add_subcommand("events", "the newest lifecycle events");
  events->add_option("-n,--limit", limit, "how many events")->check(CLI::Range(1, 100000));
  auto* check = app.add_subcommand("check-config", "validate the configuration and log in to the HSM");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? kExitOk : kExitUsage;
  }
  try {
    if (status->parsed()) {
      return showStatus(configPath, json, std::cout, std::cerr);
    }
    if (keys->parsed()) {
      return listKeys(configPath, json, std::cout, std::cerr);
    }
    if (events->parsed()) {
      return showEvents(configPath, limit, std::cout, std::cerr);
    }
    if (check->parsed()) {
      return checkConfig(configPath, std::cout, std::cerr);
    }
    return kExitUsage;
  } catch (const std::exception& e) {
    std::cerr << "kmsctl: fatal: " << e.what() << '\n';
    return kExitRuntime;
  }
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (...) {
    return kms::daemon::kExitRuntime;
  }
}
