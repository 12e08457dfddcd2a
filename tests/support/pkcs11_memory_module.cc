// An in-memory PKCS#11 token for unit tests of code above hsm/ (kmsd's lifecycle steps), so
// they run without SoftHSM2 and without files: one slot, one token, EC P-256 keys made and
// used with OpenSSL, objects kept in this process's memory for as long as it runs (the
// module is linked -z nodelete, so a dlclose does not forget them). It implements what
// hsm::Token calls and refuses the rest; it is a test double behind the interface the
// product uses for every token (PKCS#11), and the same behaviour is proven against
// SoftHSM2 by the hsm and integration tests.
//
// KMS_MEMORY_TOKEN_LABEL names the token ("kms-test" when unset).
// kms_memory_token_objects() counts the token objects (not session objects) it holds;
// kms_memory_token_reset() forgets them all.
#include <p11-kit/pkcs11.h>

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace {

using Bytes = std::vector<unsigned char>;

struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};

struct Object {
  std::map<CK_ATTRIBUTE_TYPE, Bytes> attrs;
  std::shared_ptr<EVP_PKEY> key;  ///< private keys only
  CK_SESSION_HANDLE owner = 0;    ///< 0: a token object; else the session it lives in

  [[nodiscard]] bool flag(CK_ATTRIBUTE_TYPE t) const {
    auto it = attrs.find(t);
    return it != attrs.end() && it->second.size() == sizeof(CK_BBOOL) && it->second[0] == CK_TRUE;
  }
  [[nodiscard]] CK_OBJECT_CLASS objectClass() const {
    auto it = attrs.find(CKA_CLASS);
    CK_OBJECT_CLASS c = CKO_DATA;
    if (it != attrs.end() && it->second.size() == sizeof c) {
      std::memcpy(&c, it->second.data(), sizeof c);
    }
    return c;
  }
};

struct Session {
  std::vector<CK_OBJECT_HANDLE> found;
  std::size_t next = 0;
  CK_OBJECT_HANDLE signKey = CK_INVALID_HANDLE;
};

struct State {
  std::mutex mutex;
  std::map<CK_OBJECT_HANDLE, Object> objects;
  std::map<CK_SESSION_HANDLE, Session> sessions;
  CK_ULONG nextHandle = 1;
  bool loggedIn = false;
};

State& state() {
  static State s;
  return s;
}

Bytes boolean(bool v) { return Bytes{static_cast<unsigned char>(v ? CK_TRUE : CK_FALSE)}; }

void apply(Object& o, CK_ATTRIBUTE_PTR tmpl, CK_ULONG count) {
  for (CK_ULONG i = 0; i < count; ++i) {
    const auto* p = static_cast<const unsigned char*>(tmpl[i].pValue);
    o.attrs[tmpl[i].type] = p != nullptr ? Bytes(p, p + tmpl[i].ulValueLen) : Bytes{};
  }
}

bool visible(const State& s, const Object& o, CK_SESSION_HANDLE session) {
  return (o.owner == 0 || o.owner == session) && (s.loggedIn || !o.flag(CKA_PRIVATE));
}

/// The object `handle` as `session` sees it, or nullptr.
Object* find(State& s, CK_OBJECT_HANDLE handle, CK_SESSION_HANDLE session) {
  auto it = s.objects.find(handle);
  return it != s.objects.end() && visible(s, it->second, session) ? &it->second : nullptr;
}

/// Keeps `o` (a token object when CKA_TOKEN says so, else `session`'s) and returns its handle.
CK_OBJECT_HANDLE keep(State& s, Object o, CK_SESSION_HANDLE session) {
  o.owner = o.flag(CKA_TOKEN) ? 0 : session;
  const CK_OBJECT_HANDLE h = s.nextHandle++;
  s.objects[h] = std::move(o);
  return h;
}

