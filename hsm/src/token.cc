#include "hsm/token.h"

#include <sys/random.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <chrono>
#include <mutex>
#include <string_view>

#include "kms/secret.h"
#include "pkcs11.h"

namespace kms::hsm {
namespace {

// DER OID of prime256v1, the CKA_EC_PARAMS of a P-256 key.
constexpr CK_BYTE kP256Params[] = {0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07};
constexpr std::size_t kIdLength = 16;

std::string trimLabel(const CK_UTF8CHAR* label, std::size_t size) {
  std::string s(reinterpret_cast<const char*>(label), size);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\0')) {
    s.pop_back();
  }
  return s;
}

CK_ATTRIBUTE attr(CK_ATTRIBUTE_TYPE type, void* value, std::size_t len) {
  return CK_ATTRIBUTE{type, value, static_cast<CK_ULONG>(len)};
}

/// The template of a P-256 public key, owning the values its attributes point at: for
/// C_GenerateKeyPair (no point, a session object) or C_CreateObject (point, on the token).
class PublicKeyTemplate {
 public:
  PublicKeyTemplate(bool onToken, std::string label, pki::Bytes id, pki::Bytes point = {})
      : token_(onToken ? CK_TRUE : CK_FALSE), label_(std::move(label)), id_(std::move(id)), point_(std::move(point)) {
    attrs_ = {
        attr(CKA_CLASS, &class_, sizeof class_),
        attr(CKA_KEY_TYPE, &type_, sizeof type_),
        attr(CKA_TOKEN, &token_, sizeof token_),
        attr(CKA_PRIVATE, &no_, sizeof no_),
        attr(CKA_VERIFY, &yes_, sizeof yes_),
        attr(CKA_EC_PARAMS, const_cast<CK_BYTE*>(kP256Params), sizeof kP256Params),
        attr(CKA_LABEL, label_.data(), label_.size()),
        attr(CKA_ID, id_.data(), id_.size()),
    };
    if (!point_.empty()) {
      attrs_.push_back(attr(CKA_EC_POINT, point_.data(), point_.size()));
    }
  }
  PublicKeyTemplate(const PublicKeyTemplate&) = delete;
  PublicKeyTemplate& operator=(const PublicKeyTemplate&) = delete;
  [[nodiscard]] CK_ATTRIBUTE* data() { return attrs_.data(); }
  [[nodiscard]] CK_ULONG size() const { return static_cast<CK_ULONG>(attrs_.size()); }

 private:
  CK_OBJECT_CLASS class_ = CKO_PUBLIC_KEY;
  CK_KEY_TYPE type_ = CKK_EC;
  CK_BBOOL yes_ = CK_TRUE;
  CK_BBOOL no_ = CK_FALSE;
  CK_BBOOL token_;
  std::string label_;
  pki::Bytes id_;
  pki::Bytes point_;
  std::vector<CK_ATTRIBUTE> attrs_;
};

// CKA_EC_POINT is a DER OCTET STRING around 04||x||y (PKCS#11 v2.40); some modules
// return the bare point.
Result<pki::EcPublicKey> parseEcPoint(const pki::Bytes& value) {
  if (value.size() == 65 && value[0] == 0x04) {
    return pki::EcPublicKey::fromUncompressedPoint(value);
  }
  if (value.size() == 67 && value[0] == 0x04 && value[1] == 0x41) {
    return pki::EcPublicKey::fromUncompressedPoint(pki::ByteView(value).subspan(2));
  }
  return fail(Errc::hsm, "CKA_EC_POINT is not an uncompressed P-256 point");
}

/// The token says the session or its login is gone (an HSM restarted or was reconnected,
/// every session closed, a logout): worth one more try on a fresh, logged-in session.
bool sessionLost(CK_RV rv) {
  return rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_SESSION_CLOSED || rv == CKR_USER_NOT_LOGGED_IN;
}

/// The same for an error made by ckError (the CK_RV is its native code).
bool sessionLost(const Error& e) {
  return e.code == Errc::hsm && sessionLost(static_cast<CK_RV>(e.native));
}

}  // namespace

/// Shared state of an open token: module, slot, session pool, login generation.
enum HsmOp : std::size_t { kSign, kGenerate, kFind, kDestroy, kOps };

/// One operation's counters (TokenStats, kept as atomics).
struct OpCounters {
  std::atomic<std::uint64_t> ok{0};
  std::atomic<std::uint64_t> failed{0};
  std::array<std::atomic<std::uint64_t>, TokenStats::kBoundsSeconds.size()> buckets{};  ///< not cumulative
  std::atomic<std::uint64_t> sumNanos{0};

