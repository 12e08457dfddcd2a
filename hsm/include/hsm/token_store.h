#pragma once
/// @file Keeps SoftHSM2's file store recoverable across SIGKILL and power cuts.
///
/// SoftHSM2 2.6.1 (file backend) rewrites `<tokendir>/<uuid>/token.object` in place at every
/// C_Login: open, ftruncate to 0, write. A kill or power cut in between leaves a 0-byte file,
/// SoftHSM2 then drops the whole token ("no token labelled ...") and every key with it.
/// guardSoftHsmStore(), called before the PKCS#11 module is loaded, keeps a verified copy of
/// each healthy token.object beside it (`token.object.kmsd-good`: same directory, so the
/// rename is atomic and the copy follows the token when the directory is backed up, moved or
/// deleted; SoftHSM2 only reads names ending in `.object`) and puts it back when the file is
/// missing, empty or does not parse. Nothing here reads or prints a PIN: token.object holds
/// the PIN blobs encrypted, and only its structure is examined.

#include <chrono>
#include <cstddef>
#include <string>
#include <vector>

#include "kms/error.h"

namespace kms::hsm {

/// Name of the verified copy kept beside each token.object.
inline constexpr const char* kTokenObjectCopy = "token.object.kmsd-good";
/// Suffix given to an object file moved aside (it no longer ends in `.object`).
inline constexpr const char* kQuarantineSuffix = ".kmsd-quarantine";

/// Which store to guard.
struct TokenStoreOptions {
  /// The PKCS#11 module that will be loaded. The guard acts only when it is SoftHSM2 (its file
  /// name, or that of the file it links to, contains "softhsm"); for another module it does
  /// nothing and reports `checked == false`.
  std::string modulePath;
  /// softhsm2.conf to read; empty: $SOFTHSM2_CONF, else /etc/softhsm/softhsm2.conf.
  std::string confPath;
  /// How long a damaged-looking file must stay unchanged before it is repaired: another
  /// process using the token may be in the middle of rewriting it.
  std::chrono::milliseconds settle{50};
};

/// One file repaired or moved aside.
struct TokenFileRepair {
  std::string path;     ///< the file (token.object restored, or the object file moved)
  std::string reason;   ///< what was wrong with it ("empty", "cut inside an attribute at byte 200", ...)
  std::string movedTo;  ///< object files: the quarantine name it has now
};

/// What guardSoftHsmStore found and did.
struct TokenStoreReport {
  bool checked = false;    ///< false: not SoftHSM2, or not its file backend; nothing was looked at
  std::string confPath;    ///< the softhsm2.conf read (empty: not SoftHSM2)
  std::string tokenDir;    ///< directories.tokendir
  std::size_t tokens = 0;  ///< token directories with a token.object (or a copy of one)
  /// token.object files restored from their verified copy: log KMS_TOKEN_RESTORED naming each.
  std::vector<TokenFileRepair> restored;
  /// Object files SoftHSM2 would load as a valid but incomplete object (cut at an attribute
  /// boundary: it would fill in defaults and write back a bogus key), moved aside.
  std::vector<TokenFileRepair> quarantined;
  /// Verified copies written because token.object changed (or had none yet).
  std::vector<std::string> copied;
};

/// Checks every token of the SoftHSM2 file store named by the configuration. For each token
/// directory: a healthy token.object (parses completely; label, serial, flags and SO PIN
/// present; the user PIN too when the flags say it is set) is copied to kTokenObjectCopy
/// (temp file, fsync, rename, fsync of the directory) when its attributes differ from the
/// copy's; a token.object that is missing, empty or does not parse is replaced, atomically,
/// by a verified copy and reported in `restored`. Object files cut at an attribute boundary
/// are renamed with kQuarantineSuffix and reported; empty, header-only or cut-mid-attribute
/// object files are left alone, since SoftHSM2 skips them.
/// Call it before the PKCS#11 module is loaded (SoftHSM2 reads the store at C_Initialize).
/// Errors (every one names the path): softhsm2.conf or the token directory unreadable
/// (Errc::notFound / Errc::io), a damaged token.object with no usable copy (Errc::io; the
/// other tokens are still handled and nothing is written for that one), a write, fsync or
/// rename failing (Errc::io).
[[nodiscard]] Result<TokenStoreReport> guardSoftHsmStore(const TokenStoreOptions& options);

/// One file of a SoftHSM2 store, for a backup.
struct StoreFile {
  std::string path;   ///< relative to the token directory: "<token uuid>/<file>"
  std::string bytes;  ///< its content
  /// Set when token.object was caught mid-rewrite and its verified copy was taken instead.
  std::string note;
};

/// The SoftHSM2 store named by the configuration, read whole.
struct StoreImage {
  bool softhsm = false;  ///< false: not SoftHSM2; nothing was read (back the HSM up with its own tools)
  std::string confPath;  ///< the softhsm2.conf read
  std::string tokenDir;  ///< directories.tokendir
  std::string backend;   ///< objectstore.backend ("file" or "db")
  std::vector<StoreFile> files;
};

/// Reads every regular file of every token directory under directories.tokendir (object
/// files, token.object and its verified copy; for the "db" backend its database), for a
/// backup. The caller keeps its own process from creating or destroying objects meanwhile
/// (Token::withObjectsUnchanged); a token.object caught empty or cut (SoftHSM2 rewrites it
/// in place at a login) is replaced in the image by its verified copy, and `note` says so.
/// Errors name the path: softhsm2.conf or the token directory unreadable, a damaged
/// token.object with no usable copy (Errc::io).
[[nodiscard]] Result<StoreImage> readSoftHsmStore(const TokenStoreOptions& options);

}  // namespace kms::hsm
