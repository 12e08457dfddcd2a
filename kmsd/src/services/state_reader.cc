#include "services/state_reader.h"

#include <sys/stat.h>

namespace kms::daemon {

std::string dbPath(const config::Config& cfg) {
  return cfg.daemon.stateDir + "/kmsd.db";
}

bool pathExists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

Result<std::unique_ptr<storage::Db>> openExistingDb(const config::Config& cfg) {
  storage::OpenOptions options;
  options.create = false;
  options.migrate = false;
  return storage::Db::open(dbPath(cfg), options);
}

}  // namespace kms::daemon
