#pragma once
/// @file Sockets handed to kmsd at start by the socket-activation protocol (sd_listen_fds(3)):
/// systemd's socket units, or anything that binds first and passes the descriptor on (the
/// tests do, so no port is picked, released and bound again).

#include <optional>

#include "kms/error.h"

namespace kms::daemon {

/// What was passed, by FileDescriptorName=.
struct ActivatedSockets {
  std::optional<int> http01;  ///< "http01": the http-01 responder's listening TCP socket
};

/// Takes the sockets passed to this process (LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES), then
/// unsets those variables and marks the descriptors close-on-exec, so no hook inherits them.
/// Nothing passed: an empty result. Errc::config for a descriptor kmsd has no use for (its
/// name is not "http01") or one that is not a listening TCP socket.
[[nodiscard]] Result<ActivatedSockets> takeActivatedSockets();

}  // namespace kms::daemon
