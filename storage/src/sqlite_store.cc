// Store over one SQLite connection (see store.h for the contract of each call).

#include <sqlite3.h>

#include <chrono>
#include <utility>

#include "storage/db.h"
#include "storage/store.h"
#include "store_rows.h"

namespace kms::storage {

namespace {

using namespace detail;

std::int64_t systemNow() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

/// The current certificate of managed certificate `c.id`: its newest published one (not
/// before ?1). Callers add "neither revoked nor expired": a certificate that one superseded
/// never becomes current again when the newer one is revoked.
constexpr std::string_view kNewestPublished =
    "SELECT v.id FROM issued_certificates v WHERE v.cert_id = c.id AND v.published_at IS NOT NULL "
    "AND v.not_before <= ?1 ORDER BY v.not_before DESC, v.id DESC LIMIT 1";

// ---------------------------------------------------------------------------------------

class SqliteStore final : public Store {
 public:
  SqliteStore(Db& db, NowFn now) : db_(db), now_(now ? std::move(now) : NowFn(systemNow)) {}

  Result<void> transact(const std::function<Result<void>()>& body) override {
    auto tx = db_.begin();
    if (!tx.has_value()) {
      return fail(tx.error());
    }
    if (auto r = body(); !r.has_value()) {
      return r;  // the guard rolls back
    }
    return tx->commit();
  }

  Result<ManagedCert> upsertCertificate(std::string_view name, CertKind kind,
                                        std::string_view identifiersJson) override {
    auto tx = db_.begin();
    if (!tx.has_value()) {
      return fail(tx.error());
    }
    auto stmt = db_.prepare(
        "INSERT INTO managed_certificates (name, kind, identifiers, created_at, updated_at) "
        "VALUES (?1, ?2, ?3, ?4, ?4) ON CONFLICT (name) DO UPDATE SET kind = excluded.kind, "
        "identifiers = excluded.identifiers, updated_at = excluded.updated_at "
        "WHERE kind <> excluded.kind OR identifiers <> excluded.identifiers");
    if (!stmt.has_value()) {
      return fail(stmt.error());
    }
    stmt->bindText(1, name).bindText(2, toString(kind)).bindText(3, identifiersJson).bindInt64(4, now_());
    if (auto r = stmt->run(); !r.has_value()) {
      return fail(r.error());
    }
    auto cert = getCertificate(name);
    if (!cert.has_value()) {
      return fail(cert.error());
    }
    if (!cert->has_value()) {
      return fail(Errc::internal, "certificate '" + std::string(name) + "' vanished after upsert", db_.path());
    }
    if (auto r = tx->commit(); !r.has_value()) {
      return fail(r.error());
    }
    return std::move(cert->value());
  }

  Result<std::optional<ManagedCert>> getCertificate(std::string_view name) override {
    auto stmt = db_.prepare(std::string(kCertColumns) + "WHERE name = ?1");
    if (!stmt.has_value()) {
      return fail(stmt.error());
    }
    stmt->bindText(1, name);
    return readOne<ManagedCert>(*stmt, readCert);
  }

  Result<std::vector<ManagedCert>> listCertificates() override {
    auto stmt = db_.prepare(std::string(kCertColumns) + "ORDER BY name");
    if (!stmt.has_value()) {
      return fail(stmt.error());
    }
    return readAll<ManagedCert>(*stmt, readCert);
  }

  Result<std::vector<ManagedCert>> listDue(std::int64_t now, int limit) override {
    if (limit < 0) {
      return fail(Errc::invalidArgument, "listDue: negative limit", db_.path());
    }
    auto stmt = db_.prepare(std::string(kCertColumns) +
                            "WHERE next_attempt_at IS NOT NULL AND next_attempt_at <= ?1 "
                            "ORDER BY next_attempt_at, id LIMIT ?2");
    if (!stmt.has_value()) {
      return fail(stmt.error());
    }
    stmt->bindInt64(1, now).bindInt64(2, limit);
    return readAll<ManagedCert>(*stmt, readCert);
  }

  Result<void> setState(std::string_view name, CertState state, std::optional<std::int64_t> nextAttemptAt) override {
    auto stmt = db_.prepare(
        "UPDATE managed_certificates SET state = ?2, next_attempt_at = ?3, failure_count = 0, "
        "last_error = NULL, updated_at = ?4 WHERE name = ?1");
    if (!stmt.has_value()) {
      return fail(stmt.error());
    }
    stmt->bindText(1, name).bindText(2, toString(state));
    bindOpt(*stmt, 3, nextAttemptAt);
    stmt->bindInt64(4, now_());
    return runExpectingRow(*stmt, "certificate '" + std::string(name) + "' does not exist");
  }

