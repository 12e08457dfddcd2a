// Db, Stmt and Transaction on real SQLite files.

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <vector>

#include "sandbox.h"
#include "storage/db.h"
#include "storage_test_util.h"

namespace kms::storage {
namespace {

class StorageDb : public ::testing::Test {
 protected:
  std::unique_ptr<Db> openDb(const std::string& name = "kmsd.db", OpenOptions options = {}) {
    auto db = Db::open(sandbox_.file(name), options);
    EXPECT_TRUE(db.has_value()) << db.error().toString();
    return db.has_value() ? std::move(db.value()) : nullptr;
  }

  std::int64_t count(Db& db, const std::string& table) {
    auto stmt = db.prepare("SELECT count(*) FROM " + table);
    EXPECT_TRUE(stmt.has_value());
    auto row = stmt->step();
    EXPECT_TRUE(row.has_value() && row.value());
    return stmt->columnInt64(0);
  }

  test::Sandbox sandbox_;
};

TEST_F(StorageDb, OpenCreatesFileInWalModeWithForeignKeys) {
  auto db = openDb();
  ASSERT_NE(db, nullptr);
  EXPECT_TRUE(std::filesystem::exists(sandbox_.file("kmsd.db")));
  EXPECT_EQ(db->path(), sandbox_.file("kmsd.db"));
  auto mode = db->pragmaText("journal_mode");
  KMS_ASSERT_OK(mode);
  EXPECT_EQ(mode.value(), "wal");
  auto fk = db->pragmaInt("foreign_keys");
  KMS_ASSERT_OK(fk);
  EXPECT_EQ(fk.value(), 1);
  auto sync = db->pragmaInt("synchronous");
  KMS_ASSERT_OK(sync);
  EXPECT_EQ(sync.value(), 2);  // FULL by default
  auto timeout = db->pragmaInt("busy_timeout");
  KMS_ASSERT_OK(timeout);
  EXPECT_EQ(timeout.value(), 5000);
}

TEST_F(StorageDb, OptionsSetSynchronousAndBusyTimeout) {
  OpenOptions options;
  options.synchronous = Synchronous::normal;
  options.busyTimeout = std::chrono::milliseconds(1234);
  auto db = openDb("kmsd.db", options);
  ASSERT_NE(db, nullptr);
  EXPECT_EQ(db->pragmaInt("synchronous").value(), 1);
  EXPECT_EQ(db->pragmaInt("busy_timeout").value(), 1234);
}

TEST_F(StorageDb, CantOpenNamesPathAndDirectory) {
  const std::string path = sandbox_.file("missing-dir/kmsd.db");
  auto db = Db::open(path);
  ASSERT_FALSE(db.has_value());
  EXPECT_EQ(db.error().code, Errc::storage);
  EXPECT_EQ(db.error().nativeName, "SQLITE_CANTOPEN");
  EXPECT_EQ(db.error().context, path);
  EXPECT_EQ(db.error().disposition, Disposition::retry);
  EXPECT_EQ(db.error().toString(), path +
                                       ": cannot open database: unable to open database file; check that the "
                                       "directory " +
                                       sandbox_.file("missing-dir") +
                                       " exists and that kmsd may read and write it and the database file "
                                       "(SQLITE_CANTOPEN)");
}

TEST_F(StorageDb, MissingFileWithoutCreateIsCantOpen) {
  OpenOptions options;
  options.create = false;
  auto db = Db::open(sandbox_.file("absent.db"), options);
  ASSERT_FALSE(db.has_value());
  EXPECT_EQ(db.error().nativeName, "SQLITE_CANTOPEN");
  EXPECT_FALSE(std::filesystem::exists(sandbox_.file("absent.db")));
}

TEST_F(StorageDb, GarbageFileIsNotADatabase) {
  const std::string path = sandbox_.write("junk.db", std::string(4096, 'j'));
  auto db = Db::open(path);
  ASSERT_FALSE(db.has_value());
  EXPECT_EQ(db.error().nativeName, "SQLITE_NOTADB");
  EXPECT_EQ(db.error().context, path);
}

TEST_F(StorageDb, StmtBindsAndReadsEveryType) {
  auto db = openDb();
  ASSERT_NE(db, nullptr);
  KMS_ASSERT_OK(db->exec("CREATE TABLE t (i INTEGER, d REAL, s TEXT, b BLOB, n ANY) STRICT"));
  auto insert = db->prepare("INSERT INTO t VALUES (?1, ?2, ?3, ?4, ?5)");
  KMS_ASSERT_OK(insert);
  const std::vector<std::uint8_t> blob{0x00, 0xff, 0x10};
  const std::string text("a\0b", 3);
  insert->bindInt64(1, -9007199254740993LL).bindDouble(2, 2.5).bindText(3, text).bindBlob(4, blob).bindNull(5);
  KMS_ASSERT_OK(insert->run());
  insert->reset();
  insert->bindInt64(1, 7).bindDouble(2, 0).bindText(3, "").bindBlob(4, {}).bindNull(5);
  KMS_ASSERT_OK(insert->run());
  EXPECT_EQ(db->changes(), 1);
  EXPECT_EQ(db->lastInsertId(), 2);

  auto select = db->prepare("SELECT i, d, s, b, n FROM t ORDER BY rowid");
  KMS_ASSERT_OK(select);
  EXPECT_EQ(select->columnCount(), 5);
  auto row = select->step();
  KMS_ASSERT_OK(row);
  ASSERT_TRUE(row.value());
  EXPECT_EQ(select->columnInt64(0), -9007199254740993LL);
  EXPECT_DOUBLE_EQ(select->columnDouble(1), 2.5);
  EXPECT_EQ(select->columnText(2), text);
  EXPECT_EQ(select->columnBlob(3), blob);
  EXPECT_TRUE(select->isNull(4));
  EXPECT_EQ(select->columnText(4), "");
  row = select->step();
  KMS_ASSERT_OK(row);
  ASSERT_TRUE(row.value());
  EXPECT_EQ(select->columnText(2), "");
  EXPECT_FALSE(select->isNull(3));  // an empty blob is not NULL
  EXPECT_TRUE(select->columnBlob(3).empty());
  row = select->step();
  KMS_ASSERT_OK(row);
  EXPECT_FALSE(row.value());

  Stmt moved = std::move(select.value());
  moved.reset();
  row = moved.step();
  KMS_ASSERT_OK(row);
  EXPECT_TRUE(row.value());
}

TEST_F(StorageDb, BindErrorIsReportedByStep) {
  auto db = openDb();
  ASSERT_NE(db, nullptr);
  auto stmt = db->prepare("SELECT ?1");
  KMS_ASSERT_OK(stmt);
  stmt->bindInt64(5, 1);
  auto row = stmt->step();
  ASSERT_FALSE(row.has_value());
  EXPECT_EQ(row.error().nativeName, "SQLITE_RANGE");
  EXPECT_EQ(row.error().context, db->path());
  EXPECT_NE(row.error().message.find("bind parameter 5 of 'SELECT ?1'"), std::string::npos) << row.error().message;
  stmt->reset();  // clears the pending bind error
  stmt->bindInt64(1, 3);
  row = stmt->step();
  KMS_ASSERT_OK(row);
  EXPECT_EQ(stmt->columnInt64(0), 3);
}

TEST_F(StorageDb, PrepareErrorsNameThePathAndSql) {
  auto db = openDb();
  ASSERT_NE(db, nullptr);
  auto bad = db->prepare("SELEC 1");
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().code, Errc::storage);
  EXPECT_EQ(bad.error().nativeName, "SQLITE_ERROR");
  EXPECT_EQ(bad.error().toString(), db->path() + ": prepare 'SELEC 1': near \"SELEC\": syntax error (SQLITE_ERROR)");
  auto two = db->prepare("SELECT 1; SELECT 2");
  ASSERT_FALSE(two.has_value());
  EXPECT_EQ(two.error().code, Errc::internal);
  auto trailing = db->prepare("SELECT 1;  ");
  KMS_EXPECT_OK(trailing);
}

TEST_F(StorageDb, ExecErrorNamesThePath) {
  auto db = openDb();
  ASSERT_NE(db, nullptr);
  auto r = db->exec("INSERT INTO nosuch VALUES (1)");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().toString(), db->path() +
                                      ": exec 'INSERT INTO nosuch VALUES (1)': no such table: "
                                      "nosuch (SQLITE_ERROR)");
}

