#include "hsm/token_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <string_view>
#include <thread>

#include "kms/fs.h"

namespace kms::hsm {
namespace {

// SoftHSM2's object file, as src/lib/object_store/ObjectFile.cpp and File.cpp (2.6.1) read it:
// an 8-byte generation counter, then attributes until the end of the file, each one an 8-byte
// PKCS#11 type, an 8-byte kind and the value. Every number is 8 bytes, big-endian. Values:
// boolean 1 byte; unsigned long 8; byte string 8-byte length + bytes; mechanism set 8-byte
// count + 8 bytes each; attribute map 8-byte length in bytes + entries (type, kind, value,
// with kinds 1 boolean, 2 integer, 3 binary, 5 mechanism set). Attributes are written in
// ascending type order. A file that ends inside a type field reads as a valid object holding
// the attributes before it; one that ends inside a kind or value does not load at all.
constexpr std::uint64_t kKindBool = 1;
constexpr std::uint64_t kKindULong = 2;
constexpr std::uint64_t kKindBytes = 3;
constexpr std::uint64_t kKindAttrMap = 4;
constexpr std::uint64_t kKindMechSet = 5;

// token.object attributes (OSAttributes.h): CKA_VENDOR_DEFINED + 'SH' + 1..5.
constexpr std::uint64_t kVendorSoftHsm = 0x80000000ULL + 0x5348ULL;
constexpr std::uint64_t kTokenLabel = kVendorSoftHsm + 1;
constexpr std::uint64_t kTokenSerial = kVendorSoftHsm + 2;
constexpr std::uint64_t kTokenFlags = kVendorSoftHsm + 3;
constexpr std::uint64_t kSoPin = kVendorSoftHsm + 4;
constexpr std::uint64_t kUserPin = kVendorSoftHsm + 5;
constexpr std::uint64_t kUserPinInitialized = 0x8;  // CKF_USER_PIN_INITIALIZED

// Object attributes: CKA_CLASS; CKA_DESTROYABLE, the highest type SoftHSM2 2.6.1 gives every
// object; CKA_ALLOWED_MECHANISMS, the highest it gives every key.
constexpr std::uint64_t kCkaClass = 0x0;
constexpr std::uint64_t kCkaDestroyable = 0x172;
constexpr std::uint64_t kCkaAllowedMechanisms = 0x40000600;
constexpr std::uint64_t kCkoPublicKey = 2;
constexpr std::uint64_t kCkoPrivateKey = 3;
constexpr std::uint64_t kCkoSecretKey = 4;

constexpr std::size_t kGenerationSize = 8;
constexpr const char* kTempMarker = ".kmsd-tmp-";
constexpr auto kStaleTemp = std::chrono::minutes(10);

struct Attribute {
  std::uint64_t kind = 0;
  std::uint64_t number = 0;  // the value of an unsigned long attribute
};

/// An object file's structure. Never holds attribute values other than numbers.
struct ParsedFile {
  std::map<std::uint64_t, Attribute> attributes;
  std::string cut;           // empty when the file parses to its end, else what is wrong
  bool softHsmLoads = true;  // SoftHSM2 would load it as a valid object (what precedes the cut)
};

std::uint64_t be64(std::string_view b, std::size_t pos) {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < 8; ++i) {
    v = (v << 8) | static_cast<unsigned char>(b[pos + i]);
  }
  return v;
}

/// Size of the value of an attribute of this kind at `pos` (which holds at least 8 bytes for
/// kinds with a length prefix), or nullopt when it runs past the end or is malformed.
std::optional<std::size_t> valueSize(std::string_view b, std::size_t pos, std::uint64_t kind, bool inMap);

/// Checks the entries of an attribute map value (File::readAttributeMap).
bool validAttributeMap(std::string_view map) {
  std::size_t pos = 0;
  while (pos < map.size()) {
    if (map.size() - pos < 16) {
      return false;
    }
    std::uint64_t kind = be64(map, pos + 8);
    pos += 16;
    auto size = valueSize(map, pos, kind, true);
    if (!size) {
      return false;
    }
    pos += *size;
  }
  return true;
}

std::optional<std::size_t> valueSize(std::string_view b, std::size_t pos, std::uint64_t kind, bool inMap) {
  std::size_t left = b.size() - pos;
  switch (kind) {
    case kKindBool:
      return left >= 1 ? std::optional<std::size_t>(1) : std::nullopt;
    case kKindULong:
      return left >= 8 ? std::optional<std::size_t>(8) : std::nullopt;
    case kKindBytes:
    case kKindAttrMap: {
      if (kind == kKindAttrMap && inMap) {
        return std::nullopt;  // maps do not nest
      }
      if (left < 8 || be64(b, pos) > left - 8) {
        return std::nullopt;
      }
      std::size_t len = static_cast<std::size_t>(be64(b, pos));
      if (kind == kKindAttrMap && !validAttributeMap(b.substr(pos + 8, len))) {
        return std::nullopt;
      }
      return 8 + len;
    }
    case kKindMechSet: {
      if (left < 8 || be64(b, pos) > (left - 8) / 8) {
        return std::nullopt;
      }
      return 8 + 8 * static_cast<std::size_t>(be64(b, pos));
    }
    default:
      return std::nullopt;
  }
}

ParsedFile parseObjectFile(std::string_view b) {
  ParsedFile p;
  if (b.empty()) {
    p.cut = "empty";
    p.softHsmLoads = false;
    return p;
  }
  if (b.size() < kGenerationSize) {
    p.cut = "cut inside the generation counter (" + std::to_string(b.size()) + " bytes)";
    return p;
  }
  std::size_t pos = kGenerationSize;
  while (pos < b.size()) {
    std::size_t start = pos;
    if (b.size() - pos < 8) {
      p.cut = "cut inside an attribute type at byte " + std::to_string(start);
      return p;
    }
    if (b.size() - pos < 16) {
      p.cut = "cut inside an attribute at byte " + std::to_string(start);
      p.softHsmLoads = false;
      return p;
    }
    std::uint64_t type = be64(b, pos);
    std::uint64_t kind = be64(b, pos + 8);
    pos += 16;
    if (kind < kKindBool || kind > kKindMechSet) {
      p.cut = "unknown attribute kind " + std::to_string(kind) + " at byte " + std::to_string(start);
      p.softHsmLoads = false;
      return p;
    }
    auto size = valueSize(b, pos, kind, false);
    if (!size) {
      p.cut = "cut inside an attribute at byte " + std::to_string(start);
      p.softHsmLoads = false;
      return p;
    }
    p.attributes[type] = Attribute{kind, kind == kKindULong ? be64(b, pos) : 0};
    pos += *size;
  }
  return p;
}

bool has(const ParsedFile& p, std::uint64_t type, std::uint64_t kind) {
  auto it = p.attributes.find(type);
  return it != p.attributes.end() && it->second.kind == kind;
}

/// What makes this token.object unusable, or nullopt when it is sound.
std::optional<std::string> tokenObjectDefect(std::string_view bytes) {
  ParsedFile p = parseObjectFile(bytes);
  if (!p.cut.empty()) {
    return p.cut;
  }
  if (!has(p, kTokenLabel, kKindBytes) || !has(p, kTokenSerial, kKindBytes) || !has(p, kTokenFlags, kKindULong)) {
    return "no token label, serial or flags (" + std::to_string(p.attributes.size()) + " attributes)";
  }
  if (!has(p, kSoPin, kKindBytes)) {
    return "no SO PIN";
  }
  if ((p.attributes.at(kTokenFlags).number & kUserPinInitialized) != 0 && !has(p, kUserPin, kKindBytes)) {
    return "the flags say the user PIN is set but it is missing";
  }
  return std::nullopt;
}

/// Why an object file must be moved aside: SoftHSM2 would load it as a valid object missing
/// the attributes after a cut, fill those in with defaults and write back a bogus object
/// (a private key with no CKA_ID, CKA_EC_PARAMS or CKA_VALUE). nullopt when the file is
/// complete, or when SoftHSM2 skips it (empty, only the generation counter, cut inside a value).
std::optional<std::string> objectFileCut(std::string_view bytes) {
  ParsedFile p = parseObjectFile(bytes);
  if (!p.softHsmLoads || p.attributes.empty()) {
    return std::nullopt;
  }
  if (!p.cut.empty()) {
    return p.cut;
  }
  std::string count = std::to_string(p.attributes.size()) + " attributes";
  if (!has(p, kCkaClass, kKindULong)) {
    return "no CKA_CLASS (" + count + ")";
  }
  if (!p.attributes.contains(kCkaDestroyable)) {
    return "ends after " + count + ", before CKA_DESTROYABLE";
  }
  std::uint64_t cls = p.attributes.at(kCkaClass).number;
  bool key = cls == kCkoPublicKey || cls == kCkoPrivateKey || cls == kCkoSecretKey;
  if (key && !p.attributes.contains(kCkaAllowedMechanisms)) {
    return "key ends after " + count + ", before CKA_ALLOWED_MECHANISMS";
  }
  return std::nullopt;
}

// ---------------------------------------------------------------------------------------

struct FileImage {
  std::string bytes;
  struct stat st {};
};

/// The whole file, or nullopt when it does not exist.
Result<std::optional<FileImage>> readImage(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) {
      return std::optional<FileImage>();
    }
    return fail(ioError("cannot open", path, errno));
  }
  FileImage image;
  if (::fstat(fd, &image.st) != 0) {
    int err = errno;
    ::close(fd);
    return fail(ioError("cannot stat", path, err));
  }
  auto read = readToEnd(fd, path, image.bytes);
  ::close(fd);
  if (!read) {
    return fail(read.error());
  }
  return std::optional<FileImage>(std::move(image));
}

