#include "crash_support.h"

#include <string>

#include "storage/db.h"
#include "storage/store.h"

namespace kms::storage::crash {

namespace {

constexpr const char* kChallengePrefix = "https://ca.test/chall/";

Result<std::int64_t> scalar(Db& db, const std::string& sql) {
  auto stmt = db.prepare(sql);
  if (!stmt.has_value()) {
    return fail(stmt.error());
  }
  auto row = stmt->step();
  if (!row.has_value()) {
    return fail(row.error());
  }
  if (!row.value()) {
    return fail(Errc::internal, "no row for " + sql);
  }
  return stmt->columnInt64(0);
}

}  // namespace

Result<std::int64_t> crashSetup(Db& db, Store& store) {
  auto tx = db.begin();
  if (!tx.has_value()) {
    return fail(tx.error());
  }
  auto created = db.exec(
      "CREATE TABLE IF NOT EXISTS crash_counter (id INTEGER PRIMARY KEY CHECK (id = 1), "
      "n INTEGER NOT NULL) STRICT; INSERT OR IGNORE INTO crash_counter VALUES (1, 0);");
  if (!created.has_value()) {
    return fail(created.error());
  }
  if (auto cert = store.upsertCertificate(kCrashCert, CertKind::shaken, R"(["spc:1234"])"); !cert.has_value()) {
    return fail(cert.error());
  }
  auto open = store.getOpenOrder(kCrashCert);
  if (!open.has_value()) {
    return fail(open.error());
  }
  std::int64_t orderId = 0;
  if (open->has_value()) {
    orderId = open->value().id;
  } else {
    auto order = store.createOrder(kCrashCert, CertState::orderPending);
    if (!order.has_value()) {
      return fail(order.error());
    }
    orderId = order->id;
  }
  if (auto r = tx->commit(); !r.has_value()) {
    return fail(r.error());
  }
  return orderId;
}

Result<std::int64_t> crashTick(Db& db, Store& store, std::int64_t orderId) {
  auto tx = db.begin();
  if (!tx.has_value()) {
    return fail(tx.error());
  }
  auto n = scalar(db, "SELECT n + 1 FROM crash_counter WHERE id = 1");
  if (!n.has_value()) {
    return n;
  }
  Event event;
  event.certName = kCrashCert;
  event.eventId = "KMS_CRASH_TEST_TICK";
  event.message = "tick " + std::to_string(n.value()) + " " + std::string(600, 'x');
  event.fieldsJson = "{\"n\":" + std::to_string(n.value()) + "}";
  if (auto r = store.appendEvent(event); !r.has_value()) {
    return fail(r.error());
  }
  if (auto r = db.exec("UPDATE crash_counter SET n = n + 1 WHERE id = 1"); !r.has_value()) {
    return fail(r.error());
  }
  OrderUpdate update;
  update.step = CertState::orderPending;
  update.challengeUrl = kChallengePrefix + std::to_string(n.value());
  if (auto r = store.advanceOrder(orderId, update); !r.has_value()) {
    return fail(r.error());
  }
  if (auto r = tx->commit(); !r.has_value()) {
    return fail(r.error());
  }
  return n;
}

Result<std::int64_t> crashEventCount(Db& db) {
  return scalar(db, "SELECT count(*) FROM events WHERE event_id = 'KMS_CRASH_TEST_TICK'");
}

Result<std::int64_t> crashCheck(Db& db, Store& store) {
  auto counter = scalar(db, "SELECT n FROM crash_counter WHERE id = 1");
  if (!counter.has_value()) {
    return counter;
  }
  auto events = crashEventCount(db);
  if (!events.has_value()) {
    return events;
  }
  auto maxField = scalar(db,
                         "SELECT coalesce(max(json_extract(fields, '$.n')), 0) FROM events "
                         "WHERE event_id = 'KMS_CRASH_TEST_TICK'");
  if (!maxField.has_value()) {
    return maxField;
  }
  auto order = store.getOpenOrder(kCrashCert);
  if (!order.has_value()) {
    return fail(order.error());
  }
  const std::string expectedUrl =
      counter.value() == 0 ? std::string() : kChallengePrefix + std::to_string(counter.value());
  const std::string url = order->has_value() ? order->value().challengeUrl.value_or("") : "?";
  if (counter.value() != events.value() || counter.value() != maxField.value() || url != expectedUrl) {
    return fail(Errc::internal, "invariant broken: counter " + std::to_string(counter.value()) + ", events " +
                                    std::to_string(events.value()) + ", max n " + std::to_string(maxField.value()) +
                                    ", challenge URL '" + url + "'");
  }
  return counter;
}

}  // namespace kms::storage::crash
