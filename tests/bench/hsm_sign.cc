// ES256 signatures per second through hsm/ on a SoftHSM2 token, beside two references
// measured in the same run: a bare C_SignInit+C_Sign loop on the same token (the
// token's own ceiling) and in-process OpenSSL signing.
#include <benchmark/benchmark.h>
#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <vector>

#include <p11-kit/pkcs11.h>

#include "hsm/token.h"
#include "pki/signer.h"
#include "softhsm_token.h"

namespace {

struct Fixture {
  std::unique_ptr<kms::test::SoftHsmToken> softhsm;
  std::unique_ptr<kms::hsm::Token> token;
  std::unique_ptr<kms::hsm::KeySigner> signer;
  std::unique_ptr<kms::pki::SoftwareKey> softwareKey;
  CK_FUNCTION_LIST* fn = nullptr;
  CK_SLOT_ID slot = 0;
  kms::pki::Bytes keyId;
};

Fixture& fx() {
  static Fixture f;
  return f;
}

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "hsm_sign: %s\n", what.c_str());
  std::exit(1);
}

void setUp() {
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

kms::pki::Digest digestFor(std::uint64_t i) {
  kms::pki::Digest d{};
  for (int b = 0; b < 8; ++b) {
    d[static_cast<std::size_t>(b)] = static_cast<std::uint8_t>(i >> (8 * b));
  }
  return d;
}

void BM_HsmLayerSign(benchmark::State& state) {
  std::uint64_t i = static_cast<std::uint64_t>(state.thread_index()) << 40;
  for (auto _ : state) {
    auto sig = fx().signer->signDigest(digestFor(++i));
    if (!sig) {
      state.SkipWithError(sig.error().toString().c_str());
      break;
    }
    benchmark::DoNotOptimize(sig->data());
  }
  state.counters["sig/s"] = benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

void BM_BarePkcs11Sign(benchmark::State& state) {
  Fixture& f = fx();
  CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
  if (f.fn->C_OpenSession(f.slot, CKF_SERIAL_SESSION, nullptr, nullptr, &s) != CKR_OK) {
    state.SkipWithError("C_OpenSession");
    return;
  }
  CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
  CK_ATTRIBUTE tmpl[] = {{CKA_CLASS, &cls, sizeof cls}, {CKA_ID, f.keyId.data(), f.keyId.size()}};
  CK_OBJECT_HANDLE key = CK_INVALID_HANDLE;
  CK_ULONG found = 0;
  f.fn->C_FindObjectsInit(s, tmpl, 2);
  f.fn->C_FindObjects(s, &key, 1, &found);
  f.fn->C_FindObjectsFinal(s);
  if (found != 1) {
    state.SkipWithError("key not found");
    return;
  }
  CK_MECHANISM mech{CKM_ECDSA, nullptr, 0};
  std::uint64_t i = static_cast<std::uint64_t>(state.thread_index()) << 40;
  for (auto _ : state) {
    kms::pki::Digest d = digestFor(++i);
    CK_BYTE sig[64];
    CK_ULONG len = sizeof sig;
    if (f.fn->C_SignInit(s, &mech, key) != CKR_OK || f.fn->C_Sign(s, d.data(), d.size(), sig, &len) != CKR_OK) {
      state.SkipWithError("C_Sign");
      break;
    }
    benchmark::DoNotOptimize(sig);
  }
  f.fn->C_CloseSession(s);
  state.counters["sig/s"] = benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

void BM_OpenSslSign(benchmark::State& state) {
  std::uint64_t i = 0;
  for (auto _ : state) {
    auto sig = fx().softwareKey->signDigest(digestFor(++i));
    benchmark::DoNotOptimize(sig->data());
  }
  state.counters["sig/s"] = benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

void BM_HsmGenerateKey(benchmark::State& state) {
  int i = 0;
  for (auto _ : state) {
    auto signer = fx().token->generateSigner("gen-" + std::to_string(state.thread_index()) + "-" + std::to_string(++i));
    if (!signer) {
      state.SkipWithError(signer.error().toString().c_str());
      break;
    }
    benchmark::DoNotOptimize(signer->get());
  }
  state.counters["keys/s"] = benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

BENCHMARK(BM_HsmGenerateKey)->UseRealTime()->Iterations(50)->Repetitions(4);
BENCHMARK(BM_BarePkcs11Sign)->Threads(1)->Threads(2)->UseRealTime()->MinTime(2.0);
BENCHMARK(BM_HsmLayerSign)->Threads(1)->Threads(2)->UseRealTime()->MinTime(2.0);
BENCHMARK(BM_OpenSslSign)->Threads(1)->UseRealTime()->MinTime(2.0);

}  // namespace

int main(int argc, char** argv) {
  setUp();
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  fx().signer.reset();
  fx().token.reset();
  return 0;
}
