#pragma once
/// @file RAII layer over one SQLite connection: Db, Stmt and Transaction.
///
/// Every error is a kms::Error with code Errc::storage (unless stated otherwise), `context`
/// set to the database path, `native` the extended SQLite result code, `nativeName` its
/// symbolic name ("SQLITE_BUSY").
/// sqlite3.h stays out of this header: the C types are only forward declared.
///
/// Threading: a Db is one connection. It may be moved between threads but must not be used
/// from two threads at the same time; Stmt and Transaction objects must not outlive their Db.

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kms/c_ptr.h"
#include "kms/error.h"

struct sqlite3;
struct sqlite3_stmt;

namespace kms::storage {

namespace detail {
void closeConnection(sqlite3* db) noexcept;
void finalizeStatement(sqlite3_stmt* stmt) noexcept;
}  // namespace detail

/// How durable a commit is (`PRAGMA synchronous`).
enum class Synchronous {
  /// WAL + NORMAL: a commit survives a process crash (kill -9) but the last commits may be
  /// lost on power failure or kernel panic.
  normal,
  /// WAL + FULL (default): the WAL is fsynced at every commit, so a committed lifecycle step
  /// (key generated, order created) also survives power loss. kmsd writes a few rows per
  /// certificate per renewal, so the fsync cost is irrelevant next to an orphan HSM key or a
  /// duplicate ACME order.
  full,
};

/// Options for Db::open.
struct OpenOptions {
  /// Longest time one statement waits for another connection's lock before failing with
  /// SQLITE_BUSY. Bounded: there is no retry loop beyond this.
  std::chrono::milliseconds busyTimeout{5000};
  Synchronous synchronous = Synchronous::full;
  /// Create the file when missing (otherwise a missing file is SQLITE_CANTOPEN).
  bool create = true;
  /// Apply the kmsd schema migrations (see migrations.h). When false the schema version is
  /// still checked and a version newer than this build is refused.
  bool migrate = true;
};

class Stmt;
class Transaction;

/// One SQLite connection in WAL mode with foreign keys on.
class Db {
 public:
  /// Opens (and by default creates and migrates) the database at `path`.
  ///
  /// Sets journal_mode=WAL, foreign_keys=ON, the synchronous level and the busy timeout.
  /// @return the connection, or an Error whose context is `path`:
  ///   - SQLITE_CANTOPEN with a hint about the directory existing and being writable;
  ///   - SQLITE_NOTADB when the file is not a database;
  ///   - Errc::unsupported when the schema version is newer than this build supports;
  ///   - SQLITE_BUSY when another process holds the write lock too long.
  [[nodiscard]] static Result<std::unique_ptr<Db>> open(const std::string& path, OpenOptions options = {});

  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;
  ~Db();

  /// The path given to open(); every error names it.
  [[nodiscard]] const std::string& path() const noexcept { return path_; }

  /// Prepares one SQL statement. Fails if `sql` does not compile or holds more than one
  /// statement.
  [[nodiscard]] Result<Stmt> prepare(std::string_view sql);

  /// Runs SQL without parameters (may hold several statements, e.g. a migration step).
  /// Use prepare() and binds for anything that carries values.
  [[nodiscard]] Result<void> exec(std::string_view sql);

  /// Starts a write transaction (`BEGIN IMMEDIATE`, waiting at most the busy timeout), or a
  /// SAVEPOINT when a transaction is already open on this connection, so Store calls nest
  /// inside a caller's transaction. Guards must be destroyed in reverse order of creation.
  /// @return the guard, or SQLITE_BUSY when another connection writes.
  [[nodiscard]] Result<Transaction> begin();

  /// Reads an integer PRAGMA (e.g. "user_version", "foreign_keys").
  [[nodiscard]] Result<std::int64_t> pragmaInt(std::string_view name);
  /// Reads a text PRAGMA (e.g. "journal_mode").
  [[nodiscard]] Result<std::string> pragmaText(std::string_view name);

  /// A consistent copy of the whole database as one file image (SQLite's online backup into
  /// memory, then serialized): what a transaction committed before the call, none of what
  /// comes after. The image holds no WAL; opened as a file, it is a complete database.
  /// Errors name the path.
  [[nodiscard]] Result<std::string> snapshot();