  Result<void> setRenewal(std::string_view name, std::optional<std::int64_t> renewAt,
                          std::optional<std::int64_t> ariNextCheck) override {
    auto stmt = db_.prepare(
        "UPDATE managed_certificates SET renew_at = ?2, ari_next_check = ?3, updated_at = ?4 WHERE name = ?1");
    if (!stmt.has_value()) {
      return fail(stmt.error());
    }
    stmt->bindText(1, name);
    bindOpt(*stmt, 2, renewAt);
    bindOpt(*stmt, 3, ariNextCheck);
    stmt->bindInt64(4, now_());
    return runExpectingRow(*stmt, "certificate '" + std::string(name) + "' does not exist");
  }

  Result<void> setNextAttempt(std::string_view name, std::optional<std::int64_t> nextAttemptAt) override {
    auto stmt = db_.prepare("UPDATE managed_certificates SET next_attempt_at = ?2, updated_at = ?3 WHERE name = ?1");
    if (!stmt.has_value()) {
      return fail(stmt.error());
    }
    stmt->bindText(1, name);
    bindOpt(*stmt, 2, nextAttemptAt);
    stmt->bindInt64(3, now_());
    return runExpectingRow(*stmt, "certificate '" + std::string(name) + "' does not exist");
  }

  Result<void> recordFailure(std::string_view name, std::string_view error, std::optional<std::int64_t> nextAttemptAt,
                             std::optional<CertState> newState) override {
    auto stmt = db_.prepare(
        "UPDATE managed_certificates SET failure_count = failure_count + 1, last_error = ?2, "
        "next_attempt_at = ?3, state = COALESCE(?4, state), updated_at = ?5 WHERE name = ?1");
    if (!stmt.has_value()) {
      return fail(stmt.error());
    }
    stmt->bindText(1, name).bindText(2, error);
    bindOpt(*stmt, 3, nextAttemptAt);
    if (newState.has_value()) {
      stmt->bindText(4, toString(*newState));
    } else {
      stmt->bindNull(4);
    }
    stmt->bindInt64(5, now_());
    return runExpectingRow(*stmt, "certificate '" + std::string(name) + "' does not exist");
  }

  Result<void> noteFailureCause(std::string_view name, std::string_view configHash, bool peerWait) override {
    auto stmt = db_.prepare("UPDATE managed_certificates SET failure_config = ?2, failure_wait = ?3 WHERE name = ?1");
    if (!stmt.has_value()) {
      return fail(stmt.error());
    }
    stmt->bindText(1, name).bindText(2, configHash).bindText(3, peerWait ? "peer" : "backoff");
    return runExpectingRow(*stmt, "certificate '" + std::string(name) + "' does not exist");
  }

  Result<bool> releaseBackoff(std::string_view name, std::string_view configHash) override {
    auto stmt = db_.prepare(
        "UPDATE managed_certificates SET next_attempt_at = NULL, updated_at = ?3 "
        "WHERE name = ?1 AND failure_count > 0 AND next_attempt_at IS NOT NULL AND failure_wait = 'backoff' "
        "AND failure_config IS NOT NULL AND failure_config != ?2");
    if (!stmt.has_value()) {
      return fail(stmt.error());
    }
    stmt->bindText(1, name).bindText(2, configHash).bindInt64(3, now_());
    if (auto r = stmt->run(); !r.has_value()) {
      return fail(r.error());
    }
    return db_.changes() > 0;
  }

  Result<Order> createOrder(std::string_view certName, CertState step) override {
    auto tx = db_.begin();
    if (!tx.has_value()) {
      return fail(tx.error());
    }
    auto stmt = db_.prepare(
        "INSERT INTO orders (cert_id, step, status, created_at, updated_at) "
        "SELECT id, ?2, 'open', ?3, ?3 FROM managed_certificates WHERE name = ?1");
    if (!stmt.has_value()) {
      return fail(stmt.error());
    }
    stmt->bindText(1, certName).bindText(2, toString(step)).bindInt64(3, now_());
    if (auto r = stmt->run(); !r.has_value()) {
      Error err = r.error();
      if (err.native == SQLITE_CONSTRAINT_UNIQUE) {
        err.code = Errc::alreadyExists;
        err.message = "certificate '" + std::string(certName) + "' already has an open order; " + err.message;
      }
      return fail(std::move(err));
    }
    if (db_.changes() == 0) {
      return fail(Errc::notFound, "certificate '" + std::string(certName) + "' does not exist", db_.path());
    }
    auto order = getOrder(db_.lastInsertId());
    if (!order.has_value()) {
      return fail(order.error());
    }
    if (auto r = tx->commit(); !r.has_value()) {
      return fail(r.error());
    }
    return order;
  }

  Result<std::optional<Order>> getOpenOrder(std::string_view certName) override {
    auto stmt = db_.prepare(std::string(kOrderColumns) + "WHERE c.name = ?1 AND o.status = 'open'");
    if (!stmt.has_value()) {
      return fail(stmt.error());
    }
    stmt->bindText(1, certName);
    return readOne<Order>(*stmt, readOrder);
  }

