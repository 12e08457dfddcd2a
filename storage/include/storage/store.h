#pragma once
/// @file Typed access to kmsd's state: managed certificates, orders, issued certificates,
/// HSM keys, ACME accounts, SPC token metadata and the event log.
///
/// Times are Unix seconds. Rows are plain structs. "get" functions return an empty optional
/// when the row does not exist; functions that change a named row fail with Errc::notFound
/// when it does not. Other failures are storage errors from db.h.
/// Writes that touch several rows run in one transaction; transact() groups several calls.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kms/error.h"

namespace kms::storage {

class Db;

/// The lifecycle of a managed certificate (docs/architecture.md). Orders use the same steps.
enum class CertState {
  planned,
  keyReady,
  tokenReady,
  orderPending,
  authorized,
  finalizing,
  issued,
  published,
  active,
  renewalDue,
  failed,
};
/// "planned", "key_ready", ... as stored.
[[nodiscard]] const char* toString(CertState state) noexcept;
/// Inverse of toString(); Errc::invalidArgument for an unknown name.
[[nodiscard]] Result<CertState> parseCertState(std::string_view text);

enum class CertKind { shaken, acme };
[[nodiscard]] const char* toString(CertKind kind) noexcept;

/// open: in flight; done: certificate downloaded; abandoned: given up (a new one may start).
enum class OrderStatus { open, done, abandoned };
[[nodiscard]] const char* toString(OrderStatus status) noexcept;

enum class KeyPurpose { account, certificate };
[[nodiscard]] const char* toString(KeyPurpose purpose) noexcept;

enum class EventLevel { debug, info, warning, error };
[[nodiscard]] const char* toString(EventLevel level) noexcept;

struct ManagedCert {
  std::int64_t id = 0;
  std::string name;
  CertKind kind = CertKind::shaken;
  std::string identifiersJson = "[]";  ///< JSON array, e.g. ["spc:1234"]
  CertState state = CertState::planned;
  std::optional<std::int64_t> nextAttemptAt;  ///< empty: nothing scheduled
  std::int64_t failureCount = 0;
  std::optional<std::string> lastError;
  std::int64_t createdAt = 0;
  std::int64_t updatedAt = 0;
  std::optional<std::int64_t> renewAt;       ///< when the active certificate is to be renewed
  std::optional<std::int64_t> ariNextCheck;  ///< when the CA's renewalInfo is read next
  /// The configuration the last failure happened under (see noteFailureCause).
  std::optional<std::string> failureConfig;
  /// Who named the wait after the last failure: "backoff" (kmsd) or "peer" (the CA, the STI-PA).
  std::optional<std::string> failureWait;
};

struct Order {
  std::int64_t id = 0;
  std::string certName;
  CertState step = CertState::planned;  ///< lifecycle step this order reached
  OrderStatus status = OrderStatus::open;
  std::optional<std::string> orderUrl;
  std::string authorizationUrlsJson = "[]";
  std::optional<std::string> challengeUrl;
  std::optional<std::string> finalizeUrl;
  std::optional<std::string> certificateUrl;
  std::optional<std::string> keyUri;      ///< must be a recorded HSM key
  std::optional<std::string> acmeStatus;  ///< the server's order status ("pending", "valid"...)
  std::int64_t createdAt = 0;
  std::int64_t updatedAt = 0;
};

/// Fields to change in advanceOrder(); empty members keep their stored value.
struct OrderUpdate {
  CertState step = CertState::planned;
  std::optional<std::string> orderUrl;
  std::optional<std::string> authorizationUrlsJson;
  std::optional<std::string> challengeUrl;
  std::optional<std::string> finalizeUrl;
  std::optional<std::string> certificateUrl;
  std::optional<std::string> keyUri;
  std::optional<std::string> acmeStatus;
  std::optional<std::string> cause;  ///< "ca": an early renewal the CA brought about (set once)
  std::optional<std::int64_t> nextAttemptAt;  ///< for the certificate; empty: unchanged
};

struct IssuedCert {
  std::int64_t id = 0;
  std::string certName;
  std::string serial;  ///< hex
  std::int64_t notBefore = 0;
  std::int64_t notAfter = 0;
  std::string chainPem;
  std::string keyUri;
  std::optional<std::string> ariCertId;
  std::optional<std::string> x5uUrl;
  std::optional<std::int64_t> publishedAt;
  std::optional<std::int64_t> revokedAt;
  std::int64_t createdAt = 0;
  std::optional<std::int64_t> deployedAt;  ///< the deploy hook succeeded for it at
};

/// What a live key is for now (kmsctl keys).
struct KeyUsage {
  std::string keyUri;
  std::optional<std::string> certName;
  /// "account", "order" (an order in progress), "active", "previous" (replaced; kept until
  /// `until`), "revoked" (a certificate of it was revoked), "abandoned" (its order failed),
  /// "expired" (nothing valid uses it).
  std::string state;
  std::optional<std::int64_t> until;  ///< for "previous": replaced at + retain
};

/// A published chain that has been replaced longer than retain ago, expired or revoked.
struct StaleChain {
  std::int64_t issuedId = 0;
  std::string certName;
  std::string serial;
};

struct HsmKey {
  std::int64_t id = 0;
  std::string keyUri;    ///< RFC 7512 "pkcs11:..."
  std::string ckaIdHex;  ///< lower-case hex
  std::string label;
  KeyPurpose purpose = KeyPurpose::certificate;
  std::int64_t createdAt = 0;
  std::optional<std::int64_t> destroyedAt;
};

struct AcmeAccount {
  std::int64_t id = 0;
  std::string directoryUrl;
  std::string accountUrl;
  std::string keyUri;            ///< must be a recorded HSM key
  std::string status = "valid";  ///< valid | deactivated | revoked
  std::int64_t createdAt = 0;
};

/// What is known about a cached SPC token; the token itself is never stored.
struct SpcTokenMeta {
  std::string spc;
  std::string accountKeyFingerprint;
  std::optional<std::string> jti;
  std::int64_t exp = 0;
  std::int64_t fetchedAt = 0;
};

struct Event {
  std::int64_t id = 0;
  std::int64_t time = 0;
  std::optional<std::string> certName;
  std::string eventId;  ///< "KMS_RENEW_FAILED"
  EventLevel level = EventLevel::info;
  std::string message;
  std::string fieldsJson = "{}";  ///< JSON object
};

/// The last good STI-PA CA list or CRL, as kept for trust upkeep.
enum class TrustKind { caList, crl };
[[nodiscard]] const char* toString(TrustKind kind) noexcept;
struct TrustDocument {
  TrustKind kind = TrustKind::caList;
  std::vector<std::uint8_t> body;         ///< CA list: the compact JWS; CRL: DER
  std::optional<std::int64_t> sequence;   ///< CA list sequence
  std::optional<std::int64_t> thisUpdate; ///< CRL thisUpdate
  std::optional<std::int64_t> nextUpdate; ///< CA list exp / CRL nextUpdate
  std::int64_t fetchedAt = 0;
};

/// One row of the status listing: a certificate and the one verifiers get.
struct CertStatus {
  std::string name;
  CertKind kind = CertKind::shaken;
  CertState state = CertState::planned;
  std::int64_t failureCount = 0;
  std::optional<std::string> lastError;
  std::optional<std::int64_t> renewAt;
  std::optional<std::int64_t> nextAttemptAt;
  std::optional<std::string> serial;  ///< of the newest valid certificate, when there is one
  std::optional<std::int64_t> notAfter;
  std::optional<std::string> x5uUrl;
  std::optional<std::int64_t> notBefore;    ///< of that certificate
  std::optional<std::int64_t> publishedAt;  ///< when that certificate was published (the last success)
};

/// What a one-line service status says (systemd's STATUS=): how many certificates have a
/// current certificate, the soonest planned renewal, the most recent error still standing.
struct ServiceSummary {
  std::int64_t active = 0;
  std::optional<std::pair<std::string, std::int64_t>> nextRenewal;  ///< name, renew_at
  std::optional<std::pair<std::string, std::string>> lastError;     ///< name, last_error
};

/// The storage seam used by the engine, control API and kmsctl.
class Store {
 public:
  virtual ~Store() = default;

