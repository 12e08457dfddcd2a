#pragma once
/// @file State shared by the lab's STI-PA and STI-CA: options, PKI, CA store, URLs.
/// One mutex (held by the router around each request) serialises all of it.

#include <atomic>
#include <memory>
#include <optional>
#include <set>
#include <string>

#include "ca_store.h"
#include "lab_pki.h"
#include "options.h"

namespace kms::lab {

/// The STI-PA API user of the lab account.
inline constexpr const char* kStiPaUserId = "kms-lab";
/// The EAB key id the lab CA hands out.
inline constexpr const char* kEabKid = "kid-1";

/// What the lab STI-PA serves as CA list and CRL; tests change it through POST /lab/...
struct TrustSwitches {
  std::int64_t caListSequence = 1;  ///< kept in D/trust-state.json
  int caGeneration = 1;             ///< STI-CA roots so far (kept in D/trust-state.json)
  /// good | tampered | expired | empty | foreign (approves another root than the STI-CA's)
  std::string caListMode = "good";
  std::string crlMode = "good";     ///< good | garbage | wrong-signer | bad-signature | stale
};

/// A hostile CA (POST /lab/hostile): "good", or "not-utf8" for a Replay-Nonce (every
/// answer's) and a newOrder Location holding bytes that are not UTF-8; renewalInfo
/// answering 503 with this Retry-After.
struct HostileSwitches {
  std::string nonce = "good";
  std::string location = "good";
  std::optional<std::string> ariRetryAfter;
  /// Every ACME request is held (not answered) while this is set, released when it is
  /// cleared (POST /lab/hostile {"acme_hold":false}): a test holds an order as long as it needs.
  std::atomic<bool> acmeHold{false};
};

struct LabContext {
  LabOptions options;
  std::unique_ptr<LabPki> pki;
  CaStore store;
  std::string baseUrl;  ///< https://127.0.0.1:<port>
  std::string stiPaPassword;
  pki::Bytes eabKey;  ///< raw HMAC key (D/eab.key holds its base64url)
  TrustSwitches trust;
  HostileSwitches hostile;
  /// The ARI window served for unrevoked certificates (POST /lab/ari): "lifetime" (2/3 .. 5/6
  /// of it) or "now" (the window has just closed, as when a CA asks for early renewal after
  /// an incident). "now" holds for the certificates issued before it was set (ariNowFor);
  /// their replacements get the usual window. "every": a hostile CA, every certificate's
  /// window has closed, the new ones' too.
  std::string ariWindow = "lifetime";
  std::set<std::string> ariNowFor;  ///< serials

  [[nodiscard]] std::string stiPaUrl() const { return baseUrl + "/sti-pa/api/v1"; }
  [[nodiscard]] std::string crlUrl() const { return baseUrl + "/sti-pa/download/v1/crl"; }
  [[nodiscard]] std::string tokenSignerUrl() const {
    return baseUrl + "/sti-pa/download/v1/certificate/certificateId_1.crt";
  }
  [[nodiscard]] std::string acmeUrl(const std::string& path) const { return baseUrl + "/acme/" + path; }
  [[nodiscard]] std::string directoryUrl() const { return acmeUrl("directory"); }
  [[nodiscard]] std::string stiCrBaseUrl() const { return baseUrl + "/sti-cr/"; }
};

}  // namespace kms::lab
