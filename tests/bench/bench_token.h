#pragma once
// A SoftHSM2 token with one P-256 key for the signing benchmarks, and the token's own
// ceiling: a bare C_SignInit + C_Sign loop on it (measured in the same run as what is compared).
#include <benchmark/benchmark.h>
#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include <p11-kit/pkcs11.h>

#include "hsm/token.h"
#include "pki/signer.h"
#include "softhsm_token.h"

namespace kms::bench {

struct Fixture {
  std::unique_ptr<kms::test::SoftHsmToken> softhsm;
  std::unique_ptr<kms::hsm::Token> token;
  std::unique_ptr<kms::hsm::KeySigner> signer;
  std::unique_ptr<kms::pki::SoftwareKey> softwareKey;
  CK_FUNCTION_LIST* fn = nullptr;
  CK_SLOT_ID slot = 0;
  kms::pki::Bytes keyId;
};

inline Fixture& fx() {
  static Fixture f;
  return f;
}

[[noreturn]] inline void die(const std::string& what) {
  std::fprintf(stderr, "bench: %s\n", what.c_str());
  std::exit(1);
}

inline void setUp() {
  Fixture& f = fx();
  f.softhsm = std::make_unique<kms::test::SoftHsmToken>("bench");
  kms::hsm::TokenOptions options{kms::test::SoftHsmToken::modulePath(), "bench", f.softhsm->pinFile(), 4};
  auto token = kms::hsm::Token::open(options);
  if (!token) {
    die(token.error().toString());
  }
  f.token = std::move(*token);
  auto key = f.token->generateKey("bench-key");
  if (!key) {
    die(key.error().toString());
  }
  f.keyId = key->id;
  auto signer = f.token->signer(key->uri);
  if (!signer) {
    die(signer.error().toString());
  }
  f.signer = std::move(*signer);
  f.softwareKey = std::move(*kms::pki::SoftwareKey::generate());

  // The bare reference reaches the same (already initialised) module directly.
  void* handle = ::dlopen(options.modulePath.c_str(), RTLD_NOW | RTLD_LOCAL);
  auto getList = reinterpret_cast<CK_C_GetFunctionList>(::dlsym(handle, "C_GetFunctionList"));
  if (getList == nullptr || getList(&f.fn) != CKR_OK) {
    die("C_GetFunctionList");
  }
  CK_SLOT_ID slots[16];
  CK_ULONG n = 16;
  f.fn->C_GetSlotList(CK_TRUE, slots, &n);
  for (CK_ULONG i = 0; i < n; ++i) {
    CK_TOKEN_INFO info{};
    if (f.fn->C_GetTokenInfo(slots[i], &info) == CKR_OK &&
        std::string(reinterpret_cast<char*>(info.label), 5) == "bench") {
      f.slot = slots[i];
    }
  }
}

/// Closes the token while SoftHSM2 is still loaded (its static objects go before ours at
/// exit, and a session closed after them crashes).
inline void tearDown() {
  Fixture& f = fx();
  f.signer.reset();
  f.token.reset();
  f.softhsm.reset();
}

inline kms::pki::Digest digestFor(std::uint64_t i) {
  kms::pki::Digest d{};
  for (int b = 0; b < 8; ++b) {
    d[static_cast<std::size_t>(b)] = static_cast<std::uint8_t>(i >> (8 * b));
  }
  return d;
}

/// A session of its own on the bench token with the bench key found, for bare C_Sign loops.
struct BareSession {
  CK_SESSION_HANDLE session = CK_INVALID_HANDLE;
  CK_OBJECT_HANDLE key = CK_INVALID_HANDLE;
  [[nodiscard]] bool ok() const { return key != CK_INVALID_HANDLE; }
  /// One C_SignInit + C_Sign of digestFor(i).
  [[nodiscard]] bool sign(std::uint64_t i) const {
    CK_MECHANISM mech{CKM_ECDSA, nullptr, 0};
    kms::pki::Digest d = digestFor(i);
    CK_BYTE sig[64];
    CK_ULONG len = sizeof sig;
    return fx().fn->C_SignInit(session, &mech, key) == CKR_OK &&
           fx().fn->C_Sign(session, d.data(), d.size(), sig, &len) == CKR_OK;
  }
};

inline BareSession openBareSession() {
  Fixture& f = fx();
  BareSession b;
  if (f.fn->C_OpenSession(f.slot, CKF_SERIAL_SESSION, nullptr, nullptr, &b.session) != CKR_OK) {
    return b;
  }
  CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
  CK_ATTRIBUTE tmpl[] = {{CKA_CLASS, &cls, sizeof cls}, {CKA_ID, f.keyId.data(), f.keyId.size()}};
  CK_ULONG found = 0;
  f.fn->C_FindObjectsInit(b.session, tmpl, 2);
  f.fn->C_FindObjects(b.session, &b.key, 1, &found);
  f.fn->C_FindObjectsFinal(b.session);
  if (found != 1) {
    b.key = CK_INVALID_HANDLE;
  }
  return b;
}

/// The token's ceiling: C_SignInit + C_Sign on a session of its own, no kmsd code.
inline void BM_BarePkcs11Sign(benchmark::State& state) {
  const BareSession b = openBareSession();
  if (!b.ok()) {
    state.SkipWithError("no session or key");
    return;
  }
  std::uint64_t i = static_cast<std::uint64_t>(state.thread_index()) << 40;
  for (auto _ : state) {
    if (!b.sign(++i)) {
      state.SkipWithError("C_Sign");
      break;
    }
  }
  fx().fn->C_CloseSession(b.session);
  state.counters["sig/s"] = benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

}  // namespace kms::bench