  void record(bool succeeded, std::chrono::steady_clock::time_point start) {
    const auto took = std::chrono::steady_clock::now() - start;
    (succeeded ? ok : failed).fetch_add(1, std::memory_order_relaxed);
    const double seconds = std::chrono::duration<double>(took).count();
    for (std::size_t i = 0; i < TokenStats::kBoundsSeconds.size(); ++i) {
      if (seconds <= TokenStats::kBoundsSeconds[i]) {
        buckets[i].fetch_add(1, std::memory_order_relaxed);
        break;
      }
    }
    sumNanos.fetch_add(static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(took).count()),
                       std::memory_order_relaxed);
  }
};

/// Times `body` (a Result-returning callable) as operation `op`.
template <class F>
auto timed(std::array<OpCounters, kOps>& stats, HsmOp op, F&& body) {
  const auto start = std::chrono::steady_clock::now();
  auto r = body();
  stats[op].record(r.has_value(), start);
  return r;
}

class TokenImpl {
 public:
  TokenImpl(std::shared_ptr<Module> module, CK_SLOT_ID slot, TokenOptions options)
      : module_(std::move(module)),
        slot_(slot),
        options_(std::move(options)),
        context_("token '" + options_.tokenLabel + "'") {}

  ~TokenImpl() {
    CK_FUNCTION_LIST* f = fn();
    for (CK_SESSION_HANDLE s : free_) {
      f->C_CloseSession(s);
    }
    // Closing the last session logs the application out of the token.
  }

  [[nodiscard]] CK_FUNCTION_LIST* fn() const { return module_->fn(); }
  [[nodiscard]] const std::string& context() const { return context_; }
  [[nodiscard]] const TokenOptions& options() const { return options_; }
  [[nodiscard]] unsigned generation() const { return generation_.load(std::memory_order_acquire); }

  /// Held while objects are created, destroyed or searched. SoftHSM2's file store has
  /// failed concurrent object creation with CKR_GENERAL_ERROR (seen in kmsd's test suite);
  /// signing, the hot path, does not take it.
  std::mutex& catalog() { return catalog_; }
  /// TokenStats' counters, by HsmOp.
  std::array<OpCounters, kOps>& stats() { return stats_; }

  Result<void> openPool() {
    std::size_t n = std::clamp<std::size_t>(options_.sessionPool, 1, 64);
    for (std::size_t i = 0; i < n; ++i) {
      CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
      CK_RV rv = fn()->C_OpenSession(slot_, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr, &s);
      if (rv != CKR_OK) {
        return fail(ckError("C_OpenSession", rv, context_));
      }
      free_.push_back(s);
    }
    return login(free_.front());
  }

