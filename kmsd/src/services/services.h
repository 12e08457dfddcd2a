#pragma once
// The long-lived services of the daemon, built once at start-up and kept until it stops:
// state DB, HSM token, HTTP transport, ACME client (connected lazily: a CA outage must not
// stop the daemon), STI-PA client, challenge solvers, the web root, trust anchors, and the
// ACME account. Keys are recorded in the DB before they exist on the token.

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "acme/client.h"
#include "acme/http01_responder.h"
#include "acme/issuer.h"
#include "common/clock.h"
#include "config/config.h"
#include "events/event_sink.h"
#include "hsm/token.h"

namespace kms::hsm {
struct TokenStoreReport;
}
#include "http/transport.h"
#include "publisher/web_root.h"
#include "services/ca_session.h"
#include "services/key_manager.h"
#include "sti_pa/client.h"
#include "storage/db.h"
#include "storage/store.h"

namespace kms::daemon {

/// The state DB: one connection shared by the workers through LockedStore.
struct StateDb {
  std::unique_ptr<storage::Db> db;
  std::unique_ptr<storage::Store> store;
  std::unique_ptr<LockedStore> locked;
};
/// Descriptors kept out of the listeners' reach (the DB, the token, the CA and STI-PA
/// connections, hooks), so that a flood on one listener cannot starve the rest.
inline constexpr std::uint64_t kDescriptorReserve = 64;
/// Raises RLIMIT_NOFILE's soft limit to its hard limit (listeners at their caps, the DB,
/// the token and the transport's connections all need descriptors), once at start; the
/// limit in force.
std::uint64_t raiseDescriptorLimit();
/// The connection caps of each of kmsd's two listeners (control API, http-01), from
/// [daemon] listener_*, each at most half of what RLIMIT_NOFILE leaves beside
/// kDescriptorReserve.
[[nodiscard]] http::ConnectionLimits listenerLimits(const config::DaemonConfig& daemon);
/// Creates state_dir (0700) when missing, and refuses one that is not a directory of this
/// user or that group or others may write (they could swap kmsd.db): the error names the
/// directory, its mode and the fix.
[[nodiscard]] Result<void> checkStateDir(const std::string& dir, bool create);
/// Creates state_dir (0700) and opens or creates kmsd.db in it (0600), migrating the schema.
[[nodiscard]] Result<StateDb> openStateDb(const config::Config& config);

/// The configured token, opened as kmsd opens it: `[hsm] softhsm2_conf` set as
/// SOFTHSM2_CONF before the module is loaded, SoftHSM2's file store guarded first (its
/// repairs reported in `guard`), and an error an operator can act on: a refused PIN names
/// `[hsm] pin_file` and its path; a token not found with SoftHSM2 names the softhsm2.conf
/// read and its token directory, and `[hsm] softhsm2_conf`; anything else `[hsm]` and the
/// error.
[[nodiscard]] Result<std::unique_ptr<hsm::Token>> openConfiguredToken(const config::Config& config,
                                                                      hsm::TokenStoreReport& guard);

/// The settings of `config`: a copy without its certificates.
[[nodiscard]] std::shared_ptr<const config::Config> settingsOf(const config::Config& config);

/// Transports handed in instead of libcurl ones (the lifecycle's unit tests: a CA and an
/// STI-PA in memory, behind the same http::Transport interface).
struct TransportOverrides {
  std::unique_ptr<http::Transport> acme;
  std::unique_ptr<http::Transport> stiPa;
};

class Metrics;

class Services {
 public:
  /// Opens the token and the transport, reads the trust anchors, and starts the http-01
  /// responder when a certificate uses it: on `http01Socket` when one was passed (socket
  /// activation; taken over, closed when no certificate uses http-01), else on [acme]
  /// http01_listen. Errors name the config field. `overrides` replace the ACME and STI-PA
  /// transports (tests); with `metrics`, every request to the CA and the STI-PA is counted
  /// and timed there (MeteredTransport).
  [[nodiscard]] static Result<std::unique_ptr<Services>> create(const config::Config& config, const Clock& clock,
                                                                EventSink& events, LockedStore& store,
                                                                std::optional<int> http01Socket = std::nullopt,
                                                                TransportOverrides overrides = {},
                                                                Metrics* metrics = nullptr);
  ~Services();
  Services(const Services&) = delete;
  Services& operator=(const Services&) = delete;