/// Reads a file that looks damaged until it stays the same for `settle`: a process using the
/// token may be between SoftHSM2's ftruncate and write. Gives up waiting after a few rounds.
Result<std::optional<FileImage>> readSettled(const std::string& path, std::chrono::milliseconds settle,
                                             std::optional<FileImage> first) {
  for (int round = 0; round < 5; ++round) {
    std::this_thread::sleep_for(settle);
    auto again = readImage(path);
    if (!again) {
      return fail(again.error());
    }
    bool same = first.has_value() == again->has_value() && (!first || first->bytes == (*again)->bytes);
    first = std::move(*again);
    if (same) {
      break;
    }
  }
  return first;
}

/// Writes `bytes` to dir/name through a temp file (fsync, rename, fsync of dir), with the
/// mode and, when running as root, the owner of `like`.
Result<void> replaceFile(const std::string& dir, const std::string& name, const std::string& bytes,
                         const struct stat& like) {
  std::string path = dir + "/" + name;
  std::string tmp = dir + "/." + name + kTempMarker + "XXXXXX";  // never ends in ".object"
  int fd = ::mkstemp(tmp.data());
  if (fd < 0) {
    return fail(ioError("cannot create temp file", dir, errno));
  }
  auto abandon = [&](const char* what, int err) -> Result<void> {
    ::close(fd);
    ::unlink(tmp.c_str());
    return fail(ioError(what, tmp, err));
  };
  std::size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      return abandon("cannot write", errno);
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fchmod(fd, like.st_mode & 07777) != 0) {
    return abandon("cannot chmod", errno);
  }
  if (::geteuid() == 0 && ::fchown(fd, like.st_uid, like.st_gid) != 0) {
    return abandon("cannot chown", errno);
  }
  if (::fsync(fd) != 0) {
    return abandon("cannot fsync", errno);
  }
  if (::close(fd) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return fail(ioError("cannot close", tmp, err));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return fail(ioError("cannot rename into place", path, err));
  }
  return fsyncDirectory(dir);
}

