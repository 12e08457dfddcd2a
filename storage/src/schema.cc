// The kmsd schema as numbered migrations. Never edit a released step: add a new one.
//
// Conventions: times are INTEGER Unix seconds; tables are STRICT (SQLite >= 3.37) so a value
// of the wrong type is an error instead of being stored silently; enumerations are TEXT with
// CHECK lists; JSON columns are checked with json_valid().

#include <array>

#include "storage/migrations.h"

namespace kms::storage {

namespace {

constexpr const char* kSchemaV1 = R"sql(
CREATE TABLE hsm_keys (
  id           INTEGER PRIMARY KEY,
  key_uri      TEXT NOT NULL UNIQUE CHECK (substr(key_uri, 1, 7) = 'pkcs11:'),
  cka_id       TEXT NOT NULL CHECK (length(cka_id) > 0 AND length(cka_id) % 2 = 0
                                    AND cka_id NOT GLOB '*[^0-9a-f]*'),
  label        TEXT NOT NULL,
  purpose      TEXT NOT NULL CHECK (purpose IN ('account', 'certificate')),
  created_at   INTEGER NOT NULL,
  destroyed_at INTEGER CHECK (destroyed_at IS NULL OR destroyed_at >= created_at)
) STRICT;

CREATE TABLE acme_accounts (
  id            INTEGER PRIMARY KEY,
  directory_url TEXT NOT NULL UNIQUE CHECK (length(directory_url) > 0),
  account_url   TEXT NOT NULL CHECK (length(account_url) > 0),
  key_uri       TEXT NOT NULL REFERENCES hsm_keys(key_uri),
  status        TEXT NOT NULL CHECK (status IN ('valid', 'deactivated', 'revoked')),
  created_at    INTEGER NOT NULL
) STRICT;

CREATE TABLE managed_certificates (
  id              INTEGER PRIMARY KEY,
  name            TEXT NOT NULL UNIQUE CHECK (length(name) > 0),
  kind            TEXT NOT NULL CHECK (kind IN ('shaken', 'acme')),
  identifiers     TEXT NOT NULL CHECK (json_valid(identifiers)
                                       AND json_type(identifiers) = 'array'),
  state           TEXT NOT NULL DEFAULT 'planned' CHECK (state IN (
                    'planned', 'key_ready', 'token_ready', 'order_pending', 'authorized',
                    'finalizing', 'issued', 'published', 'active', 'renewal_due', 'failed')),
  next_attempt_at INTEGER,
  failure_count   INTEGER NOT NULL DEFAULT 0 CHECK (failure_count >= 0),
  last_error      TEXT,
  created_at      INTEGER NOT NULL,
  updated_at      INTEGER NOT NULL
) STRICT;
CREATE INDEX managed_certificates_due ON managed_certificates(next_attempt_at)
  WHERE next_attempt_at IS NOT NULL;
CREATE INDEX managed_certificates_state ON managed_certificates(state);

CREATE TABLE orders (
  id                 INTEGER PRIMARY KEY,
  cert_id            INTEGER NOT NULL REFERENCES managed_certificates(id),
  step               TEXT NOT NULL CHECK (step IN (
                       'planned', 'key_ready', 'token_ready', 'order_pending', 'authorized',
                       'finalizing', 'issued', 'published', 'active', 'renewal_due',
                       'failed')),
  status             TEXT NOT NULL DEFAULT 'open'
                       CHECK (status IN ('open', 'done', 'abandoned')),
  order_url          TEXT,
  authorization_urls TEXT NOT NULL DEFAULT '[]'
                       CHECK (json_valid(authorization_urls)
                              AND json_type(authorization_urls) = 'array'),
  challenge_url      TEXT,
  finalize_url       TEXT,
  certificate_url    TEXT,
  key_uri            TEXT REFERENCES hsm_keys(key_uri),
  acme_status        TEXT,
  created_at         INTEGER NOT NULL,
  updated_at         INTEGER NOT NULL
) STRICT;
-- At most one order in flight per certificate: a renewal never creates a second one.
CREATE UNIQUE INDEX orders_one_open_per_cert ON orders(cert_id) WHERE status = 'open';
CREATE INDEX orders_cert ON orders(cert_id);

CREATE TABLE issued_certificates (
  id           INTEGER PRIMARY KEY,
  cert_id      INTEGER NOT NULL REFERENCES managed_certificates(id),
  serial       TEXT NOT NULL CHECK (length(serial) > 0),
  not_before   INTEGER NOT NULL,
  not_after    INTEGER NOT NULL,
  chain_pem    TEXT NOT NULL CHECK (chain_pem LIKE '-----BEGIN CERTIFICATE-----%'),
  key_uri      TEXT NOT NULL REFERENCES hsm_keys(key_uri),
  ari_cert_id  TEXT,
  x5u_url      TEXT,
  published_at INTEGER,
  revoked_at   INTEGER,
  created_at   INTEGER NOT NULL,
  CHECK (not_after > not_before),
  UNIQUE (cert_id, serial)
) STRICT;
CREATE INDEX issued_certificates_cert ON issued_certificates(cert_id, not_before);

-- What is known about cached SPC tokens. There is deliberately no column for the token.
CREATE TABLE spc_tokens (
  id                      INTEGER PRIMARY KEY,
  spc                     TEXT NOT NULL CHECK (length(spc) > 0),
  account_key_fingerprint TEXT NOT NULL CHECK (length(account_key_fingerprint) > 0),
  jti                     TEXT,
  exp                     INTEGER NOT NULL,
  fetched_at              INTEGER NOT NULL,
  UNIQUE (spc, account_key_fingerprint)
) STRICT;

-- Append-only audit log; cert_name is plain text so events outlive their certificate.
CREATE TABLE events (
  id        INTEGER PRIMARY KEY AUTOINCREMENT,
  time      INTEGER NOT NULL,
  cert_name TEXT,
  event_id  TEXT NOT NULL CHECK (event_id GLOB 'KMS_[A-Z]*'
                                 AND event_id NOT GLOB '*[^A-Z0-9_]*'),
  level     TEXT NOT NULL CHECK (level IN ('debug', 'info', 'warning', 'error')),
  message   TEXT NOT NULL,
  fields    TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(fields)
                                              AND json_type(fields) = 'object')
) STRICT;
CREATE INDEX events_time ON events(time, id);
CREATE INDEX events_cert_time ON events(cert_name, time, id);
CREATE TRIGGER events_append_only BEFORE UPDATE ON events
BEGIN
  SELECT RAISE(ABORT, 'events are append-only');
END;
)sql";

