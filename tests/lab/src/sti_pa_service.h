#pragma once
/// @file The lab STI-PA (spec §2): login, SPC tokens, CA list, CRL, token signer certificate.
///
///   POST /sti-pa/api/v1/auth/login
///   POST /sti-pa/api/v1/account/{SPC}/token       Authorization: <accessToken>
///   GET  /sti-pa/api/v1/ca-list                   Authorization: <accessToken>
///   GET  /sti-pa/download/v1/crl
///   GET  /sti-pa/download/v1/certificate/certificateId_1.crt

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

  /// The current CRL (DER): every certificate revoked through the lab STI-CA.
  [[nodiscard]] Result<pki::Bytes> crl() const;

 private:
  LabReply login(const LabRequest& request);
  LabReply token(const LabRequest& request, const std::string& spc);
  LabReply caList();
  /// Empty when the Authorization header holds a live access token, else the 401 reply.
  [[nodiscard]] std::optional<LabReply> checkAccess(const LabRequest& request);

  LabContext& ctx_;
  std::map<std::string, std::int64_t> accessTokens_;  ///< token -> expiry (unix seconds)
};

}  // namespace kms::lab