  /// Logs the application in with the PIN read from its file now (wiped on return).
  Result<void> login(CK_SESSION_HANDLE s) {
    auto pin = readSecretFile(options_.pinFile);
    if (!pin) {
      Error e = pin.error();
      e.message = "cannot read the HSM PIN file: " + e.message;
      return fail(e);
    }
    CK_RV rv = fn()->C_Login(s, CKU_USER, const_cast<CK_UTF8CHAR*>(pin->data()), pin->size());
    if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) {
      return fail(ckError("C_Login", rv, context_));
    }
    generation_.fetch_add(1, std::memory_order_acq_rel);
    return ok();
  }

  /// Borrows a session; blocks while all are in use. Returned by Lease's destructor.
  class Lease {
   public:
    Lease(TokenImpl& t, CK_SESSION_HANDLE s) : token_(&t), session_(s) {}
    ~Lease() {
      if (token_ != nullptr) {
        token_->giveBack(session_);
      }
    }
    Lease(Lease&& o) noexcept : token_(o.token_), session_(o.session_) { o.token_ = nullptr; }
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    Lease& operator=(Lease&&) = delete;
    [[nodiscard]] CK_SESSION_HANDLE get() const { return session_; }
    /// The session is dead (closed, device removed): replace it with a fresh one.
    Result<void> renew() { return token_->replaceSession(session_); }

   private:
    TokenImpl* token_;
    CK_SESSION_HANDLE session_;
  };

  Lease lease() {
    std::unique_lock<std::mutex> lock(mutex_);
    available_.wait(lock, [this] { return !free_.empty(); });
    CK_SESSION_HANDLE s = free_.back();
    free_.pop_back();
    return Lease(*this, s);
  }

  /// Runs op(session) on a pooled session. When it fails because the session or the login
  /// is gone, the session is replaced (logging in again if needed) and op runs once more;
  /// a second failure is returned as it is.
  /// The session must be logged in first: private keys are invisible without the login, so
  /// a lost login would read as "no such key".
  template <typename Op>
  auto withSession(Op&& op) -> decltype(op(CK_SESSION_HANDLE{})) {
    auto session = lease();
    for (int attempt = 0;; ++attempt) {
      auto ready = ensureLoggedIn(session.get());
      if (ready) {
        auto r = op(session.get());
        if (r || !sessionLost(r.error()) || attempt > 0) {
          return r;
        }
      } else if (!sessionLost(ready.error()) || attempt > 0) {
        return fail(ready.error());
      }
      if (auto renewed = session.renew(); !renewed) {
        return fail(renewed.error());
      }
    }
  }

  /// Logs in again when the session has lost the login (a logout, every session closed).
  Result<void> ensureLoggedIn(CK_SESSION_HANDLE s) {
    CK_SESSION_INFO info{};
    CK_RV rv = fn()->C_GetSessionInfo(s, &info);
    if (rv != CKR_OK) {
      return fail(ckError("C_GetSessionInfo", rv, context_));
    }
    if (info.state == CKS_RW_USER_FUNCTIONS || info.state == CKS_RO_USER_FUNCTIONS) {
      return ok();
    }
    return login(s);
  }

  /// Finds objects matching tmpl (at most max).
  Result<std::vector<CK_OBJECT_HANDLE>> find(CK_SESSION_HANDLE s, std::vector<CK_ATTRIBUTE>& tmpl,
                                             std::size_t max = 256) {
    CK_RV rv = fn()->C_FindObjectsInit(s, tmpl.data(), tmpl.size());
    if (rv != CKR_OK) {
      return fail(ckError("C_FindObjectsInit", rv, context_));
    }
    std::vector<CK_OBJECT_HANDLE> out(max);
    CK_ULONG count = 0;
    rv = fn()->C_FindObjects(s, out.data(), out.size(), &count);
    CK_RV frv = fn()->C_FindObjectsFinal(s);  // on every path
    if (rv != CKR_OK) {
      return fail(ckError("C_FindObjects", rv, context_));
    }
    if (frv != CKR_OK) {
      return fail(ckError("C_FindObjectsFinal", frv, context_));
    }
    out.resize(count);
    return out;
  }

  /// Two-call attribute read.
  Result<pki::Bytes> attribute(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type) {
    CK_ATTRIBUTE a = attr(type, nullptr, 0);
    CK_RV rv = fn()->C_GetAttributeValue(s, h, &a, 1);
    if (rv != CKR_OK) {
      return fail(ckError("C_GetAttributeValue", rv, context_));
    }
    if (a.ulValueLen == CK_UNAVAILABLE_INFORMATION) {
      return fail(Errc::hsm, "attribute unavailable", context_);
    }
    pki::Bytes value(a.ulValueLen);
    a.pValue = value.data();
    rv = fn()->C_GetAttributeValue(s, h, &a, 1);
    if (rv != CKR_OK) {
      return fail(ckError("C_GetAttributeValue", rv, context_));
    }
    value.resize(a.ulValueLen);
    return value;
  }

  /// `e` about the key with this label on this token.
  Error keyError(Error e, const std::string& label) const {
    e.context = context_ + " key '" + label + "'";
    return e;
  }

  /// The key pair described by a private-key handle. The public half comes from the
  /// private key's CKA_PUBLIC_KEY_INFO (how keys generated here keep it), else from the
  /// public-key object with the same CKA_ID (keys made by other tools).
  Result<KeyInfo> describe(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE priv) {
    auto id = attribute(s, priv, CKA_ID);
    if (!id) {
      return fail(id.error());
    }
    auto label = attribute(s, priv, CKA_LABEL);
    std::string labelText = label ? std::string(label->begin(), label->end()) : std::string();
    if (auto spki = attribute(s, priv, CKA_PUBLIC_KEY_INFO); spki && !spki->empty()) {
      auto pub = pki::EcPublicKey::fromSpkiDer(*spki);
      if (!pub) {
        return fail(keyError(pub.error(), labelText));
      }
      return KeyInfo{*id, labelText, Pkcs11Uri::forKey(options_.tokenLabel, labelText, *id), *pub};
    }
    CK_OBJECT_CLASS cls = CKO_PUBLIC_KEY;
    CK_KEY_TYPE kt = CKK_EC;
    std::vector<CK_ATTRIBUTE> tmpl{attr(CKA_CLASS, &cls, sizeof cls), attr(CKA_KEY_TYPE, &kt, sizeof kt),
                                   attr(CKA_ID, id->data(), id->size())};
    auto pubs = find(s, tmpl, 2);
    if (!pubs) {
      return fail(pubs.error());
    }
    if (pubs->empty()) {
      return fail(Errc::notFound,
                  "private key '" + labelText + "' has no CKA_PUBLIC_KEY_INFO and no public key with its CKA_ID",
                  context_);
    }
    auto point = attribute(s, pubs->front(), CKA_EC_POINT);
    if (!point) {
      return fail(point.error());
    }
    return describePoint(*point, *id, labelText);
  }

  /// Stores the SubjectPublicKeyInfo in a private key's CKA_PUBLIC_KEY_INFO (PKCS#11 2.40),
  /// where kmsd keeps the public half: one token object per key. The token's answer.
  CK_RV setPublicKeyInfo(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE priv, const pki::EcPublicKey& key) {
    pki::Bytes spki = key.spkiDer();
    CK_ATTRIBUTE info = attr(CKA_PUBLIC_KEY_INFO, spki.data(), spki.size());
    return fn()->C_SetAttributeValue(s, priv, &info, 1);
  }

  /// For a token that refused CKA_PUBLIC_KEY_INFO (`refused`: its answer): the public half
  /// as a public-key object with the key's CKA_ID.
  Result<void> createPublicObject(CK_SESSION_HANDLE s, const KeyInfo& key, const pki::Bytes& ecPoint, CK_RV refused) {
    PublicKeyTemplate tmpl(true, key.label, key.id, ecPoint);
    CK_OBJECT_HANDLE pub = CK_INVALID_HANDLE;
    CK_RV rv = fn()->C_CreateObject(s, tmpl.data(), tmpl.size(), &pub);
    if (rv != CKR_OK) {
      Error e = ckError("C_CreateObject", rv, context_);
      e.message = "cannot keep the public key on the token (C_SetAttributeValue CKA_PUBLIC_KEY_INFO: " +
                  ckrName(refused) + "): " + e.message;
      return fail(std::move(e));
    }
    return ok();
  }

  /// The key pair from the public key's CKA_EC_POINT.
  Result<KeyInfo> describePoint(const pki::Bytes& point, const pki::Bytes& id, const std::string& label) {
    auto key = parseEcPoint(point);
    if (!key) {
      return fail(keyError(key.error(), label));
    }
    return KeyInfo{id, label, Pkcs11Uri::forKey(options_.tokenLabel, label, id), *key};
  }

  /// A key pair just generated: the private key's handle and the public key.
  struct NewKey {
    CK_OBJECT_HANDLE priv = CK_INVALID_HANDLE;
    KeyInfo info;
    pki::Bytes ecPoint;  ///< CKA_EC_POINT as the token gave it
  };

  /// C_GenerateKeyPair: the private key sensitive, not extractable, for signing only, on the
  /// token or a session object; the public half a session object, read and dropped.
  Result<NewKey> generatePair(CK_SESSION_HANDLE s, const std::string& label, const pki::Bytes& id, bool onToken) {
    CK_BBOOL yes = CK_TRUE;
    CK_BBOOL no = CK_FALSE;
    CK_BBOOL token = onToken ? CK_TRUE : CK_FALSE;
    CK_OBJECT_CLASS privClass = CKO_PRIVATE_KEY;
    CK_KEY_TYPE kt = CKK_EC;
    std::string lbl = label;
    pki::Bytes ckaId = id;
    PublicKeyTemplate pubTmpl(false, label, id);
    CK_ATTRIBUTE privTmpl[] = {
        attr(CKA_CLASS, &privClass, sizeof privClass),
        attr(CKA_KEY_TYPE, &kt, sizeof kt),
        attr(CKA_TOKEN, &token, sizeof token),
        attr(CKA_PRIVATE, &yes, sizeof yes),
        attr(CKA_SENSITIVE, &yes, sizeof yes),
        attr(CKA_EXTRACTABLE, &no, sizeof no),
        attr(CKA_SIGN, &yes, sizeof yes),
        // Sign-only: SoftHSM2 would otherwise also allow decrypt, unwrap and derive.
        attr(CKA_SIGN_RECOVER, &no, sizeof no),
        attr(CKA_DECRYPT, &no, sizeof no),
        attr(CKA_UNWRAP, &no, sizeof no),
        attr(CKA_DERIVE, &no, sizeof no),
        attr(CKA_LABEL, lbl.data(), lbl.size()),
        attr(CKA_ID, ckaId.data(), ckaId.size()),
    };
    CK_MECHANISM mech{CKM_EC_KEY_PAIR_GEN, nullptr, 0};
    CK_OBJECT_HANDLE pub = CK_INVALID_HANDLE;
    NewKey key;
    CK_RV rv = fn()->C_GenerateKeyPair(s, &mech, pubTmpl.data(), pubTmpl.size(), privTmpl, std::size(privTmpl),
                                       &pub, &key.priv);
    if (rv != CKR_OK) {
      return fail(ckError("C_GenerateKeyPair", rv, context_));
    }
    auto point = attribute(s, pub, CKA_EC_POINT);
    fn()->C_DestroyObject(s, pub);
    Result<KeyInfo> info = point ? describePoint(*point, id, label) : Result<KeyInfo>(fail(point.error()));
    if (!info) {
      fn()->C_DestroyObject(s, key.priv);  // leave no half-usable key behind
      return fail(info.error());
    }
    key.info = std::move(*info);
    key.ecPoint = std::move(*point);
    return key;
  }

  /// A new P-256 key on the token with its public half kept (setPublicKeyInfo, else
  /// createPublicObject). Generated in
  /// the token's memory (session objects) and copied onto the token with C_CopyObject:
  /// SoftHSM2's file store rewrites a generated token object's file for nearly every
  /// attribute (~30 times, 5-9 ms on ext4), a copied one about once (~1 ms). The key never
  /// leaves the token, and the copy keeps CKA_LOCAL, CKA_ALWAYS_SENSITIVE and
  /// CKA_NEVER_EXTRACTABLE. A token that will not copy it generates it in place.
  Result<NewKey> generate(CK_SESSION_HANDLE s, const std::string& label, const pki::Bytes& id) {
    auto inMemory = generatePair(s, label, id, false);
    if (!inMemory) {
      return fail(inMemory.error());
    }
    CK_RV infoRv = setPublicKeyInfo(s, inMemory->priv, inMemory->info.publicKey);
    CK_BBOOL yes = CK_TRUE;
    CK_ATTRIBUTE toToken = attr(CKA_TOKEN, &yes, sizeof yes);
    CK_OBJECT_HANDLE copy = CK_INVALID_HANDLE;
    CK_RV copyRv = fn()->C_CopyObject(s, inMemory->priv, &toToken, 1, &copy);
    fn()->C_DestroyObject(s, inMemory->priv);
    NewKey key;
    if (copyRv == CKR_OK) {
      key = std::move(*inMemory);
      key.priv = copy;
      if (infoRv != CKR_OK) {  // refused on the session key; the token copy may take it
        infoRv = setPublicKeyInfo(s, key.priv, key.info.publicKey);
      }
    } else {
      auto onToken = generatePair(s, label, id, true);
      if (!onToken) {
        return fail(onToken.error());
      }
      key = std::move(*onToken);
      infoRv = setPublicKeyInfo(s, key.priv, key.info.publicKey);
    }
    if (infoRv != CKR_OK) {
      if (auto kept = createPublicObject(s, key.info, key.ecPoint, infoRv); !kept) {
        fn()->C_DestroyObject(s, key.priv);
        return fail(kept.error());
      }
    }
    return key;
  }

  /// Private-key handles matching a URI (id preferred, else object label).
  Result<std::vector<CK_OBJECT_HANDLE>> findPrivate(CK_SESSION_HANDLE s, const Pkcs11Uri& uri) {
    if (auto t = uri.path("token"); t && *t != options_.tokenLabel) {
      return fail(Errc::invalidArgument, "key URI names token '" + *t + "'", context_);
    }
    if (auto type = uri.path("type"); type && *type != "private") {
      return fail(Errc::invalidArgument, "key URI must name a private key (type=private)", context_);
    }
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_KEY_TYPE kt = CKK_EC;
    std::vector<CK_ATTRIBUTE> tmpl{attr(CKA_CLASS, &cls, sizeof cls), attr(CKA_KEY_TYPE, &kt, sizeof kt)};
    pki::Bytes id = uri.id();
    std::string object = uri.path("object").value_or("");
    if (!id.empty()) {
      tmpl.push_back(attr(CKA_ID, id.data(), id.size()));
    } else if (!object.empty()) {
      tmpl.push_back(attr(CKA_LABEL, object.data(), object.size()));
    } else {
      return fail(Errc::invalidArgument, "key URI has neither id nor object", context_);
    }
    return find(s, tmpl, 2);
  }

  Result<void> replaceSession(CK_SESSION_HANDLE& s) {
    fn()->C_CloseSession(s);
    CK_SESSION_HANDLE fresh = CK_INVALID_HANDLE;
    CK_RV rv = fn()->C_OpenSession(slot_, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr, &fresh);
    if (rv != CKR_OK) {
      return fail(ckError("C_OpenSession", rv, context_));
    }
    s = fresh;
    // If every session had died the login state is gone too: log in again.
    CK_SESSION_INFO info{};
    if (fn()->C_GetSessionInfo(s, &info) == CKR_OK && info.state != CKS_RW_USER_FUNCTIONS &&
        info.state != CKS_RO_USER_FUNCTIONS) {
      return login(s);
    }
    return ok();
  }

 private:
  void giveBack(CK_SESSION_HANDLE s) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      free_.push_back(s);
    }
    available_.notify_one();
  }

  std::shared_ptr<Module> module_;
  CK_SLOT_ID slot_;
  TokenOptions options_;
  std::string context_;
  std::mutex mutex_;
  std::condition_variable available_;
  std::vector<CK_SESSION_HANDLE> free_;
  std::atomic<unsigned> generation_{0};
  std::array<OpCounters, kOps> stats_;
  std::mutex catalog_;
};