  /// Runs `body` in one write transaction: committed when it returns success, rolled back
  /// when it fails (its error is returned). Store calls inside nest as savepoints.
  [[nodiscard]] virtual Result<void> transact(const std::function<Result<void>()>& body) = 0;

  // --- managed certificates ---
  /// Inserts the certificate in state planned, or updates kind and identifiers of an
  /// existing one (state and failure bookkeeping are kept). CHECK errors for an empty name
  /// or identifiers that are not a JSON array.
  [[nodiscard]] virtual Result<ManagedCert> upsertCertificate(std::string_view name, CertKind kind,
                                                              std::string_view identifiersJson) = 0;
  [[nodiscard]] virtual Result<std::optional<ManagedCert>> getCertificate(std::string_view name) = 0;
  /// All certificates, by name.
  [[nodiscard]] virtual Result<std::vector<ManagedCert>> listCertificates() = 0;
  /// Certificates whose next attempt is at or before `now`, earliest first, at most `limit`.
  [[nodiscard]] virtual Result<std::vector<ManagedCert>> listDue(std::int64_t now, int limit) = 0;
  /// A step succeeded: sets state and next attempt, and clears failure_count / last_error.
  [[nodiscard]] virtual Result<void> setState(std::string_view name, CertState state,
                                              std::optional<std::int64_t> nextAttemptAt) = 0;
  /// Records when the active certificate is to be renewed and when renewalInfo is read
  /// next (empty clears). Errc::notFound for an unknown certificate.
  [[nodiscard]] virtual Result<void> setRenewal(std::string_view name, std::optional<std::int64_t> renewAt,
                                                std::optional<std::int64_t> ariNextCheck) = 0;
  /// Only the next attempt (a wait: polling, Retry-After); state and failures are kept.
  [[nodiscard]] virtual Result<void> setNextAttempt(std::string_view name,
                                                    std::optional<std::int64_t> nextAttemptAt) = 0;
  /// A step failed: failure_count + 1, last_error, next attempt (backoff); the state is kept
  /// unless `newState` is given (e.g. failed).
  [[nodiscard]] virtual Result<void> recordFailure(std::string_view name, std::string_view error,
                                                   std::optional<std::int64_t> nextAttemptAt,
                                                   std::optional<CertState> newState = {}) = 0;

