#pragma once
/// @file Shared by storage_crash_writer and the crash test: one "tick" is a multi-row
/// transaction that keeps the invariant
///   crash_counter.n == number of KMS_CRASH_TEST_TICK events
///                   == the number at the end of the open order's challenge URL.

#include <cstdint>
#include <string>

#include "kms/error.h"

namespace kms::storage {
class Db;
class Store;
}  // namespace kms::storage

namespace kms::storage::crash {

inline constexpr const char* kCrashCert = "crash";

/// Creates the counter table, the certificate and its open order (idempotent).
/// @return the open order's id.
Result<std::int64_t> crashSetup(Db& db, Store& store);

/// One transaction: event + counter + order. @return the new counter value.
Result<std::int64_t> crashTick(Db& db, Store& store, std::int64_t orderId);

/// Checks the invariant; Errc::internal with the numbers when it does not hold.
/// @return the counter value.
Result<std::int64_t> crashCheck(Db& db, Store& store);

/// Number of tick events (a cheap read for polling).
Result<std::int64_t> crashEventCount(Db& db);

}  // namespace kms::storage::crash
