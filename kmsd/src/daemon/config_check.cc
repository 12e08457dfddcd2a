#include "daemon/config_check.h"

#include <algorithm>
#include <ostream>

#include "hsm/token.h"
#include "hsm/token_store.h"
#include "services/state_reader.h"
#include "services/services.h"
#include "signing/signing_clients.h"

namespace kms::daemon {

std::optional<config::Config> loadConfig(const std::string& path, std::ostream& err) {
  auto cfg = config::loadConfigFile(path, config::environmentSnapshot());
  if (!cfg) {
    err << config::formatErrors(cfg.error());
    return std::nullopt;
  }
  return std::move(*cfg);
}

std::vector<std::string> trustSettingProblems(const config::Config& config) {
  std::vector<std::string> out;
  if (config.stiPa && !config.stiPa->trustAnchor && !config.stiPa->insecureSkipSignerCheck) {
    out.emplace_back(
        "[sti_pa] trust_anchor: required: without it an SPC token or CA list is trusted on the word of the "
        "certificate its own x5u serves (insecure_skip_signer_check = true accepts that, for a lab only)");
  }
  if (!config.stiPa && !config.acme.trustAnchors && !config.acme.insecureSkipChainCheck) {
    out.emplace_back(
        "[acme] trust_anchors: required without [sti_pa] (whose CA list would give the anchors): otherwise any "
        "chain with our key and names is accepted (insecure_skip_chain_check = true accepts that, for a lab only)");
  }
  return out;
}

int exitCodeFor(const Error& error) {
  return error.code == Errc::config || error.code == Errc::unsupported ? kExitConfig : kExitCheckFailed;
}

int checkConfig(const std::string& configPath, std::ostream& out, std::ostream& err) {
  auto cfg = loadConfig(configPath, err);
  if (!cfg) {
    return kExitConfig;
  }
  int rc = kExitOk;
  for (const std::string& problem : trustSettingProblems(*cfg)) {
    err << configPath << ": " << problem << '\n';
    rc = kExitConfig;
  }
  // The signing clients' tokens as the listener reads them: long enough, one per client.
  if (auto clients = SigningClients::load(cfg->signing); !clients) {
    err << configPath << ": " << clients.error().message << '\n';
    rc = kExitConfig;
  }
  hsm::TokenStoreReport guard;
  auto token = openConfiguredToken(*cfg, guard);
  for (const auto& r : guard.restored) {
    err << "KMS_TOKEN_RESTORED " << r.path << ": " << r.reason << "; restored from its verified copy\n";
  }
  for (const auto& q : guard.quarantined) {
    err << "KMS_TOKEN_OBJECT_QUARANTINED " << q.path << ": " << q.reason << "; moved to " << q.movedTo << '\n';
  }
  if (!token) {
    err << configPath << ": " << token.error().toString() << '\n';
    rc = std::max(rc, exitCodeFor(token.error()));
  }
  if (pathExists(cfg->daemon.stateDir)) {
    if (auto dir = checkStateDir(cfg->daemon.stateDir, false); !dir) {
      err << configPath << ": " << dir.error().toString() << '\n';
      rc = std::max(rc, exitCodeFor(dir.error()));
    }
  }
  if (pathExists(dbPath(*cfg))) {
    auto db = openExistingDb(*cfg);
    if (!db) {
      err << configPath << ": [daemon] state_dir: " << db.error().toString() << '\n';
      rc = std::max(rc, exitCodeFor(db.error()));
    }
  }
  if (rc == kExitOk) {
    if (!pathExists(cfg->daemon.stateDir)) {
      // Not an error: kmsd creates it. Said so the operator knows where state will go.
      out << "note: state_dir " << cfg->daemon.stateDir << " does not exist yet; kmsd will create it\n";
    }
    out << "ok\n";
  }
  return rc;
}

}  // namespace kms::daemon