  Result<Order> advanceOrder(std::int64_t orderId, const OrderUpdate& u) override {
    auto tx = db_.begin();
    if (!tx.has_value()) {
      return fail(tx.error());
    }
    const std::int64_t now = now_();
    auto order = db_.prepare(
        "UPDATE orders SET step = ?2, order_url = COALESCE(?3, order_url), "
        "authorization_urls = COALESCE(?4, authorization_urls), "
        "challenge_url = COALESCE(?5, challenge_url), finalize_url = COALESCE(?6, finalize_url), "
        "certificate_url = COALESCE(?7, certificate_url), key_uri = COALESCE(?8, key_uri), "
        "acme_status = COALESCE(?9, acme_status), updated_at = ?10, cause = COALESCE(?11, cause) "
        "WHERE id = ?1 AND status = 'open'");
    if (!order.has_value()) {
      return fail(order.error());
    }
    order->bindInt64(1, orderId).bindText(2, toString(u.step));
    bindOpt(*order, 3, u.orderUrl);
    bindOpt(*order, 4, u.authorizationUrlsJson);
    bindOpt(*order, 5, u.challengeUrl);
    bindOpt(*order, 6, u.finalizeUrl);
    bindOpt(*order, 7, u.certificateUrl);
    bindOpt(*order, 8, u.keyUri);
    bindOpt(*order, 9, u.acmeStatus);
    order->bindInt64(10, now);
    bindOpt(*order, 11, u.cause);
    if (auto r = runExpectingRow(*order, "order " + std::to_string(orderId) + " is not open"); !r.has_value()) {
      return fail(r.error());
    }
    auto cert = db_.prepare(
        "UPDATE managed_certificates SET state = ?2, failure_count = 0, last_error = NULL, "
        "next_attempt_at = CASE WHEN ?3 IS NULL THEN next_attempt_at ELSE ?3 END, "
        "updated_at = ?4 WHERE id = (SELECT cert_id FROM orders WHERE id = ?1)");
    if (!cert.has_value()) {
      return fail(cert.error());
    }
    cert->bindInt64(1, orderId).bindText(2, toString(u.step));
    bindOpt(*cert, 3, u.nextAttemptAt);
    cert->bindInt64(4, now);
    if (auto r = cert->run(); !r.has_value()) {
      return fail(r.error());
    }
    auto result = getOrder(orderId);
    if (!result.has_value()) {
      return fail(result.error());
    }
    if (auto r = tx->commit(); !r.has_value()) {
      return fail(r.error());
    }
    return result;
  }

  Result<void> closeOrder(std::int64_t orderId, OrderStatus status) override {
    if (status == OrderStatus::open) {
      return fail(Errc::invalidArgument, "closeOrder: status must be done or abandoned", db_.path());
    }
    auto stmt = db_.prepare("UPDATE orders SET status = ?2, updated_at = ?3 WHERE id = ?1 AND status = 'open'");
    if (!stmt.has_value()) {
      return fail(stmt.error());
    }
    stmt->bindInt64(1, orderId).bindText(2, toString(status)).bindInt64(3, now_());
    return runExpectingRow(*stmt, "order " + std::to_string(orderId) + " is not open");
  }

  Result<std::int64_t> insertIssued(const IssuedCert& c) override {
    auto stmt = db_.prepare(
        "INSERT INTO issued_certificates (cert_id, serial, not_before, not_after, chain_pem, "
        "key_uri, ari_cert_id, x5u_url, published_at, revoked_at, created_at) "
        "SELECT id, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11 "
        "FROM managed_certificates WHERE name = ?1 "
        "ON CONFLICT (cert_id, serial) DO NOTHING");
    if (!stmt.has_value()) {
      return fail(stmt.error());
    }
    stmt->bindText(1, c.certName)
        .bindText(2, c.serial)
        .bindInt64(3, c.notBefore)
        .bindInt64(4, c.notAfter)
        .bindText(5, c.chainPem)
        .bindText(6, c.keyUri);
    bindOpt(*stmt, 7, c.ariCertId);
    bindOpt(*stmt, 8, c.x5uUrl);
    bindOpt(*stmt, 9, c.publishedAt);
    bindOpt(*stmt, 10, c.revokedAt);
    stmt->bindInt64(11, c.createdAt != 0 ? c.createdAt : now_());
    if (auto r = stmt->run(); !r.has_value()) {
      return fail(r.error());
    }
    if (db_.changes() != 0) {
      return db_.lastInsertId();
    }
    // Nothing inserted: the certificate is unknown, or this serial is already stored.
    auto existing = db_.prepare(
        "SELECT i.id FROM issued_certificates i JOIN managed_certificates c ON c.id = i.cert_id "
        "WHERE c.name = ?1 AND i.serial = ?2");
    if (!existing.has_value()) {
      return fail(existing.error());
    }
    existing->bindText(1, c.certName).bindText(2, c.serial);
    auto more = existing->step();
    if (!more.has_value()) {
      return fail(more.error());
    }
    if (!more.value()) {
      return fail(Errc::notFound, "certificate '" + c.certName + "' does not exist", db_.path());
    }
    return existing->columnInt64(0);
  }