  /// The settings in force (the configuration without its certificates, which the engine
  /// holds); a reload swaps them as one value. The [acme], [sti_pa] and [hsm] connections
  /// keep the settings they were made with (changing those needs a restart).
  [[nodiscard]] std::shared_ptr<const config::Config> config() const;
  void setConfig(std::shared_ptr<const config::Config> config);
  [[nodiscard]] LockedStore& store() { return store_; }
  [[nodiscard]] const publisher::WebRoot& webRoot() const { return webRoot_; }
  /// [sti_pa] crl_signer, when configured.
  [[nodiscard]] const std::optional<pki::Certificate>& crlSigner() const { return crlSigner_; }
  [[nodiscard]] sti_pa::StiPaClient* stiPa() { return stiPa_.get(); }

  /// The keys on the token.
  [[nodiscard]] KeyManager& keys() { return *keys_; }
  /// The ACME client, account and challenge solvers.
  [[nodiscard]] CaConnection& ca() { return *ca_; }
  /// Whether the http-01 responder runs (started only when a certificate used http-01 at start).
  [[nodiscard]] bool http01Running() const { return http01_ != nullptr; }
  /// The dns-01 hook, when configured.
  [[nodiscard]] acme::Dns01Hook* dns01() { return dns01_.get(); }

  /// Makes every HTTP request in flight or later fail at once (Errc::cancelled): stopping.
  void cancelTransfers() {
    transport_->cancel();
    if (stiPaTransport_) {
      stiPaTransport_->cancel();
    }
    if (checkTransport_) {
      checkTransport_->cancel();
    }
  }
  /// GET of a published URL (the publication check); Errc::unsupported when
  /// [publisher] publication_check is "file".
  [[nodiscard]] Result<http::HttpResponse> fetchPublished(const std::string& url) {
    if (!checkTransport_) {
      return fail(Errc::unsupported, "publication_check is \"file\"", url);
    }
    http::HttpRequest req;
    req.url = url;
    return checkTransport_->send(req);
  }


 private:
  Services(const config::Config& config, const Clock& clock, EventSink& events, LockedStore& store);
  Result<void> openToken(const config::Config& config);
  Result<void> openTransports(const config::Config& config);
  Result<void> openStiPa(const config::Config& config);
  Result<void> openSolvers(const config::Config& config, std::optional<int> http01Socket);

  mutable std::mutex configMutex_;  // guards config_
  std::shared_ptr<const config::Config> config_;
  const config::Config settings_;  ///< as at start: what the connections were made with
  const Clock& clock_;
  EventSink& events_;
  LockedStore& store_;
  std::unique_ptr<hsm::Token> token_;
  std::unique_ptr<http::Transport> transport_;        ///< the ACME server's ([acme] ca_bundle)
  std::unique_ptr<http::Transport> stiPaTransport_;   ///< the STI-PA's ([sti_pa] ca_bundle)
  Metrics* metrics_ = nullptr;                         ///< counts and times the two above
  std::unique_ptr<http::Transport> checkTransport_;   ///< publication checks ([publisher] ca_bundle)
  std::unique_ptr<sti_pa::StiPaClient> stiPa_;
  publisher::WebRoot webRoot_;
  std::optional<pki::Certificate> crlSigner_;
  std::unique_ptr<acme::Http01Responder> responder_;
  std::unique_ptr<acme::Http01Solver> http01_;
  std::unique_ptr<acme::Dns01Hook> dns01_;

  std::unique_ptr<KeyManager> keys_;
  std::unique_ptr<CaConnection> ca_;
};

}  // namespace kms::daemon
