#include "storage/alert_log.h"

#include <map>

#include "store_rows.h"

namespace kms::storage {

using detail::bindOpt;
using detail::optInt;
using detail::optText;
using detail::readAll;
using detail::readOne;

AlertLog::AlertLog(std::unique_ptr<Db> db) : db_(std::move(db)) {}
AlertLog::~AlertLog() = default;

Result<std::unique_ptr<AlertLog>> AlertLog::open(const std::string& path) {
  OpenOptions options;
  options.create = false;
  options.migrate = false;
  auto db = Db::open(path, options);
  if (!db) {
    return fail(db.error());
  }
  return std::make_unique<AlertLog>(std::move(*db));
}

Result<std::vector<AlertFacts>> AlertLog::facts(std::int64_t now) {
  // The certificate verifiers get: as the status listing's, but also when it has expired.
  auto stmt = db_->prepare(
      "SELECT c.name, c.failure_count, c.last_error, i.not_before, i.not_after FROM managed_certificates c "
      "LEFT JOIN issued_certificates i ON i.id = (SELECT v.id FROM issued_certificates v WHERE v.cert_id = c.id "
      "AND v.published_at IS NOT NULL AND v.revoked_at IS NULL AND v.not_before <= ?1 "
      "ORDER BY v.not_before DESC, v.id DESC LIMIT 1) ORDER BY c.name");
  if (!stmt) {
    return fail(stmt.error());
  }
  stmt->bindInt64(1, now);
  auto rows = readAll<AlertFacts>(*stmt, [](const Stmt& st) -> Result<AlertFacts> {
    AlertFacts f;
    f.name = st.columnText(0);
    f.failureCount = st.columnInt64(1);
    f.lastError = optText(st, 2);
    f.notBefore = optInt(st, 3);
    f.notAfter = optInt(st, 4);
    return f;
  });
  if (!rows) {
    return rows;
  }
  std::map<std::string, AlertFacts*> byName;
  for (AlertFacts& f : *rows) {
    byName[f.name] = &f;
  }
  auto events = db_->prepare(
      "SELECT cert_name, "
      "MAX(CASE WHEN event_id = 'KMS_CERT_ACTIVATED' THEN id END), "
      "MAX(CASE WHEN event_id = 'KMS_CERT_REVOKED' AND json_extract(fields, '$.source') = 'crl' THEN id END), "
      "MAX(CASE WHEN event_id = 'KMS_ROOT_DISTRUSTED' THEN id END), "
      "MAX(CASE WHEN event_id IN ('KMS_PUBLICATION_CHECK_FAILED', 'KMS_PUBLISH_FAILED') THEN id END), "
      "MAX(CASE WHEN event_id = 'KMS_CERT_PUBLISHED' THEN id END) "
      "FROM events WHERE event_id IN ('KMS_CERT_ACTIVATED', 'KMS_CERT_REVOKED', 'KMS_ROOT_DISTRUSTED', "
      "'KMS_PUBLICATION_CHECK_FAILED', 'KMS_PUBLISH_FAILED', 'KMS_CERT_PUBLISHED') AND cert_name IS NOT NULL "
      "GROUP BY cert_name");
  if (!events) {
    return fail(events.error());
  }
  for (;;) {
    auto more = events->step();
    if (!more) {
      return fail(more.error());
    }
    if (!*more) {
      break;
    }
    auto it = byName.find(events->columnText(0));
    if (it == byName.end()) {
      continue;
    }
    AlertFacts& f = *it->second;
    f.activatedEvent = optInt(*events, 1).value_or(0);
    f.crlRevokedEvent = optInt(*events, 2).value_or(0);
    f.distrustedEvent = optInt(*events, 3).value_or(0);
    f.publicationFailedEvent = optInt(*events, 4).value_or(0);
    f.publishedEvent = optInt(*events, 5).value_or(0);
  }
  // The failed step only matters while failures stand.
  auto step = db_->prepare(
      "SELECT json_extract(fields, '$.step') FROM events WHERE cert_name = ?1 "
      "AND event_id IN ('KMS_RENEW_FAILED', 'KMS_ISSUE_FAILED') ORDER BY id DESC LIMIT 1");
  if (!step) {
    return fail(step.error());
  }
  for (AlertFacts& f : *rows) {
    if (f.failureCount == 0) {
      continue;
    }
    step->reset();
    step->bindText(1, f.name);
    auto found = readOne<std::optional<std::string>>(
        *step, [](const Stmt& st) -> Result<std::optional<std::string>> { return optText(st, 0); });
    if (!found) {
      return fail(found.error());
    }
    if (found->has_value()) {
      f.lastFailedStep = **found;
    }
  }
  return rows;
}

Result<std::int64_t> AlertLog::lastEventId() {
  auto stmt = db_->prepare("SELECT COALESCE(MAX(id), 0) FROM events");
  if (!stmt) {
    return fail(stmt.error());
  }
  auto row = readOne<std::int64_t>(*stmt, [](const Stmt& st) -> Result<std::int64_t> { return st.columnInt64(0); });
  if (!row) {
    return fail(row.error());
  }
  return row->value_or(0);
}

Result<std::optional<std::int64_t>> AlertLog::cursor() {
  auto stmt = db_->prepare("SELECT last_event_id FROM alert_cursor WHERE id = 1");
  if (!stmt) {
    return fail(stmt.error());
  }
  return readOne<std::int64_t>(*stmt, [](const Stmt& st) -> Result<std::int64_t> { return st.columnInt64(0); });
}

Result<void> AlertLog::setCursor(std::int64_t eventId) {
  auto stmt = db_->prepare(
      "INSERT INTO alert_cursor (id, last_event_id) VALUES (1, ?1) "
      "ON CONFLICT (id) DO UPDATE SET last_event_id = excluded.last_event_id");
  if (!stmt) {
    return fail(stmt.error());
  }
  return stmt->bindInt64(1, eventId).run();
}

Result<std::vector<AlertRow>> AlertLog::alerts() {
  return readAlerts(*db_);
}

Result<std::vector<AlertRow>> readAlerts(Db& db) {
  auto stmt = db.prepare(
      "SELECT cert_name, condition, severity, summary, started_at, resolved_at FROM alerts "
      "ORDER BY cert_name, condition");
  if (!stmt) {
    return fail(stmt.error());
  }
  return readAll<AlertRow>(*stmt, [](const Stmt& st) -> Result<AlertRow> {
    AlertRow r;
    r.certName = st.columnText(0);
    r.condition = st.columnText(1);
    r.severity = st.columnText(2);
    r.summary = st.columnText(3);
    r.startedAt = st.columnInt64(4);
    r.resolvedAt = optInt(st, 5);
    return r;
  });
}

Result<void> AlertLog::fire(const AlertRow& row) {
  auto tx = db_->begin();
  if (!tx) {
    return fail(tx.error());
  }
  if (auto r = forget(row.certName, row.condition); !r) {
    return r;
  }
  auto stmt = db_->prepare(
      "INSERT INTO alerts (cert_name, condition, severity, summary, started_at, resolved_at) "
      "VALUES (?1, ?2, ?3, ?4, ?5, ?6)");
  if (!stmt) {
    return fail(stmt.error());
  }
  stmt->bindText(1, row.certName).bindText(2, row.condition).bindText(3, row.severity).bindText(4, row.summary);
  stmt->bindInt64(5, row.startedAt);
  bindOpt(*stmt, 6, row.resolvedAt);
  if (auto r = stmt->run(); !r) {
    return r;
  }
  return tx->commit();
}

Result<void> AlertLog::updateSummary(std::string_view certName, std::string_view condition, std::string_view summary) {
  auto stmt = db_->prepare("UPDATE alerts SET summary = ?3 WHERE cert_name = ?1 AND condition = ?2");
  if (!stmt) {
    return fail(stmt.error());
  }
  return stmt->bindText(1, certName).bindText(2, condition).bindText(3, summary).run();
}

Result<void> AlertLog::resolve(std::string_view certName, std::string_view condition, std::int64_t at) {
  auto stmt = db_->prepare(
      "UPDATE alerts SET resolved_at = MAX(?3, started_at) WHERE cert_name = ?1 AND condition = ?2 "
      "AND resolved_at IS NULL");
  if (!stmt) {
    return fail(stmt.error());
  }
  return stmt->bindText(1, certName).bindText(2, condition).bindInt64(3, at).run();
}

Result<void> AlertLog::forget(std::string_view certName, std::string_view condition) {
  auto stmt = db_->prepare("DELETE FROM alerts WHERE cert_name = ?1 AND condition = ?2");
  if (!stmt) {
    return fail(stmt.error());
  }
  return stmt->bindText(1, certName).bindText(2, condition).run();
}

Result<std::vector<DeliveryRow>> AlertLog::deliveries() {
  return readDeliveries(*db_);
}

Result<std::vector<DeliveryRow>> readDeliveries(Db& db) {
  auto stmt = db.prepare(
      "SELECT cert_name, condition, channel, started_at, sent, sent_at, attempts, next_try_at, last_error "
      "FROM alert_deliveries ORDER BY cert_name, condition, channel");
  if (!stmt) {
    return fail(stmt.error());
  }
  return readAll<DeliveryRow>(*stmt, [](const Stmt& st) -> Result<DeliveryRow> {
    DeliveryRow r;
    r.certName = st.columnText(0);
    r.condition = st.columnText(1);
    r.channel = st.columnText(2);
    r.startedAt = st.columnInt64(3);
    r.sent = optText(st, 4);
    r.sentAt = optInt(st, 5);
    r.attempts = st.columnInt64(6);
    r.nextTryAt = optInt(st, 7);
    r.lastError = optText(st, 8);
    return r;
  });
}

Result<void> AlertLog::saveDelivery(const DeliveryRow& row) {
  // An alert forgotten meanwhile (resolved and cleaned up) takes its deliveries with it:
  // the foreign key refuses a row for it, and nothing is lost by skipping it.
  auto stmt = db_->prepare(
      "INSERT INTO alert_deliveries (cert_name, condition, channel, started_at, sent, sent_at, attempts, "
      "next_try_at, last_error) SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9 WHERE EXISTS (SELECT 1 FROM alerts "
      "WHERE cert_name = ?1 AND condition = ?2 AND started_at = ?4) "
      "ON CONFLICT (cert_name, condition, channel) DO UPDATE SET started_at = excluded.started_at, "
      "sent = excluded.sent, sent_at = excluded.sent_at, attempts = excluded.attempts, "
      "next_try_at = excluded.next_try_at, last_error = excluded.last_error");
  if (!stmt) {
    return fail(stmt.error());
  }
  stmt->bindText(1, row.certName).bindText(2, row.condition).bindText(3, row.channel).bindInt64(4, row.startedAt);
  bindOpt(*stmt, 5, row.sent);
  bindOpt(*stmt, 6, row.sentAt);
  stmt->bindInt64(7, row.attempts);
  bindOpt(*stmt, 8, row.nextTryAt);
  bindOpt(*stmt, 9, row.lastError);
  return stmt->run();
}

}  // namespace kms::storage
