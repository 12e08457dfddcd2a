#include "ca_store.h"

#include <filesystem>

#include <nlohmann/json.hpp>

#include "util.h"

namespace kms::lab {

namespace {
using json = nlohmann::json;
}

Result<CaStore> CaStore::open(const std::string& path) {
  CaStore store;
  store.path_ = path;
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    return store;
  }
  auto text = readFile(path);
  if (!text) {
    return fail(Errc::io, "cannot read", path);
  }
  json j = json::parse(*text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return fail(Errc::invalidArgument, "not a JSON object", path);
  }
  try {
    for (const auto& a : j.value("accounts", json::array())) {
      auto key = pki::EcPublicKey::fromJwkCoordinates(a.at("x").get<std::string>(), a.at("y").get<std::string>());
      if (!key) {
        return fail(Errc::invalidArgument, "bad account key", path);
      }
      StoredAccount acct{a.at("id").get<std::string>(), *key, a.at("status").get<std::string>(),
                         a.value("contact", std::vector<std::string>{}), a.value("orders", std::vector<std::string>{})};
      store.nextAccount_ = std::max<std::uint64_t>(store.nextAccount_, std::stoull(acct.id) + 1);
      store.accounts_.emplace(acct.id, std::move(acct));
    }
    for (const auto& c : j.value("certificates", json::array())) {
      StoredCertificate cert{c.at("id").get<std::string>(),         c.at("account").get<std::string>(),
                             c.at("pem").get<std::string>(),        c.at("ari").get<std::string>(),
                             c.at("revoked").get<bool>(),           c.at("reason").get<int>(),
                             c.at("revoked_at").get<std::int64_t>(), c.value("replaces", std::string())};
      store.certificates_.emplace(cert.id, std::move(cert));
    }
  } catch (const std::exception& e) {
    return fail(Errc::invalidArgument, std::string("malformed state: ") + e.what(), path);
  }
  return store;
}

StoredAccount* CaStore::account(const std::string& id) {
  auto it = accounts_.find(id);
  return it == accounts_.end() ? nullptr : &it->second;
}

StoredAccount* CaStore::accountByKey(const pki::EcPublicKey& key) {
  for (auto& [id, acct] : accounts_) {
    if (acct.key == key) {
      return &acct;
    }
  }
  return nullptr;
}

StoredAccount& CaStore::addAccount(const pki::EcPublicKey& key, std::vector<std::string> contact) {
  std::string id = std::to_string(nextAccount_++);
  return accounts_.emplace(id, StoredAccount{id, key, "valid", std::move(contact), {}}).first->second;
}

StoredCertificate* CaStore::certificate(const std::string& id) {
  auto it = certificates_.find(id);
  return it == certificates_.end() ? nullptr : &it->second;
}

StoredCertificate* CaStore::certificateByAriId(const std::string& certId) {
  for (auto& [id, cert] : certificates_) {
    if (cert.ariCertId == certId) {
      return &cert;
    }
  }
  return nullptr;
}

void CaStore::addCertificate(StoredCertificate cert) {
  std::string id = cert.id;
  certificates_.insert_or_assign(id, std::move(cert));
}

Result<void> CaStore::save() const {
  json accounts = json::array();
  for (const auto& [id, a] : accounts_) {
    accounts.push_back({{"id", a.id},
                        {"x", pki::base64UrlEncode(a.key.x())},
                        {"y", pki::base64UrlEncode(a.key.y())},
                        {"status", a.status},
                        {"contact", a.contact},
                        {"orders", a.orders}});
  }
  json certs = json::array();
  for (const auto& [id, c] : certificates_) {
    certs.push_back({{"id", c.id},
                     {"account", c.accountId},
                     {"pem", c.leafPem},
                     {"ari", c.ariCertId},
                     {"revoked", c.revoked},
                     {"reason", c.reason},
                     {"revoked_at", c.revokedAt},
                     {"replaces", c.replaces}});
  }
  json j{{"accounts", accounts}, {"certificates", certs}};
  return writeFileAtomic(path_, j.dump(2) + "\n", 0600);
}

}  // namespace kms::lab