// ---------------------------------------------------------------------------------------

KeySigner::KeySigner(std::shared_ptr<TokenImpl> token, KeyInfo info, unsigned long handle, unsigned generation)
    : token_(std::move(token)), info_(std::move(info)), handle_(handle), generation_(generation) {}

KeySigner::~KeySigner() = default;

Result<pki::RawSignature> KeySigner::signDigest(const pki::Digest& digest) {
  return timed(token_->stats(), kSign, [&]() -> Result<pki::RawSignature> {
    CK_FUNCTION_LIST* f = token_->fn();
    auto session = token_->lease();
    CK_MECHANISM mech{CKM_ECDSA, nullptr, 0};
    for (int attempt = 0; attempt < 2; ++attempt) {
      CK_OBJECT_HANDLE key = handle_.load(std::memory_order_acquire);
      unsigned current = token_->generation();
      if (attempt > 0 || current != generation_.load(std::memory_order_acquire)) {
        std::lock_guard<std::mutex> catalogLock(token_->catalog());
        auto found = token_->findPrivate(session.get(), info_.uri);
        if (!found || found->size() != 1) {
          return fail(Errc::notFound, "signing key is gone from the token", info_.uri.toString());
        }
        key = found->front();
        handle_.store(key, std::memory_order_release);
        generation_.store(current, std::memory_order_release);
      }
      CK_RV rv = f->C_SignInit(session.get(), &mech, key);
      if (rv == CKR_OK) {
        pki::RawSignature sig{};
        CK_ULONG len = sig.size();
        rv = f->C_Sign(session.get(), const_cast<CK_BYTE*>(digest.data()), digest.size(), sig.data(), &len);
        if (rv == CKR_OK) {
          if (len != sig.size()) {
            return fail(Errc::hsm, "C_Sign returned " + std::to_string(len) + " bytes, expected 64", token_->context());
          }
          return sig;
        }
      }
      const bool lost = sessionLost(rv);
      const bool handleStale = rv == CKR_KEY_HANDLE_INVALID || rv == CKR_OBJECT_HANDLE_INVALID;
      if (attempt == 0 && (lost || handleStale)) {
        // A stale handle may mean a lost login (private keys are then invisible): log in
        // again before the key is looked for, or it would seem gone.
        if (lost || !token_->ensureLoggedIn(session.get())) {
          if (auto r = session.renew(); !r) {
            return fail(r.error());
          }
        }
        continue;  // the next attempt re-finds the key
      }
      Error e = ckError(rv == CKR_OK ? "C_Sign" : "C_SignInit/C_Sign", rv, token_->context());
      return fail(e);
    }
    return fail(Errc::internal, "unreachable", token_->context());
  });
}