/// Removes temp files a killed guard left behind (old enough that no guard is writing them).
void removeStaleTemps(const std::filesystem::path& dir) {
  std::error_code ec;
  auto now = std::filesystem::file_time_type::clock::now();
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    std::string name = entry.path().filename().string();
    if (name.empty() || name[0] != '.' || name.find(kTempMarker) == std::string::npos) {
      continue;
    }
    std::error_code tec;
    auto mtime = entry.last_write_time(tec);
    if (!tec && now - mtime > kStaleTemp) {
      std::filesystem::remove(entry.path(), tec);
    }
  }
}

/// softhsm2.conf as SoftHSM2's SimpleConfigLoader reads it: `key = value` lines, `#` comments.
struct SoftHsmConf {
  std::string tokenDir = "/var/lib/softhsm/tokens/";  // Debian's compiled-in default
  std::string backend = "file";
};

Result<SoftHsmConf> readConf(const std::string& path) {
  auto image = readImage(path);
  if (!image) {
    return fail(image.error());
  }
  if (!image->has_value()) {
    return fail(Errc::notFound, "SoftHSM2 configuration file not found", path);
  }
  auto trim = [](std::string s) {
    const char* ws = " \t\r\n";
    s.erase(0, s.find_first_not_of(ws));
    s.erase(s.find_last_not_of(ws) + 1);
    return s;
  };
  SoftHsmConf conf;
  std::string_view text = (*image)->bytes;
  while (!text.empty()) {
    std::size_t nl = text.find('\n');
    std::string line = trim(std::string(text.substr(0, nl)));
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    std::size_t eq = line.find('=');
    if (line.empty() || line[0] == '#' || eq == std::string::npos) {
      continue;
    }
    std::string key = trim(line.substr(0, eq));
    std::string value = trim(line.substr(eq + 1));
    if (key == "directories.tokendir") {
      conf.tokenDir = value;
    } else if (key == "objectstore.backend") {
      conf.backend = value;
    }
  }
  return conf;
}