  Result<std::vector<IssuedCert>> listIssued(std::string_view certName) override {
    auto stmt = db_.prepare(std::string(kIssuedColumns) + "WHERE c.name = ?1 ORDER BY i.not_before DESC, i.id DESC");
    if (!stmt.has_value()) {
      return fail(stmt.error());
    }
    stmt->bindText(1, certName);
    return readAll<IssuedCert>(*stmt, readIssued);
  }

  Result<std::vector<IssuedCert>> listLatestValid(std::int64_t now, std::optional<std::string_view> name) override {
    auto stmt = db_.prepare(std::string(kIssuedColumns) + "WHERE i.id = (" + std::string(kNewestPublished) +
                            ") AND i.revoked_at IS NULL AND i.not_after > ?1 " + (name ? "AND c.name = ?2 " : "") +
                            "ORDER BY c.name");
    if (!stmt.has_value()) {
      return fail(stmt.error());
    }
    stmt->bindInt64(1, now);
    if (name) {
      stmt->bindText(2, *name);
    }
    return readAll<IssuedCert>(*stmt, readIssued);
  }

  Result<ServiceSummary> serviceSummary(std::int64_t now) override {
    ServiceSummary out;
    // As listLatestValid counts them: the newest published certificate, not revoked or expired.
    auto active = db_.prepare("SELECT count(*) FROM managed_certificates c JOIN issued_certificates i ON i.id = (" +
                              std::string(kNewestPublished) + ") WHERE i.revoked_at IS NULL AND i.not_after > ?1");
    if (!active.has_value()) {
      return fail(active.error());
    }
    active->bindInt64(1, now);
    auto count = readOne<std::int64_t>(*active, [](const Stmt& st) -> Result<std::int64_t> { return st.columnInt64(0); });
    if (!count) {
      return fail(count.error());
    }
    out.active = count->value_or(0);
    auto next = db_.prepare("SELECT name, renew_at FROM managed_certificates WHERE renew_at IS NOT NULL "
                            "ORDER BY renew_at LIMIT 1");
    if (!next.has_value()) {
      return fail(next.error());
    }
    using NameAt = std::pair<std::string, std::int64_t>;
    auto soonest = readOne<NameAt>(*next, [](const Stmt& st) -> Result<NameAt> {
      return NameAt(st.columnText(0), st.columnInt64(1));
    });
    if (!soonest) {
      return fail(soonest.error());
    }
    out.nextRenewal = std::move(*soonest);
    auto error = db_.prepare("SELECT name, last_error FROM managed_certificates WHERE last_error IS NOT NULL "
                             "ORDER BY updated_at DESC LIMIT 1");
    if (!error.has_value()) {
      return fail(error.error());
    }
    using NameText = std::pair<std::string, std::string>;
    auto latest = readOne<NameText>(*error, [](const Stmt& st) -> Result<NameText> {
      return NameText(st.columnText(0), st.columnText(1));
    });
    if (!latest) {
      return fail(latest.error());
    }
    out.lastError = std::move(*latest);
    return out;
  }

  Result<std::vector<CertStatus>> listStatus(std::int64_t now, std::optional<std::string_view> name) override {
    std::string sql =
        "SELECT c.name, c.kind, c.state, c.failure_count, c.last_error, c.renew_at, c.next_attempt_at, "
        "i.serial, i.not_after, i.x5u_url, i.not_before, i.published_at FROM managed_certificates c "
        "LEFT JOIN issued_certificates i ON i.id = (" + std::string(kNewestPublished) +
        ") AND i.revoked_at IS NULL AND i.not_after > ?1 ";
    sql += name.has_value() ? "WHERE c.name = ?2 " : "";
    sql += "ORDER BY c.name";
    auto stmt = db_.prepare(sql);
    if (!stmt.has_value()) {
      return fail(stmt.error());
    }
    stmt->bindInt64(1, now);
    if (name.has_value()) {
      stmt->bindText(2, *name);
    }
    return readAll<CertStatus>(*stmt, [](const Stmt& st) -> Result<CertStatus> {
      CertStatus r;
      r.name = st.columnText(0);
      r.kind = st.columnText(1) == std::string_view("shaken") ? CertKind::shaken : CertKind::acme;
      auto state = parseCertState(st.columnText(2));
      if (!state.has_value()) {
        return fail(state.error());
      }
      r.state = state.value();
      r.failureCount = st.columnInt64(3);
      r.lastError = optText(st, 4);
      r.renewAt = optInt(st, 5);
      r.nextAttemptAt = optInt(st, 6);
      r.serial = optText(st, 7);
      r.notAfter = optInt(st, 8);
      r.x5uUrl = optText(st, 9);
      r.notBefore = optInt(st, 10);
      r.publishedAt = optInt(st, 11);
      return r;
    });
  }

  /// Sets one time column of an issued certificate (a column name of ours, not input).
  Result<void> setIssuedTime(const char* column, std::int64_t issuedId, std::int64_t at) {
    auto stmt = db_.prepare(std::string("UPDATE issued_certificates SET ") + column + " = ?2 WHERE id = ?1");
    if (!stmt.has_value()) {
      return fail(stmt.error());
    }
    stmt->bindInt64(1, issuedId).bindInt64(2, at);
    return runExpectingRow(*stmt, "issued certificate " + std::to_string(issuedId) + " does not exist");
  }

