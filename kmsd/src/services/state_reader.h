#pragma once
// kmsctl with the daemon down: the state DB read as it is (never created, never migrated).

#include <memory>
#include <string>

#include "config/config.h"
#include "storage/db.h"

namespace kms::daemon {

/// state_dir/kmsd.db
[[nodiscard]] std::string dbPath(const config::Config& cfg);
[[nodiscard]] bool pathExists(const std::string& path);
/// Opens the existing state DB without creating or migrating it.
[[nodiscard]] Result<std::unique_ptr<storage::Db>> openExistingDb(const config::Config& cfg);

}  // namespace kms::daemon