  /// Records under which configuration (`configHash`) the last failure of `name` happened
  /// and whether its wait was named by the peer (`peerWait`) or is kmsd's own backoff.
  [[nodiscard]] virtual Result<void> noteFailureCause(std::string_view name, std::string_view configHash,
                                                      bool peerWait) = 0;
  /// After a configuration change: when the last failure of `name` happened under another
  /// configuration than `configHash` and its wait is kmsd's own backoff, the wait is cleared
  /// (tried again at once). A peer's wait stays. Whether a wait was cleared.
  [[nodiscard]] virtual Result<bool> releaseBackoff(std::string_view name, std::string_view configHash) = 0;

  // --- orders (at most one open per certificate) ---
  /// Opens an order at `step`. Errc::alreadyExists when the certificate has an open order,
  /// Errc::notFound when the certificate does not exist.
  [[nodiscard]] virtual Result<Order> createOrder(std::string_view certName, CertState step) = 0;
  [[nodiscard]] virtual Result<std::optional<Order>> getOpenOrder(std::string_view certName) = 0;
  /// How many orders are open, over all certificates.
  [[nodiscard]] virtual Result<std::int64_t> countOpenOrders() = 0;
  /// Orders of `certName` started with `cause` at or after `since` (any status).
  [[nodiscard]] virtual Result<std::int64_t> countOrdersWithCause(std::string_view certName, std::string_view cause,
                                                                  std::int64_t since) = 0;
  /// Records the step an open order reached with the URLs learned, and moves the
  /// certificate to the same state (failures cleared), in one transaction.
  /// Errc::notFound when `orderId` is not an open order.
  [[nodiscard]] virtual Result<Order> advanceOrder(std::int64_t orderId, const OrderUpdate& update) = 0;
  /// Closes an open order as done or abandoned. Errc::notFound when not open;
  /// Errc::invalidArgument for OrderStatus::open.
  [[nodiscard]] virtual Result<void> closeOrder(std::int64_t orderId, OrderStatus status) = 0;

