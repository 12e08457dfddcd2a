// Versioned migrations in PRAGMA user_version.

#include <gtest/gtest.h>

#include <array>

#include "sandbox.h"
#include "storage/db.h"
#include "storage/migrations.h"
#include "storage_test_util.h"

namespace kms::storage {
namespace {

class StorageMigrations : public ::testing::Test {
 protected:
  std::string path() const { return sandbox_.file("kmsd.db"); }

  std::unique_ptr<Db> openRaw() {
    OpenOptions options;
    options.migrate = false;
    auto db = Db::open(path(), options);
    EXPECT_TRUE(db.has_value()) << db.error().toString();
    return db.has_value() ? std::move(db.value()) : nullptr;
  }

  bool hasTable(Db& db, const std::string& name) {
    auto stmt = db.prepare("SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ?1");
    EXPECT_TRUE(stmt.has_value());
    stmt->bindText(1, name);
    auto row = stmt->step();
    EXPECT_TRUE(row.has_value());
    return stmt->columnInt64(0) == 1;
  }

  test::Sandbox sandbox_;
};

TEST_F(StorageMigrations, FreshDatabaseGetsTheWholeSchema) {
  auto db = Db::open(path());
  KMS_ASSERT_OK(db);
  EXPECT_EQ(supportedSchemaVersion(), 7);
  EXPECT_EQ((*db)->pragmaInt("user_version").value(), supportedSchemaVersion());
  for (const char* table :
       {"hsm_keys", "acme_accounts", "managed_certificates", "orders", "issued_certificates", "spc_tokens", "events"}) {
    EXPECT_TRUE(hasTable(**db, table)) << table;
  }
}

TEST_F(StorageMigrations, ReopenDoesNotReapply) {
  {
    auto db = Db::open(path());
    KMS_ASSERT_OK(db);
    KMS_ASSERT_OK(
        (*db)->exec("INSERT INTO events (time, event_id, level, message) VALUES (1, 'KMS_TEST', 'info', 'x')"));
  }
  auto db = Db::open(path());  // re-running step 1 would fail with "table already exists"
  KMS_ASSERT_OK(db);
  EXPECT_EQ((*db)->pragmaInt("user_version").value(), supportedSchemaVersion());
  auto again = applyMigrations(**db, schemaMigrations());
  KMS_ASSERT_OK(again);
  EXPECT_EQ(again.value(), supportedSchemaVersion());
  auto stmt = (*db)->prepare("SELECT count(*) FROM events");
  KMS_ASSERT_OK(stmt);
  KMS_ASSERT_OK(stmt->step());
  EXPECT_EQ(stmt->columnInt64(0), 1);
}

TEST_F(StorageMigrations, NewerDatabaseIsRefused) {
  {
    auto db = Db::open(path());
    KMS_ASSERT_OK(db);
    KMS_ASSERT_OK((*db)->exec("PRAGMA user_version=" + std::to_string(supportedSchemaVersion() + 1)));
  }
  const std::string expected = path() + ": database schema version " + std::to_string(supportedSchemaVersion() + 1) +
                               " is newer than this kmsd supports (" +
                               std::to_string(supportedSchemaVersion()) + "); upgrade kmsd or restore a backup";
  auto db = Db::open(path());
  ASSERT_FALSE(db.has_value());
  EXPECT_EQ(db.error().code, Errc::unsupported);
  EXPECT_EQ(db.error().toString(), expected);

  OpenOptions noMigrate;
  noMigrate.migrate = false;
  auto inspect = Db::open(path(), noMigrate);
  ASSERT_FALSE(inspect.has_value());
  EXPECT_EQ(inspect.error().toString(), expected);
}

TEST_F(StorageMigrations, CustomStepsApplyInOrderOnce) {
  auto db = openRaw();
  ASSERT_NE(db, nullptr);
  EXPECT_EQ(db->pragmaInt("user_version").value(), 0);
  const std::array<Migration, 2> steps{{
      {1, "CREATE TABLE a (x INTEGER);"},
      {2, "CREATE TABLE b (y INTEGER); INSERT INTO a VALUES (1);"},
  }};
  auto first = applyMigrations(*db, std::span(steps).first(1));
  KMS_ASSERT_OK(first);
  EXPECT_EQ(first.value(), 1);
  EXPECT_FALSE(hasTable(*db, "b"));
  auto second = applyMigrations(*db, steps);
  KMS_ASSERT_OK(second);
  EXPECT_EQ(second.value(), 2);
  auto third = applyMigrations(*db, steps);
  KMS_ASSERT_OK(third);
  EXPECT_EQ(third.value(), 2);
  auto stmt = db->prepare("SELECT count(*) FROM a");
  KMS_ASSERT_OK(stmt);
  KMS_ASSERT_OK(stmt->step());
  EXPECT_EQ(stmt->columnInt64(0), 1);
}

TEST_F(StorageMigrations, FailingStepIsRolledBackAndNamed) {
  auto db = openRaw();
  ASSERT_NE(db, nullptr);
  const std::array<Migration, 2> steps{{
      {1, "CREATE TABLE a (x INTEGER);"},
      {2, "CREATE TABLE c (z INTEGER); INSERT INTO nosuch VALUES (1);"},
  }};
  auto r = applyMigrations(*db, steps);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().toString(), path() +
                                      ": migration to schema version 2 failed: exec 'CREATE TABLE c (z INTEGER); "
                                      "INSERT INTO nosuch VALUES (1);': no such table: nosuch (SQLITE_ERROR)");
  EXPECT_EQ(db->pragmaInt("user_version").value(), 1);
  EXPECT_TRUE(hasTable(*db, "a"));
  EXPECT_FALSE(hasTable(*db, "c"));
  EXPECT_FALSE(db->inTransaction());
}

TEST_F(StorageMigrations, BadNumberingIsABug) {
  auto db = openRaw();
  ASSERT_NE(db, nullptr);
  const std::array<Migration, 2> steps{{{1, "SELECT 1;"}, {3, "SELECT 1;"}}};
  auto r = applyMigrations(*db, steps);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, Errc::internal);
  EXPECT_EQ(db->pragmaInt("user_version").value(), 0);
}

}  // namespace
}  // namespace kms::storage
