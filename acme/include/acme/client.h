#pragma once
/// @file RFC 8555 ACME client: directory, nonce pool, accounts, orders, authorizations,
/// challenges, finalize, certificate download, revocation, ARI (RFC 9773).
///
/// Thread-safe: one AcmeClient serves many orders at once from a bounded worker pool.
/// Server problem documents become kms::Error with nativeName = the ACME error type
/// ("badNonce", "rateLimited", ...), native = the HTTP status, context = the URL.

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "http/transport.h"
#include "kms/error.h"
#include "kms/secret.h"
#include "pki/signer.h"
#include "pki/x509.h"

namespace kms::acme {

// The HTTP seam lives in http/; ACME code names its types unqualified.
using http::HttpRequest;
using http::HttpResponse;
using http::Transport;

/// The directory object (RFC 8555 §7.1.1).
struct Directory {
  std::string newNonce;
  std::string newAccount;
  std::string newOrder;
  std::string revokeCert;
  std::string keyChange;
  std::optional<std::string> renewalInfo;  ///< RFC 9773 ARI, when the CA offers it
  std::optional<std::string> termsOfService;
  bool externalAccountRequired = false;
};

struct Identifier {
  std::string type;  ///< "dns", "TNAuthList"
  std::string value;
  friend bool operator==(const Identifier&, const Identifier&) = default;
};

struct Account {
  std::string url;     ///< the "kid"
  std::string status;  ///< valid | deactivated | revoked
  std::vector<std::string> contact;
};

struct Order {
  std::string url;
  std::string status;  ///< pending | ready | processing | valid | invalid
  std::vector<Identifier> identifiers;
  std::vector<std::string> authorizations;
  std::string finalize;
  std::optional<std::string> certificate;
  std::optional<Error> error;  ///< the order's problem document, when invalid
  /// The Retry-After of the answer that carried this order (clamped to [0, 1 day]).
  std::optional<std::chrono::seconds> retryAfter;
};

struct Challenge {
  std::string type;  ///< "http-01", "dns-01", "tkauth-01"
  std::string url;
  std::string status;
  std::string token;
  std::optional<std::string> tkauthType;      ///< tkauth-01: "atc"
  std::optional<std::string> tokenAuthority;  ///< tkauth-01 hint
  std::optional<Error> error;
};

struct Authorization {
  std::string url;
  std::string status;  ///< pending | valid | invalid | deactivated | expired | revoked
  Identifier identifier;
  std::vector<Challenge> challenges;
  bool wildcard = false;
  /// The Retry-After of the answer that carried this authorization (clamped to [0, 1 day]).
  std::optional<std::chrono::seconds> retryAfter;
};

/// A downloaded certificate chain and the URLs of alternate chains (Link rel="alternate").
struct CertificateChain {
  std::string pem;
  std::vector<std::string> alternates;
};

/// RFC 9773 renewalInfo.
struct RenewalInfo {
  pki::SystemTime windowStart;
  pki::SystemTime windowEnd;
  std::optional<std::string> explanationUrl;
  std::chrono::seconds retryAfter{21600};  ///< clamped to [60 s, 1 day]; 6 h when absent
};

/// External Account Binding credentials (RFC 8555 §7.3.4).
struct ExternalAccountBinding {
  std::string kid;
  SecretBytes hmacKey;  ///< already base64url-decoded
};

/// An account to sign with: its key (in the HSM) and URL (kid).
struct AccountRef {
  pki::Signer& key;
  std::string url;
};

/// Client tuning. Defaults suit a real CA. (How often an order is read again is the
/// lifecycle's business: kmsd/src/lifecycle/poll_timing.h.)
struct ClientOptions {
  std::string directoryUrl;
  /// badNonce answers retried per request, each with the nonce that answer carried. A
  /// retry costs one round trip; with 5, a CA rejecting 30% of nonces (Pebble's test
  /// mode) failed a request in about 1 of 1,400 (0.3^6), enough to lose one of ~40 runs
  /// of a 4-certificate test; with 10 it is about 1 in 600,000.
  int maxBadNonceRetries = 10;
};

class AcmeClient {
 public:
  /// Fetches and checks the directory. Errors: the transport's, or Errc::protocol when the
  /// directory lacks newNonce/newAccount/newOrder or is not JSON.
  [[nodiscard]] static Result<std::unique_ptr<AcmeClient>> create(Transport& transport, ClientOptions options);
  ~AcmeClient();
  AcmeClient(const AcmeClient&) = delete;
  AcmeClient& operator=(const AcmeClient&) = delete;