bool isSoftHsm(const std::string& modulePath) {
  auto named = [](const std::filesystem::path& p) {
    std::string name = p.filename().string();
    std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
    return name.find("softhsm") != std::string::npos;
  };
  std::error_code ec;
  std::filesystem::path resolved = std::filesystem::canonical(modulePath, ec);
  return named(modulePath) || (!ec && named(resolved));
}

/// One token directory: keep the verified copy current, or restore from it.
Result<void> guardToken(const std::string& dir, const TokenStoreOptions& options, TokenStoreReport& report) {
  const std::string objectPath = dir + "/token.object";
  const std::string copyPath = dir + "/" + kTokenObjectCopy;
  auto current = readImage(objectPath);
  if (!current) {
    return fail(current.error());
  }
  auto copy = readImage(copyPath);
  if (!copy) {
    return fail(copy.error());
  }
  if (!current->has_value() && !copy->has_value()) {
    return ok();  // not a token (SoftHSM2 skips it too)
  }
  ++report.tokens;
  std::optional<std::string> copyDefect = *copy ? tokenObjectDefect((*copy)->bytes) : std::string("missing");
  auto defectOf = [](const std::optional<FileImage>& image) {
    return image ? tokenObjectDefect(image->bytes) : std::optional<std::string>("missing");
  };
  std::optional<std::string> defect = defectOf(*current);
  if (defect) {
    auto settled = readSettled(objectPath, options.settle, std::move(*current));
    if (!settled) {
      return fail(settled.error());
    }
    *current = std::move(*settled);
    defect = defectOf(*current);
  }
  if (!defect) {
    // Only the attributes count: the generation counter in front changes at every login.
    std::string_view attrs = std::string_view((*current)->bytes).substr(kGenerationSize);
    if (copyDefect || std::string_view((*copy)->bytes).substr(kGenerationSize) != attrs) {
      if (auto r = replaceFile(dir, kTokenObjectCopy, (*current)->bytes, (*current)->st); !r) {
        return fail(r.error());
      }
      report.copied.push_back(copyPath);
    }
    return ok();
  }
  if (copyDefect) {
    return fail(Errc::io,
                "damaged (" + *defect + ") and no verified copy to restore it from (" + kTokenObjectCopy + ": " +
                    *copyDefect + "); restore the token directory from a backup or re-initialise the token",
                objectPath);
  }
  const struct stat& like = *current ? (*current)->st : (*copy)->st;
  if (auto r = replaceFile(dir, "token.object", (*copy)->bytes, like); !r) {
    return fail(r.error());
  }
  report.restored.push_back(TokenFileRepair{objectPath, *defect, {}});
  return ok();
}

/// Moves aside the object files of one token that SoftHSM2 would load incomplete.
Result<void> guardObjects(const std::string& dir, const TokenStoreOptions& options, TokenStoreReport& report) {
  std::error_code ec;
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    std::string name = entry.path().filename().string();
    if (name.size() > 7 && name.ends_with(".object") && name != "token.object") {
      names.push_back(name);
    }
  }
  if (ec) {
    return fail(ioError("cannot list token directory", dir, ec.value()));
  }
  std::sort(names.begin(), names.end());
  for (const auto& name : names) {
    std::string path = dir;
    path.append("/").append(name);
    auto image = readImage(path);
    if (!image) {
      return fail(image.error());
    }
    if (!image->has_value() || !objectFileCut((*image)->bytes)) {
      continue;
    }
    auto settled = readSettled(path, options.settle, std::move(*image));
    if (!settled) {
      return fail(settled.error());
    }
    std::optional<std::string> cut = *settled ? objectFileCut((*settled)->bytes) : std::nullopt;
    if (!cut) {
      continue;
    }
    std::string target = path + kQuarantineSuffix;
    for (int n = 1; std::filesystem::exists(target, ec); ++n) {
      target = path + kQuarantineSuffix + "." + std::to_string(n);
    }
    if (::rename(path.c_str(), target.c_str()) != 0) {
      if (errno == ENOENT) {
        continue;  // another guard moved it
      }
      return fail(ioError("cannot move aside", path, errno));
    }
    if (auto r = fsyncDirectory(dir); !r) {
      return fail(r.error());
    }
    report.quarantined.push_back(TokenFileRepair{path, *cut, target});
  }
  return ok();
}

}  // namespace

