// kmsctl: the operator CLI of kmsd.
#include <sys/stat.h>
#include <unistd.h>

#include <exception>
#include <functional>
#include <optional>
#include <iostream>
#include <string>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>

#include "common/version.h"
#include "daemon/config_check.h"
#include "kmsctl/commands.h"

namespace {

using namespace kms::daemon;

/// Everything the command line sets.
constexpr const char* kDefaultConfig = "/etc/kmsd/kmsd.toml";

struct Options {
  std::string configPath = kDefaultConfig;
  std::string socket;
  StatusOptions status;
  PassportOptions passport;
  bool json = false;
  int limit = 50;
  bool refresh = false;
  bool follow = false;
  bool reverse = false;
  std::string name;
  bool wait = false;
  std::string reasonText = "0";
  std::string dir;
};

using Command = std::pair<CLI::App*, std::function<int()>>;

std::string checkReason(const std::string& text) {
  return parseRevocationReason(text)
             ? std::string()
             : "not an RFC 5280 reason: '" + text + "' (a code 0..10 other than 7, or a name such as superseded)";
}

/// The subcommands and what each runs (a table).
std::vector<Command> declare(CLI::App& app, Options& o, std::optional<Target>& t) {
  std::vector<Command> out;
  auto* status = app.add_subcommand("status", "managed certificates and their lifecycle state");
  status->add_flag("--json", o.status.json, "machine-readable output (indented on a terminal)");
  status->add_flag("--wide", o.status.wide, "full x5u URLs and errors (the table may then pass 100 columns)");
  out.emplace_back(status, [&o, &t] { return ctlStatus(*t, o.status, std::cout, std::cerr); });
  auto* keys = app.add_subcommand("keys", "keys on the HSM token");
  keys->add_flag("--json", o.json, "machine-readable output");
  out.emplace_back(keys, [&o, &t] { return ctlKeys(*t, o.json, std::cout, std::cerr); });
  auto* trust = app.add_subcommand("trust", "the STI-PA CA list and CRL kmsd keeps");
  trust->add_flag("--json", o.json, "machine-readable output");
  trust->add_flag("--refresh", o.refresh, "have the daemon read both now (renewing what they affect)");
  out.emplace_back(trust, [&o, &t] { return ctlTrust(*t, o.refresh, o.json, std::cout, std::cerr); });
  auto* events = app.add_subcommand("events", "the newest lifecycle events, oldest first (the newest at the bottom)");
  events->add_option("-n,--limit", o.limit, "how many events")->check(CLI::Range(1, 100000))->capture_default_str();
  auto* follow = events->add_flag("-f,--follow", o.follow, "keep printing new events (needs the daemon)");
  events->add_flag("-r,--reverse", o.reverse, "newest first")->excludes(follow);
  out.emplace_back(events, [&o, &t] { return ctlEvents(*t, o.limit, o.follow, o.reverse, std::cout, std::cerr); });
  auto* alerts = app.add_subcommand("alerts", "kmsd's own alerts: firing, resolved in the last day, and their channels");
  alerts->add_flag("--json", o.json, "machine-readable output");
  out.emplace_back(alerts, [&o, &t] { return ctlAlerts(*t, o.json, std::cout, std::cerr); });
  auto* renew = app.add_subcommand("renew", "ask the daemon to renew a certificate now");
  renew->add_option("name", o.name, "certificate name")->required();
  renew->add_flag("--wait", o.wait, "wait until the new certificate is active (or the renewal failed)");
  out.emplace_back(renew, [&o, &t] { return ctlRenew(*t, o.name, o.wait, std::cout, std::cerr); });
  auto* revoke = app.add_subcommand("revoke", "revoke the active certificate at the CA (a new one is issued)");
  revoke->add_option("name", o.name, "certificate name")->required();
  revoke
      ->add_option("--reason", o.reasonText,
                   "RFC 5280 reason, by name or code: unspecified (0), keyCompromise (1), affiliationChanged (3), "
                   "superseded (4), cessationOfOperation (5), ...")
      ->check(checkReason, "REASON");
  out.emplace_back(revoke, [&o, &t] {
    return ctlRevoke(*t, o.name, *parseRevocationReason(o.reasonText), std::cout, std::cerr);
  });
  auto* backup = app.add_subcommand("backup", "copy the state DB and the SoftHSM2 token store, consistently, to DIR");
  backup->add_option("dir", o.dir, "a new (or empty) directory for the backup")->required();
  out.emplace_back(backup, [&o, &t] { return ctlBackup(*t, o.dir, std::cout, std::cerr); });
  auto* passport = app.add_subcommand("passport", "PASSporTs signed with the keys kmsd manages");
  passport->require_subcommand(1);
  auto* sign = passport->add_subcommand("sign", "have kmsd sign a PASSporT; prints the SIP Identity header value");
  sign->add_option("--cert", o.passport.cert, "certificate to sign with (default: the only one)");
  sign->add_option("--orig", o.passport.orig, "calling number")->required();
  sign->add_option("--dest", o.passport.dest, "called number(s)")->required()->delimiter(',');
  auto* attest = sign->add_option("--attest", o.passport.attest, "attestation level")->check(CLI::IsMember({"A", "B", "C"}));
  sign->add_option("--origid", o.passport.origid, "origination identifier, a UUID (default: a new one)");
  auto* div = sign->add_option("--div", o.passport.div, "sign a diversion (div) PASSporT from this originally called number");
  sign->add_option("--rcd-name", o.passport.rcdName, "Rich Call Data: the caller's display name");
  attest->excludes(div);
  sign->callback([attest, div] {
    if (attest->count() == 0 && div->count() == 0) {
      throw CLI::RequiredError("--attest (or --div for a diversion PASSporT)");
    }
  });
  out.emplace_back(sign, [&o, &t] { return ctlPassportSign(*t, o.passport, std::cout, std::cerr); });
  auto* check = app.add_subcommand("check-config", "validate the configuration and log in to the HSM");
  out.emplace_back(check, [&o] { return checkConfig(o.configPath, std::cout, std::cerr); });
  return out;
}

int run(int argc, char** argv) {
  CLI::App app{"kmsctl: operate kmsd, the STIR/SHAKEN certificate lifecycle daemon", "kmsctl"};
  Options o;
  app.add_option("-c,--config", o.configPath, "kmsd configuration file")
      ->envname("KMSD_CONFIG")
      ->capture_default_str();
  app.add_option("--socket", o.socket,
                 "kmsd's control socket (default: the configuration's [daemon] control_socket)")
      ->check([](const std::string& p) { return p.starts_with('/') ? std::string() : "must be an absolute path"; });
  app.set_version_flag("--version", std::string("kmsctl ") + kmsVersion());
  app.require_subcommand(1);
  // Global options also after the subcommand: `kmsctl status --config FILE`.
  app.fallthrough();
  std::optional<Target> target;  // what the commands operate, once the options are known
  const std::vector<Command> commands = declare(app, o, target);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? kExitOk : kExitUsage;
  }
  o.status.terminal = ::isatty(STDOUT_FILENO) == 1;
  struct stat st {};
  const bool noDefault = o.configPath == kDefaultConfig && ::stat(kDefaultConfig, &st) != 0;
  if (noDefault && (o.socket.empty() || app.got_subcommand("check-config"))) {
    std::cerr << "kmsctl: no configuration: " << kDefaultConfig
              << " does not exist; name kmsd's with --config PATH or KMSD_CONFIG=PATH (or its socket with --socket)\n";
    return kExitUsage;
  }
  target.emplace(noDefault ? std::string() : o.configPath, o.socket, std::cerr);
  try {
    for (const auto& [sub, command] : commands) {
      if (sub->parsed()) {
        return command();
      }
    }
    return kExitUsage;
  } catch (const SocketRefused&) {
    return kExitCheckFailed;
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
