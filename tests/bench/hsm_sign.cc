// ES256 signatures per second through hsm/ on a SoftHSM2 token, beside two references
// measured in the same run: a bare C_SignInit+C_Sign loop on the same token (the
// token's own ceiling) and in-process OpenSSL signing.
#include "bench_token.h"

namespace {

using kms::bench::BM_BarePkcs11Sign;
using kms::bench::digestFor;
using kms::bench::fx;

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
  kms::bench::setUp();
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  kms::bench::tearDown();
  return 0;
}