  Result<void> markPublished(std::int64_t issuedId, std::string_view x5uUrl, std::int64_t at) override {
    auto stmt = db_.prepare("UPDATE issued_certificates SET x5u_url = ?2, published_at = ?3 WHERE id = ?1");
    if (!stmt.has_value()) {
      return fail(stmt.error());
    }
    stmt->bindInt64(1, issuedId).bindText(2, x5uUrl).bindInt64(3, at);
    return runExpectingRow(*stmt, "issued certificate " + std::to_string(issuedId) + " does not exist");
  }

  Result<void> markDeployed(std::int64_t issuedId, std::int64_t at) override {
    return setIssuedTime("deployed_at", issuedId, at);
  }


  Result<void> markRevoked(std::int64_t issuedId, std::int64_t at) override {
    return setIssuedTime("revoked_at", issuedId, at);
  }


  Result<std::int64_t> recordKey(const HsmKey& key) override {
    auto stmt = db_.prepare(
        "INSERT INTO hsm_keys (key_uri, cka_id, label, purpose, created_at, destroyed_at) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6)");
    if (!stmt.has_value()) {
      return fail(stmt.error());
    }
    stmt->bindText(1, key.keyUri)
        .bindText(2, key.ckaIdHex)
        .bindText(3, key.label)
        .bindText(4, toString(key.purpose))
        .bindInt64(5, key.createdAt != 0 ? key.createdAt : now_());
    bindOpt(*stmt, 6, key.destroyedAt);
    if (auto r = stmt->run(); !r.has_value()) {
      return fail(r.error());
    }
    return db_.lastInsertId();
  }

  Result<std::vector<HsmKey>> listKeys(bool includeDestroyed) override {
    auto stmt = db_.prepare(std::string(kKeyColumns) + (includeDestroyed ? "ORDER BY id"
                                                                         : "WHERE destroyed_at IS NULL "
                                                                           "ORDER BY id"));
    if (!stmt.has_value()) {
      return fail(stmt.error());
    }
    return readAll<HsmKey>(*stmt, readKey);
  }

  Result<void> markKeyDestroyed(std::string_view keyUri, std::int64_t at) override {
    auto stmt = db_.prepare("UPDATE hsm_keys SET destroyed_at = ?2 WHERE key_uri = ?1 AND destroyed_at IS NULL");
    if (!stmt.has_value()) {
      return fail(stmt.error());
    }
    stmt->bindText(1, keyUri).bindInt64(2, at);
    return runExpectingRow(*stmt, "no live HSM key " + std::string(keyUri));
  }

  Result<std::int64_t> saveAccount(const AcmeAccount& a) override {
    auto tx = db_.begin();
    if (!tx.has_value()) {
      return fail(tx.error());
    }
    auto stmt = db_.prepare(
        "INSERT INTO acme_accounts (directory_url, account_url, key_uri, status, created_at) "
        "VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (directory_url) DO UPDATE SET "
        "account_url = excluded.account_url, key_uri = excluded.key_uri, "
        "status = excluded.status");
    if (!stmt.has_value()) {
      return fail(stmt.error());
    }
    stmt->bindText(1, a.directoryUrl)
        .bindText(2, a.accountUrl)
        .bindText(3, a.keyUri)
        .bindText(4, a.status)
        .bindInt64(5, a.createdAt != 0 ? a.createdAt : now_());
    if (auto r = stmt->run(); !r.has_value()) {
      return fail(r.error());
    }
    auto saved = getAccount(a.directoryUrl);
    if (!saved.has_value()) {
      return fail(saved.error());
    }
    if (!saved->has_value()) {
      return fail(Errc::internal, "account for " + a.directoryUrl + " vanished after save", db_.path());
    }
    if (auto r = tx->commit(); !r.has_value()) {
      return fail(r.error());
    }
    return saved->value().id;
  }

  Result<std::optional<AcmeAccount>> getAccount(std::string_view directoryUrl) override {
    auto stmt = db_.prepare(std::string(kAccountColumns) + "WHERE directory_url = ?1");
    if (!stmt.has_value()) {
      return fail(stmt.error());
    }
    stmt->bindText(1, directoryUrl);
    return readOne<AcmeAccount>(*stmt, readAccount);
  }

  Result<std::vector<AcmeAccount>> listAccounts() override {
    auto stmt = db_.prepare(std::string(kAccountColumns) + "ORDER BY directory_url");
    if (!stmt.has_value()) {
      return fail(stmt.error());
    }
    return readAll<AcmeAccount>(*stmt, readAccount);
  }

