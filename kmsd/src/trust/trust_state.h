#pragma once
// What trust upkeep decides and the lifecycle reads: the roots an issued chain must verify
// to, and the active certificates whose chain no longer does. Written by the TrustKeeper,
// read by the steps; thread-safe.

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "config/config.h"
#include "pki/x509.h"

namespace kms::daemon {

class TrustState {
 public:
  /// Reads [acme] trust_anchors when configured (then they override the CA list's roots).
  /// Errors name the setting and the file.
  [[nodiscard]] static Result<std::unique_ptr<TrustState>> create(const config::Config& config);

  /// The roots an issued chain must verify to: [acme] trust_anchors when configured, else
  /// the approved roots of the kept STI-PA CA list (empty until one is kept).
  [[nodiscard]] std::vector<pki::Certificate> anchors() const;
  /// Whether [acme] trust_anchors overrides the CA list.
  [[nodiscard]] bool anchorsConfigured() const { return configured_; }
  /// The STI-PA CA list's roots changed (ignored while [acme] trust_anchors overrides them).
  void setCaListRoots(std::vector<pki::Certificate> roots);

  /// Issued certificates (ids) whose chain no longer verifies to the anchors, each with
  /// whether its root is still among them (then the CA's doing, counted against the
  /// early-renewal budget; a root that left the anchors always renews).
  void setDistrusted(std::map<std::int64_t, bool> ids);
  [[nodiscard]] bool distrusted(std::int64_t issuedId) const;
  /// Distrusted while its root is still approved (see setDistrusted).
  [[nodiscard]] bool distrustedWithItsRootApproved(std::int64_t issuedId) const;
  [[nodiscard]] std::size_t distrustedCount() const;

 private:
  TrustState() = default;
  mutable std::mutex mutex_;  // guards anchors_ and distrusted_
  std::vector<pki::Certificate> anchors_;
  bool configured_ = false;
  std::map<std::int64_t, bool> distrusted_;
};

}  // namespace kms::daemon