  /// Rowid of the last successful INSERT on this connection.
  [[nodiscard]] std::int64_t lastInsertId() const noexcept;
  /// Rows changed by the last INSERT/UPDATE/DELETE on this connection.
  [[nodiscard]] std::int64_t changes() const noexcept;
  /// True while a transaction is open on this connection.
  [[nodiscard]] bool inTransaction() const noexcept;

  /// Builds an Error for result code `rc` of operation `what`, naming the path.
  [[nodiscard]] Error error(int rc, std::string_view what) const;

 private:
  Db(std::string path, sqlite3* handle);
  friend class Transaction;

  std::string path_;
  CPtr<sqlite3, &detail::closeConnection> handle_;
  int depth_ = 0;  ///< open Transaction guards (outermost = BEGIN, others = SAVEPOINT)
};

/// A prepared statement. Move-only; finalized on destruction.
///
/// Binds use SQLite's 1-based parameter index and return *this so they chain; a bind error
/// is remembered and reported by the next step(). Column getters use 0-based indexes and
/// are only meaningful after step() returned true.
class Stmt {
 public:
  Stmt(Stmt&&) noexcept = default;
  Stmt& operator=(Stmt&&) noexcept = default;
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  ~Stmt() = default;

  /// Binds an integer to parameter `index` (1-based); SQLITE_RANGE is reported by step().
  Stmt& bindInt64(int index, std::int64_t value);
  /// Binds a floating-point value; errors as bindInt64().
  Stmt& bindDouble(int index, double value);
  /// Binds UTF-8 text, copied by SQLite (SQLITE_TRANSIENT), so temporaries are fine.
  Stmt& bindText(int index, std::string_view value);
  /// Binds a blob (copied); an empty span binds a zero-length blob, not NULL.
  Stmt& bindBlob(int index, std::span<const std::uint8_t> value);
  /// Binds SQL NULL.
  Stmt& bindNull(int index);

  /// Advances the statement.
  /// @return true when a row is available, false when done, or the error (first pending
  ///   bind error, constraint violation, SQLITE_BUSY...). After an error call reset().
  [[nodiscard]] Result<bool> step();
  /// step() for statements that return no rows; a returned row is an Errc::internal error.
  [[nodiscard]] Result<void> run();
  /// Resets to run again and clears all bindings and any pending bind error.
  void reset() noexcept;

  /// Number of result columns.
  [[nodiscard]] int columnCount() const noexcept;
  /// True when the column of the current row is SQL NULL.
  [[nodiscard]] bool isNull(int column) const noexcept;
  /// Integer value (NULL reads as 0).
  [[nodiscard]] std::int64_t columnInt64(int column) const noexcept;
  /// Floating-point value (NULL reads as 0.0).
  [[nodiscard]] double columnDouble(int column) const noexcept;
  /// NULL reads as "".
  [[nodiscard]] std::string columnText(int column) const;
  /// NULL reads as empty.
  [[nodiscard]] std::vector<std::uint8_t> columnBlob(int column) const;

  /// The SQL text, for messages.
  [[nodiscard]] std::string_view sql() const noexcept;

 private:
  friend class Db;
  Stmt(Db* db, sqlite3_stmt* stmt) noexcept;
  void noteBind(int rc, int index);

  Db* db_;
  CPtr<sqlite3_stmt, &detail::finalizeStatement> stmt_;
  int bindRc_ = 0;  ///< first failing bind result code, 0 when none
  int bindIndex_ = 0;
};

/// Write-transaction guard from Db::begin(): rolls back in the destructor unless commit()
/// succeeded. Move-only.
class Transaction {
 public:
  Transaction(Transaction&& other) noexcept;
  Transaction& operator=(Transaction&&) = delete;
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  /// Rolls back when still active; a failing rollback cannot be reported here (SQLite then
  /// rolls back itself when the connection closes).
  ~Transaction();

  /// Commits (or releases the savepoint). On error the transaction stays active and the
  /// destructor rolls it back; SQLITE_BUSY when another connection writes. Errc::internal when no longer active.
  [[nodiscard]] Result<void> commit();
  /// Rolls back now; further calls are no-ops.
  [[nodiscard]] Result<void> rollback();
  [[nodiscard]] bool active() const noexcept { return active_; }

 private:
  friend class Db;
  Transaction(Db* db, bool nested) noexcept : db_(db), nested_(nested), active_(true) {}

  Db* db_;
  bool nested_;
  bool active_;
};

}  // namespace kms::storage
