#pragma once
// The read-only view of one certificate the planner decides on: its row, its open order,
// the certificate verifiers get now, and whether that one's key is still on the token and
// its chain still trusted. Reading it writes nothing (a missing key is retired by the order
// that replaces it).

#include <cstdint>
#include <mutex>
#include <set>
#include <string>

#include "config/config.h"
#include "engine/planner.h"
#include "lifecycle/renewal_timing.h"
#include "lifecycle/step_context.h"

namespace kms::daemon {

class SnapshotReader {
 public:
  SnapshotReader(const StepContext& ctx, const RenewalTiming& timing) : ctx_(ctx), timing_(timing) {}

  /// What the planner needs for `c` (the active key looked for on the token once per
  /// process per certificate).
  [[nodiscard]] Result<CertSnapshot> read(const config::CertificateConfig& c, bool renewRequested);
  /// `uri` is on the token (just generated or found): not looked for again.
  void keyPresent(const std::string& uri);

 private:
  [[nodiscard]] Result<void> readRows(const config::CertificateConfig& c, CertSnapshot& snap);
  /// A chain distrusted while its root is still approved renews early only within the budget.
  void applyDistrustBudget(const config::CertificateConfig& c, CertSnapshot& snap);
  [[nodiscard]] Result<bool> activeKeyMissing(const std::string& keyUri);

  const StepContext& ctx_;
  const RenewalTiming& timing_;
  std::mutex mutex_;                     // guards the members below
  std::set<std::string> keyChecked_;     ///< active keys already found on the token
  bool tokenListed_ = false;             ///< keyChecked_ was seeded from one listing of the token
  std::set<std::int64_t> distrustHeld_;  ///< distrusted certificates the spent budget holds (reported once)
};

}  // namespace kms::daemon
