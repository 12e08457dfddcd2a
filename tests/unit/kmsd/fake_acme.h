#pragma once
// An in-memory ACME CA behind http::Transport (the seam kmsd's ACME client already sends
// through), for unit tests of the lifecycle steps: no network, no Pebble. It speaks RFC
// 8555's wire format (directory, nonces, JWS bodies whose payload it reads without checking
// the signature, problem documents, Location headers, a PEM chain) and issues a real
// certificate for the finalized CSR's key from a CA of its own. Tests set the state of an
// order (pending, ready, processing, valid, invalid) and what the next answers say, and
// count what was sent. What it does not prove (signatures, a CA's validation) is proven
// against Pebble and kms-lab by the integration tests.

#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "http/transport.h"
#include "test_certs.h"

namespace kms::daemon::test {

class FakeAcme final : public http::Transport {
 public:
  static constexpr const char* kBase = "https://ca.test";

  FakeAcme();
  [[nodiscard]] std::string directoryUrl() const { return std::string(kBase) + "/dir"; }
  /// The CA's root, for [acme] trust_anchors.
  [[nodiscard]] const std::string& rootPem() const { return rootPem_; }

  [[nodiscard]] Result<http::HttpResponse> send(const http::HttpRequest& request) override;

  struct OrderState {
    std::string status = "pending";  ///< pending | ready | processing | valid | invalid
    std::vector<std::string> dnsNames;
    std::string authzStatus = "pending";
    std::string challengeStatus = "pending";
    std::optional<std::string> replaces;
    std::string chainPem;  ///< once issued
  };

  // What the next answers do.
  /// A challenge answered validates at once (authorization valid, order ready); else it
  /// stays "processing" until the test decides.
  bool validateOnAnswer = true;
  /// Finalize leaves the order "processing" (the test makes it valid) instead of "valid".
  bool finalizeProcessing = false;
  /// newOrder naming `replaces` is refused with alreadyReplaced.
  bool refuseReplaces = false;
  /// Retry-After (seconds) on order answers, when set.
  std::optional<int> orderRetryAfter;

  /// The order at index `n` (1-based, in creation order).
  OrderState& order(int n);
  [[nodiscard]] std::string orderUrl(int n) const;
  [[nodiscard]] int orders() const;
  /// Requests of a kind so far: "newOrder", "finalize", "challenge", "order", "authz",
  /// "certificate", "newAccount".
  [[nodiscard]] int count(const std::string& kind) const;

 private:
  http::HttpResponse handle(const http::HttpRequest& request);
  http::HttpResponse orderAnswer(int n, long status);
  http::HttpResponse finalize(int n, const std::string& payload);
  std::string issue(const std::string& csrDer, const std::vector<std::string>& names);

  mutable std::mutex mutex_;
  kms::test::TestKey caKey_;
  std::string rootPem_;
  std::vector<OrderState> orders_;
  std::map<std::string, int> counts_;
  bool account_ = false;
  long serial_ = 100;
  int nonce_ = 0;
};

}  // namespace kms::daemon::test
