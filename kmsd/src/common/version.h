#pragma once
// kmsd's version: the project version, and `git describe` when built from a git tree
// ("0.1.0 (git v0.1.0-12-gabc1234)"). Generated into the build tree (version.cc.in), so a new
// commit recompiles one file.

namespace kms::daemon {

[[nodiscard]] const char* kmsVersion();

}  // namespace kms::daemon