/// Runs `f(state, object)` under the lock for the object `handle` as `session` sees it;
/// CKR_OBJECT_HANDLE_INVALID when it sees none.
template <typename F>
CK_RV onObject(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE handle, F f) {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  Object* o = find(s, handle, session);
  return o == nullptr ? CKR_OBJECT_HANDLE_INVALID : f(s, *o);
}

/// Runs `f(state, session)` under the lock; CKR_SESSION_HANDLE_INVALID for an unknown session.
template <typename F>
CK_RV onSession(CK_SESSION_HANDLE handle, F f) {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  auto it = s.sessions.find(handle);
  return it == s.sessions.end() ? CKR_SESSION_HANDLE_INVALID : f(s, it->second);
}

/// CKA_EC_POINT as PKCS#11 v2.40 has it: a DER OCTET STRING around 04||x||y.
Bytes ecPoint(EVP_PKEY* key) {
  unsigned char raw[65];
  std::size_t len = 0;
  if (EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_PUB_KEY, raw, sizeof raw, &len) != 1 || len != 65) {
    return {};
  }
  Bytes out{0x04, 65};
  out.insert(out.end(), raw, raw + len);
  return out;
}

std::string tokenLabel() {
  const char* l = std::getenv("KMS_MEMORY_TOKEN_LABEL");
  return l != nullptr && *l != '\0' ? l : "kms-test";
}

void blankPadded(CK_UTF8CHAR* field, std::size_t size, const std::string& text) {
  std::fill_n(field, size, static_cast<CK_UTF8CHAR>(' '));
  std::copy_n(text.begin(), std::min(size, text.size()), field);
}

CK_RV initialize(CK_VOID_PTR /*args*/) { return CKR_OK; }
CK_RV finalize(CK_VOID_PTR /*reserved*/) { return CKR_OK; }

CK_RV getSlotList(CK_BBOOL /*present*/, CK_SLOT_ID_PTR list, CK_ULONG_PTR count) {
  if (count == nullptr) {
    return CKR_ARGUMENTS_BAD;
  }
  if (list != nullptr) {
    if (*count < 1) {
      *count = 1;
      return CKR_BUFFER_TOO_SMALL;
    }
    list[0] = 0;
  }
  *count = 1;
  return CKR_OK;
}

CK_RV getTokenInfo(CK_SLOT_ID slot, CK_TOKEN_INFO_PTR info) {
  if (slot != 0 || info == nullptr) {
    return slot != 0 ? CKR_SLOT_ID_INVALID : CKR_ARGUMENTS_BAD;
  }
  std::memset(info, 0, sizeof *info);
  blankPadded(info->label, sizeof info->label, tokenLabel());
  blankPadded(info->manufacturerID, sizeof info->manufacturerID, "kms tests");
  blankPadded(info->model, sizeof info->model, "in memory");
  blankPadded(info->serialNumber, sizeof info->serialNumber, "1");
  info->flags = CKF_TOKEN_INITIALIZED | CKF_LOGIN_REQUIRED | CKF_USER_PIN_INITIALIZED | CKF_RNG;
  info->ulMaxSessionCount = CK_EFFECTIVELY_INFINITE;
  info->ulMaxRwSessionCount = CK_EFFECTIVELY_INFINITE;
  info->ulMaxPinLen = 255;
  info->ulMinPinLen = 1;
  return CKR_OK;
}

CK_RV openSession(CK_SLOT_ID slot, CK_FLAGS /*flags*/, CK_VOID_PTR /*app*/, CK_NOTIFY /*notify*/,
                  CK_SESSION_HANDLE_PTR session) {
  if (slot != 0) {
    return CKR_SLOT_ID_INVALID;
  }
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  *session = s.nextHandle++;
  s.sessions[*session] = Session{};
  return CKR_OK;
}

CK_RV closeSession(CK_SESSION_HANDLE session) {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (s.sessions.erase(session) == 0) {
    return CKR_SESSION_HANDLE_INVALID;
  }
  std::erase_if(s.objects, [session](const auto& kv) { return kv.second.owner == session; });
  if (s.sessions.empty()) {
    s.loggedIn = false;  // closing the last session logs the application out
  }
  return CKR_OK;
}