class StorageTransaction : public StorageDb {
 protected:
  void SetUp() override {
    db_ = openDb();
    ASSERT_NE(db_, nullptr);
    KMS_ASSERT_OK(db_->exec("CREATE TABLE t (v INTEGER NOT NULL UNIQUE)"));
  }

  void insert(std::int64_t v) {
    auto stmt = db_->prepare("INSERT INTO t (v) VALUES (?1)");
    KMS_ASSERT_OK(stmt);
    stmt->bindInt64(1, v);
    KMS_ASSERT_OK(stmt->run());
  }

  std::unique_ptr<Db> db_;
};

TEST_F(StorageTransaction, RollsBackOnDestruction) {
  {
    auto tx = db_->begin();
    KMS_ASSERT_OK(tx);
    EXPECT_TRUE(tx->active());
    EXPECT_TRUE(db_->inTransaction());
    insert(1);
    EXPECT_EQ(count(*db_, "t"), 1);
  }
  EXPECT_FALSE(db_->inTransaction());
  EXPECT_EQ(count(*db_, "t"), 0);
}

TEST_F(StorageTransaction, CommitIsVisibleToAnotherConnection) {
  auto tx = db_->begin();
  KMS_ASSERT_OK(tx);
  insert(1);
  insert(2);
  auto other = openDb();
  ASSERT_NE(other, nullptr);
  EXPECT_EQ(count(*other, "t"), 0);  // WAL: readers see the last commit, never a half one
  KMS_ASSERT_OK(tx->commit());
  EXPECT_FALSE(tx->active());
  EXPECT_FALSE(db_->inTransaction());
  EXPECT_EQ(count(*other, "t"), 2);
  auto again = tx->commit();
  ASSERT_FALSE(again.has_value());
  EXPECT_EQ(again.error().code, Errc::internal);
  EXPECT_EQ(again.error().context, db_->path());
}