// ---------------------------------------------------------------------------------------

Result<std::unique_ptr<Token>> Token::open(const TokenOptions& options) {
  if (options.tokenLabel.empty()) {
    return fail(Errc::invalidArgument, "token label is empty");
  }
  auto module = Module::open(options.modulePath);
  if (!module) {
    return fail(module.error());
  }
  CK_FUNCTION_LIST* f = (*module)->fn();
  CK_ULONG count = 0;
  CK_RV rv = f->C_GetSlotList(CK_TRUE, nullptr, &count);
  if (rv != CKR_OK) {
    return fail(ckError("C_GetSlotList", rv, options.modulePath));
  }
  std::vector<CK_SLOT_ID> slots(count);
  rv = f->C_GetSlotList(CK_TRUE, slots.data(), &count);
  if (rv != CKR_OK) {
    return fail(ckError("C_GetSlotList", rv, options.modulePath));
  }
  slots.resize(count);
  std::vector<std::string> seen;
  for (CK_SLOT_ID slot : slots) {
    CK_TOKEN_INFO info{};
    if (f->C_GetTokenInfo(slot, &info) != CKR_OK) {
      continue;
    }
    if ((info.flags & CKF_TOKEN_INITIALIZED) == 0) {
      continue;
    }
    std::string label = trimLabel(info.label, sizeof info.label);
    if (label != options.tokenLabel) {
      seen.push_back("'" + label + "'");
      continue;
    }
    auto impl = std::make_shared<TokenImpl>(*module, slot, options);
    if (auto r = impl->openPool(); !r) {
      return fail(r.error());
    }
    return std::unique_ptr<Token>(new Token(std::move(impl)));
  }
  std::string present = seen.empty() ? "no initialised tokens" : "tokens present: ";
  for (std::size_t i = 0; i < seen.size(); ++i) {
    present += (i > 0 ? ", " : "") + seen[i];
  }
  return fail(Errc::notFound, "no token labelled '" + options.tokenLabel + "' (" + present + ")", options.modulePath);
}

