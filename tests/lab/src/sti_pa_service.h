#pragma once
/// @file The lab STI-PA (docs/protocols.md): login, SPC tokens, CA list, CRL, token signer certificate.
///
///   POST /sti-pa/api/v1/auth/login
///   POST /sti-pa/api/v1/account/{SPC}/token       Authorization: <accessToken>
///   GET  /sti-pa/api/v1/ca-list                   Authorization: <accessToken>
///   GET  /sti-pa/download/v1/crl
///   GET  /sti-pa/download/v1/certificate/certificateId_1.crt
///
/// and, for tests, the lab's own switches (JSON bodies, answered with the new state):
///   POST /lab/revoke       {"serial": "<hex>", "reason": 1}  a certificate into the CRL
///   POST /lab/rotate-root  new STI-CA root + intermediate; the CA list (sequence + 1) lists
///                          only the new root
///   POST /lab/ca-list      {"sequence": N, "mode": "good" | "tampered" | "expired" | "empty" |
///                          "foreign" (approves another root than the STI-CA's)}
///   POST /lab/crl          {"mode": "good" | "garbage" | "wrong-signer" | "bad-signature" | "stale"}
///   POST /lab/hostile      {"nonce": "good" | "not-utf8", "location": "good" | "not-utf8"}: the
///                          CA's Replay-Nonce / newOrder Location with bytes that are not UTF-8;
///                          {"ari_retry_after": "S" | null}: renewalInfo answers 503 with it

#include <cstdint>
#include <map>
#include <string>

#include "http_types.h"
#include "lab_context.h"

namespace kms::lab {

class StiPaService {
 public:
  explicit StiPaService(LabContext& ctx) : ctx_(ctx) {}

  /// Handles a request whose path starts with /sti-pa/. The caller holds the lab mutex.
  [[nodiscard]] LabReply handle(const LabRequest& request);

  /// Handles a request whose path starts with /lab/. The caller holds the lab mutex.
  [[nodiscard]] LabReply admin(const LabRequest& request);

  /// The current CRL (DER): every certificate revoked through the lab STI-CA (or /lab/revoke),
  /// spoilt as the CRL mode says.
  [[nodiscard]] Result<pki::Bytes> crl() const;

  /// Reads D/trust-state.json (CA list sequence, STI-CA generation) into ctx.trust.
  [[nodiscard]] static Result<void> loadTrustState(LabContext& ctx);

 private:
  LabReply login(const LabRequest& request);
  LabReply token(const LabRequest& request, const std::string& spc);
  LabReply caList();
  [[nodiscard]] Result<void> saveTrustState() const;
  [[nodiscard]] LabReply trustState() const;
  /// Empty when the Authorization header holds a live access token, else the 401 reply.
  [[nodiscard]] std::optional<LabReply> checkAccess(const LabRequest& request);

  LabContext& ctx_;
  std::map<std::string, std::int64_t> accessTokens_;  ///< token -> expiry (unix seconds)
};

}  // namespace kms::lab
