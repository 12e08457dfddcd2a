#include "daemon/commands.h"

#include <sys/stat.h>

#include <chrono>
#include <algorithm>
#include <ctime>
#include <iomanip>
#include <optional>
#include <unordered_map>
#include <unordered_set>
#include <ostream>

#include <nlohmann/json.hpp>

#include "config/config.h"
#include "hsm/token.h"
#include "hsm/token_store.h"
#include "pki/x509.h"
#include "storage/db.h"
#include "storage/store.h"
#include "services/services.h"
#include "common/time_format.h"
#include "trust/trust.h"

namespace kms::daemon {

std::optional<config::Config> loadConfig(const std::string& path, std::ostream& err) {
  auto cfg = config::loadConfigFile(path, config::environmentSnapshot());
  if (!cfg) {
    err << config::formatErrors(cfg.error());
    return std::nullopt;
  }
  return std::move(*cfg);
}

namespace {

hsm::TokenOptions tokenOptions(const config::Config& cfg) {
  return hsm::TokenOptions{cfg.hsm.module, cfg.hsm.tokenLabel, cfg.hsm.pinFile,
                           static_cast<std::size_t>(cfg.hsm.sessionPool)};
}

std::string dbPath(const config::Config& cfg) {
  return cfg.daemon.stateDir + "/kmsd.db";
}

bool exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

/// Opens the existing state DB without creating or migrating it.
Result<std::unique_ptr<storage::Db>> openExistingDb(const config::Config& cfg) {
  storage::OpenOptions options;
  options.create = false;
  options.migrate = false;
  return storage::Db::open(dbPath(cfg), options);
}

std::string subjectOf(const std::string& chainPem) {
  auto chain = pki::parsePemChain(chainPem);
  return chain ? chain->front().subject() : std::string("?");
}

}  // namespace

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

int checkConfig(const std::string& configPath, std::ostream& out, std::ostream& err) {
  auto cfg = loadConfig(configPath, err);
  if (!cfg) {
    return kExitCheckFailed;
  }
  int rc = kExitOk;
  for (const std::string& problem : trustSettingProblems(*cfg)) {
    err << configPath << ": " << problem << '\n';
    rc = kExitCheckFailed;
  }
  // Before the module is loaded: SoftHSM2 rewrites token.object in place at every C_Login.
  hsm::TokenStoreOptions store;
  store.modulePath = cfg->hsm.module;
  if (auto guard = hsm::guardSoftHsmStore(store); !guard) {
    err << configPath << ": [hsm] " << guard.error().toString() << '\n';
    rc = kExitCheckFailed;
  } else {
    for (const auto& r : guard->restored) {
      err << "KMS_TOKEN_RESTORED " << r.path << ": " << r.reason << "; restored from its verified copy\n";
    }
    for (const auto& q : guard->quarantined) {
      err << "KMS_TOKEN_OBJECT_QUARANTINED " << q.path << ": " << q.reason << "; moved to " << q.movedTo << '\n';
    }
  }
  auto token = hsm::Token::open(tokenOptions(*cfg));
  if (!token) {
    err << configPath << ": [hsm] " << token.error().toString() << '\n';
    rc = kExitCheckFailed;
  }
  if (exists(cfg->daemon.stateDir)) {
    if (auto dir = checkStateDir(cfg->daemon.stateDir, false); !dir) {
      err << configPath << ": " << dir.error().toString() << '\n';
      rc = kExitCheckFailed;
    }
  }
  if (exists(dbPath(*cfg))) {
    auto db = openExistingDb(*cfg);
    if (!db) {
      err << configPath << ": [daemon] state_dir: " << db.error().toString() << '\n';
      rc = kExitCheckFailed;
    }
  }
  if (rc == kExitOk) {
    if (!exists(cfg->daemon.stateDir)) {
      // Not an error: kmsd creates it. Said so the operator knows where state will go.
      out << "note: state_dir " << cfg->daemon.stateDir << " does not exist yet; kmsd will create it\n";
    }
    out << "ok\n";
  }
  return rc;
}

Result<std::string> keysJson(hsm::Token& token, const std::vector<storage::HsmKey>& known,
                             const std::vector<storage::KeyUsage>& usage) {
  auto keys = token.listKeys();
  if (!keys) {
    return fail(keys.error());
  }
  // Looked up by URI: the token, the DB and the usage list each hold every key once.
  std::unordered_map<std::string, const storage::HsmKey*> byUri;
  for (const auto& row : known) {
    byUri.emplace(row.keyUri, &row);
  }
  std::unordered_map<std::string, const storage::KeyUsage*> usageByUri;
  for (const auto& u : usage) {
    usageByUri.emplace(u.keyUri, &u);
  }
  std::unordered_set<std::string> onToken;
  nlohmann::json arr = nlohmann::json::array();
  for (const auto& k : *keys) {
    const std::string uri = k.uri.toString();
    onToken.insert(uri);
    auto row = byUri.find(uri);
    nlohmann::json entry{{"label", k.label},
                         {"uri", uri},
                         {"jwk_thumbprint", k.publicKey.jwkThumbprint()},
                         {"spki_fingerprint", k.publicKey.spkiFingerprint()},
                         {"managed", row != byUri.end() ? storage::toString(row->second->purpose) : "unmanaged"},
                         {"on_token", true}};
    if (auto u = usageByUri.find(uri); u != usageByUri.end()) {
      if (u->second->certName) {
        entry["certificate"] = *u->second->certName;
      }
      entry["state"] = u->second->state;
      if (u->second->until) {
        entry["until"] = isoTime(*u->second->until);
      }
    }
    arr.push_back(std::move(entry));
  }
  // Recorded as live in the state DB but not on the token: deleted behind kmsd's back, or
  // a crash came between recording a key and generating it (kmsd retires those itself).
  for (const auto& row : known) {
    if (onToken.count(row.keyUri) == 0) {
      arr.push_back({{"label", row.label},
                     {"uri", row.keyUri},
                     {"managed", storage::toString(row.purpose)},
                     {"on_token", false}});
    }
  }
  return arr.dump(2, ' ', false, nlohmann::json::error_handler_t::replace);
}

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

int listKeys(const config::Config& cfg, bool json, std::ostream& out, std::ostream& err) {
  auto token = hsm::Token::open(tokenOptions(cfg));
  if (!token) {
    err << cfg.source << ": [hsm] " << token.error().toString() << '\n';
    return kExitRuntime;
  }
  std::vector<storage::HsmKey> known;
  std::vector<storage::KeyUsage> usage;
  std::unique_ptr<storage::Db> db;
  if (exists(dbPath(cfg))) {
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

int showStatus(const std::string& configPath, bool json, std::ostream& out, std::ostream& err) {
  auto cfg = loadConfig(configPath, err);
  if (!cfg) {
    return kExitCheckFailed;
  }
  std::vector<storage::ManagedCert> certs;
  std::vector<storage::IssuedCert> issued;
  std::unique_ptr<storage::Db> db;
  if (exists(dbPath(*cfg))) {
    auto opened = openExistingDb(*cfg);
    if (!opened) {
      err << "kmsctl: " << opened.error().toString() << '\n';
      return kExitRuntime;
    }
    db = std::move(*opened);
    auto store = storage::makeSqliteStore(*db);
    auto rows = store->listCertificates();
    if (!rows) {
      err << "kmsctl: " << rows.error().toString() << '\n';
      return kExitRuntime;
    }
    certs = std::move(*rows);
    if (auto latest = store->listLatestValid(static_cast<std::int64_t>(std::time(nullptr)))) {
      issued = std::move(*latest);
    }
  }
  auto latestFor = [&](const std::string& name) -> const storage::IssuedCert* {
    for (const auto& i : issued) {
      if (i.certName == name) {
        return &i;
      }
    }
    return nullptr;
  };
  if (json) {
    nlohmann::json arr = nlohmann::json::array();
    for (const auto& c : certs) {
      nlohmann::json row{{"name", c.name},
                         {"kind", storage::toString(c.kind)},
                         {"state", storage::toString(c.state)},
                         {"failures", c.failureCount}};
      if (c.lastError) {
        row["last_error"] = sanitize(*c.lastError);
      }
      if (const auto* i = latestFor(c.name)) {
        row["serial"] = i->serial;
        row["not_after"] = isoTime(i->notAfter);
        if (i->x5uUrl) {
          row["x5u"] = *i->x5uUrl;
        }
      }
      arr.push_back(std::move(row));
    }
    out << nlohmann::json{{"certificates", arr}}.dump(2) << '\n';
    return kExitOk;
  }
  if (certs.empty()) {
    out << "no managed certificates yet (state: " << dbPath(*cfg) << ")\n";
    return kExitOk;
  }
  out << std::left << std::setw(20) << "NAME" << std::setw(14) << "STATE" << std::setw(22) << "NOT AFTER"
      << "X5U\n";
  for (const auto& c : certs) {
    const auto* i = latestFor(c.name);
    out << std::setw(20) << c.name << std::setw(14) << storage::toString(c.state) << std::setw(22)
        << (i != nullptr ? isoTime(i->notAfter) : "-") << (i != nullptr && i->x5uUrl ? *i->x5uUrl : "-") << '\n';
    nlohmann::json ids = nlohmann::json::parse(c.identifiersJson, nullptr, false);
    if (ids.is_array() && !ids.empty()) {
      out << "    identifiers:";
      for (const auto& id : ids) {
        out << ' ' << (id.is_string() ? id.get<std::string>() : id.dump());
      }
      out << '\n';
    }
    if (i != nullptr) {
      out << "    serial " << i->serial << ", subject " << subjectOf(i->chainPem) << '\n';
    }
    if (c.lastError) {
      out << "    last error: " << sanitize(*c.lastError) << '\n';
    }
  }
  return kExitOk;
}

int showEvents(const std::string& configPath, int limit, std::ostream& out, std::ostream& err) {
  auto cfg = loadConfig(configPath, err);
  if (!cfg) {
    return kExitCheckFailed;
  }
  if (!exists(dbPath(*cfg))) {
    out << "no events yet (state: " << dbPath(*cfg) << ")\n";
    return kExitOk;
  }
  auto db = openExistingDb(*cfg);
  if (!db) {
    err << "kmsctl: " << db.error().toString() << '\n';
    return kExitRuntime;
  }
  auto store = storage::makeSqliteStore(**db);
  auto events = store->listEvents(std::nullopt, limit);
  if (!events) {
    err << "kmsctl: " << events.error().toString() << '\n';
    return kExitRuntime;
  }
  for (const auto& e : *events) {
    out << isoTime(e.time) << ' ' << storage::toString(e.level) << ' ' << e.eventId << ' ' << e.certName.value_or("-")
        << ' ' << sanitize(e.message) << '\n';
  }
  return kExitOk;
}

void printTrust(const nlohmann::json& t, std::ostream& out) {
  auto str = [](const nlohmann::json& j, const char* key) {
    auto it = j.find(key);
    return it != j.end() && it->is_string() && !it->get<std::string>().empty() ? sanitize(it->get<std::string>())
                                                                              : std::string("-");
  };
  auto age = [](const nlohmann::json& j) {
    std::int64_t s = j.value("age_seconds", std::int64_t{0});
    return s < 120 ? std::to_string(s) + " s" : s < 7200 ? std::to_string(s / 60) + " min" : std::to_string(s / 3600) + " h";
  };
  if (t.contains("anchors")) {
    out << "issued chains verify to: "
        << (t.value("anchors", "") == "ca_list" ? "the STI-PA CA list" : "[acme] trust_anchors (overrides the CA list)")
        << '\n';
  }
  const auto& list = t["ca_list"];
  if (list.is_object()) {
    out << "CA list: sequence " << list.value("sequence", std::int64_t{0}) << ", fetched " << str(list, "fetched_at")
        << " (" << age(list) << " ago), " << (list.value("expired", false) ? "EXPIRED " : "expires ")
        << str(list, "expires") << '\n';
    for (const auto& r : list["roots"]) {
      out << "  root " << str(r, "subject") << "  not after " << str(r, "not_after") << "  sha256 " << str(r, "sha256")
          << '\n';
    }
  } else {
    out << "CA list: none kept yet\n";
  }
  const auto& crl = t["crl"];
  if (crl.is_object()) {
    out << "CRL: issuer " << str(crl, "issuer") << ", thisUpdate " << str(crl, "this_update") << ", nextUpdate "
        << str(crl, "next_update") << (crl.value("stale", false) ? " (STALE)" : "") << ", "
        << crl.value("entries", std::size_t{0}) << " entries, fetched " << str(crl, "fetched_at") << " (" << age(crl)
        << " ago)\n";
  } else if (t.contains("crl_checked") && !t.value("crl_checked", false)) {
    out << "CRL: not read ([sti_pa] crl_signer is not set)\n";
  } else {
    out << "CRL: none kept yet\n";
  }
  if (t.contains("daemon")) {
    const auto& d = t["daemon"];
    out << "last refresh: " << str(d, "last_refresh") << '\n';
    if (str(d, "ca_list_error") != "-") {
      out << "  CA list problem: " << str(d, "ca_list_error") << '\n';
    }
    if (str(d, "crl_error") != "-") {
      out << "  CRL problem: " << str(d, "crl_error") << '\n';
    }
  }
}

int showTrust(const std::string& configPath, bool json, std::ostream& out, std::ostream& err) {
  auto cfg = loadConfig(configPath, err);
  if (!cfg) {
    return kExitCheckFailed;
  }
  nlohmann::json report = trustReport(KeptTrust{}, 0);
  if (exists(dbPath(*cfg))) {
    auto db = openExistingDb(*cfg);
    if (!db) {
      err << "kmsctl: " << db.error().toString() << '\n';
      return kExitRuntime;
    }
    auto store = storage::makeSqliteStore(**db);
    auto kept = readKeptTrust(*store);
    if (!kept) {
      err << "kmsctl: " << kept.error().toString() << '\n';
      return kExitRuntime;
    }
    const std::int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                                 std::chrono::system_clock::now().time_since_epoch())
                                 .count();
    report = trustReport(*kept, now);
  }
  report["crl_checked"] = cfg->stiPa && cfg->stiPa->crlSigner;
  report["anchors"] = cfg->acme.trustAnchors ? "[acme] trust_anchors" : "ca_list";
  if (json) {
    out << report.dump(2) << '\n';
  } else {
    printTrust(report, out);
  }
  return kExitOk;
}

}  // namespace kms::daemon
