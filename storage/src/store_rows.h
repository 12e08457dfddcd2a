#pragma once
// Private to kms_storage: binding optionals and turning result rows into the Store structs.

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "storage/db.h"
#include "storage/store.h"

namespace kms::storage::detail {

void bindOpt(Stmt& stmt, int index, const std::optional<std::string>& value);
void bindOpt(Stmt& stmt, int index, const std::optional<std::int64_t>& value);
std::optional<std::string> optText(const Stmt& stmt, int column);
std::optional<std::int64_t> optInt(const Stmt& stmt, int column);

/// Steps `stmt` to the end, converting each row with `read` (Stmt -> Result<Row>).
template <class Row, class Reader>
Result<std::vector<Row>> readAll(Stmt& stmt, Reader read) {
  std::vector<Row> rows;
  for (;;) {
    auto more = stmt.step();
    if (!more.has_value()) {
      return fail(more.error());
    }
    if (!more.value()) {
      return rows;
    }
    auto row = read(stmt);
    if (!row.has_value()) {
      return fail(row.error());
    }
    rows.push_back(std::move(row.value()));
  }
}

/// The first row of `stmt`, if any.
template <class Row, class Reader>
Result<std::optional<Row>> readOne(Stmt& stmt, Reader read) {
  auto more = stmt.step();
  if (!more.has_value()) {
    return fail(more.error());
  }
  if (!more.value()) {
    return std::optional<Row>();
  }
  auto row = read(stmt);
  if (!row.has_value()) {
    return fail(row.error());
  }
  return std::optional<Row>(std::move(row.value()));
}

// Row readers; each matches the column list before it (callers append WHERE/ORDER BY).

inline constexpr const char* kCertColumns =
    "SELECT id, name, kind, identifiers, state, next_attempt_at, failure_count, last_error, "
    "created_at, updated_at, renew_at, ari_next_check, failure_config, failure_wait FROM managed_certificates ";

inline constexpr const char* kOrderColumns =
    "SELECT o.id, c.name, o.step, o.status, o.order_url, o.authorization_urls, o.challenge_url, "
    "o.finalize_url, o.certificate_url, o.key_uri, o.acme_status, o.created_at, o.updated_at "
    "FROM orders o JOIN managed_certificates c ON c.id = o.cert_id ";

inline constexpr const char* kIssuedColumns =
    "SELECT i.id, c.name, i.serial, i.not_before, i.not_after, i.chain_pem, i.key_uri, "
    "i.ari_cert_id, i.x5u_url, i.published_at, i.revoked_at, i.created_at, i.deployed_at "
    "FROM issued_certificates i JOIN managed_certificates c ON c.id = i.cert_id ";

inline constexpr const char* kKeyColumns =
    "SELECT id, key_uri, cka_id, label, purpose, created_at, destroyed_at FROM hsm_keys ";

inline constexpr const char* kAccountColumns =
    "SELECT id, directory_url, account_url, key_uri, status, created_at FROM acme_accounts ";

Result<ManagedCert> readCert(const Stmt& s);
Result<Order> readOrder(const Stmt& s);
Result<IssuedCert> readIssued(const Stmt& s);
Result<HsmKey> readKey(const Stmt& s);
Result<AcmeAccount> readAccount(const Stmt& s);
Result<SpcTokenMeta> readSpcToken(const Stmt& s);
Result<Event> readEvent(const Stmt& s);

}  // namespace kms::storage::detail
