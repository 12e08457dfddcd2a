#pragma once
/// @file kmsd's own alerts in the state DB: the facts the alert conditions are computed from,
/// the alerts firing (and resolved within the last day), and what each channel was last told
/// of each alert. Kept in the DB so that a restart neither pages twice nor loses a resolve.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kms/error.h"
#include "storage/db.h"

namespace kms::storage {

/// What the conditions of one managed certificate are computed from.
struct AlertFacts {
  std::string name;
  std::int64_t failureCount = 0;
  std::optional<std::string> lastError;
  /// The step of the newest KMS_RENEW_FAILED / KMS_ISSUE_FAILED ("fetch_token", ...).
  std::optional<std::string> lastFailedStep;
  /// The certificate verifiers get (the newest published one that has begun and is not
  /// revoked), even when it has expired.
  std::optional<std::int64_t> notBefore;
  std::optional<std::int64_t> notAfter;
  /// Ids of the newest events of these kinds for the certificate (0: none).
  std::int64_t activatedEvent = 0;        ///< KMS_CERT_ACTIVATED
  std::int64_t crlRevokedEvent = 0;       ///< KMS_CERT_REVOKED with source=crl
  std::int64_t distrustedEvent = 0;       ///< KMS_ROOT_DISTRUSTED
  std::int64_t publicationFailedEvent = 0;  ///< KMS_PUBLICATION_CHECK_FAILED, KMS_PUBLISH_FAILED
  std::int64_t publishedEvent = 0;        ///< KMS_CERT_PUBLISHED
};

/// One alert: firing, or resolved at `resolvedAt`.
struct AlertRow {
  std::string certName;
  std::string condition;  ///< "renewal_failing", "expiring", ...
  std::string severity;   ///< "warning" | "critical"
  std::string summary;
  std::int64_t startedAt = 0;
  std::optional<std::int64_t> resolvedAt;
};

/// What one channel was last told of one alert.
struct DeliveryRow {
  std::string certName;
  std::string condition;
  std::string channel;
  std::int64_t startedAt = 0;       ///< the alert's startedAt this row is about
  std::optional<std::string> sent;  ///< "firing" | "resolved"; none yet
  std::optional<std::int64_t> sentAt;
  std::int64_t attempts = 0;        ///< failed attempts since the last success
  std::optional<std::int64_t> nextTryAt;
  std::optional<std::string> lastError;
};

/// The alert tables over a connection of their own (the alert thread's).
class AlertLog {
 public:
  explicit AlertLog(std::unique_ptr<Db> db);
  ~AlertLog();
  AlertLog(const AlertLog&) = delete;
  AlertLog& operator=(const AlertLog&) = delete;

  /// Opens the state DB kmsd already migrated (a connection of its own; not migrated here).
  [[nodiscard]] static Result<std::unique_ptr<AlertLog>> open(const std::string& path);

  /// The facts of every managed certificate, by name.
  [[nodiscard]] Result<std::vector<AlertFacts>> facts(std::int64_t now);
  /// The newest event id, and the one the conditions were last evaluated against (none
  /// before the first evaluation).
  [[nodiscard]] Result<std::int64_t> lastEventId();
  [[nodiscard]] Result<std::optional<std::int64_t>> cursor();
  [[nodiscard]] Result<void> setCursor(std::int64_t eventId);

  [[nodiscard]] Result<std::vector<AlertRow>> alerts();
  /// Inserts or replaces (a new firing of a resolved alert replaces it and its deliveries).
  [[nodiscard]] Result<void> fire(const AlertRow& row);
  /// A firing alert's summary changed (a new failure count): the row keeps its startedAt.
  [[nodiscard]] Result<void> updateSummary(std::string_view certName, std::string_view condition,
                                           std::string_view summary);
  [[nodiscard]] Result<void> resolve(std::string_view certName, std::string_view condition, std::int64_t at);
  /// Removes the alert and its deliveries.
  [[nodiscard]] Result<void> forget(std::string_view certName, std::string_view condition);

  [[nodiscard]] Result<std::vector<DeliveryRow>> deliveries();
  [[nodiscard]] Result<void> saveDelivery(const DeliveryRow& row);

 private:
  std::unique_ptr<Db> db_;
};

/// The same reads on any connection (kmsctl, with kmsd down).
[[nodiscard]] Result<std::vector<AlertRow>> readAlerts(Db& db);
[[nodiscard]] Result<std::vector<DeliveryRow>> readDeliveries(Db& db);

}  // namespace kms::storage