Token::~Token() = default;

const std::string& Token::label() const {
  return impl_->options().tokenLabel;
}

Result<pki::Bytes> Token::newKeyId() {
  pki::Bytes id(kIdLength);
  if (::getrandom(id.data(), id.size(), 0) != static_cast<ssize_t>(id.size())) {
    return fail(Errc::io, "getrandom failed for CKA_ID");
  }
  return id;
}

Pkcs11Uri Token::keyUri(const std::string& label, const pki::Bytes& id) const {
  return Pkcs11Uri::forKey(impl_->options().tokenLabel, label, id);
}

Result<std::unique_ptr<KeySigner>> Token::generateSigner(const std::string& label, const pki::Bytes& chosenId) {
  return timed(impl_->stats(), kGenerate, [&]() -> Result<std::unique_ptr<KeySigner>> {
    if (label.empty()) {
      return fail(Errc::invalidArgument, "key label is empty", impl_->context());
    }
    if (chosenId.size() > 64) {
      return fail(Errc::invalidArgument, "CKA_ID longer than 64 bytes", impl_->context());
    }
    pki::Bytes id = chosenId;
    if (id.empty()) {
      auto fresh = newKeyId();
      if (!fresh) {
        return fail(fresh.error());
      }
      id = std::move(*fresh);
    }
    return impl_->withSession([&](CK_SESSION_HANDLE session) -> Result<std::unique_ptr<KeySigner>> {
      std::lock_guard<std::mutex> catalogLock(impl_->catalog());  // after the session: the order signDigest uses
      auto key = impl_->generate(session, label, id);
      if (!key) {
        return fail(key.error());
      }
      return std::unique_ptr<KeySigner>(new KeySigner(impl_, std::move(key->info), key->priv, impl_->generation()));
    });
  });
}

