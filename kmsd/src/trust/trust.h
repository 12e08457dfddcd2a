#pragma once
// Trust upkeep: the STI-PA CA list and CRL, read at start and every [sti_pa] trust_refresh,
// kept in the state DB when they verify (a bad or older one never replaces the kept one),
// the CA list's roots used as the trust anchors of issued chains, and every active
// certificate checked against both. One the CRL lists (or whose issuer it lists) is marked
// revoked, so the planner issues a new one with a new key at once; one whose chain no longer
// verifies to the CA list is renewed at once with a new key, staying active meanwhile.

#include <cstdint>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <unordered_set>
#include <vector>

#include "common/clock.h"
#include "events/event_sink.h"
#include "nlohmann/json_fwd.hpp"
#include "pki/crl.h"
#include "services/services.h"
#include "trust/trust_state.h"
#include "sti_pa/client.h"

namespace kms::daemon {

class TrustKeeper {
 public:
  TrustKeeper(Services& services, TrustState& state, const Clock& clock, EventSink& events)
      : s_(services), state_(state), clock_(clock), events_(events) {}

  /// Reads the kept CA list and CRL from the DB (at start): the list's roots become the
  /// anchors before anything is fetched. A kept copy that no longer parses is an event.
  void load();
  /// Fetches both documents, keeps what verifies, then checks the active certificates
  /// against what is kept. Returns the certificates to plan again now.
  /// Runs on a worker; the engine never runs two at once.
  [[nodiscard]] std::vector<std::string> refresh();
  /// The last refresh: when, and what went wrong with each document (JSON object).
  [[nodiscard]] nlohmann::json status() const;

 private:
  /// KMS_TRUST_ANCHORS_DIFFER when [acme] trust_anchors holds a root the kept CA list does
  /// not approve (at start and at each new CA list).
  void compareAnchors();
  void refreshCaList(std::int64_t now);
  void refreshCrl(std::int64_t now);
  /// Why a fetched CRL is not kept (unparsable, not the CRL signer's, stale, from the future,
  /// older than the kept one); nullopt when it is kept. Called with mutex_ held.
  [[nodiscard]] std::optional<std::string> crlRefusal(const Result<pki::Crl>& crl, std::int64_t now) const;
  /// A document that could not be read (network, HTTP) or was refused (content).
  void fetchFailed(const char* what, const Error& e);
  void rejected(const char* eventId, const char* what, const std::string& reason, const std::string& kept);
  std::vector<std::string> checkActive(std::int64_t now);
  /// What the CA list and CRL say of one rest-of-chain (the issuers of active certificates).
  struct IssuerVerdict {
    std::optional<std::string> revoked;    ///< why the CRL lists an issuer
    std::optional<std::string> untrusted;  ///< why the chain does not verify to the anchors
    bool rootApproved = false;             ///< untrusted although its root is still an anchor
  };
  [[nodiscard]] IssuerVerdict judgeIssuers(const std::string& issuersPem, const std::string& leafPem,
                                           const std::unordered_set<std::string>& crlSerials,
                                           const std::vector<pki::Certificate>& anchors, std::int64_t now) const;
  /// Why the CRL lists `cert` itself, if it does.
  [[nodiscard]] std::optional<std::string> leafRevoked(const storage::IssuedCert& cert, const std::string& leafPem,
                                                       const std::unordered_set<std::string>& crlSerials) const;
  /// Marks `cert` revoked (KMS_CERT_REVOKED); false when the DB refused.
  bool recordRevoked(const storage::IssuedCert& cert, const std::string& why, std::int64_t now);
  void reportDistrusted(const storage::IssuedCert& cert, const std::string& why);

  Services& s_;
  TrustState& state_;
  const Clock& clock_;
  EventSink& events_;
  mutable std::mutex mutex_;  // guards the members below (status() reads them from the loop)
  std::optional<sti_pa::CaList> caList_;
  std::optional<pki::Crl> crl_;
  std::optional<std::int64_t> lastRefresh_;
  std::optional<std::string> caListError_;
  std::optional<std::string> crlError_;
};

/// The kept CA list and CRL (either may be absent).
struct KeptTrust {
  std::optional<storage::TrustDocument> caList;
  std::optional<storage::TrustDocument> crl;
};
[[nodiscard]] Result<KeptTrust> readKeptTrust(storage::Store& store);

/// `kmsctl trust` from the kept documents alone (what the daemon adds is in status()):
/// the CA list's sequence, age, expiry and roots; the CRL's issuer, thisUpdate, nextUpdate
/// and entry count.
[[nodiscard]] nlohmann::json trustReport(const KeptTrust& kept, std::int64_t now);

}  // namespace kms::daemon
