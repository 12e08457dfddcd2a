#include "storage/migrations.h"

#include <string>

#include "storage/db.h"

namespace kms::storage {

namespace {

Error newerError(const Db& db, std::int64_t found, int supported) {
  Error err;
  err.code = Errc::unsupported;
  err.context = db.path();
  err.message = "database schema version " + std::to_string(found) + " is newer than this kmsd supports (" +
                std::to_string(supported) + "); upgrade kmsd or restore a backup";
  return err;
}

Result<int> applyOne(Db& db, const Migration& step) {
  auto tx = db.begin();
  if (!tx.has_value()) {
    return fail(tx.error());
  }
  // Another process may have migrated while we waited for the write lock.
  auto current = db.pragmaInt("user_version");
  if (!current.has_value()) {
    return fail(current.error());
  }
  if (current.value() >= step.version) {
    return static_cast<int>(current.value());  // the guard rolls back the empty transaction
  }
  if (auto r = db.exec(step.sql); !r.has_value()) {
    Error err = r.error();
    err.message = "migration to schema version " + std::to_string(step.version) + " failed: " + err.message;
    return fail(std::move(err));
  }
  // PRAGMA takes no bound parameters; the version is an int from our own table.
  if (auto r = db.exec("PRAGMA user_version=" + std::to_string(step.version)); !r.has_value()) {
    return fail(r.error());
  }
  if (auto r = tx->commit(); !r.has_value()) {
    return fail(r.error());
  }
  return step.version;
}

}  // namespace

Result<int> checkSchemaVersion(Db& db, int supported) {
  auto current = db.pragmaInt("user_version");
  if (!current.has_value()) {
    return fail(current.error());
  }
  if (current.value() > supported) {
    return fail(newerError(db, current.value(), supported));
  }
  return static_cast<int>(current.value());
}

Result<int> applyMigrations(Db& db, std::span<const Migration> steps) {
  for (std::size_t i = 0; i < steps.size(); ++i) {
    if (steps[i].version != static_cast<int>(i) + 1 || steps[i].sql == nullptr) {
      return fail(Errc::internal, "migration list is not numbered 1, 2, 3... at entry " + std::to_string(i), db.path());
    }
  }
  const int supported = static_cast<int>(steps.size());
  auto version = checkSchemaVersion(db, supported);
  if (!version.has_value()) {
    return version;
  }
  int current = version.value();
  for (const Migration& step : steps) {
    if (step.version <= current) {
      continue;
    }
    auto applied = applyOne(db, step);
    if (!applied.has_value()) {
      return applied;
    }
    current = applied.value();
    if (current > supported) {
      return fail(newerError(db, current, supported));
    }
  }
  return current;
}

}  // namespace kms::storage
