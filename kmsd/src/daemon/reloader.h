#pragma once
// SIGHUP: the configuration file loaded again, validated and swapped in as one value.
// Settings that can change live take effect; those a restart needs are named in
// KMS_RELOAD_NEEDS_RESTART and keep their old value.

#include <string>
#include <vector>

#include "config/config.h"

namespace kms::daemon {

/// The settings that differ between `running` and `next` and that only a restart applies
/// ("[hsm] module", "[daemon] control_socket", ...). Each is set back to its value in
/// `running` in `next`.
[[nodiscard]] std::vector<std::string> keepRestartSettings(const config::Config& running, config::Config& next);

}  // namespace kms::daemon
