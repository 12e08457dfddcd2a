#include "lifecycle/challenge_ledger.h"

#include <algorithm>

namespace kms::daemon {

bool ChallengeLedger::remember(std::int64_t orderId, Presented presented) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto& list = presented_[orderId];
  for (const auto& p : list) {
    if (p.challenge.url == presented.challenge.url) {
      return false;
    }
  }
  list.push_back(std::move(presented));
  return true;
}

bool ChallengeLedger::wasAnswered(std::int64_t orderId, const std::string& challengeUrl) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = presented_.find(orderId);
  return it != presented_.end() && std::any_of(it->second.begin(), it->second.end(), [&](const Presented& p) {
           return p.answered && p.challenge.url == challengeUrl;
         });
}

void ChallengeLedger::markAnswered(std::int64_t orderId, const std::string& challengeUrl) {
  std::lock_guard<std::mutex> lock(mutex_);
  for (Presented& p : presented_[orderId]) {
    if (p.challenge.url == challengeUrl) {
      p.answered = true;
    }
  }
}

std::vector<ChallengeLedger::Presented> ChallengeLedger::take(std::int64_t orderId) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = presented_.find(orderId);
  if (it == presented_.end()) {
    return {};
  }
  std::vector<Presented> list = std::move(it->second);
  presented_.erase(it);
  return list;
}

}  // namespace kms::daemon