  Result<void> saveSpcToken(const SpcTokenMeta& m) override {
    auto stmt = db_.prepare(
        "INSERT INTO spc_tokens (spc, account_key_fingerprint, jti, exp, fetched_at) "
        "VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (spc, account_key_fingerprint) DO UPDATE SET "
        "jti = excluded.jti, exp = excluded.exp, fetched_at = excluded.fetched_at");
    if (!stmt.has_value()) {
      return fail(stmt.error());
    }
    stmt->bindText(1, m.spc).bindText(2, m.accountKeyFingerprint);
    bindOpt(*stmt, 3, m.jti);
    stmt->bindInt64(4, m.exp).bindInt64(5, m.fetchedAt != 0 ? m.fetchedAt : now_());
    return stmt->run();
  }

  Result<std::optional<SpcTokenMeta>> getSpcToken(std::string_view spc, std::string_view fingerprint) override {
    auto stmt = db_.prepare(
        "SELECT spc, account_key_fingerprint, jti, exp, fetched_at FROM spc_tokens "
        "WHERE spc = ?1 AND account_key_fingerprint = ?2");
    if (!stmt.has_value()) {
      return fail(stmt.error());
    }
    stmt->bindText(1, spc).bindText(2, fingerprint);
    return readOne<SpcTokenMeta>(*stmt, readSpcToken);
  }

  Result<std::vector<SpcTokenMeta>> listSpcTokens() override {
    auto stmt = db_.prepare("SELECT spc, account_key_fingerprint, jti, exp, fetched_at FROM spc_tokens ORDER BY spc");
    if (!stmt.has_value()) {
      return fail(stmt.error());
    }
    return readAll<SpcTokenMeta>(*stmt, readSpcToken);
  }

  Result<std::int64_t> appendEvent(const Event& e) override {
    auto stmt = db_.prepare(
        "INSERT INTO events (time, cert_name, event_id, level, message, fields) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6)");
    if (!stmt.has_value()) {
      return fail(stmt.error());
    }
    stmt->bindInt64(1, e.time != 0 ? e.time : now_());
    bindOpt(*stmt, 2, e.certName);
    stmt->bindText(3, e.eventId).bindText(4, toString(e.level)).bindText(5, e.message).bindText(6, e.fieldsJson);
    if (auto r = stmt->run(); !r.has_value()) {
      return fail(r.error());
    }
    return db_.lastInsertId();
  }

  Result<std::vector<Event>> listEvents(std::optional<std::string_view> certName, int limit) override {
    if (limit < 0) {
      return fail(Errc::invalidArgument, "listEvents: negative limit", db_.path());
    }
    // Two texts rather than "?1 IS NULL OR cert_name = ?1", so each can use its index.
    std::string sql = "SELECT id, time, cert_name, event_id, level, message, fields FROM events ";
    sql += certName.has_value() ? "WHERE cert_name = ?2 " : "";
    sql += "ORDER BY time DESC, id DESC LIMIT ?1";
    auto stmt = db_.prepare(sql);
    if (!stmt.has_value()) {
      return fail(stmt.error());
    }
    stmt->bindInt64(1, limit);
    if (certName.has_value()) {
      stmt->bindText(2, *certName);
    }
    return readAll<Event>(*stmt, readEvent);
  }

  Result<std::vector<std::pair<std::string, std::optional<std::string>>>> listRetirableKeys(
      std::int64_t now, std::int64_t retainSeconds) override {
    // A certificate's successor: the earliest publication of a newer certificate for it.
    auto stmt = db_.prepare(R"sql(
      SELECT k.key_uri,
             (SELECT c.name FROM issued_certificates i JOIN managed_certificates c ON c.id = i.cert_id
               WHERE i.key_uri = k.key_uri
              UNION ALL
              SELECT c.name FROM orders o JOIN managed_certificates c ON c.id = o.cert_id
               WHERE o.key_uri = k.key_uri LIMIT 1)
      FROM hsm_keys k
      WHERE k.destroyed_at IS NULL AND k.purpose = 'certificate'
        AND NOT EXISTS (SELECT 1 FROM orders o WHERE o.key_uri = k.key_uri AND o.status = 'open')
        AND NOT EXISTS (
          SELECT 1 FROM issued_certificates i
          WHERE i.key_uri = k.key_uri AND i.revoked_at IS NULL AND i.not_after > ?1
            AND coalesce((SELECT min(n.published_at) FROM issued_certificates n
                          WHERE n.cert_id = i.cert_id AND n.published_at IS NOT NULL
                            AND (n.not_before > i.not_before
                                 OR (n.not_before = i.not_before AND n.id > i.id))),
                         ?1) > ?1 - ?2)
      ORDER BY k.id)sql");
    if (!stmt.has_value()) {
      return fail(stmt.error());
    }
    stmt->bindInt64(1, now).bindInt64(2, retainSeconds);
    return readAll<std::pair<std::string, std::optional<std::string>>>(
        *stmt, [](const Stmt& s) -> Result<std::pair<std::string, std::optional<std::string>>> {
          return std::pair<std::string, std::optional<std::string>>(s.columnText(0), optText(s, 1));
        });
  }

