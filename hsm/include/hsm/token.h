#pragma once
/// @file A PKCS#11 token holding P-256 signing keys (SoftHSM2 by default).
///
/// The module is dlopen()ed and initialised with CKF_OS_LOCKING_OK; a bounded pool of
/// sessions lets several threads sign at once; the user PIN is read from its file when
/// a login is needed and wiped right after. Errors name the PKCS#11 function and the
/// CKR_ constant (Error::nativeName) and never contain the PIN.

#include <array>
#include <atomic>
#include <cstdint>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "hsm/pkcs11_uri.h"
#include "kms/error.h"
#include "pki/signer.h"

namespace kms::hsm {

/// Where the token is and how to log in.
struct TokenOptions {
  std::string modulePath;       ///< PKCS#11 module (.so)
  std::string tokenLabel;       ///< CKA_LABEL of the token (CK_TOKEN_INFO.label)
  std::string pinFile;          ///< file holding the user PIN
  std::size_t sessionPool = 4;  ///< sessions available for concurrent signing (1..64)
};

/// A key pair on the token.
struct KeyInfo {
  pki::Bytes id;      ///< CKA_ID (16 random bytes for keys generated here)
  std::string label;  ///< CKA_LABEL
  Pkcs11Uri uri;      ///< RFC 7512 URI naming the private key
  pki::EcPublicKey publicKey;
};

class TokenImpl;

/// What a token has done since it was opened, for the metrics: operations by result, and how
/// long they took (cumulative counts under upper bounds, as Prometheus buckets).
struct TokenStats {
  static constexpr std::array<double, 10> kBoundsSeconds{0.0001, 0.00025, 0.0005, 0.001, 0.0025,
                                                         0.005,  0.01,    0.05,   0.25,  1};
  struct Op {
    const char* name = "";  ///< "sign", "generate", "find", "destroy"
    std::uint64_t ok = 0;
    std::uint64_t failed = 0;
    std::array<std::uint64_t, kBoundsSeconds.size()> buckets{};
    double sumSeconds = 0;
  };
  std::array<Op, 4> ops;
};

/// An ES256 signer whose private key stays on the token. Keeps the token open while
/// it lives. Thread-safe: each signature borrows a pooled session.
class KeySigner : public pki::Signer {
 public:
  ~KeySigner() override;
  KeySigner(const KeySigner&) = delete;
  KeySigner& operator=(const KeySigner&) = delete;

  /// CKM_ECDSA over the digest: C_SignInit + C_Sign on a pooled session. Re-finds the
  /// key once if its handle went stale (re-login, session loss).
  [[nodiscard]] Result<pki::RawSignature> signDigest(const pki::Digest& digest) override;
  [[nodiscard]] const pki::EcPublicKey& publicKey() const override { return info_.publicKey; }
  [[nodiscard]] const KeyInfo& info() const { return info_; }

 private:
  friend class Token;
  KeySigner(std::shared_ptr<TokenImpl> token, KeyInfo info, unsigned long handle, unsigned generation);
  std::shared_ptr<TokenImpl> token_;
  KeyInfo info_;
  std::atomic<unsigned long> handle_;  // CK_OBJECT_HANDLE of the private key
  std::atomic<unsigned> generation_;   // token login generation the handle belongs to
};

/// An open, logged-in token. Every operation (and every signature) that finds its session
/// or the login gone (CKR_SESSION_HANDLE_INVALID, CKR_SESSION_CLOSED, CKR_USER_NOT_LOGGED_IN:
/// an HSM restarted or reconnected, all sessions closed, a logout) replaces the session, logs
/// in again and runs once more; only a second failure is returned.
class Token {
 public:
  /// Loads the module, finds the token by label, opens the session pool and logs in.
  /// Errors: module missing or not PKCS#11 (Errc::notFound / Errc::hsm), no token with
  /// that label (Errc::notFound, listing the labels present), PIN file unreadable
  /// (Errc::io), wrong PIN (Errc::unauthorized, CKR_PIN_INCORRECT).
  [[nodiscard]] static Result<std::unique_ptr<Token>> open(const TokenOptions& options);
  ~Token();
  Token(const Token&) = delete;
  Token& operator=(const Token&) = delete;

  [[nodiscard]] const std::string& label() const;

  /// Generates an EC P-256 key pair on the token: private key CKA_TOKEN, CKA_PRIVATE,
  /// CKA_SENSITIVE, CKA_SIGN true and CKA_EXTRACTABLE false, a random 16-byte CKA_ID.
  /// The pair is generated in the token's memory and the private key copied onto the
  /// token (C_CopyObject; generated in place when the token will not copy), which costs
  /// SoftHSM2's file store one write instead of ~30. The public half is kept in the private
  /// key's CKA_PUBLIC_KEY_INFO (one token object per key); a token that refuses that
  /// attribute gets a public-key object with the same CKA_ID instead.
  [[nodiscard]] Result<KeyInfo> generateKey(const std::string& label);
  /// generateKey, returning a signer for the new key at once (no search of the token).
  /// `id` is the CKA_ID to give the key, chosen beforehand (newKeyId) so that the key can
  /// be recorded before it exists; empty means a fresh random one.
  [[nodiscard]] Result<std::unique_ptr<KeySigner>> generateSigner(const std::string& label,
                                                                  const pki::Bytes& id = {});
  /// 16 random bytes for a CKA_ID.
  [[nodiscard]] static Result<pki::Bytes> newKeyId();
  /// The URI a key with this object label and CKA_ID has on this token.
  [[nodiscard]] Pkcs11Uri keyUri(const std::string& label, const pki::Bytes& id) const;
  /// Every EC private key on the token with its public key (from CKA_PUBLIC_KEY_INFO, else
  /// the public-key object with the same CKA_ID).
  [[nodiscard]] Result<std::vector<KeyInfo>> listKeys();
  /// Finds the key a pkcs11: URI names (by id, else by object label) and returns a
  /// signer for it. Errc::notFound when no key matches, Errc::invalidArgument when the
  /// URI names another token or matches several keys, Errc::hsm when the key is not one
  /// made inside a token (CKA_SIGN, CKA_SENSITIVE, CKA_NEVER_EXTRACTABLE and CKA_LOCAL true,
  /// CKA_EXTRACTABLE false) or its public half does not match (a test signature).
  [[nodiscard]] Result<std::unique_ptr<KeySigner>> signer(const Pkcs11Uri& uri);
  /// Destroys both halves of the key the URI names.
  [[nodiscard]] Result<void> destroyKey(const Pkcs11Uri& uri);

  /// Runs `body` while this process creates and destroys no object on the token (the lock
  /// key generation and destruction take); signing goes on. For a backup of the object store.
  void withObjectsUnchanged(const std::function<void()>& body);

  /// Whether a session of the pool is logged in (logging in again when the login was lost):
  /// the readiness probe's token check. The error names the token and why.
  [[nodiscard]] Result<void> checkLogin();

  /// Signatures, key generations, searches and destructions so far (relaxed atomics: a few
  /// nanoseconds per operation).
  [[nodiscard]] TokenStats stats() const;

 private:
  explicit Token(std::shared_ptr<TokenImpl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<TokenImpl> impl_;
};

}  // namespace kms::hsm
