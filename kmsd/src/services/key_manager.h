#pragma once
// The keys kmsd manages on the token: recorded in the DB before they are generated, found
// again, kept for an order's steps, destroyed and recorded as such.

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "common/clock.h"
#include "events/event_sink.h"
#include "hsm/token.h"
#include "storage/store.h"

namespace kms::daemon {

class KeyManager {
 public:
  KeyManager(hsm::Token& token, LockedStore& store, EventSink& events, const Clock& clock)
      : token_(token), store_(store), events_(events), clock_(clock) {}

  [[nodiscard]] hsm::Token& token() { return token_; }

  /// A key chosen (label, CKA_ID) and its DB row, before anything is written.
  struct PlannedKey {
    std::string label;
    pki::Bytes id;
    storage::HsmKey row;
  };
  [[nodiscard]] Result<PlannedKey> planKey(const std::string& label, storage::KeyPurpose purpose);
  /// Generates a recorded key on the token.
  [[nodiscard]] Result<std::unique_ptr<hsm::KeySigner>> generate(const std::string& label, const pki::Bytes& id);
  /// The signer for a key on the token (Errc::notFound when it is not there); writes nothing.
  [[nodiscard]] Result<std::unique_ptr<hsm::KeySigner>> findKey(const std::string& uri);
  /// The signer for a recorded key. A key the token does not have is retired in the DB
  /// (KMS_KEY_MISSING) and reported as Errc::notFound; other token failures as they are.
  [[nodiscard]] Result<std::unique_ptr<hsm::KeySigner>> recordedKey(const std::optional<std::string>& cert,
                                                                    const std::string& uri);
  /// The signer of an order's key: kept from its generation (or first lookup) until the
  /// order closes, so a step does not search the token (SoftHSM2 searches every object).
  [[nodiscard]] Result<std::shared_ptr<hsm::KeySigner>> orderKey(const std::optional<std::string>& cert,
                                                                 const std::string& uri);
  void keepOrderKey(const std::string& uri, std::shared_ptr<hsm::KeySigner> signer);
  void forgetOrderKey(const std::string& uri);
  /// Destroys a key on the token and records it; a key already gone counts as destroyed.
  [[nodiscard]] Result<void> destroyKey(const std::optional<std::string>& cert, const std::string& uri);

 private:
  hsm::Token& token_;
  LockedStore& store_;
  EventSink& events_;
  const Clock& clock_;
  std::mutex mutex_;  // guards orderKeys_
  std::unordered_map<std::string, std::shared_ptr<hsm::KeySigner>> orderKeys_;
};

}  // namespace kms::daemon