  [[nodiscard]] const Directory& directory() const;

  // --- accounts ---
  /// newAccount with termsOfServiceAgreed and contacts (and EAB when given). Returns the
  /// existing account when the key already has one (200).
  [[nodiscard]] Result<Account> newAccount(pki::Signer& key, const std::vector<std::string>& contact,
                                           const ExternalAccountBinding* eab = nullptr);
  /// newAccount with onlyReturnExisting: Errc::notFound (accountDoesNotExist) when none.
  [[nodiscard]] Result<Account> findAccount(pki::Signer& key);
  /// keyChange to newKey. A 409 (the new key already has an account) is Errc::alreadyExists.
  [[nodiscard]] Result<void> changeKey(const AccountRef& account, pki::Signer& newKey);
  /// Deactivates the account.
  [[nodiscard]] Result<Account> deactivate(const AccountRef& account);

  // --- orders ---
  /// newOrder; replaces = the ARI certID of the certificate this order renews.
  [[nodiscard]] Result<Order> newOrder(const AccountRef& account, const std::vector<Identifier>& identifiers,
                                       const std::optional<std::string>& replaces = std::nullopt);
  [[nodiscard]] Result<Order> getOrder(const AccountRef& account, const std::string& url);
  [[nodiscard]] Result<Authorization> getAuthorization(const AccountRef& account, const std::string& url);
  /// POSTs the challenge response (payloadJson: "{}" for http-01/dns-01, {"atc":…} for tkauth-01).
  [[nodiscard]] Result<Challenge> respondChallenge(const AccountRef& account, const std::string& url,
                                                   const std::string& payloadJson);
  /// finalize with a DER CSR; returns the order as the server answered.
  [[nodiscard]] Result<Order> finalize(const AccountRef& account, const Order& order, const pki::Bytes& csrDer);
  /// Downloads application/pem-certificate-chain.
  [[nodiscard]] Result<CertificateChain> downloadCertificate(const AccountRef& account, const std::string& url);

  // --- revocation and renewal information ---
  /// revokeCert signed by the account (kid form). reason: RFC 5280 code, omitted when empty.
  [[nodiscard]] Result<void> revoke(const AccountRef& account, const pki::Bytes& certDer,
                                    std::optional<int> reason = std::nullopt);
  /// GET {renewalInfo}/{certID}. Errc::unsupported when the directory has no renewalInfo.
  [[nodiscard]] Result<RenewalInfo> renewalInfo(const std::string& certId);

  /// Test hook: how many requests were retried after badNonce so far.
  [[nodiscard]] std::uint64_t badNonceRetries() const;

 private:
  class Impl;
  explicit AcmeClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

/// RFC 9773 §4.2: a uniformly random instant in the suggested window; `now` when the
/// window has already passed (renew at once), and never before `now`.
[[nodiscard]] pki::SystemTime pickRenewalTime(const RenewalInfo& info, pki::SystemTime now, std::uint64_t randomValue);

/// The longest wait a CA may name (Retry-After); past it, kmsd's own backoff decides.
inline constexpr std::chrono::seconds kMaxRetryAfter{86400};

/// Parses an HTTP Retry-After value (delta-seconds or IMF-fixdate) relative to now, bounded:
/// empty when absent, unreadable or under one second (a wait of 0 or a date in the past
/// counts as no Retry-After, never as "at once"); at most kMaxRetryAfter.
[[nodiscard]] std::optional<std::chrono::seconds> parseRetryAfter(std::string_view value, pki::SystemTime now);

/// Turns an error response into an Error (problem+json when present). Exposed for tests.
/// Disposition: permanent for a refused order, CSR, key or identifier (badCSR, badPublicKey,
/// badSignatureAlgorithm, rejectedIdentifier, unsupportedIdentifier, caa) and a refused
/// revocation; caPause for rateLimited, HTTP 429, and 503 with Retry-After; else retry.
[[nodiscard]] Error problemError(const HttpResponse& response, const std::string& url);

}  // namespace kms::acme
