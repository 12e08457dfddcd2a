#pragma once
/// @file STI-PA client (docs/protocols.md, ATIS-1000080 token API as iconectiv serves it): log in,
/// obtain SPC tokens bound to the ACME account key, verify them before use, fetch the CA
/// trust list and the CRL. (The tkauth-01 solver is in acme/, fed through an SpcTokenSource.)

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "http/transport.h"
#include "kms/error.h"
#include "pki/ec_key.h"
#include "pki/x509.h"

namespace kms::sti_pa {

/// Which digest of the ACME account key goes into atc.fingerprint (docs/protocols.md).
enum class FingerprintKind { spki, jwkThumbprint };

struct StiPaOptions {
  std::string url;  ///< API base, e.g. https://authenticate-api.iconectiv.com/api/v1
  std::string userId;
  std::string passwordFile;  ///< read at each login, wiped after use
  /// Roots the token signer (x5u) and the CA-list signer must chain to; empty: the
  /// signature is still checked against the x5u certificate, the chain is not.
  std::vector<pki::Certificate> trustAnchors;
  FingerprintKind fingerprint = FingerprintKind::spki;
  /// Hosts ("host" or "host:port", 443 when no port) a token's x5u and the CRL URL may be
  /// on, besides the STI-PA's own (url's).
  std::vector<std::string> allowedHosts;
  /// A cached token is reused only while it has at least this long left.
  std::chrono::seconds minRemaining{180};
};

/// A verified SPC token.
struct SpcToken {
  std::string jwt;  ///< compact JWS, as presented to the STI-CA
  std::string spc;
  std::string fingerprint;  ///< "SHA256 AA:..." it is bound to
  std::string jti;
  pki::SystemTime exp;
  std::string crlUrl;  ///< from the token response, when given
};

/// The "atc" object of a token request (and of the token's payload).
struct Atc {
  std::string tktype = "TNAuthList";
  std::string tkvalue;  ///< padded standard base64 of the DER TNAuthList
  bool ca = false;
  std::string fingerprint;
};

/// A verified STI-PA CA list (docs/protocols.md): the approved STI-CA roots.
struct CaList {
  std::string jws;  ///< the compact JWS as served (kept in the DB)
  std::int64_t sequence = 0;
  std::int64_t exp = 0;  ///< Unix seconds
  std::string version;
  std::vector<pki::Certificate> roots;
};

/// Verifies a CA list JWS like an SPC token (ES256, x5u https, signer chained to anchors
/// when given, signature) and reads its payload: integer `sequence` >= 0, integer `exp`
/// after now, a non-empty `trustList` of PEM certificates. Errors name the check.
[[nodiscard]] Result<CaList> verifyCaList(const std::string& jws, const std::vector<pki::Certificate>& anchors,
                                          std::int64_t now,
                                          const std::function<Result<std::string>(const std::string&)>& fetchX5u);
/// Reads the payload of a CA list verified earlier (the copy kept in the DB), without
/// verifying the signature again; the same payload checks except expiry.
[[nodiscard]] Result<CaList> readKeptCaList(const std::string& jws);

/// Verifies an SPC token: compact JWS, ES256, x5u https and fetched through fetchX5u,
/// signer chained to anchors (when given), signature, exp after now, jti present, and the
/// atc claim equal to `expected`. Errors name the check that failed.
[[nodiscard]] Result<SpcToken> verifySpcToken(const std::string& jwt, const Atc& expected,
                                              const std::vector<pki::Certificate>& anchors, pki::SystemTime now,
                                              const std::function<Result<std::string>(const std::string&)>& fetchX5u);

class StiPaClient {
 public:
  /// Does no I/O; the first request logs in.
  [[nodiscard]] static std::unique_ptr<StiPaClient> create(http::Transport& transport, StiPaOptions options);

  /// A verified token for (spc, account key): cached until minRemaining before exp and
  /// until presented once (a CA may treat jti as single use). Logs in again once on 401.
  /// Errors: Errc::unauthorized (credentials; 403 with an allow-listing hint),
  /// Errc::protocol (a malformed answer or a token failing verification), network errors.
  [[nodiscard]] Result<SpcToken> spcToken(const std::string& spc, const pki::EcPublicKey& accountKey, bool ca = false);
  /// spcToken, marked as presented in the same step: two orders for one SPC running at
  /// once never get the same token (a CA refuses a jti it has seen).
  [[nodiscard]] Result<SpcToken> takeSpcToken(const std::string& spc, const pki::EcPublicKey& accountKey,
                                              bool ca = false);
  /// Marks a token as presented to a CA: it will not be handed out again.
  void markUsed(const std::string& jti);
  /// Drops every cached token (after an ACME account key rollover the fingerprint changes).
  void forgetTokens();
  /// The CA list, verified (see verifyCaList). Whether its sequence went back is the
  /// caller's to judge against the copy it keeps.
  [[nodiscard]] Result<CaList> caList();
  /// The STI-PA CRL as served (meant to be DER; pki::Crl parses and checks it), from the URL
  /// the last token response named, else `<url>/../download/v1/crl`.
  [[nodiscard]] Result<pki::Bytes> crl();
  /// atc.fingerprint for an account key in the configured flavour.
  [[nodiscard]] std::string fingerprintOf(const pki::EcPublicKey& key) const;
  /// How many logins and token requests went to the STI-PA (for tests and metrics).
  [[nodiscard]] int logins() const;
  [[nodiscard]] int tokenRequests() const;

  ~StiPaClient();
  StiPaClient(const StiPaClient&) = delete;
  StiPaClient& operator=(const StiPaClient&) = delete;

 private:
  class Impl;
  explicit StiPaClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kms::sti_pa
