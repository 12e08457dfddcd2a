#pragma once
// The keys PASSporTs are signed with: per managed certificate, its current certificate (the
// newest published one, neither revoked nor expired) with its HSM key, x5u and validity, in
// one immutable table swapped whole. Signing reads the table without waiting for the engine,
// a step or a DB write; the table changes when a certificate becomes active, is revoked or
// distrusted, or its key goes missing, so a renewed certificate signs only once its x5u was
// served back, and a key in use stays alive (shared) while a signature with it runs.

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/clock.h"
#include "events/event_sink.h"
#include "pki/signer.h"

namespace kms::hsm {
class Token;
}

namespace kms::daemon {

class TrustState;

/// One SHAKEN certificate's signing material, or why it has none.
struct SigningKey {
  std::string name;    ///< the managed certificate
  std::string none;    ///< why nothing signs for it (no current certificate); empty when `key` is set
  std::string x5u;     ///< its current certificate's URL
  std::string serial;  ///< hex
  std::int64_t issuedId = 0;
  std::int64_t notAfter = 0;
  std::string keyUri;
  std::shared_ptr<pki::Signer> key;  ///< in the HSM
};

/// What a signature may use for one certificate, or why nothing.
struct SigningPick {
  std::shared_ptr<const SigningKey> key;  ///< null when refused
  std::string refusal;                    ///< why, naming the certificate
};

class SigningKeys {
 public:
  SigningKeys(LockedStore& store, hsm::Token& token, const TrustState& trust, EventSink& events);

  /// Rebuilds the whole table from the state DB (at start).
  [[nodiscard]] Result<void> reloadAll(std::int64_t now);
  /// Rebuilds `name`'s entry (after its certificate changed).
  [[nodiscard]] Result<void> reload(const std::string& name, std::int64_t now);

  /// The key to sign with for `name` at `now`: refused when there is no current
  /// certificate (never issued, revoked, expired) or its chain no longer verifies to the
  /// STI-PA CA list. A refusal is logged once per certificate and reason
  /// (KMS_SIGNING_REFUSED), not per request.
  [[nodiscard]] SigningPick pick(const std::string& name, std::int64_t now) const;
  /// The SHAKEN certificates, sorted (with or without a current certificate).
  [[nodiscard]] std::vector<std::string> names() const;
  /// Keeps the table current (a StoreEventSink listener): after an event that changes
  /// which certificate or key signs for a name, that name's entry is rebuilt.
  void follow(const EventRecord& event, std::int64_t now);

 private:
  using Table = std::map<std::string, std::shared_ptr<const SigningKey>>;
  /// The entry for one issued certificate, reusing the key of `previous` when it is the same.
  Result<std::shared_ptr<const SigningKey>> entryFor(const storage::IssuedCert& cert,
                                                     const std::shared_ptr<const SigningKey>& previous);
  /// The entry of a certificate with no current certificate, saying why.
  std::shared_ptr<const SigningKey> noneFor(const std::string& name);
  /// `name`'s entry from the state DB (null when it is not a SHAKEN certificate), with the
  /// key-unavailable event when its key cannot be used.
  std::shared_ptr<const SigningKey> build(const storage::ManagedCert& cert,
                                          const std::optional<storage::IssuedCert>& current,
                                          const std::shared_ptr<const SigningKey>& previous);
  [[nodiscard]] SigningPick refuse(const std::string& name, std::string why) const;

  LockedStore& store_;
  hsm::Token& token_;
  const TrustState& trust_;
  EventSink& events_;
  std::mutex writers_;  // one rebuild at a time
  std::atomic<std::shared_ptr<const Table>> table_;
  mutable std::mutex refusedMutex_;
  mutable std::map<std::string, std::string> refused_;  // name -> last reason logged
};

}  // namespace kms::daemon
