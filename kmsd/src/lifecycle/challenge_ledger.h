#pragma once
// The challenge answers this process presented, by order: what to withdraw when the order
// leaves authorization (an http-01 token served, a dns-01 record placed), and which
// challenges were already answered at the CA (a CA that keeps a challenge "pending" while it
// validates is not answered twice).

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "acme/client.h"

namespace kms::daemon {

class ChallengeLedger {
 public:
  struct Presented {
    acme::Authorization authz;
    acme::Challenge challenge;
    std::string keyAuth;
    std::string type;
    bool answered = false;  ///< POSTed to the CA by this process
  };

  /// Records an answer presented for `orderId`; false when it was already recorded.
  bool remember(std::int64_t orderId, Presented presented);
  [[nodiscard]] bool wasAnswered(std::int64_t orderId, const std::string& challengeUrl);
  void markAnswered(std::int64_t orderId, const std::string& challengeUrl);
  /// Everything presented for `orderId`, forgotten here.
  [[nodiscard]] std::vector<Presented> take(std::int64_t orderId);

 private:
  std::mutex mutex_;
  std::map<std::int64_t, std::vector<Presented>> presented_;
};

}  // namespace kms::daemon
