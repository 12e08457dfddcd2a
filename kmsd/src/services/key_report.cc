#include "services/key_report.h"

#include <unordered_map>
#include <unordered_set>

#include <nlohmann/json.hpp>

#include "common/time_format.h"

namespace kms::daemon {

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

}  // namespace kms::daemon
