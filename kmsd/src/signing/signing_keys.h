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
#include <optional>
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

/// What is looked up only when a signature first needs it, then kept: the key's signer on
/// the token, or why nothing signs. Start-up reads two DB queries, not one token search and
/// test signature per certificate.
struct LazyKey {
  std::mutex mutex;                 ///< held while looking up
  std::atomic<bool> resolved{false};  ///< set (release) once `signer` or `refusal` is final
  std::shared_ptr<pki::Signer> signer;
  std::string refusal;
};

/// One SHAKEN certificate's signing material.
struct SigningKey {
  std::string name;    ///< the managed certificate
  std::string keyUri;  ///< its current certificate's key; empty when it has no current certificate
  std::string x5u;     ///< its current certificate's URL
  std::string serial;  ///< hex
  std::int64_t issuedId = 0;
  std::int64_t notAfter = 0;
  /// Shared with the entry that follows when the key stays the same (reuse_key).
  std::shared_ptr<LazyKey> lazy = std::make_shared<LazyKey>();
};

/// What a signature may use for one certificate, or why nothing.
struct SigningPick {
  std::shared_ptr<const SigningKey> key;  ///< null when refused
  std::shared_ptr<pki::Signer> signer;    ///< in the HSM; null when refused
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
  /// `cert`'s entry (null when it is not a SHAKEN certificate), keeping the looked-up key of
  /// `previous` when the key is the same.
  static std::shared_ptr<const SigningKey> build(const storage::ManagedCert& cert,
                                                 const std::optional<storage::IssuedCert>& current,
                                                 const std::shared_ptr<const SigningKey>& previous);
  /// Fills `key.lazy` the first time: the signer on the token, or why there is none.
  void resolve(const SigningKey& key) const;
  /// Why `name` has no current certificate (revoked, expired, never published).
  [[nodiscard]] std::string whyNone(const std::string& name) const;
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
