#pragma once
/// @file File-system helpers every component that writes durably needs.

#include <string>

#include "kms/error.h"

namespace kms {

/// An Errc::io error (Errc::notFound for ENOENT): "what: strerror(err)", context `path`,
/// native `err`.
[[nodiscard]] Error ioError(const std::string& what, const std::string& path, int err);

/// fsync of a directory, so a rename or a new entry in it survives a power cut. Errors name
/// the directory and errno.
[[nodiscard]] Result<void> fsyncDirectory(const std::string& dir);

/// Reads `fd` to its end (EINTR retried) into `out`. Errors name `path` and errno; the
/// descriptor is left open for the caller.
[[nodiscard]] Result<void> readToEnd(int fd, const std::string& path, std::string& out);

}  // namespace kms
