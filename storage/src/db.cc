#include "storage/db.h"

#include <sqlite3.h>

#include <filesystem>
#include <limits>
#include <utility>

#include "storage/migrations.h"

namespace kms::storage {

namespace detail {
void closeConnection(sqlite3* db) noexcept {
  sqlite3_close_v2(db);
}
void finalizeStatement(sqlite3_stmt* stmt) noexcept {
  sqlite3_finalize(stmt);
}
}  // namespace detail

namespace {

/// Symbolic name of a (possibly extended) result code; unknown extended codes fall back to
/// their primary code's name.
const char* rcName(int rc) noexcept {
  switch (rc) {
    case SQLITE_BUSY_RECOVERY:
      return "SQLITE_BUSY_RECOVERY";
    case SQLITE_BUSY_SNAPSHOT:
      return "SQLITE_BUSY_SNAPSHOT";
    case SQLITE_CANTOPEN_ISDIR:
      return "SQLITE_CANTOPEN_ISDIR";
    case SQLITE_CONSTRAINT_CHECK:
      return "SQLITE_CONSTRAINT_CHECK";
    case SQLITE_CONSTRAINT_FOREIGNKEY:
      return "SQLITE_CONSTRAINT_FOREIGNKEY";
    case SQLITE_CONSTRAINT_NOTNULL:
      return "SQLITE_CONSTRAINT_NOTNULL";
    case SQLITE_CONSTRAINT_PRIMARYKEY:
      return "SQLITE_CONSTRAINT_PRIMARYKEY";
    case SQLITE_CONSTRAINT_TRIGGER:
      return "SQLITE_CONSTRAINT_TRIGGER";
    case SQLITE_CONSTRAINT_UNIQUE:
      return "SQLITE_CONSTRAINT_UNIQUE";
    case SQLITE_CONSTRAINT_DATATYPE:
      return "SQLITE_CONSTRAINT_DATATYPE";
    case SQLITE_READONLY_DBMOVED:
      return "SQLITE_READONLY_DBMOVED";
    default:
      break;
  }
  switch (rc & 0xff) {
    case SQLITE_OK:
      return "SQLITE_OK";
    case SQLITE_ERROR:
      return "SQLITE_ERROR";
    case SQLITE_INTERNAL:
      return "SQLITE_INTERNAL";
    case SQLITE_PERM:
      return "SQLITE_PERM";
    case SQLITE_ABORT:
      return "SQLITE_ABORT";
    case SQLITE_BUSY:
      return "SQLITE_BUSY";
    case SQLITE_LOCKED:
      return "SQLITE_LOCKED";
    case SQLITE_NOMEM:
      return "SQLITE_NOMEM";
    case SQLITE_READONLY:
      return "SQLITE_READONLY";
    case SQLITE_INTERRUPT:
      return "SQLITE_INTERRUPT";
    case SQLITE_IOERR:
      return "SQLITE_IOERR";
    case SQLITE_CORRUPT:
      return "SQLITE_CORRUPT";
    case SQLITE_NOTFOUND:
      return "SQLITE_NOTFOUND";
    case SQLITE_FULL:
      return "SQLITE_FULL";
    case SQLITE_CANTOPEN:
      return "SQLITE_CANTOPEN";
    case SQLITE_PROTOCOL:
      return "SQLITE_PROTOCOL";
    case SQLITE_EMPTY:
      return "SQLITE_EMPTY";
    case SQLITE_SCHEMA:
      return "SQLITE_SCHEMA";
    case SQLITE_TOOBIG:
      return "SQLITE_TOOBIG";
    case SQLITE_CONSTRAINT:
      return "SQLITE_CONSTRAINT";
    case SQLITE_MISMATCH:
      return "SQLITE_MISMATCH";
    case SQLITE_MISUSE:
      return "SQLITE_MISUSE";
    case SQLITE_NOLFS:
      return "SQLITE_NOLFS";
    case SQLITE_AUTH:
      return "SQLITE_AUTH";
    case SQLITE_FORMAT:
      return "SQLITE_FORMAT";
    case SQLITE_RANGE:
      return "SQLITE_RANGE";
    case SQLITE_NOTADB:
      return "SQLITE_NOTADB";
    case SQLITE_NOTICE:
      return "SQLITE_NOTICE";
    case SQLITE_WARNING:
      return "SQLITE_WARNING";
    case SQLITE_ROW:
      return "SQLITE_ROW";
    case SQLITE_DONE:
      return "SQLITE_DONE";
    default:
      return "SQLITE_UNKNOWN";
  }
}

/// SQL shortened for messages: first line, at most 80 characters.
std::string shortSql(std::string_view sql) {
  while (!sql.empty() && (sql.front() == ' ' || sql.front() == '\n')) {
    sql.remove_prefix(1);
  }
  std::string out(sql.substr(0, sql.find('\n')));
  if (out.size() > 80) {
    out.resize(77);
    out += "...";
  }
  return out;
}

Error buildError(sqlite3* handle, int rc, std::string_view path, std::string_view what) {
  Error err;
  err.code = Errc::storage;
  err.context = std::string(path);
  err.native = rc;
  err.nativeName = rcName(rc);
  const int primary = rc & 0xff;
  std::string detail =
      handle != nullptr && sqlite3_errcode(handle) != SQLITE_OK ? sqlite3_errmsg(handle) : sqlite3_errstr(rc);
  err.message = std::string(what) + ": " + detail;
  if (primary == SQLITE_CANTOPEN) {
    std::filesystem::path dir = std::filesystem::path(path).parent_path();
    if (dir.empty()) {
      dir = ".";
    }
    err.message += "; check that the directory " + dir.string() +
                   " exists and that kmsd may read and write it and the database file";
  }
  return err;
}

}  // namespace

// ---------------------------------------------------------------------------------------
// Db

Db::Db(std::string path, sqlite3* handle) : path_(std::move(path)), handle_(handle) {}

Db::~Db() = default;

Result<std::unique_ptr<Db>> Db::open(const std::string& path, OpenOptions options) {
  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX;
  if (options.create) {
    flags |= SQLITE_OPEN_CREATE;
  }
  sqlite3* raw = nullptr;
  const int rc = sqlite3_open_v2(path.c_str(), &raw, flags, nullptr);
  // The handle is returned even on failure and must be closed either way.
  CPtr<sqlite3, &detail::closeConnection> guard(raw);
  if (rc != SQLITE_OK) {
    const int extended = raw != nullptr ? sqlite3_extended_errcode(raw) : rc;
    return fail(buildError(raw, extended, path, "cannot open database"));
  }
  sqlite3_extended_result_codes(raw, 1);
  const auto timeoutMs = options.busyTimeout.count();
  if (timeoutMs < 0 || timeoutMs > std::numeric_limits<int>::max()) {
    return fail(Errc::invalidArgument, "busy timeout out of range", path);
  }
  sqlite3_busy_timeout(raw, static_cast<int>(timeoutMs));

  std::unique_ptr<Db> db(new Db(path, guard.release()));
  // Reading the header first turns "not a database" into a clear error before any pragma.
  auto mode = db->pragmaText("journal_mode=WAL");
  if (!mode.has_value()) {
    return fail(mode.error());
  }
  if (mode.value() != "wal") {
    return fail(Errc::storage, "cannot switch to WAL journal mode (got " + mode.value() + ")", path);
  }
  const char* sync = options.synchronous == Synchronous::full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL";
  if (auto r = db->exec(sync); !r.has_value()) {
    return fail(r.error());
  }
  if (auto r = db->exec("PRAGMA foreign_keys=ON"); !r.has_value()) {
    return fail(r.error());
  }
  auto version =
      options.migrate ? applyMigrations(*db, schemaMigrations()) : checkSchemaVersion(*db, supportedSchemaVersion());
  if (!version.has_value()) {
    return fail(version.error());
  }
  return db;
}

Error Db::error(int rc, std::string_view what) const {
  return buildError(handle_.get(), rc, path_, what);
}

Result<Stmt> Db::prepare(std::string_view sql) {
  if (sql.size() > static_cast<std::size_t>(std::numeric_limits<int>::max())) {
    return fail(Errc::invalidArgument, "SQL text too long", path_);
  }
  sqlite3_stmt* raw = nullptr;
  const char* tail = nullptr;
  const int rc = sqlite3_prepare_v2(handle_.get(), sql.data(), static_cast<int>(sql.size()), &raw, &tail);
  Stmt stmt(this, raw);
  if (rc != SQLITE_OK) {
    return fail(error(rc, "prepare '" + shortSql(sql) + "'"));
  }
  if (raw == nullptr) {
    return fail(Errc::internal, "prepare '" + shortSql(sql) + "': no statement in SQL", path_);
  }
  for (const char* p = tail; p != nullptr && p < sql.data() + sql.size(); ++p) {
    if (*p != ' ' && *p != '\n' && *p != '\t' && *p != '\r' && *p != ';') {
      return fail(Errc::internal, "prepare '" + shortSql(sql) + "': more than one statement", path_);
    }
  }
  return stmt;
}

Result<void> Db::exec(std::string_view sql) {
  const std::string text(sql);  // sqlite3_exec needs a terminated string
  char* msg = nullptr;
  const int rc = sqlite3_exec(handle_.get(), text.c_str(), nullptr, nullptr, &msg);
  CPtr<void, &sqlite3_free> msgGuard(msg);
  if (rc != SQLITE_OK) {
    return fail(error(sqlite3_extended_errcode(handle_.get()), "exec '" + shortSql(sql) + "'"));
  }
  return ok();
}

namespace {

/// The single value a PRAGMA returns, read with get(stmt).
template <class T, class Get>
Result<T> pragmaValue(Db& db, const std::string& path, std::string_view name, Get get) {
  auto stmt = db.prepare("PRAGMA " + std::string(name));
  if (!stmt.has_value()) {
    return fail(stmt.error());
  }
  auto row = stmt->step();
  if (!row.has_value()) {
    return fail(row.error());
  }
  if (!row.value()) {
    return fail(Errc::internal, "PRAGMA " + std::string(name) + " returned no row", path);
  }
  return get(*stmt);
}

}  // namespace

Result<std::int64_t> Db::pragmaInt(std::string_view name) {
  return pragmaValue<std::int64_t>(*this, path_, name, [](Stmt& s) { return s.columnInt64(0); });
}

Result<std::string> Db::pragmaText(std::string_view name) {
  return pragmaValue<std::string>(*this, path_, name, [](Stmt& s) { return s.columnText(0); });
}

Result<std::string> Db::snapshot() {
  sqlite3* raw = nullptr;
  if (const int rc = sqlite3_open_v2(":memory:", &raw, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr);
      rc != SQLITE_OK) {
    detail::closeConnection(raw);
    return fail(error(rc, "snapshot: open an in-memory copy"));
  }
  CPtr<sqlite3, &detail::closeConnection> copy(raw);
  sqlite3_backup* backup = sqlite3_backup_init(copy.get(), "main", handle_.get(), "main");
  if (backup == nullptr) {
    return fail(error(sqlite3_errcode(copy.get()), "snapshot: start the backup"));
  }
  // All pages in one step: the source is read in one read transaction, so the copy is of one
  // committed state.
  const int stepped = sqlite3_backup_step(backup, -1);
  const int finished = sqlite3_backup_finish(backup);
  if (stepped != SQLITE_DONE) {
    return fail(error(stepped, "snapshot: copy the pages"));
  }
  if (finished != SQLITE_OK) {
    return fail(error(finished, "snapshot: finish the copy"));
  }
  sqlite3_int64 size = 0;
  unsigned char* image = sqlite3_serialize(copy.get(), "main", &size, 0);
  if (image == nullptr) {
    return fail(error(SQLITE_NOMEM, "snapshot: serialize the copy"));
  }
  std::string out(reinterpret_cast<const char*>(image), static_cast<std::size_t>(size));
  sqlite3_free(image);
  return out;
}

std::int64_t Db::lastInsertId() const noexcept {
  return sqlite3_last_insert_rowid(handle_.get());
}

std::int64_t Db::changes() const noexcept {
  return sqlite3_changes64(handle_.get());
}

bool Db::inTransaction() const noexcept {
  return sqlite3_get_autocommit(handle_.get()) == 0;
}

Result<Transaction> Db::begin() {
  const bool nested = depth_ > 0;
  if (!nested && inTransaction()) {
    return fail(Errc::internal, "begin: a transaction was opened outside Transaction guards", path_);
  }
  auto r = exec(nested ? "SAVEPOINT kms_nested" : "BEGIN IMMEDIATE");
  if (!r.has_value()) {
    return fail(r.error());
  }
  ++depth_;
  return Transaction(this, nested);
}

// ---------------------------------------------------------------------------------------
// Stmt

Stmt::Stmt(Db* db, sqlite3_stmt* stmt) noexcept : db_(db), stmt_(stmt) {}

void Stmt::noteBind(int rc, int index) {
  if (rc != SQLITE_OK && bindRc_ == 0) {
    bindRc_ = rc;
    bindIndex_ = index;
  }
}

Stmt& Stmt::bindInt64(int index, std::int64_t value) {
  noteBind(sqlite3_bind_int64(stmt_.get(), index, value), index);
  return *this;
}

Stmt& Stmt::bindDouble(int index, double value) {
  noteBind(sqlite3_bind_double(stmt_.get(), index, value), index);
  return *this;
}

Stmt& Stmt::bindText(int index, std::string_view value) {
  noteBind(sqlite3_bind_text64(stmt_.get(), index, value.data(), value.size(), SQLITE_TRANSIENT, SQLITE_UTF8), index);
  return *this;
}

Stmt& Stmt::bindBlob(int index, std::span<const std::uint8_t> value) {
  // A null data pointer would bind NULL; an empty blob must stay a zero-length blob.
  static const std::uint8_t kEmpty = 0;
  const void* data = value.empty() ? &kEmpty : value.data();
  noteBind(sqlite3_bind_blob64(stmt_.get(), index, data, value.size(), SQLITE_TRANSIENT), index);
  return *this;
}

Stmt& Stmt::bindNull(int index) {
  noteBind(sqlite3_bind_null(stmt_.get(), index), index);
  return *this;
}

Result<bool> Stmt::step() {
  if (bindRc_ != 0) {
    return fail(db_->error(bindRc_, "bind parameter " + std::to_string(bindIndex_) + " of '" + shortSql(sql()) + "'"));
  }
  const int rc = sqlite3_step(stmt_.get());
  if (rc == SQLITE_ROW) {
    return true;
  }
  if (rc == SQLITE_DONE) {
    return false;
  }
  return fail(db_->error(rc, "step '" + shortSql(sql()) + "'"));
}

Result<void> Stmt::run() {
  auto r = step();
  if (!r.has_value()) {
    return fail(r.error());
  }
  if (r.value()) {
    std::string what = "'";  // built by append: g++ 12 -Wrestrict misfires on "'" + string
    what.append(shortSql(sql())).append("' returned a row");
    return fail(Errc::internal, std::move(what), db_->path());
  }
  return ok();
}

void Stmt::reset() noexcept {
  sqlite3_reset(stmt_.get());
  sqlite3_clear_bindings(stmt_.get());
  bindRc_ = 0;
  bindIndex_ = 0;
}

int Stmt::columnCount() const noexcept {
  return sqlite3_column_count(stmt_.get());
}

bool Stmt::isNull(int column) const noexcept {
  return sqlite3_column_type(stmt_.get(), column) == SQLITE_NULL;
}

std::int64_t Stmt::columnInt64(int column) const noexcept {
  return sqlite3_column_int64(stmt_.get(), column);
}

double Stmt::columnDouble(int column) const noexcept {
  return sqlite3_column_double(stmt_.get(), column);
}

std::string Stmt::columnText(int column) const {
  const unsigned char* text = sqlite3_column_text(stmt_.get(), column);
  const int size = sqlite3_column_bytes(stmt_.get(), column);
  if (text == nullptr || size <= 0) {
    return {};
  }
  return {reinterpret_cast<const char*>(text), static_cast<std::size_t>(size)};
}

std::vector<std::uint8_t> Stmt::columnBlob(int column) const {
  const auto* data = static_cast<const std::uint8_t*>(sqlite3_column_blob(stmt_.get(), column));
  const int size = sqlite3_column_bytes(stmt_.get(), column);
  if (data == nullptr || size <= 0) {
    return {};
  }
  return {data, data + size};
}

std::string_view Stmt::sql() const noexcept {
  const char* text = sqlite3_sql(stmt_.get());
  return text != nullptr ? std::string_view(text) : std::string_view();
}

// ---------------------------------------------------------------------------------------
// Transaction

Transaction::Transaction(Transaction&& other) noexcept
    : db_(other.db_), nested_(other.nested_), active_(std::exchange(other.active_, false)) {}

Transaction::~Transaction() {
  if (active_) {
    (void)rollback();
  }
}

Result<void> Transaction::commit() {
  if (!active_) {
    return fail(Errc::internal, "commit: transaction is no longer active", db_->path());
  }
  if (!nested_ && !db_->inTransaction()) {
    // SQLite already rolled back on its own (e.g. after SQLITE_FULL or SQLITE_IOERR).
    active_ = false;
    --db_->depth_;
    return fail(Errc::storage, "commit: the transaction was rolled back by SQLite after an error", db_->path());
  }
  auto r = db_->exec(nested_ ? "RELEASE kms_nested" : "COMMIT");
  if (!r.has_value()) {
    return r;  // still active: the destructor rolls back
  }
  active_ = false;
  --db_->depth_;
  return ok();
}

Result<void> Transaction::rollback() {
  if (!active_) {
    return ok();
  }
  active_ = false;
  --db_->depth_;
  if (nested_) {
    auto r = db_->exec("ROLLBACK TO kms_nested");
    if (!r.has_value()) {
      return r;
    }
    return db_->exec("RELEASE kms_nested");
  }
  if (!db_->inTransaction()) {
    return ok();  // SQLite already rolled back after an error
  }
  return db_->exec("ROLLBACK");
}

}  // namespace kms::storage
