// kmsctl: the operator CLI of kmsd.
#include <exception>
#include <iostream>
#include <string>

#include <CLI/CLI.hpp>

#include "daemon/commands.h"
#include "kmsctl/ctl_commands.h"

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
  bool refresh = false;
  auto* trust = app.add_subcommand("trust", "the STI-PA CA list and CRL kmsd keeps");
  trust->add_flag("--json", json, "machine-readable output");
  trust->add_flag("--refresh", refresh, "have the daemon read both now (renewing what they affect)");
  auto* events = app.add_subcommand("events", "the newest lifecycle events");
  events->add_option("-n,--limit", limit, "how many events")->check(CLI::Range(1, 100000));
  bool follow = false;
  events->add_flag("-f,--follow", follow, "keep printing new events (needs the daemon)");
  std::string name;
  bool wait = false;
  auto* renew = app.add_subcommand("renew", "ask the daemon to renew a certificate now");
  renew->add_option("name", name, "certificate name")->required();
  renew->add_flag("--wait", wait, "wait until the new certificate is active (or the renewal failed)");
  std::string reasonText = "0";
  auto* revoke = app.add_subcommand("revoke", "revoke the active certificate at the CA (a new one is issued)");
  revoke->add_option("name", name, "certificate name")->required();
  revoke
      ->add_option("--reason", reasonText,
                   "RFC 5280 reason, by name or code: unspecified (0), keyCompromise (1), affiliationChanged (3), "
                   "superseded (4), cessationOfOperation (5), ...")
      ->check(
          [](const std::string& text) {
            return parseRevocationReason(text) ? std::string()
                                               : "not an RFC 5280 reason: '" + text +
                                                     "' (a code 0..10 other than 7, or a name such as superseded)";
          },
          "REASON");
  auto* check = app.add_subcommand("check-config", "validate the configuration and log in to the HSM");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? kExitOk : kExitUsage;
  }
  try {
    if (status->parsed()) {
      return ctlStatus(configPath, json, std::cout, std::cerr);
    }
    if (keys->parsed()) {
      return ctlKeys(configPath, json, std::cout, std::cerr);
    }
    if (trust->parsed()) {
      return ctlTrust(configPath, refresh, json, std::cout, std::cerr);
    }
    if (events->parsed()) {
      return ctlEvents(configPath, limit, follow, std::cout, std::cerr);
    }
    if (renew->parsed()) {
      return ctlRenew(configPath, name, wait, std::cout, std::cerr);
    }
    if (revoke->parsed()) {
      return ctlRevoke(configPath, name, *parseRevocationReason(reasonText), std::cout, std::cerr);
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