CK_RV getSessionInfo(CK_SESSION_HANDLE session, CK_SESSION_INFO_PTR info) {
  return onSession(session, [info](State& s, Session& /*ses*/) {
    std::memset(info, 0, sizeof *info);
    info->slotID = 0;
    info->state = s.loggedIn ? CKS_RW_USER_FUNCTIONS : CKS_RW_PUBLIC_SESSION;
    info->flags = CKF_SERIAL_SESSION | CKF_RW_SESSION;
    return CKR_OK;
  });
}

CK_RV login(CK_SESSION_HANDLE session, CK_USER_TYPE user, CK_UTF8CHAR_PTR /*pin*/, CK_ULONG pinLen) {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (s.sessions.count(session) == 0) {
    return CKR_SESSION_HANDLE_INVALID;
  }
  if (user != CKU_USER || pinLen == 0) {
    return user != CKU_USER ? CKR_USER_TYPE_INVALID : CKR_PIN_INCORRECT;
  }
  if (s.loggedIn) {
    return CKR_USER_ALREADY_LOGGED_IN;
  }
  s.loggedIn = true;
  return CKR_OK;
}

CK_RV generateKeyPair(CK_SESSION_HANDLE session, CK_MECHANISM_PTR mech, CK_ATTRIBUTE_PTR pubTmpl, CK_ULONG pubCount,
                      CK_ATTRIBUTE_PTR privTmpl, CK_ULONG privCount, CK_OBJECT_HANDLE_PTR pub,
                      CK_OBJECT_HANDLE_PTR priv) {
  if (mech == nullptr || mech->mechanism != CKM_EC_KEY_PAIR_GEN) {
    return CKR_MECHANISM_INVALID;
  }
  std::shared_ptr<EVP_PKEY> key(EVP_EC_gen("P-256"), PkeyFree{});
  if (!key) {
    return CKR_DEVICE_ERROR;
  }
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (s.sessions.count(session) == 0) {
    return CKR_SESSION_HANDLE_INVALID;
  }
  Object pubObj;
  apply(pubObj, pubTmpl, pubCount);
  pubObj.attrs[CKA_EC_POINT] = ecPoint(key.get());
  pubObj.attrs[CKA_LOCAL] = boolean(true);
  Object privObj;
  apply(privObj, privTmpl, privCount);
  privObj.key = key;
  privObj.attrs[CKA_LOCAL] = boolean(true);
  privObj.attrs[CKA_ALWAYS_SENSITIVE] = boolean(privObj.flag(CKA_SENSITIVE));
  privObj.attrs[CKA_NEVER_EXTRACTABLE] = boolean(!privObj.flag(CKA_EXTRACTABLE));
  *pub = keep(s, std::move(pubObj), session);
  *priv = keep(s, std::move(privObj), session);
  return CKR_OK;
}

CK_RV copyObject(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object, CK_ATTRIBUTE_PTR tmpl, CK_ULONG count,
                 CK_OBJECT_HANDLE_PTR copy) {
  return onObject(session, object, [&](State& s, const Object& found) {
    Object o = found;
    apply(o, tmpl, count);
    *copy = keep(s, std::move(o), session);
    return CKR_OK;
  });
}

CK_RV createObject(CK_SESSION_HANDLE session, CK_ATTRIBUTE_PTR tmpl, CK_ULONG count, CK_OBJECT_HANDLE_PTR object) {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (s.sessions.count(session) == 0) {
    return CKR_SESSION_HANDLE_INVALID;
  }
  Object o;
  apply(o, tmpl, count);
  if (o.objectClass() == CKO_PRIVATE_KEY) {
    return CKR_TEMPLATE_INCONSISTENT;  // key material is never imported here
  }
  *object = keep(s, std::move(o), session);
  return CKR_OK;
}

