// kmsctl keys [--json]
#include <ctime>
#include <ostream>

#include <nlohmann/json.hpp>

#include "daemon/config_check.h"
#include "events/event_sink.h"
#include "kmsctl/client.h"
#include "kmsctl/commands.h"
#include "services/state_reader.h"
#include "services/key_report.h"
#include "services/services.h"
#include "hsm/token_store.h"

namespace kms::daemon {
namespace {

/// A keys report for people.
void printKeys(const nlohmann::json& keys, const std::string& tokenLabel, std::ostream& out) {
  auto str = [](const nlohmann::json& k, const char* key) {
    auto it = k.find(key);
    return it != k.end() && it->is_string() ? it->get<std::string>() : std::string("-");
  };
  std::size_t onToken = 0;
  for (const auto& k : keys) {
    onToken += k.value("on_token", false) ? 1 : 0;
  }
  out << onToken << " key(s) on token '" << tokenLabel << "'\n";
  for (const auto& k : keys) {
    if (k.value("on_token", false)) {
      out << "  " << str(k, "label") << "  [" << str(k, "managed") << "]";
      if (k.contains("state")) {
        out << "  " << str(k, "state");
        if (k.contains("certificate")) {
          out << " (" << str(k, "certificate") << ")";
        }
        if (k.contains("until")) {
          out << " until " << str(k, "until");
        }
      }
      out << "\n    " << str(k, "uri") << "\n    " << str(k, "spki_fingerprint") << '\n';
    }
  }
  if (onToken < keys.size()) {
    out << keys.size() - onToken << " recorded key(s) NOT on the token\n";
    for (const auto& k : keys) {
      if (!k.value("on_token", false)) {
        out << "  " << str(k, "label") << "  [" << str(k, "managed") << "]\n    " << str(k, "uri") << '\n';
      }
    }
  }
}

}  // namespace

int ctlKeys(Target& target, bool json, std::ostream& out, std::ostream& err) {
  // The daemon holds the token: a second process logging in would rewrite SoftHSM2's
  // token file under it, so the daemon is asked when it runs.
  int status = 0;
  if (auto r = ask(target.socket(), "GET", "/v1/keys", "", err, &status)) {
    if (status != 200 || !r->is_object() || !(*r)["keys"].is_array()) {
      err << "kmsctl: kmsd answered HTTP " << status << ": " << sanitize(str(*r, "detail", "")) << '\n';
      return kExitRuntime;
    }
    if (json) {
      out << (*r)["keys"].dump(2) << '\n';
    } else {
      printKeys((*r)["keys"], target.config().hsm.tokenLabel, out);
    }
    return kExitOk;
  }
  if (!target.valid()) {
    err << "kmsctl: kmsd is not running (no answer on " << target.socket() << "), and opening its token needs "
        << target.configPath() << " without errors\n";
    return kExitCheckFailed;
  }
  if (!json) {
    out << "kmsd is not running; read from the token and the state DB\n";
  }
  return listKeys(target.config(), json, out, err);
}

int listKeys(const config::Config& cfg, bool json, std::ostream& out, std::ostream& err) {
  hsm::TokenStoreReport guard;  // kmsd, down, repairs what its next start would
  auto token = openConfiguredToken(cfg, guard);
  if (!token) {
    err << cfg.source << ": " << token.error().toString() << '\n';
    return kExitRuntime;
  }
  std::vector<storage::HsmKey> known;
  std::vector<storage::KeyUsage> usage;
  std::unique_ptr<storage::Db> db;
  if (pathExists(dbPath(cfg))) {
    auto opened = openExistingDb(cfg);
    if (opened) {
      db = std::move(*opened);
      auto store = storage::makeSqliteStore(*db);
      if (auto rows = store->listKeys(false)) {
        known = std::move(*rows);
      }
      if (auto rows = store->listKeyUsage(std::time(nullptr), cfg.publisher.retain.count())) {
        usage = std::move(*rows);
      }
    }
  }
  auto report = keysJson(**token, known, usage);
  if (!report) {
    err << "kmsctl: " << report.error().toString() << '\n';
    return kExitRuntime;
  }
  if (json) {
    out << *report << '\n';
  } else {
    printKeys(nlohmann::json::parse(*report), cfg.hsm.tokenLabel, out);
  }
  return kExitOk;
}

}  // namespace kms::daemon
