// POST /v1/backup: one consistent copy of the state DB and of the SoftHSM2 token store, for
// `kmsctl backup DIR`. Taken inside the daemon, so that neither is being written meanwhile:
// no object is created or destroyed on the token while the DB is copied (SQLite's online
// backup) and the token files are read.
#include <nlohmann/json.hpp>

#include "common/time_format.h"
#include "common/version.h"
#include "control/admin.h"
#include "control/control_api.h"
#include "control/control_context.h"
#include "hsm/token_store.h"
#include "pki/encoding.h"
#include "services/services.h"

namespace kms::daemon {
namespace {

nlohmann::json fileJson(const std::string& path, const std::string& bytes) {
  return {{"path", path},
          {"size", bytes.size()},
          {"sha256", pki::hexEncode(pki::sha256(pki::asBytes(bytes)))},
          {"base64", pki::base64Encode(pki::asBytes(bytes))}};
}

/// Runs on a worker.
ControlResponse takeBackup(ControlContext& ctx, const config::Config& cfg, const Fields& caller) {
  Result<std::pair<std::string, std::int64_t>> db = fail(Errc::internal, "not taken");
  Result<hsm::StoreImage> store = fail(Errc::internal, "not taken");
  hsm::TokenStoreOptions options;
  options.modulePath = cfg.hsm.module;
  options.confPath = cfg.hsm.softhsm2Conf.value_or("");
  ctx.services.keys().token().withObjectsUnchanged([&] {
    db = ctx.store.with([](storage::Store& s) { return s.snapshot(); });
    if (db) {
      store = hsm::readSoftHsmStore(options);
    }
  });
  if (!db) {
    return problem(500, "backup failed", "state DB: " + db.error().toString());
  }
  if (!store) {
    return problem(500, "backup failed", "[hsm] token store: " + store.error().toString());
  }
  nlohmann::json j;
  j["format"] = "kmsd-backup/1";
  j["created"] = isoTime(unixSeconds(ctx.clock.now()));
  j["kmsd_version"] = kmsVersion();
  j["state_db"] = fileJson("kmsd.db", db->first);
  j["state_db"]["schema_version"] = db->second;
  j["state_db"]["from"] = cfg.daemon.stateDir;
  j["token_label"] = cfg.hsm.tokenLabel;
  if (store->softhsm) {
    nlohmann::json files = nlohmann::json::array();
    nlohmann::json notes = nlohmann::json::array();
    for (const hsm::StoreFile& f : store->files) {
      files.push_back(fileJson(f.path, f.bytes));
      if (!f.note.empty()) {
        notes.push_back(f.path + ": " + f.note);
      }
    }
    j["token_store"] = {{"softhsm2_conf", store->confPath},
                        {"token_dir", store->tokenDir},
                        {"backend", store->backend},
                        {"files", std::move(files)},
                        {"notes", std::move(notes)}};
  } else {
    j["token_store"] = nullptr;
    j["token_store_note"] = "[hsm] module " + cfg.hsm.module +
                            " is not SoftHSM2: its keys are not in this backup; back the HSM up with its own tools";
  }
  ctx.events.emit({"KMS_BACKUP_TAKEN", storage::EventLevel::info, std::nullopt,
                   "backup of the state DB (" + std::to_string(db->first.size()) + " bytes, schema " +
                       std::to_string(db->second) + ") and " +
                       (store->softhsm ? std::to_string(store->files.size()) + " token store file(s)"
                                       : std::string("no token store (not SoftHSM2)")) +
                       " taken through the control API",
                   caller});
  return jsonResponse(200, j);
}

}  // namespace

void addBackupRoutes(RouteTable& routes, ControlContext& ctx) {
  routes.add("POST", "/v1/backup", [&ctx](const ControlRequest& req, const RouteMatch&, const http::Reply& reply) {
    auto cfg = ctx.config();
    replyFromWorker(ctx, reply, "a backup",
                    [&ctx, cfg, caller = callerFields(req), peer = req.peer,
                     group = cfg->daemon.controlAdminGroup] {
                      if (auto refusal = adminRefusal(peer, group)) {
                        return problem(403, "backup not allowed", *refusal);
                      }
                      return takeBackup(ctx, *cfg, caller);
                    });
  });
}

}  // namespace kms::daemon