CK_RV setAttributeValue(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object, CK_ATTRIBUTE_PTR tmpl, CK_ULONG count) {
  return onObject(session, object, [&](State& /*s*/, Object& found) {
    apply(found, tmpl, count);
    return CKR_OK;
  });
}

/// C_GetAttributeValue's answer from `found` (sizes, values, what it cannot give).
CK_RV readAttributes(const Object* found, CK_ATTRIBUTE_PTR tmpl, CK_ULONG count) {
  CK_RV rv = CKR_OK;
  for (CK_ULONG i = 0; i < count; ++i) {
    CK_ATTRIBUTE& a = tmpl[i];
    if (a.type == CKA_VALUE && found->key) {
      a.ulValueLen = CK_UNAVAILABLE_INFORMATION;
      rv = CKR_ATTRIBUTE_SENSITIVE;
      continue;
    }
    auto v = found->attrs.find(a.type);
    if (v == found->attrs.end()) {
      a.ulValueLen = CK_UNAVAILABLE_INFORMATION;
      rv = CKR_ATTRIBUTE_TYPE_INVALID;
      continue;
    }
    if (a.pValue == nullptr) {
      a.ulValueLen = v->second.size();
    } else if (a.ulValueLen < v->second.size()) {
      a.ulValueLen = CK_UNAVAILABLE_INFORMATION;
      rv = CKR_BUFFER_TOO_SMALL;
    } else {
      std::memcpy(a.pValue, v->second.data(), v->second.size());
      a.ulValueLen = v->second.size();
    }
  }
  return rv;
}

CK_RV getAttributeValue(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object, CK_ATTRIBUTE_PTR tmpl, CK_ULONG count) {
  return onObject(session, object,
                  [&](State& /*s*/, const Object& found) { return readAttributes(&found, tmpl, count); });
}

CK_RV findObjectsInit(CK_SESSION_HANDLE session, CK_ATTRIBUTE_PTR tmpl, CK_ULONG count) {
  return onSession(session, [&](State& s, Session& ses) {
    ses.found.clear();
    ses.next = 0;
    for (const auto& [handle, o] : s.objects) {
      bool match = visible(s, o, session);
      for (CK_ULONG i = 0; match && i < count; ++i) {
        auto v = o.attrs.find(tmpl[i].type);
        const auto* p = static_cast<const unsigned char*>(tmpl[i].pValue);
        match = v != o.attrs.end() && v->second.size() == tmpl[i].ulValueLen &&
                (tmpl[i].ulValueLen == 0 || std::memcmp(v->second.data(), p, tmpl[i].ulValueLen) == 0);
      }
      if (match) {
        ses.found.push_back(handle);
      }
    }
    return CKR_OK;
  });
}

CK_RV findObjects(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE_PTR out, CK_ULONG max, CK_ULONG_PTR count) {
  return onSession(session, [&](State& /*s*/, Session& f) {
    *count = 0;
    while (*count < max && f.next < f.found.size()) {
      out[(*count)++] = f.found[f.next++];
    }
    return CKR_OK;
  });
}

CK_RV findObjectsFinal(CK_SESSION_HANDLE session) {
  return onSession(session, [](State& /*s*/, Session& ses) {
    ses.found.clear();
    return CKR_OK;
  });
}

CK_RV destroyObject(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object) {
  return onObject(session, object, [object](State& s, Object& /*o*/) {
    s.objects.erase(object);
    return CKR_OK;
  });
}

CK_RV signInit(CK_SESSION_HANDLE session, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key) {
  if (mech == nullptr || mech->mechanism != CKM_ECDSA) {
    return CKR_MECHANISM_INVALID;
  }
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  auto ses = s.sessions.find(session);
  if (ses == s.sessions.end()) {
    return CKR_SESSION_HANDLE_INVALID;
  }
  if (!s.loggedIn) {
    return CKR_USER_NOT_LOGGED_IN;
  }
  auto it = s.objects.find(key);
  if (it == s.objects.end() || !it->second.key || !it->second.flag(CKA_SIGN)) {
    return CKR_KEY_HANDLE_INVALID;
  }
  ses->second.signKey = key;
  return CKR_OK;
}

