#pragma once
/// @file File-system helpers every component that writes durably needs.

#include <optional>
#include <string>

#include "kms/error.h"

namespace kms {

/// An Errc::io error (Errc::notFound for ENOENT): "what: strerror(err)", context `path`,
/// native `err`.
[[nodiscard]] Error ioError(const std::string& what, const std::string& path, int err);

/// fsync of a directory, so a rename or a new entry in it survives a power cut. Errors name
/// the directory and errno.
[[nodiscard]] Result<void> fsyncDirectory(const std::string& dir);

/// The one ownership rule for what decides what kmsd runs or whom it trusts (hooks, the
/// PKCS#11 module, trust anchors, CRL signer, CA bundles, the web root) and for secret
/// files, as OpenSSH's StrictModes judges paths: `path` (resolved) must be owned by kmsd's
/// user or root and not writable by group or others, and every directory on the way to it
/// (as written and as resolved) owned by kmsd's user or root and not writable by others,
/// unless it is root's and sticky (/tmp). nullopt when it holds, else what breaks it, naming
/// the file or directory, its owner and mode, and the fix.
[[nodiscard]] std::optional<std::string> checkOwnership(const std::string& path);

/// Reads `fd` to its end (EINTR retried) into `out`. Errors name `path` and errno; the
/// descriptor is left open for the caller.
[[nodiscard]] Result<void> readToEnd(int fd, const std::string& path, std::string& out);

}  // namespace kms
