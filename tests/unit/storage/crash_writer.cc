// storage_crash_writer DB_PATH [full|normal]: commits crashTick() transactions until killed.
// Used by the crash test, which SIGKILLs it at arbitrary moments.

#include <cstdio>
#include <cstring>
#include <string>

#include "crash_support.h"
#include "storage/db.h"
#include "storage/store.h"

namespace {

int die(const kms::Error& error) {
  std::fprintf(stderr, "storage_crash_writer: %s\n", error.toString().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace kms::storage;
  if (argc < 2) {
    std::fprintf(stderr, "usage: storage_crash_writer DB_PATH [full|normal]\n");
    return 2;
  }
  OpenOptions options;
  if (argc > 2 && std::strcmp(argv[2], "normal") == 0) {
    options.synchronous = Synchronous::normal;
  }
  auto db = Db::open(argv[1], options);
  if (!db.has_value()) {
    return die(db.error());
  }
  // Small checkpoints so that kills also land in the middle of WAL checkpoints.
  if (auto r = (*db)->exec("PRAGMA wal_autocheckpoint=8"); !r.has_value()) {
    return die(r.error());
  }
  auto store = makeSqliteStore(**db);
  auto orderId = crash::crashSetup(**db, *store);
  if (!orderId.has_value()) {
    return die(orderId.error());
  }
  for (;;) {  // runs until the test kills it
    auto n = crash::crashTick(**db, *store, orderId.value());
    if (!n.has_value()) {
      return die(n.error());
    }
  }
}
