#pragma once
// The CA session: the ACME client (connected lazily: a CA outage must not stop kmsd), the
// account (registered on first use, found again by its key after a kill), the challenge
// solvers and the SPC-token source of tkauth-01.

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "acme/client.h"
#include "acme/issuer.h"
#include "acme/tkauth.h"
#include "config/config.h"
#include "services/key_manager.h"
#include "sti_pa/client.h"

namespace kms::daemon {

/// The client and the account together, for a step that talks to the CA.
struct CaSession {
  acme::AcmeClient& client;
  acme::AccountRef account;
};

class CaConnection {
 public:
  /// `settings`: [acme] as at start (what the connection is made with); `stiPa` and
  /// `http01` when configured.
  CaConnection(const config::Config& settings, http::Transport& transport, LockedStore& store, EventSink& events,
               KeyManager& keys, const Clock& clock, sti_pa::StiPaClient* stiPa, acme::Http01Solver* http01)
      : settings_(settings),
        transport_(transport),
        store_(store),
        events_(events),
        keys_(keys),
        clock_(clock),
        stiPa_(stiPa),
        http01_(http01) {}

  /// The ACME client; fetches the directory on first use and after a failure.
  [[nodiscard]] Result<acme::AcmeClient*> client();
  /// The registered ACME account (registered on first use; see ensureAccount).
  [[nodiscard]] Result<acme::AccountRef> account();
  /// The client and the account, for a step that talks to the CA.
  [[nodiscard]] Result<CaSession> session();
  /// Solvers by challenge type ("http-01", "tkauth-01"; dns-01 is the operator's hook).
  [[nodiscard]] std::map<std::string, acme::ChallengeSolver*> solvers();
  /// Whether the directory (when fetched) offers renewalInfo.
  [[nodiscard]] bool ariOffered();

 private:
  Result<void> ensureAccount();
  /// The stored account's key (or a key a killed run generated for an account it never
  /// saved) loaded as accountKey_; its URI, or nullopt when there is none.
  Result<std::optional<std::string>> existingAccountKey(const std::optional<storage::AcmeAccount>& stored);
  /// Whether the CA knows accountKey_ (saved when the DB lacks it).
  Result<bool> knownToTheCa(const std::optional<storage::AcmeAccount>& stored, const std::string& keyUri);
  Result<std::string> newAccountKey();
  Result<void> registerAccount(const std::string& keyUri);
  Result<std::optional<std::unique_ptr<hsm::KeySigner>>> unusedAccountKey();
  Result<void> saveAccount(const std::string& keyUri);

  const config::Config& settings_;
  http::Transport& transport_;
  LockedStore& store_;
  EventSink& events_;
  KeyManager& keys_;
  const Clock& clock_;
  sti_pa::StiPaClient* stiPa_;
  acme::Http01Solver* http01_;

  std::mutex mutex_;  // guards the members below
  std::unique_ptr<acme::AcmeClient> client_;
  std::unique_ptr<hsm::KeySigner> accountKey_;
  std::string accountUrl_;
  std::unique_ptr<acme::SpcTokenSource> spcTokens_;  ///< the STI-PA client for this account
  std::unique_ptr<acme::TkauthSolver> tkauth_;
};

}  // namespace kms::daemon