Result<void> Token::checkLogin() {
  return impl_->withSession([](CK_SESSION_HANDLE) -> Result<void> { return ok(); });
}

TokenStats Token::stats() const {
  static constexpr std::array<const char*, kOps> kNames{"sign", "generate", "find", "destroy"};
  TokenStats out;
  for (std::size_t op = 0; op < kOps; ++op) {
    const OpCounters& c = impl_->stats()[op];
    TokenStats::Op& o = out.ops[op];
    o.name = kNames[op];
    o.ok = c.ok.load(std::memory_order_relaxed);
    o.failed = c.failed.load(std::memory_order_relaxed);
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i < o.buckets.size(); ++i) {
      cumulative += c.buckets[i].load(std::memory_order_relaxed);
      o.buckets[i] = cumulative;
    }
    o.sumSeconds = static_cast<double>(c.sumNanos.load(std::memory_order_relaxed)) / 1e9;
  }
  return out;
}

void Token::withObjectsUnchanged(const std::function<void()>& body) {
  std::lock_guard<std::mutex> catalogLock(impl_->catalog());
  body();
}

Result<KeyInfo> Token::generateKey(const std::string& label) {
  auto signer = generateSigner(label);
  if (!signer) {
    return fail(signer.error());
  }
  return (*signer)->info();
}

Result<std::vector<KeyInfo>> Token::listKeys() {
  return impl_->withSession([&](CK_SESSION_HANDLE session) -> Result<std::vector<KeyInfo>> {
    std::lock_guard<std::mutex> catalogLock(impl_->catalog());  // after the session: the order signDigest uses
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_KEY_TYPE kt = CKK_EC;
    std::vector<CK_ATTRIBUTE> tmpl{attr(CKA_CLASS, &cls, sizeof cls), attr(CKA_KEY_TYPE, &kt, sizeof kt)};
    auto handles = impl_->find(session, tmpl, 4096);
    if (!handles) {
      return fail(handles.error());
    }
    std::vector<KeyInfo> out;
    for (CK_OBJECT_HANDLE h : *handles) {
      auto info = impl_->describe(session, h);
      if (!info) {
        return fail(info.error());
      }
      out.push_back(std::move(*info));
    }
    std::sort(out.begin(), out.end(), [](const KeyInfo& a, const KeyInfo& b) { return a.label < b.label; });
    return out;
  });
}