  Result<std::vector<KeyUsage>> listKeyUsage(std::int64_t now, std::int64_t retainSeconds) override {
    // replaced_at: for the key's valid published certificates, the latest time one of them
    // was replaced (a newer one of its certificate published); NULL inside max() when one is
    // not replaced at all, read through the count of unreplaced ones.
    auto stmt = db_.prepare(R"sql(
      WITH valid AS (
        SELECT i.key_uri,
               (SELECT min(n.published_at) FROM issued_certificates n
                 WHERE n.cert_id = i.cert_id AND n.published_at IS NOT NULL
                   AND (n.not_before > i.not_before OR (n.not_before = i.not_before AND n.id > i.id))) AS replaced_at
          FROM issued_certificates i
         WHERE i.published_at IS NOT NULL AND i.revoked_at IS NULL AND i.not_after > ?1)
      SELECT k.key_uri, k.purpose,
             coalesce((SELECT c.name FROM issued_certificates i JOIN managed_certificates c ON c.id = i.cert_id
                        WHERE i.key_uri = k.key_uri ORDER BY i.not_before DESC LIMIT 1),
                      (SELECT c.name FROM orders o JOIN managed_certificates c ON c.id = o.cert_id
                        WHERE o.key_uri = k.key_uri ORDER BY o.id DESC LIMIT 1)),
             EXISTS (SELECT 1 FROM orders o WHERE o.key_uri = k.key_uri AND o.status = 'open'),
             (SELECT count(*) FROM valid v WHERE v.key_uri = k.key_uri AND v.replaced_at IS NULL),
             (SELECT max(v.replaced_at) FROM valid v WHERE v.key_uri = k.key_uri),
             EXISTS (SELECT 1 FROM orders o WHERE o.key_uri = k.key_uri AND o.status = 'abandoned'),
             EXISTS (SELECT 1 FROM issued_certificates i WHERE i.key_uri = k.key_uri AND i.revoked_at IS NOT NULL)
        FROM hsm_keys k
       WHERE k.destroyed_at IS NULL
       ORDER BY k.id)sql");
    if (!stmt.has_value()) {
      return fail(stmt.error());
    }
    stmt->bindInt64(1, now);
    return readAll<KeyUsage>(*stmt, [retainSeconds](const Stmt& s) -> Result<KeyUsage> {
      KeyUsage u;
      u.keyUri = s.columnText(0);
      u.certName = optText(s, 2);
      const bool account = s.columnText(1) == "account";
      const bool inOrder = s.columnInt64(3) != 0;
      const bool current = s.columnInt64(4) > 0;
      const auto replacedAt = optInt(s, 5);
      const bool abandoned = s.columnInt64(6) != 0;
      const bool revoked = s.columnInt64(7) != 0;
      if (account) {
        u.state = "account";
      } else if (current) {
        u.state = "active";
      } else if (inOrder) {
        u.state = "order";
      } else if (replacedAt) {
        u.state = "previous";
        u.until = *replacedAt + retainSeconds;
      } else if (revoked) {
        u.state = "revoked";
      } else if (abandoned) {
        u.state = "abandoned";
      } else {
        u.state = "expired";
      }
      return u;
    });
  }

  Result<std::vector<StaleChain>> listStaleChains(std::int64_t now, std::int64_t retainSeconds, int limit) override {
    auto stmt = db_.prepare(R"sql(
      SELECT i.id, c.name, i.serial
        FROM issued_certificates i JOIN managed_certificates c ON c.id = i.cert_id
       WHERE i.published_at IS NOT NULL AND i.unpublished_at IS NULL
         AND (i.revoked_at IS NOT NULL OR i.not_after <= ?1 - ?2
              OR (SELECT min(n.published_at) FROM issued_certificates n
                   WHERE n.cert_id = i.cert_id AND n.published_at IS NOT NULL
                     AND (n.not_before > i.not_before OR (n.not_before = i.not_before AND n.id > i.id))) <= ?1 - ?2)
       ORDER BY i.id LIMIT ?3)sql");
    if (!stmt.has_value()) {
      return fail(stmt.error());
    }
    stmt->bindInt64(1, now).bindInt64(2, retainSeconds).bindInt64(3, limit);
    return readAll<StaleChain>(*stmt, [](const Stmt& s) -> Result<StaleChain> {
      return StaleChain{s.columnInt64(0), s.columnText(1), s.columnText(2)};
    });
  }

  Result<void> markUnpublished(std::int64_t issuedId, std::int64_t at) override {
    return setIssuedTime("unpublished_at", issuedId, at);
  }


  Result<void> saveTrust(const TrustDocument& d) override {
    auto stmt = db_.prepare(
        "INSERT INTO trust_documents (kind, body, sequence, this_update, next_update, fetched_at) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (kind) DO UPDATE SET body = excluded.body, "
        "sequence = excluded.sequence, this_update = excluded.this_update, "
        "next_update = excluded.next_update, fetched_at = excluded.fetched_at");
    if (!stmt.has_value()) {
      return fail(stmt.error());
    }
    stmt->bindText(1, toString(d.kind)).bindBlob(2, d.body);
    bindOpt(*stmt, 3, d.sequence);
    bindOpt(*stmt, 4, d.thisUpdate);
    bindOpt(*stmt, 5, d.nextUpdate);
    stmt->bindInt64(6, d.fetchedAt != 0 ? d.fetchedAt : now_());
    return stmt->run();
  }

