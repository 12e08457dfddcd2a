#include "store_rows.h"

#include <array>

namespace kms::storage::detail {

namespace {

template <class E, std::size_t N>
Result<E> parseName(std::string_view text, const std::array<E, N>& all, const char* what) {
  for (E value : all) {
    if (text == toString(value)) {
      return value;
    }
  }
  return fail(Errc::internal, std::string("unexpected ") + what + " '" + std::string(text) + "' in the database");
}

constexpr std::array<CertKind, 2> kKinds{CertKind::shaken, CertKind::acme};
constexpr std::array<OrderStatus, 3> kOrderStatuses{OrderStatus::open, OrderStatus::done, OrderStatus::abandoned};
constexpr std::array<KeyPurpose, 2> kPurposes{KeyPurpose::account, KeyPurpose::certificate};
constexpr std::array<EventLevel, 4> kLevels{EventLevel::debug, EventLevel::info, EventLevel::warning,
                                            EventLevel::error};

}  // namespace

void bindOpt(Stmt& stmt, int index, const std::optional<std::string>& value) {
  if (value.has_value()) {
    stmt.bindText(index, *value);
  } else {
    stmt.bindNull(index);
  }
}

void bindOpt(Stmt& stmt, int index, const std::optional<std::int64_t>& value) {
  if (value.has_value()) {
    stmt.bindInt64(index, *value);
  } else {
    stmt.bindNull(index);
  }
}

std::optional<std::string> optText(const Stmt& stmt, int column) {
  if (stmt.isNull(column)) {
    return std::nullopt;
  }
  return stmt.columnText(column);
}

std::optional<std::int64_t> optInt(const Stmt& stmt, int column) {
  if (stmt.isNull(column)) {
    return std::nullopt;
  }
  return stmt.columnInt64(column);
}

Result<ManagedCert> readCert(const Stmt& s) {
  ManagedCert c;
  c.id = s.columnInt64(0);
  c.name = s.columnText(1);
  auto kind = parseName(s.columnText(2), kKinds, "certificate kind");
  if (!kind.has_value()) {
    return fail(kind.error());
  }
  c.kind = kind.value();
  c.identifiersJson = s.columnText(3);
  auto state = parseCertState(s.columnText(4));
  if (!state.has_value()) {
    return fail(state.error());
  }
  c.state = state.value();
  c.nextAttemptAt = optInt(s, 5);
  c.failureCount = s.columnInt64(6);
  c.lastError = optText(s, 7);
  c.createdAt = s.columnInt64(8);
  c.updatedAt = s.columnInt64(9);
  c.renewAt = optInt(s, 10);
  c.ariNextCheck = optInt(s, 11);
  c.failureConfig = optText(s, 12);
  c.failureWait = optText(s, 13);
  return c;
}

Result<Order> readOrder(const Stmt& s) {
  Order o;
  o.id = s.columnInt64(0);
  o.certName = s.columnText(1);
  auto step = parseCertState(s.columnText(2));
  if (!step.has_value()) {
    return fail(step.error());
  }
  o.step = step.value();
  auto status = parseName(s.columnText(3), kOrderStatuses, "order status");
  if (!status.has_value()) {
    return fail(status.error());
  }
  o.status = status.value();
  o.orderUrl = optText(s, 4);
  o.authorizationUrlsJson = s.columnText(5);
  o.challengeUrl = optText(s, 6);
  o.finalizeUrl = optText(s, 7);
  o.certificateUrl = optText(s, 8);
  o.keyUri = optText(s, 9);
  o.acmeStatus = optText(s, 10);
  o.createdAt = s.columnInt64(11);
  o.updatedAt = s.columnInt64(12);
  return o;
}

Result<IssuedCert> readIssued(const Stmt& s) {
  IssuedCert i;
  i.id = s.columnInt64(0);
  i.certName = s.columnText(1);
  i.serial = s.columnText(2);
  i.notBefore = s.columnInt64(3);
  i.notAfter = s.columnInt64(4);
  i.chainPem = s.columnText(5);
  i.keyUri = s.columnText(6);
  i.ariCertId = optText(s, 7);
  i.x5uUrl = optText(s, 8);
  i.publishedAt = optInt(s, 9);
  i.revokedAt = optInt(s, 10);
  i.createdAt = s.columnInt64(11);
  i.deployedAt = optInt(s, 12);
  return i;
}

Result<HsmKey> readKey(const Stmt& s) {
  HsmKey k;
  k.id = s.columnInt64(0);
  k.keyUri = s.columnText(1);
  k.ckaIdHex = s.columnText(2);
  k.label = s.columnText(3);
  auto purpose = parseName(s.columnText(4), kPurposes, "key purpose");
  if (!purpose.has_value()) {
    return fail(purpose.error());
  }
  k.purpose = purpose.value();
  k.createdAt = s.columnInt64(5);
  k.destroyedAt = optInt(s, 6);
  return k;
}

Result<AcmeAccount> readAccount(const Stmt& s) {
  AcmeAccount a;
  a.id = s.columnInt64(0);
  a.directoryUrl = s.columnText(1);
  a.accountUrl = s.columnText(2);
  a.keyUri = s.columnText(3);
  a.status = s.columnText(4);
  a.createdAt = s.columnInt64(5);
  return a;
}

Result<SpcTokenMeta> readSpcToken(const Stmt& s) {
  SpcTokenMeta m;
  m.spc = s.columnText(0);
  m.accountKeyFingerprint = s.columnText(1);
  m.jti = optText(s, 2);
  m.exp = s.columnInt64(3);
  m.fetchedAt = s.columnInt64(4);
  return m;
}

Result<Event> readEvent(const Stmt& s) {
  Event e;
  e.id = s.columnInt64(0);
  e.time = s.columnInt64(1);
  e.certName = optText(s, 2);
  e.eventId = s.columnText(3);
  auto level = parseName(s.columnText(4), kLevels, "event level");
  if (!level.has_value()) {
    return fail(level.error());
  }
  e.level = level.value();
  e.message = s.columnText(5);
  e.fieldsJson = s.columnText(6);
  return e;
}

}  // namespace kms::storage::detail
