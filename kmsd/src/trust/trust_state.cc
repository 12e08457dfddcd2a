#include "trust/trust_state.h"

namespace kms::daemon {

Result<std::unique_ptr<TrustState>> TrustState::create(const config::Config& config) {
  std::unique_ptr<TrustState> s(new TrustState());
  if (config.acme.trustAnchors) {
    auto anchors = pki::readPemFile(*config.acme.trustAnchors);
    if (!anchors) {
      Error e = anchors.error();
      e.message = "[acme] trust_anchors: " + e.message;
      return fail(e);
    }
    s->configured_ = !anchors->empty();
    s->anchors_ = std::move(*anchors);
  }
  return s;
}

std::vector<pki::Certificate> TrustState::anchors() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return anchors_;
}

void TrustState::setCaListRoots(std::vector<pki::Certificate> roots) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!configured_) {
    anchors_ = std::move(roots);
  }
}

void TrustState::setDistrusted(std::map<std::int64_t, bool> ids) {
  std::lock_guard<std::mutex> lock(mutex_);
  distrusted_ = std::move(ids);
}

bool TrustState::distrusted(std::int64_t issuedId) const {
  std::lock_guard<std::mutex> lock(mutex_);
  return distrusted_.count(issuedId) != 0;
}

bool TrustState::distrustedWithItsRootApproved(std::int64_t issuedId) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = distrusted_.find(issuedId);
  return it != distrusted_.end() && it->second;
}

std::size_t TrustState::distrustedCount() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return distrusted_.size();
}

}  // namespace kms::daemon
