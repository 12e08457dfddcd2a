#pragma once
// The configured certificates as rows of the state DB: what kind each is and what it asks
// the CA for, written (in one transaction) where the DB says something else.

#include <string>
#include <vector>

#include "config/config.h"
#include "events/event_sink.h"

namespace kms::daemon {

/// shaken when the certificate has an SPC, else acme.
[[nodiscard]] storage::CertKind kindOf(const config::CertificateConfig& c);
/// The identifiers column: ["spc:1234"], ["dns:a.example", ...].
[[nodiscard]] std::string identifiersOf(const config::CertificateConfig& c);
/// What a certificate is issued under, as a hash: its definition and the settings in force
/// (their redacted summary: no secret file is read). A failure records it; after a change,
/// kmsd's own backoff no longer holds (Store::releaseBackoff).
class DefinitionHasher {
 public:
  /// `settings`: the configuration in force (its certificates are ignored).
  explicit DefinitionHasher(const config::Config& settings);
  [[nodiscard]] std::string operator()(const config::CertificateConfig& c) const;

 private:
  std::string settings_;  ///< hex SHA-256 of the settings' summary
};

/// KMS_RETRY_AFTER_CHANGE for each certificate whose backoff a configuration change released.
void announceReleased(EventSink& sink, const std::vector<std::string>& names);

/// What registering found.
struct Registered {
  std::vector<std::string> written;   ///< rows added or changed
  std::vector<std::string> released;  ///< failed under another configuration: tried again at once
};
/// Writes each of `certs` whose row is missing or differs, and releases kmsd's own backoff
/// of those that failed under another configuration than `hash` gives now.
[[nodiscard]] Result<Registered> registerCertificates(LockedStore& store,
                                                      const std::vector<config::CertificateConfig>& certs,
                                                      const DefinitionHasher& hash);

}  // namespace kms::daemon