  // --- issued certificates ---
  /// Stores a downloaded chain; returns its id. Storing the same serial again for the same
  /// certificate returns the existing row's id (a resumed order is idempotent).
  /// Errc::notFound for an unknown certificate.
  [[nodiscard]] virtual Result<std::int64_t> insertIssued(const IssuedCert& cert) = 0;
  /// Every certificate issued for `certName`, newest notBefore first.
  [[nodiscard]] virtual Result<std::vector<IssuedCert>> listIssued(std::string_view certName) = 0;
  /// Every certificate with its current certificate as listLatestValid picks it (none when
  /// the newest published one is revoked or expired), by name; one query, no chains read.
  /// Only `name` when given.
  /// ServiceSummary at `now`, in three queries (the count visits every certificate; the
  /// caller keeps it off the event loop).
  [[nodiscard]] virtual Result<ServiceSummary> serviceSummary(std::int64_t now) = 0;
  [[nodiscard]] virtual Result<std::vector<CertStatus>> listStatus(std::int64_t now,
                                                                   std::optional<std::string_view> name = {}) = 0;
  /// Per managed certificate, its newest published certificate (a chain issued but not yet
  /// published is not what verifiers get) when that one is neither revoked nor expired at
  /// `now`; an older one it superseded is never returned instead. By name; only `name`'s
  /// when given.
  [[nodiscard]] virtual Result<std::vector<IssuedCert>> listLatestValid(std::int64_t now,
                                                                        std::optional<std::string_view> name) = 0;
  /// Records publication and the x5u URL. Errc::notFound for an unknown id.
  [[nodiscard]] virtual Result<void> markPublished(std::int64_t issuedId, std::string_view x5uUrl, std::int64_t at) = 0;
  /// Records revocation. Errc::notFound for an unknown id.
  [[nodiscard]] virtual Result<void> markRevoked(std::int64_t issuedId, std::int64_t at) = 0;
  /// Records that the certificate's deploy hook succeeded. Errc::notFound for an unknown id.
  [[nodiscard]] virtual Result<void> markDeployed(std::int64_t issuedId, std::int64_t at) = 0;

