#pragma once
/// @file What the lab STI-CA keeps across restarts (D/ca-state.json): accounts, issued
/// certificates, revocations. Orders and authorizations live in memory only.
/// Not thread-safe: the caller serialises access.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "kms/error.h"
#include "pki/ec_key.h"

namespace kms::lab {

struct StoredAccount {
  std::string id;
  pki::EcPublicKey key;
  std::string status = "valid";  ///< valid | deactivated
  std::vector<std::string> contact;
  std::vector<std::string> orders;  ///< order ids
};

struct StoredCertificate {
  std::string id;  ///< serial, upper-case hex
  std::string accountId;
  std::string leafPem;
  std::string ariCertId;  ///< RFC 9773 certID
  bool revoked = false;
  int reason = 0;
  std::int64_t revokedAt = 0;
  std::string replaces;  ///< the certID the order named in `replaces` (RFC 9773), or empty
};

class CaStore {
 public:
  /// Loads path when it exists (an unreadable or malformed file is an error).
  [[nodiscard]] static Result<CaStore> open(const std::string& path);

  [[nodiscard]] StoredAccount* account(const std::string& id);
  [[nodiscard]] StoredAccount* accountByKey(const pki::EcPublicKey& key);
  StoredAccount& addAccount(const pki::EcPublicKey& key, std::vector<std::string> contact);

  [[nodiscard]] StoredCertificate* certificate(const std::string& id);
  [[nodiscard]] StoredCertificate* certificateByAriId(const std::string& certId);
  void addCertificate(StoredCertificate cert);
  [[nodiscard]] const std::map<std::string, StoredCertificate>& certificates() const { return certificates_; }

  /// Writes the file (atomically).
  [[nodiscard]] Result<void> save() const;

 private:
  std::string path_;
  std::map<std::string, StoredAccount> accounts_;
  std::map<std::string, StoredCertificate> certificates_;
  std::uint64_t nextAccount_ = 1;
};

}  // namespace kms::lab
