// kmsctl backup DIR: the daemon copies the state DB and the SoftHSM2 token store while
// neither is written (POST /v1/backup); kmsctl checks each file's SHA-256 and writes them
// under DIR (0700, files 0600) with manifest.json last, so a DIR with a manifest is whole.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <ostream>

#include <nlohmann/json.hpp>

#include "daemon/config_check.h"
#include "events/event_sink.h"
#include "kms/fs.h"
#include "kmsctl/client.h"
#include "kmsctl/commands.h"
#include "pki/encoding.h"

namespace kms::daemon {
namespace {

/// A relative path with no "..", no absolute part and no empty component (it comes from the
/// daemon, but a backup is a place where a wrong path does harm).
bool safeRelative(const std::string& path) {
  if (path.empty() || path.front() == '/') {
    return false;
  }
  for (const auto& part : std::filesystem::path(path)) {
    if (part == ".." || part == "." || part.empty()) {
      return false;
    }
  }
  return true;
}

/// Writes `bytes` to `path` (created 0600, not there before), fsynced.
Result<void> writeNew(const std::string& path, const std::string& bytes) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    return fail(ioError("cannot create", path, errno));
  }
  std::size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      int e = errno;
      ::close(fd);
      return fail(ioError("cannot write", path, e));
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0) {
    int e = errno;
    ::close(fd);
    return fail(ioError("cannot fsync", path, e));
  }
  ::close(fd);
  return ok();
}

Result<void> makeDir(const std::string& dir) {
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return fail(ioError("cannot create the directory", dir, errno));
  }
  return ok();
}

/// Decodes one file entry, checks its size and SHA-256, writes it to DIR/`under`/path.
/// Returns the manifest entry (without the content).
Result<nlohmann::json> writeEntry(const std::string& dir, const std::string& under, const nlohmann::json& entry) {
  const std::string path = entry.value("path", "");
  if (!safeRelative(path)) {
    return fail(Errc::protocol, "the daemon's backup names a file '" + path + "' outside the backup", dir);
  }
  auto bytes = pki::base64Decode(entry.value("base64", ""));
  if (!bytes) {
    return fail(Errc::protocol, "the daemon's backup of " + path + " is not base64", dir);
  }
  const std::string content(bytes->begin(), bytes->end());
  const std::string digest = pki::hexEncode(pki::sha256(pki::asBytes(content)));
  if (content.size() != entry.value("size", std::size_t{0}) || digest != entry.value("sha256", "")) {
    return fail(Errc::protocol, "the daemon's backup of " + path + " does not match its size or SHA-256", dir);
  }
  std::string target = dir + "/" + under + path;
  std::filesystem::path parent = std::filesystem::path(target).parent_path();
  for (std::filesystem::path at = dir; const auto& part : std::filesystem::relative(parent, dir)) {
    at /= part;
    if (auto made = makeDir(at.string()); !made) {
      return fail(made.error());
    }
  }
  if (auto written = writeNew(target, content); !written) {
    return fail(written.error());
  }
  return nlohmann::json{{"path", under + path}, {"size", content.size()}, {"sha256", digest}};
}

}  // namespace

int ctlBackup(Target& target, const std::string& dir, std::ostream& out, std::ostream& err) {
  // DIR: new, or an empty directory; never mixed with an older backup.
  std::error_code ec;
  if (std::filesystem::exists(dir, ec) && !std::filesystem::is_empty(dir, ec)) {
    err << "kmsctl: " << dir << " is not empty: give a new directory for the backup\n";
    return kExitUsage;
  }
  const std::string socket = target.socket();
  int code = 0;
  auto r = ask(socket, "POST", "/v1/backup", "", err, &code);
  if (!r) {
    err << "kmsctl: kmsd is not running (no answer on " << socket
        << "); the backup is taken by the daemon (stop nothing: it copies consistently while running)\n";
    return kExitCheckFailed;
  }
  if (code != 200) {
    err << "kmsctl: " << sanitize(str(*r, "detail", "backup refused")) << '\n';
    return kExitRuntime;
  }
  if (r->value("format", "") != "kmsd-backup/1" || !r->contains("state_db")) {
    err << "kmsctl: the daemon's answer is not a kmsd backup (format " << sanitize(r->value("format", "none"))
        << ")\n";
    return kExitRuntime;
  }
  if (auto made = makeDir(dir); !made) {
    err << "kmsctl: " << sanitize(made.error().toString()) << '\n';
    return kExitRuntime;
  }
  ::chmod(dir.c_str(), 0700);
  nlohmann::json manifest = *r;
  auto db = writeEntry(dir, "", (*r)["state_db"]);
  if (!db) {
    err << "kmsctl: " << sanitize(db.error().toString()) << '\n';
    return kExitRuntime;
  }
  manifest["state_db"].erase("base64");
  std::size_t tokenFiles = 0;
  if (r->contains("token_store") && (*r)["token_store"].is_object()) {
    nlohmann::json listed = nlohmann::json::array();
    for (const auto& entry : (*r)["token_store"].value("files", nlohmann::json::array())) {
      auto file = writeEntry(dir, "tokens/", entry);
      if (!file) {
        err << "kmsctl: " << sanitize(file.error().toString()) << '\n';
        return kExitRuntime;
      }
      listed.push_back(std::move(*file));
      ++tokenFiles;
    }
    manifest["token_store"]["files"] = std::move(listed);
  }
  if (auto written = writeNew(dir + "/manifest.json", manifest.dump(2) + "\n"); !written) {
    err << "kmsctl: " << sanitize(written.error().toString()) << '\n';
    return kExitRuntime;
  }
  if (auto synced = fsyncDirectory(dir); !synced) {
    err << "kmsctl: " << sanitize(synced.error().toString()) << '\n';
    return kExitRuntime;
  }
  out << "backup in " << dir << ": kmsd.db (" << (*r)["state_db"].value("size", std::size_t{0})
      << " bytes, schema " << (*r)["state_db"].value("schema_version", 0) << ")";
  if (tokenFiles > 0) {
    out << ", " << tokenFiles << " token store file(s) from " << sanitize((*r)["token_store"].value("token_dir", ""))
        << " under tokens/";
  } else {
    out << "; " << sanitize(r->value("token_store_note", "no token store"));
  }
  out << ", manifest.json\n";
  for (const auto& note : (*r)["token_store"].is_object() ? (*r)["token_store"].value("notes", nlohmann::json::array())
                                                          : nlohmann::json::array()) {
    out << "note: " << sanitize(note.get<std::string>()) << '\n';
  }
  out << "it holds the token's keys (encrypted under its PINs): keep it as safely as the token\n";
  return kExitOk;
}

}  // namespace kms::daemon