  Result<std::optional<TrustDocument>> getTrust(TrustKind kind) override {
    auto stmt = db_.prepare(
        "SELECT body, sequence, this_update, next_update, fetched_at FROM trust_documents WHERE kind = ?1");
    if (!stmt.has_value()) {
      return fail(stmt.error());
    }
    stmt->bindText(1, toString(kind));
    return readOne<TrustDocument>(*stmt, [kind](const Stmt& st) -> Result<TrustDocument> {
      TrustDocument d;
      d.kind = kind;
      d.body = st.columnBlob(0);
      d.sequence = optInt(st, 1);
      d.thisUpdate = optInt(st, 2);
      d.nextUpdate = optInt(st, 3);
      d.fetchedAt = st.columnInt64(4);
      return d;
    });
  }

  Result<std::int64_t> countOpenOrders() override {
    auto stmt = db_.prepare("SELECT count(*) FROM orders WHERE status = 'open'");
    if (!stmt.has_value()) {
      return fail(stmt.error());
    }
    auto more = stmt->step();
    if (!more.has_value()) {
      return fail(more.error());
    }
    return stmt->columnInt64(0);
  }

  Result<std::int64_t> pruneEvents(std::int64_t olderThan, std::int64_t keepNewest) override {
    auto stmt = db_.prepare(
        "DELETE FROM events WHERE time < ?1 "
        "OR id <= (SELECT id FROM events ORDER BY id DESC LIMIT 1 OFFSET ?2)");
    if (!stmt.has_value()) {
      return fail(stmt.error());
    }
    stmt->bindInt64(1, olderThan).bindInt64(2, keepNewest);
    if (auto r = stmt->run(); !r.has_value()) {
      return fail(r.error());
    }
    return static_cast<std::int64_t>(db_.changes());
  }

  Result<std::int64_t> countOrdersWithCause(std::string_view certName, std::string_view cause,
                                            std::int64_t since) override {
    auto stmt = db_.prepare(
        "SELECT count(*) FROM orders o JOIN managed_certificates c ON c.id = o.cert_id "
        "WHERE c.name = ?1 AND o.cause = ?2 AND o.created_at >= ?3");
    if (!stmt.has_value()) {
      return fail(stmt.error());
    }
    stmt->bindText(1, certName).bindText(2, cause).bindInt64(3, since);
    auto more = stmt->step();
    if (!more.has_value()) {
      return fail(more.error());
    }
    return stmt->columnInt64(0);
  }

  Result<std::vector<Event>> listEventsAfter(std::int64_t afterId, int limit) override {
    if (limit < 0) {
      return fail(Errc::invalidArgument, "listEventsAfter: negative limit", db_.path());
    }
    auto stmt = db_.prepare(
        "SELECT id, time, cert_name, event_id, level, message, fields FROM events WHERE id > ?1 "
        "ORDER BY id LIMIT ?2");
    if (!stmt.has_value()) {
      return fail(stmt.error());
    }
    stmt->bindInt64(1, afterId).bindInt64(2, limit);
    return readAll<Event>(*stmt, readEvent);
  }

  Result<std::pair<std::string, std::int64_t>> snapshot() override {
    auto version = db_.pragmaInt("user_version");
    if (!version) {
      return fail(version.error());
    }
    auto image = db_.snapshot();
    if (!image) {
      return fail(image.error());
    }
    return std::pair{std::move(*image), *version};
  }

 private:
  /// Runs a write that must change at least one row; Errc::notFound with `missing` if not.
  Result<void> runExpectingRow(Stmt& stmt, const std::string& missing) {
    if (auto r = stmt.run(); !r.has_value()) {
      return r;
    }
    if (db_.changes() == 0) {
      return fail(Errc::notFound, missing, db_.path());
    }
    return ok();
  }

  Result<Order> getOrder(std::int64_t orderId) {
    auto stmt = db_.prepare(std::string(kOrderColumns) + "WHERE o.id = ?1");
    if (!stmt.has_value()) {
      return fail(stmt.error());
    }
    stmt->bindInt64(1, orderId);
    auto row = readOne<Order>(*stmt, readOrder);
    if (!row.has_value()) {
      return fail(row.error());
    }
    if (!row->has_value()) {
      return fail(Errc::notFound, "order " + std::to_string(orderId) + " does not exist", db_.path());
    }
    return std::move(row->value());
  }

  Db& db_;
  NowFn now_;
};

}  // namespace

std::unique_ptr<Store> makeSqliteStore(Db& db, NowFn now) {
  return std::make_unique<SqliteStore>(db, std::move(now));
}

}  // namespace kms::storage