  // --- HSM key objects ---
  /// Records a key (before it is generated, so a crash leaves no orphan); returns its id.
  /// A duplicate URI is a storage error (SQLITE_CONSTRAINT_UNIQUE).
  [[nodiscard]] virtual Result<std::int64_t> recordKey(const HsmKey& key) = 0;
  /// Keys by id; destroyed ones only when `includeDestroyed`.
  [[nodiscard]] virtual Result<std::vector<HsmKey>> listKeys(bool includeDestroyed) = 0;
  /// Live certificate keys nothing needs at `now`: not the key of an open order, and not
  /// the key of an unrevoked, unexpired certificate that is the newest published one of its
  /// certificate or was replaced (a newer one published) less than `retainSeconds` ago.
  /// Pairs of key URI and the certificate it belonged to (if any), oldest key first.
  [[nodiscard]] virtual Result<std::vector<std::pair<std::string, std::optional<std::string>>>> listRetirableKeys(
      std::int64_t now, std::int64_t retainSeconds) = 0;
  /// Errc::notFound when no live key has this URI.
  [[nodiscard]] virtual Result<void> markKeyDestroyed(std::string_view keyUri, std::int64_t at) = 0;
  /// Every live key with its certificate and state at `now`, oldest first.
  [[nodiscard]] virtual Result<std::vector<KeyUsage>> listKeyUsage(std::int64_t now, std::int64_t retainSeconds) = 0;
  /// Published chains still in the web root that no verifier needs: replaced by a newer
  /// published certificate or expired more than `retainSeconds` ago, or revoked. At most `limit`.
  [[nodiscard]] virtual Result<std::vector<StaleChain>> listStaleChains(std::int64_t now, std::int64_t retainSeconds,
                                                                        int limit) = 0;
  /// Records that a chain's immutable file was removed. Errc::notFound for an unknown id.
  [[nodiscard]] virtual Result<void> markUnpublished(std::int64_t issuedId, std::int64_t at) = 0;

  // --- trust documents (one per kind) ---
  /// Replaces the kept document of its kind.
  [[nodiscard]] virtual Result<void> saveTrust(const TrustDocument& doc) = 0;
  [[nodiscard]] virtual Result<std::optional<TrustDocument>> getTrust(TrustKind kind) = 0;

  // --- ACME accounts (one per directory URL) ---
  /// Inserts or replaces the account for its directory URL; returns its id.
  [[nodiscard]] virtual Result<std::int64_t> saveAccount(const AcmeAccount& account) = 0;
  [[nodiscard]] virtual Result<std::optional<AcmeAccount>> getAccount(std::string_view directoryUrl) = 0;
  /// Every account, by directory URL.
  [[nodiscard]] virtual Result<std::vector<AcmeAccount>> listAccounts() = 0;

  // --- SPC token metadata (one row per SPC and account key) ---
  [[nodiscard]] virtual Result<void> saveSpcToken(const SpcTokenMeta& meta) = 0;
  [[nodiscard]] virtual Result<std::optional<SpcTokenMeta>> getSpcToken(std::string_view spc,
                                                                        std::string_view accountKeyFingerprint) = 0;
  /// Every SPC token kept (one per SPC and account key), by SPC.
  [[nodiscard]] virtual Result<std::vector<SpcTokenMeta>> listSpcTokens() = 0;

  // --- event log (append-only) ---
  /// Appends an event (time 0 means now); returns its id.
  [[nodiscard]] virtual Result<std::int64_t> appendEvent(const Event& event) = 0;
  /// Bounds the event log: removes events older than `olderThan` (Unix seconds) and all but
  /// the newest `keepNewest`. Returns how many were removed.
  [[nodiscard]] virtual Result<std::int64_t> pruneEvents(std::int64_t olderThan, std::int64_t keepNewest) = 0;
  /// Newest first (time, then insertion order), at most `limit`; only `certName`'s events
  /// when given.
  [[nodiscard]] virtual Result<std::vector<Event>> listEvents(std::optional<std::string_view> certName, int limit) = 0;
  /// Events with an id above `afterId`, oldest first, at most `limit`.
  [[nodiscard]] virtual Result<std::vector<Event>> listEventsAfter(std::int64_t afterId, int limit) = 0;

  // --- backup ---
  /// The whole state DB as one consistent file image (Db::snapshot) and its schema version.
  [[nodiscard]] virtual Result<std::pair<std::string, std::int64_t>> snapshot() = 0;
};

/// Returns the current time in Unix seconds.
using NowFn = std::function<std::int64_t()>;

/// A Store over `db` (not owned: `db` must outlive the store). `now` stamps created/updated
/// times; empty means the system clock.
[[nodiscard]] std::unique_ptr<Store> makeSqliteStore(Db& db, NowFn now = {});

}  // namespace kms::storage
