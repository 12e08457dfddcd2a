// The state directory and DB, and the descriptor limits of kmsd's listeners.
#include "services/services.h"

#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "common/failpoint.h"
#include "hsm/token_store.h"
#include "kms/fs.h"
#include "kms/secret.h"
#include "pki/encoding.h"
#include "services/state_reader.h"

namespace kms::daemon {

http::ConnectionLimits listenerLimits(const config::DaemonConfig& daemon) {
  rlimit nofile{};
  const std::uint64_t descriptorLimit = ::getrlimit(RLIMIT_NOFILE, &nofile) == 0 ? nofile.rlim_cur : 0;
  http::ConnectionLimits limits;
  const std::uint64_t share = descriptorLimit > 2 * kDescriptorReserve ? (descriptorLimit - kDescriptorReserve) / 2 : 32;
  limits.maxConnections =
      static_cast<std::size_t>(std::min<std::uint64_t>(static_cast<std::uint64_t>(daemon.listenerMaxConnections), share));
  limits.maxPerPeer = static_cast<std::size_t>(daemon.listenerMaxPerPeer);
  limits.headerTimeout = daemon.listenerHeaderTimeout;
  return limits;
}

std::uint64_t raiseDescriptorLimit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) {
    return 0;
  }
  if (limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    (void)::setrlimit(RLIMIT_NOFILE, &limit);
    (void)::getrlimit(RLIMIT_NOFILE, &limit);
  }
  return limit.rlim_cur;
}

Result<void> checkStateDir(const std::string& dir, bool create) {
  if (create) {
    std::error_code ec;
    if (std::filesystem::create_directories(dir, ec)) {
      (void)::chmod(dir.c_str(), 0700);
    }
    if (ec) {
      return fail(Errc::io, "[daemon] state_dir: cannot create: " + ec.message(), dir);
    }
  }
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) {
    return fail(ioError("[daemon] state_dir: cannot access", dir, errno));
  }
  if (!S_ISDIR(st.st_mode)) {
    return fail(Errc::config, "[daemon] state_dir: not a directory", dir);
  }
  if (st.st_uid != ::geteuid()) {
    return fail(Errc::config,
                "[daemon] state_dir: owned by uid " + std::to_string(st.st_uid) + ", not by uid " +
                    std::to_string(::geteuid()) + " that kmsd runs as; chown it to that user",
                dir);
  }
  if ((st.st_mode & 022) != 0) {
    char mode[8];
    (void)std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return fail(Errc::config,
                std::string("[daemon] state_dir: writable by group or others (mode ") + mode +
                    "): another local user could replace kmsd.db; run chmod 700 " + dir,
                dir);
  }
  return ok();
}

Result<StateDb> openStateDb(const config::Config& config) {
  if (auto r = checkStateDir(config.daemon.stateDir, true); !r) {
    return fail(r.error());
  }
  StateDb s;
  const std::string path = dbPath(config);
  auto db = storage::Db::open(path, {});
  if (!db) {
    return fail(db.error());
  }
  // A DB made by an older kmsd, or under a lax umask, is closed to others now.
  for (const char* suffix : {"", "-wal", "-shm"}) {
    (void)::chmod((path + suffix).c_str(), 0600);
  }
  s.db = std::move(*db);
  s.store = storage::makeSqliteStore(*s.db);
  s.locked = std::make_unique<LockedStore>(*s.store);
  return s;
}


}  // namespace kms::daemon
