#pragma once
// The conditions kmsd alerts on, computed from the state DB's facts (storage::AlertFacts):
// pure logic, no clock and no I/O, so every rule is unit-tested on its own.

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "config/config.h"
#include "storage/alert_log.h"

namespace kms::daemon {

/// Condition names (the `condition` label, the DB's and the API's word).
inline constexpr const char* kExpired = "expired";
inline constexpr const char* kExpiring = "expiring";
inline constexpr const char* kRenewalFailing = "renewal_failing";
inline constexpr const char* kSpcTokenUnobtainable = "spc_token_unobtainable";
inline constexpr const char* kRevoked = "revoked";
inline constexpr const char* kRootDistrusted = "root_distrusted";
inline constexpr const char* kPublicationFailing = "publication_failing";

/// One condition holding for one certificate.
struct Condition {
  std::string certName;
  const char* condition = "";
  const char* severity = "warning";  ///< "warning" | "critical"
  std::string summary;               ///< one line for a human, naming what to look at
};

/// What the rules are given besides the facts.
struct ConditionInputs {
  std::int64_t now = 0;
  /// The newest event id the previous evaluation saw: a revocation or distrust newer than it
  /// fires even when a replacement was activated since (it is said once, then resolves).
  std::int64_t cursor = 0;
  /// Certificates in the configuration; others (removed ones) raise nothing.
  std::set<std::string> configured;
  int failures = 3;
  double warningFraction = 1.0 / 6;
};

/// Every condition that holds, by certificate then condition. A certificate in the last
/// share of its lifetime and not renewed is `expiring`; past its notAfter `expired` instead.
/// Failures in a row at the SPC token step are `spc_token_unobtainable`, at any other step
/// `renewal_failing`.
[[nodiscard]] std::vector<Condition> evaluateConditions(const std::vector<storage::AlertFacts>& facts,
                                                        const ConditionInputs& in);

/// "KmsCertificateExpired" for "expired": the alertname sent to Alertmanager.
[[nodiscard]] std::string alertName(const std::string& condition);

}  // namespace kms::daemon
