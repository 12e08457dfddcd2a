#pragma once
// The keys report (GET /v1/keys, kmsctl keys): every key on the token with what the state
// DB says it is for, then the keys the DB records as live that the token lacks.

#include <string>
#include <vector>

#include "hsm/token.h"
#include "storage/store.h"

namespace kms::daemon {

/// A JSON array: every EC key on the token (label, uri, jwk_thumbprint, spki_fingerprint,
/// managed: the purpose the state DB records or "unmanaged", on_token: true), then the keys
/// the DB records as live that the token lacks (on_token: false). With `usage`
/// (Store::listKeyUsage), each managed key also carries "certificate", "state" (account,
/// order, active, previous, revoked, abandoned, expired) and, for "previous", "until".
[[nodiscard]] Result<std::string> keysJson(hsm::Token& token, const std::vector<storage::HsmKey>& known,
                                           const std::vector<storage::KeyUsage>& usage);

}  // namespace kms::daemon
