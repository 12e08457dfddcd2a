// kill -9 during multi-row transactions: the database must reopen intact with its
// invariant, and accept further writes.

#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "crash_support.h"
#include "sandbox.h"
#include "storage/db.h"
#include "storage/store.h"
#include "storage_test_util.h"

namespace kms::storage {
namespace {

/// Starts storage_crash_writer on `path`; stdout/stderr go to `logPath`.
pid_t startWriter(const std::string& path, const char* sync, const std::string& logPath) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int fd = ::open(logPath.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (fd >= 0) {
      ::dup2(fd, STDOUT_FILENO);
      ::dup2(fd, STDERR_FILENO);
    }
    const char* writer = KMS_STORAGE_CRASH_WRITER;
    ::execl(writer, writer, path.c_str(), sync, static_cast<char*>(nullptr));
    ::_exit(127);
  }
  return pid;
}

/// Child has not exited on its own.
bool stillRunning(pid_t pid) {
  int status = 0;
  return ::waitpid(pid, &status, WNOHANG) == 0;
}

class StorageCrash : public ::testing::Test {
 protected:
  void TearDown() override {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }

  /// Reads the tick count through a fresh connection (it does not block the writer).
  std::int64_t eventCount() {
    auto db = Db::open(path_);
    if (!db.has_value()) {
      return -1;
    }
    auto n = crash::crashEventCount(**db);
    return n.has_value() ? n.value() : -1;
  }

  test::Sandbox sandbox_;
  std::string path_ = sandbox_.file("kmsd.db");
  pid_t pid_ = -1;
};

TEST_F(StorageCrash, KillNineDuringTransactionsKeepsDatabaseConsistent) {
  {
    auto db = Db::open(path_);
    KMS_ASSERT_OK(db);
    auto store = makeSqliteStore(**db);
    KMS_ASSERT_OK(crash::crashSetup(**db, *store));
  }
  const std::string log = sandbox_.file("writer.log");
  std::int64_t committed = 0;
  constexpr int kRounds = 8;
  for (int round = 0; round < kRounds; ++round) {
    const char* sync = round % 2 == 0 ? "full" : "normal";
    pid_ = startWriter(path_, sync, log);
    ASSERT_GT(pid_, 0);

    // Wait until the writer committed at least 50 more transactions, however long a loaded
    // machine takes (the guard only catches a writer that makes no progress at all).
    const std::int64_t target = committed + 50;
    std::int64_t seen = 0;
    const auto stuck = std::chrono::steady_clock::now() + std::chrono::minutes(2);
    while (seen < target) {
      ASSERT_TRUE(stillRunning(pid_)) << "writer exited early: " << test::readFile(log);
      ASSERT_LT(std::chrono::steady_clock::now(), stuck) << "writer made no progress; log: " << test::readFile(log);
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      seen = eventCount();
    }
    // Kill at a different point of the write cycle each round.
    std::this_thread::sleep_for(std::chrono::microseconds(1300 * round + 200));

    ASSERT_EQ(::kill(pid_, SIGKILL), 0);
    int status = 0;
    ASSERT_EQ(::waitpid(pid_, &status, 0), pid_);
    pid_ = -1;
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
        << "writer ended on its own; log: " << test::readFile(log);

    // Reopen: recovery, integrity, invariant, and a further write.
    auto db = Db::open(path_);
    KMS_ASSERT_OK(db);
    auto integrity = (*db)->pragmaText("integrity_check");
    KMS_ASSERT_OK(integrity);
    EXPECT_EQ(integrity.value(), "ok") << "round " << round;
    auto fk = (*db)->prepare("SELECT count(*) FROM pragma_foreign_key_check");
    KMS_ASSERT_OK(fk);
    KMS_ASSERT_OK(fk->step());
    EXPECT_EQ(fk->columnInt64(0), 0);

    auto store = makeSqliteStore(**db);
    auto counter = crash::crashCheck(**db, *store);
    KMS_ASSERT_OK(counter);
    EXPECT_GE(counter.value(), target);
    auto order = store->getOpenOrder(crash::kCrashCert);
    KMS_ASSERT_OK(order);
    ASSERT_TRUE(order->has_value());
    auto next = crash::crashTick(**db, *store, order->value().id);
    KMS_ASSERT_OK(next);
    EXPECT_EQ(next.value(), counter.value() + 1);
    auto after = crash::crashCheck(**db, *store);
    KMS_ASSERT_OK(after);
    committed = after.value();
  }
  EXPECT_GE(committed, kRounds * 50 + kRounds);
}

}  // namespace
}  // namespace kms::storage
