#pragma once
/// @file Versioned schema migrations kept in `PRAGMA user_version`.

#include <span>

#include "kms/error.h"

namespace kms::storage {

class Db;

/// One numbered schema step. Versions start at 1 and increase by 1.
struct Migration {
  int version;
  const char* sql;  ///< one or more statements, applied in one transaction
};

/// The kmsd schema, oldest first.
[[nodiscard]] std::span<const Migration> schemaMigrations() noexcept;

/// The schema version this build writes (the last entry of schemaMigrations()).
[[nodiscard]] int supportedSchemaVersion() noexcept;

/// Applies every step of `steps` whose version is above the database's user_version, each
/// in its own `BEGIN IMMEDIATE` transaction that also sets user_version, so a crash leaves
/// the database at the last completed step. The version is re-read under the write lock, so
/// two processes migrating at once apply each step once.
/// @return the resulting version, or:
///   - Errc::unsupported "database schema version N is newer than this kmsd supports (M);
///     upgrade kmsd or restore a backup" (context: the path);
///   - Errc::internal when `steps` is not numbered 1, 2, 3...;
///   - a storage error naming the failing version (that step is rolled back).
[[nodiscard]] Result<int> applyMigrations(Db& db, std::span<const Migration> steps);

/// Fails like applyMigrations() when the database is newer than `supported`; changes nothing.
[[nodiscard]] Result<int> checkSchemaVersion(Db& db, int supported);

}  // namespace kms::storage