Result<TokenStoreReport> guardSoftHsmStore(const TokenStoreOptions& options) {
  TokenStoreReport report;
  if (!isSoftHsm(options.modulePath)) {
    return report;
  }
  std::string confPath = options.confPath;
  if (confPath.empty()) {
    const char* env = std::getenv("SOFTHSM2_CONF");
    confPath = env != nullptr && *env != '\0' ? env : "/etc/softhsm/softhsm2.conf";
  }
  auto conf = readConf(confPath);
  if (!conf) {
    return fail(conf.error());
  }
  report.confPath = confPath;
  report.tokenDir = conf->tokenDir;
  if (conf->backend != "file") {
    return report;  // the SQLite backend keeps its own transactions
  }
  report.checked = true;
  std::error_code ec;
  std::vector<std::string> dirs;
  for (const auto& entry : std::filesystem::directory_iterator(conf->tokenDir, ec)) {
    std::error_code dec;
    if (entry.is_directory(dec)) {
      dirs.push_back(entry.path().string());
    }
  }
  if (ec) {
    return fail(ioError("cannot list the SoftHSM2 token directory (" + confPath + " directories.tokendir)",
                        conf->tokenDir, ec.value()));
  }
  std::sort(dirs.begin(), dirs.end());
  std::optional<Error> firstError;
  for (const auto& dir : dirs) {
    removeStaleTemps(dir);
    auto token = guardToken(dir, options, report);
    if (!token && !firstError) {
      firstError = token.error();
    }
    auto objects = guardObjects(dir, options, report);
    if (!objects && !firstError) {
      firstError = objects.error();
    }
  }
  if (firstError) {
    for (const auto& r : report.restored) {
      firstError->message += "; restored " + r.path + " (" + r.reason + ")";
    }
    for (const auto& q : report.quarantined) {
      firstError->message += "; moved " + q.path + " aside (" + q.reason + ")";
    }
    return fail(*firstError);
  }
  return report;
}

Result<StoreImage> readSoftHsmStore(const TokenStoreOptions& options) {
  StoreImage out;
  if (!isSoftHsm(options.modulePath)) {
    return out;
  }
  out.softhsm = true;
  out.confPath = options.confPath;
  if (out.confPath.empty()) {
    const char* env = std::getenv("SOFTHSM2_CONF");
    out.confPath = env != nullptr && *env != '\0' ? env : "/etc/softhsm/softhsm2.conf";
  }
  auto conf = readConf(out.confPath);
  if (!conf) {
    return fail(conf.error());
  }
  out.tokenDir = conf->tokenDir;
  out.backend = conf->backend;
  std::error_code ec;
  std::vector<std::filesystem::path> dirs;
  for (const auto& entry : std::filesystem::directory_iterator(conf->tokenDir, ec)) {
    std::error_code dec;
    if (entry.is_directory(dec)) {
      dirs.push_back(entry.path());
    }
  }
  if (ec) {
    return fail(ioError("cannot list the SoftHSM2 token directory (" + out.confPath + " directories.tokendir)",
                        conf->tokenDir, ec.value()));
  }
  std::sort(dirs.begin(), dirs.end());
  for (const auto& dir : dirs) {
    std::vector<std::filesystem::path> files;
    for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
      std::error_code fec;
      if (entry.is_regular_file(fec)) {
        files.push_back(entry.path());
      }
    }
    if (ec) {
      return fail(ioError("cannot list a SoftHSM2 token directory", dir.string(), ec.value()));
    }
    std::sort(files.begin(), files.end());
    for (const auto& file : files) {
      auto image = readImage(file.string());
      if (!image) {
        return fail(image.error());
      }
      if (!image->has_value()) {
        continue;  // removed since the listing (an object destroyed by another process)
      }
      StoreFile f{dir.filename().string() + "/" + file.filename().string(), std::move((*image)->bytes), {}};
      if (file.filename() == "token.object" && out.backend == "file") {
        if (auto defect = tokenObjectDefect(f.bytes)) {
          auto copy = readImage((dir / kTokenObjectCopy).string());
          if (!copy) {
            return fail(copy.error());
          }
          if (!copy->has_value() || tokenObjectDefect((*copy)->bytes)) {
            return fail(Errc::io, "token.object is damaged (" + *defect + ") and has no usable verified copy",
                        file.string());
          }
          f.bytes = std::move((*copy)->bytes);
          f.note = "token.object was " + *defect + " (rewritten at a login): its verified copy was taken";
        }
      }
      out.files.push_back(std::move(f));
    }
  }
  return out;
}

}  // namespace kms::hsm
