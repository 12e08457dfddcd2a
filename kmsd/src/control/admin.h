#pragma once
// Who is asking: the control API caller's credentials (SO_PEERCRED), for the events a
// request causes and for [daemon] control_admin_group.

#include <optional>
#include <string>

#include "events/event_sink.h"
#include "http/server.h"

namespace kms::daemon {

/// {"uid": N} from the kernel, or nothing when the peer is unknown.
[[nodiscard]] Fields callerFields(const http::ServerRequest& req);
/// Why `peer` may not revoke under [daemon] control_admin_group `group`; nullopt when it may
/// (no group set, root, kmsd's own user, or a member of the group). Runs on a worker.
[[nodiscard]] std::optional<std::string> adminRefusal(const std::optional<http::PeerCredentials>& peer,
                                                      const std::optional<std::string>& group);

}  // namespace kms::daemon