// The daemon: the renewal instant chosen for the active certificate (kept across restarts so
// the random point in the ARI window or the jittered share of the lifetime does not move),
// when the CA's renewalInfo is next read, and the event log read by id for `events -f`.
constexpr const char* kSchemaV2 = R"sql(
ALTER TABLE managed_certificates ADD COLUMN renew_at INTEGER;
ALTER TABLE managed_certificates ADD COLUMN ari_next_check INTEGER;
)sql";

// Deploy hooks: when the certificate's deploy hook last succeeded for this certificate
// (NULL: not yet, or no hook), so a failed hook is retried without a new order.
// and when its immutable chain file was removed from the web root after [publisher] retain.
constexpr const char* kSchemaV3 = R"sql(
ALTER TABLE issued_certificates ADD COLUMN deployed_at INTEGER;
ALTER TABLE issued_certificates ADD COLUMN unpublished_at INTEGER;
)sql";

// Trust upkeep: the last good STI-PA CA list (its compact JWS) and CRL (DER), one row each,
// kept so that a restart, or an STI-PA outage, never leaves kmsd without trust anchors.
constexpr const char* kSchemaV4 = R"sql(
CREATE TABLE trust_documents (
  kind        TEXT PRIMARY KEY CHECK (kind IN ('ca_list', 'crl')),
  body        BLOB NOT NULL CHECK (length(body) > 0),
  sequence    INTEGER,
  this_update INTEGER,
  next_update INTEGER,
  fetched_at  INTEGER NOT NULL
) STRICT;
)sql";

// Why an order was started, where it counts against a budget: 'ca' for an early renewal the
// CA brought about (an ARI window before kmsd's own time, a chain distrusted after issuance
// while its root is still approved); NULL for everything else.
constexpr const char* kSchemaV5 = R"sql(
ALTER TABLE orders ADD COLUMN cause TEXT CHECK (cause IS NULL OR cause IN ('ca'));
)sql";

// The configuration a failure happened under (a hash of the certificate's definition and the
// settings in force) and who named the wait that followed it: 'backoff' (kmsd's own) or
// 'peer' (a Retry-After, a rate limit). A changed configuration releases kmsd's own backoff,
// never a peer's wait.
constexpr const char* kSchemaV6 = R"sql(
ALTER TABLE managed_certificates ADD COLUMN failure_config TEXT;
ALTER TABLE managed_certificates ADD COLUMN failure_wait TEXT
  CHECK (failure_wait IS NULL OR failure_wait IN ('backoff', 'peer'));
)sql";

// kmsd's own alerts: one row per (certificate, condition) while it fires and for a day after
// it resolved; per channel, what was last delivered of it (so a restart neither pages twice
// nor loses a resolve), and the last event the conditions were evaluated against.
constexpr const char* kSchemaV7 = R"sql(
CREATE TABLE alerts (
  cert_name   TEXT NOT NULL CHECK (length(cert_name) > 0),
  condition   TEXT NOT NULL CHECK (length(condition) > 0),
  severity    TEXT NOT NULL CHECK (severity IN ('warning', 'critical')),
  summary     TEXT NOT NULL,
  started_at  INTEGER NOT NULL,
  resolved_at INTEGER CHECK (resolved_at IS NULL OR resolved_at >= started_at),
  PRIMARY KEY (cert_name, condition)
) STRICT;
CREATE TABLE alert_deliveries (
  cert_name   TEXT NOT NULL,
  condition   TEXT NOT NULL,
  channel     TEXT NOT NULL CHECK (length(channel) > 0),
  started_at  INTEGER NOT NULL,
  sent        TEXT CHECK (sent IS NULL OR sent IN ('firing', 'resolved')),
  sent_at     INTEGER,
  attempts    INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
  next_try_at INTEGER,
  last_error  TEXT,
  PRIMARY KEY (cert_name, condition, channel),
  FOREIGN KEY (cert_name, condition) REFERENCES alerts(cert_name, condition) ON DELETE CASCADE
) STRICT;
CREATE TABLE alert_cursor (
  id            INTEGER PRIMARY KEY CHECK (id = 1),
  last_event_id INTEGER NOT NULL
) STRICT;
CREATE INDEX events_by_id_cert ON events(event_id, cert_name);
)sql";

constexpr std::array<Migration, 7> kMigrations{{
    {1, kSchemaV1},
    {2, kSchemaV2},
    {3, kSchemaV3},
    {4, kSchemaV4},
    {5, kSchemaV5},
    {6, kSchemaV6},
    {7, kSchemaV7},
}};

}  // namespace

std::span<const Migration> schemaMigrations() noexcept {
  return kMigrations;
}

int supportedSchemaVersion() noexcept {
  return static_cast<int>(kMigrations.size());
}

}  // namespace kms::storage