TEST_F(StorageTransaction, ExplicitRollbackAndMove) {
  auto tx = db_->begin();
  KMS_ASSERT_OK(tx);
  insert(1);
  Transaction moved = std::move(tx.value());
  EXPECT_FALSE(tx->active());
  EXPECT_TRUE(moved.active());
  KMS_ASSERT_OK(moved.rollback());
  KMS_ASSERT_OK(moved.rollback());  // no-op
  EXPECT_EQ(count(*db_, "t"), 0);
  EXPECT_FALSE(db_->inTransaction());
}

TEST_F(StorageTransaction, NestedGuardsUseSavepoints) {
  auto outer = db_->begin();
  KMS_ASSERT_OK(outer);
  insert(1);
  {
    auto inner = db_->begin();
    KMS_ASSERT_OK(inner);
    insert(2);
  }  // inner rolled back to its savepoint only
  {
    auto inner = db_->begin();
    KMS_ASSERT_OK(inner);
    insert(3);
    KMS_ASSERT_OK(inner->commit());
  }
  EXPECT_TRUE(db_->inTransaction());
  KMS_ASSERT_OK(outer->commit());
  auto stmt = db_->prepare("SELECT group_concat(v) FROM (SELECT v FROM t ORDER BY v)");
  KMS_ASSERT_OK(stmt);
  KMS_ASSERT_OK(stmt->step());
  EXPECT_EQ(stmt->columnText(0), "1,3");
}

TEST_F(StorageTransaction, ConstraintErrorKeepsTransactionUsable) {
  auto tx = db_->begin();
  KMS_ASSERT_OK(tx);
  insert(1);
  auto dup = db_->prepare("INSERT INTO t (v) VALUES (1)");
  KMS_ASSERT_OK(dup);
  auto r = dup->run();
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().nativeName, "SQLITE_CONSTRAINT_UNIQUE");
  EXPECT_EQ(r.error().disposition, Disposition::retry);
  insert(2);
  KMS_ASSERT_OK(tx->commit());
  EXPECT_EQ(count(*db_, "t"), 2);
}

TEST_F(StorageTransaction, BusyTimeoutIsBoundedAndRetryable) {
  OpenOptions options;
  options.busyTimeout = std::chrono::milliseconds(300);
  auto writer = openDb("kmsd.db", options);
  ASSERT_NE(writer, nullptr);

  auto holder = db_->begin();  // BEGIN IMMEDIATE on the other connection
  KMS_ASSERT_OK(holder);
  insert(1);

  const auto start = std::chrono::steady_clock::now();
  auto blocked = writer->begin();
  const auto waited = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(blocked.has_value());
  EXPECT_EQ(blocked.error().code, Errc::storage);
  EXPECT_EQ(blocked.error().native & 0xff, 5);  // SQLITE_BUSY
  EXPECT_EQ(blocked.error().nativeName.rfind("SQLITE_BUSY", 0), 0u) << blocked.error().nativeName;
  EXPECT_EQ(blocked.error().disposition, Disposition::retry);
  EXPECT_EQ(blocked.error().context, writer->path());
  EXPECT_GE(waited, std::chrono::milliseconds(250));
  EXPECT_LT(waited, std::chrono::seconds(3));
  EXPECT_FALSE(writer->inTransaction());

  EXPECT_EQ(count(*writer, "t"), 0);  // readers are not blocked by the writer in WAL mode
  KMS_ASSERT_OK(holder->commit());
  auto retry = writer->begin();
  KMS_ASSERT_OK(retry);
  KMS_ASSERT_OK(retry->commit());
}

}  // namespace
}  // namespace kms::storage