Result<std::unique_ptr<KeySigner>> Token::signer(const Pkcs11Uri& uri) {
  return timed(impl_->stats(), kFind, [&]() -> Result<std::unique_ptr<KeySigner>> {
    auto found = impl_->withSession([&](CK_SESSION_HANDLE session) -> Result<std::unique_ptr<KeySigner>> {
      std::lock_guard<std::mutex> catalogLock(impl_->catalog());  // after the session: the order signDigest uses
      unsigned generation = impl_->generation();
      auto handles = impl_->findPrivate(session, uri);
      if (!handles) {
        return fail(handles.error());
      }
      if (handles->empty()) {
        return fail(Errc::notFound, "no private key matches", uri.toString());
      }
      if (handles->size() > 1) {
        return fail(Errc::invalidArgument, "several private keys match; name the key by id", uri.toString());
      }
      // Only a key made inside a token and never out of it is used: one placed on the token
      // by someone else (imported, extractable, a decrypt key) is refused.
      struct Required {
        CK_ATTRIBUTE_TYPE type;
        bool value;
        const char* name;
      };
      for (const Required& r : {Required{CKA_SIGN, true, "CKA_SIGN"}, Required{CKA_SENSITIVE, true, "CKA_SENSITIVE"},
                                Required{CKA_EXTRACTABLE, false, "CKA_EXTRACTABLE"},
                                Required{CKA_NEVER_EXTRACTABLE, true, "CKA_NEVER_EXTRACTABLE"},
                                Required{CKA_LOCAL, true, "CKA_LOCAL"}}) {
        auto v = impl_->attribute(session, handles->front(), r.type);
        if (!v) {
          return fail(v.error());
        }
        const bool actual = v->size() == sizeof(CK_BBOOL) && v->front() != CK_FALSE;
        if (actual != r.value) {
          return fail(Errc::hsm,
                      std::string("key refused: ") + r.name + " is " + (actual ? "true" : "false") +
                          "; kmsd signs only with keys generated inside the token (sign, sensitive, never "
                          "extractable, local)",
                      uri.toString());
        }
      }
      auto info = impl_->describe(session, handles->front());
      if (!info) {
        return fail(info.error());
      }
      return std::unique_ptr<KeySigner>(new KeySigner(impl_, std::move(*info), handles->front(), generation));
    });
    if (!found) {
      return fail(found.error());
    }
    std::unique_ptr<KeySigner> out = std::move(*found);
    // The public half kept beside it (CKA_PUBLIC_KEY_INFO or a public-key object) must be
    // this key's: a swapped public object would make every signature unverifiable.
    static constexpr std::string_view kProbe = "kmsd key check";
    auto sig = out->signMessage(pki::asBytes(kProbe));
    if (!sig) {
      return fail(sig.error());
    }
    auto good = out->publicKey().verifyEs256(pki::asBytes(kProbe), *sig);
    if (!good || !*good) {
      return fail(Errc::hsm, "key refused: its public key object does not match the private key", uri.toString());
    }
    return out;
  });
}

Result<void> Token::destroyKey(const Pkcs11Uri& uri) {
  return timed(impl_->stats(), kDestroy, [&]() -> Result<void> {
    return impl_->withSession([&](CK_SESSION_HANDLE session) -> Result<void> {
      std::lock_guard<std::mutex> catalogLock(impl_->catalog());  // after the session: the order signDigest uses
      auto handles = impl_->findPrivate(session, uri);
      if (!handles) {
        return fail(handles.error());
      }
      if (handles->size() != 1) {
        return fail(handles->empty() ? Errc::notFound : Errc::invalidArgument,
                    handles->empty() ? "no private key matches" : "several private keys match", uri.toString());
      }
      auto id = impl_->attribute(session, handles->front(), CKA_ID);
      if (!id) {
        return fail(id.error());
      }
      CK_OBJECT_CLASS cls = CKO_PUBLIC_KEY;
      std::vector<CK_ATTRIBUTE> tmpl{attr(CKA_CLASS, &cls, sizeof cls), attr(CKA_ID, id->data(), id->size())};
      auto pubs = impl_->find(session, tmpl, 16);
      if (!pubs) {
        return fail(pubs.error());
      }
      CK_RV rv = impl_->fn()->C_DestroyObject(session, handles->front());
      if (rv != CKR_OK) {
        return fail(ckError("C_DestroyObject", rv, impl_->context()));
      }
      for (CK_OBJECT_HANDLE h : *pubs) {
        rv = impl_->fn()->C_DestroyObject(session, h);
        if (rv != CKR_OK) {
          return fail(ckError("C_DestroyObject", rv, impl_->context()));
        }
      }
      return ok();
    });
  });
}

}  // namespace kms::hsm