/// ECDSA over a digest as CKM_ECDSA gives it: r||s, 32 bytes each.
CK_RV sign(CK_SESSION_HANDLE session, CK_BYTE_PTR data, CK_ULONG len, CK_BYTE_PTR sig, CK_ULONG_PTR sigLen) {
  std::shared_ptr<EVP_PKEY> key;
  {
    State& s = state();
    std::lock_guard<std::mutex> lock(s.mutex);
    auto ses = s.sessions.find(session);
    if (ses == s.sessions.end()) {
      return CKR_SESSION_HANDLE_INVALID;
    }
    if (sig == nullptr) {
      *sigLen = 64;
      return CKR_OK;  // a size query keeps the operation active
    }
    auto it = s.objects.find(ses->second.signKey);
    ses->second.signKey = CK_INVALID_HANDLE;
    if (it == s.objects.end()) {
      return CKR_OPERATION_NOT_INITIALIZED;
    }
    key = it->second.key;
  }
  if (*sigLen < 64) {
    *sigLen = 64;
    return CKR_BUFFER_TOO_SMALL;
  }
  std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> ctx(EVP_PKEY_CTX_new(key.get(), nullptr),
                                                                   EVP_PKEY_CTX_free);
  unsigned char der[80];
  std::size_t derLen = sizeof der;
  if (!ctx || EVP_PKEY_sign_init(ctx.get()) != 1 || EVP_PKEY_sign(ctx.get(), der, &derLen, data, len) != 1) {
    return CKR_FUNCTION_FAILED;
  }
  const unsigned char* p = der;
  std::unique_ptr<ECDSA_SIG, decltype(&ECDSA_SIG_free)> parsed(d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(derLen)),
                                                               ECDSA_SIG_free);
  if (!parsed || BN_bn2binpad(ECDSA_SIG_get0_r(parsed.get()), sig, 32) != 32 ||
      BN_bn2binpad(ECDSA_SIG_get0_s(parsed.get()), sig + 32, 32) != 32) {
    return CKR_FUNCTION_FAILED;
  }
  *sigLen = 64;
  return CKR_OK;
}

CK_FUNCTION_LIST makeList() {
  CK_FUNCTION_LIST l{};
  l.version = {2, 40};
  l.C_Initialize = initialize;
  l.C_Finalize = finalize;
  l.C_GetSlotList = getSlotList;
  l.C_GetTokenInfo = getTokenInfo;
  l.C_OpenSession = openSession;
  l.C_CloseSession = closeSession;
  l.C_GetSessionInfo = getSessionInfo;
  l.C_Login = login;
  l.C_GenerateKeyPair = generateKeyPair;
  l.C_CopyObject = copyObject;
  l.C_CreateObject = createObject;
  l.C_SetAttributeValue = setAttributeValue;
  l.C_GetAttributeValue = getAttributeValue;
  l.C_FindObjectsInit = findObjectsInit;
  l.C_FindObjects = findObjects;
  l.C_FindObjectsFinal = findObjectsFinal;
  l.C_DestroyObject = destroyObject;
  l.C_SignInit = signInit;
  l.C_Sign = sign;
  return l;
}

}  // namespace

extern "C" {

__attribute__((visibility("default"))) CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list) {
  static CK_FUNCTION_LIST functions = makeList();
  if (list == nullptr) {
    return CKR_ARGUMENTS_BAD;
  }
  *list = &functions;
  return CKR_OK;
}

/// Forgets every object (a fresh token for the next test in this process).
__attribute__((visibility("default"))) void kms_memory_token_reset() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  s.objects.clear();
}

__attribute__((visibility("default"))) int kms_memory_token_objects() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  return static_cast<int>(std::count_if(s.objects.begin(), s.objects.end(), [](const auto& kv) {
    return kv.second.owner == 0;
  }));
}

}  // extern "C"
