#pragma once
/// @file What a certificate's issuance needs beside the protocol calls of client.h:
/// challenge answers (http-01 responder, dns-01 hook, tkauth-01 in tkauth.h), the checks of
/// an authorization before it is answered, and the download with the checks before a chain
/// is accepted (leaf key, identifiers, chain to trust anchors). kmsd's lifecycle is what
/// sequences, polls and resumes them (kmsd/src/lifecycle/).

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "acme/client.h"
#include "acme/http01_responder.h"
#include "kms/process.h"
#include "pki/csr.h"
#include "pki/x509.h"

namespace kms::acme {

/// Answers one challenge type.
class ChallengeSolver {
 public:
  virtual ~ChallengeSolver() = default;
  /// Makes the answer available for the CA to validate and returns the JSON payload to
  /// POST to the challenge URL ("{}" for http-01 and dns-01).
  [[nodiscard]] virtual Result<std::string> present(const Authorization& authz, const Challenge& challenge,
                                                    const std::string& keyAuthorization) = 0;
  /// Withdraws the answer (always called after present, whatever the outcome).
  virtual void cleanup(const Authorization& authz, const Challenge& challenge, const std::string& keyAuthorization) = 0;
};

/// http-01 through the built-in responder.
class Http01Solver : public ChallengeSolver {
 public:
  explicit Http01Solver(Http01Responder& responder) : responder_(responder) {}
  [[nodiscard]] Result<std::string> present(const Authorization& authz, const Challenge& challenge,
                                            const std::string& keyAuthorization) override;
  void cleanup(const Authorization& authz, const Challenge& challenge, const std::string& keyAuthorization) override;

 private:
  Http01Responder& responder_;
};

/// dns-01 through an operator hook, run like certbot's manual hooks: `HOOK present` and
/// `HOOK cleanup` with KMS_DOMAIN, KMS_RECORD (_acme-challenge.<domain>), KMS_VALIDATION
/// (the TXT value) and KMS_TOKEN in the environment. Not a ChallengeSolver: a hook may take
/// minutes (DNS propagation), so it is started and its exit waited for by the caller (kmsd
/// from its event loop); exit status 0 means done.
class Dns01Hook {
 public:
  explicit Dns01Hook(std::string hook) : hook_(std::move(hook)) {}
  /// Starts `HOOK action` ("present" or "cleanup") without waiting.
  [[nodiscard]] Result<std::unique_ptr<ChildProcess>> start(const char* action, const Authorization& authz,
                                                            const Challenge& challenge,
                                                            const std::string& keyAuthorization) const;
  [[nodiscard]] const std::string& hook() const { return hook_; }

 private:
  static std::vector<std::string> environment(const Authorization& authz, const Challenge& challenge,
                                               const std::string& keyAuthorization);
  std::string hook_;
};

/// The TXT value of a dns-01 challenge: base64url(SHA-256(keyAuthorization)).
[[nodiscard]] std::string dns01TxtValue(const std::string& keyAuthorization);

/// What to issue.
struct IssueRequest {
  std::vector<Identifier> identifiers;
  std::string challengeType;                   ///< "http-01", "dns-01", "tkauth-01"
  pki::CsrRequest csr;                         ///< subject/SAN/TNAuthList for the CSR
  pki::Signer* certKey = nullptr;              ///< the certificate key (in the HSM)
  std::optional<std::string> replaces;         ///< ARI certID of the certificate renewed
  std::vector<pki::Certificate> trustAnchors;  ///< the chain must verify to one of these
  /// A further acceptance check on the parsed chain (e.g. the SHAKEN profile).
  std::function<Result<void>(const std::vector<pki::Certificate>& chain)> extraCheck;
};

/// An accepted certificate.
struct IssuedChain {
  std::string pem;                      ///< the chain as served to verifiers (leaf first)
  std::vector<pki::Certificate> chain;  ///< parsed, leaf first
  std::string orderUrl;
  bool alternate = false;  ///< an alternate chain was the one that verified
};

/// Downloads the certificate of a valid order and runs the acceptance checks, trying the
/// alternate chains when the default one does not verify. Errors: the transport's, or the
/// first failed check (Errc::crypto / Errc::protocol naming it).
[[nodiscard]] Result<IssuedChain> downloadCheckedChain(AcmeClient& client, const AccountRef& account,
                                                       const IssueRequest& request, const Order& order);

/// The acceptance checks alone: leaf key == certKey, identifiers == the request's, chain
/// verifies to the trust anchors at `now` (skipped only when no anchors are given).
/// Before an authorization is answered: it is for an identifier the order asked for (a
/// wildcard authorization for "*.<value>"; a TNAuthList one when a TNAuthList was asked
/// for), its value has only the characters such an identifier may have (a DNS name;
/// base64/base64url for TNAuthList) and the challenge token is base64url, so nothing a CA
/// sends reaches a hook's environment or a log as commands or control characters.
/// Errc::protocol naming the authorization URL; permanent.
[[nodiscard]] Result<void> checkAuthorization(const Authorization& authz, const Challenge& challenge,
                                              const std::vector<Identifier>& asked);

[[nodiscard]] Result<void> checkIssuedChain(const std::vector<pki::Certificate>& chain, const IssueRequest& request,
                                            pki::SystemTime now);

}  // namespace kms::acme
