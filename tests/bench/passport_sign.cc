// PASSporTs per second with the key on a SoftHSM2 token, beside the token's own ceiling (a
// bare C_Sign loop) in the same run: the PASSporT alone (claims to compact JWS), and a whole
// ATIS-1000082 request as kmsd's route handles it (body parsed and checked, token signed,
// Identity header and response body written). 1 and 2 threads. The HTTP figures (wrk, plain
// and TLS, beside secsipidx) come with the TCP listener.
#include <chrono>
#include <string>

#include "bench_token.h"
#include "pki/passport.h"
#include "signing/signing_request.h"
#include "signing/signing_service.h"

namespace {

using kms::bench::BM_BarePkcs11Sign;
using kms::bench::fx;

/// Constructed, not assigned member by member (GCC 12's -Wrestrict misfires on the latter at -O2).
kms::pki::PassportClaims claims() {
  return kms::pki::PassportClaims{.type = kms::pki::PassportType::shaken,
                                  .orig = std::string("12155551212"),
                                  .dest = {std::string("12355551212")},
                                  .iat = 1767225600,
                                  .attest = std::string("A"),
                                  .origid = std::string("de305d54-75b4-431b-adb2-eb6b9e546014"),
                                  .div = {},
                                  .rcd = std::nullopt};
}

constexpr const char* kX5u = "https://cr.example.net/main/0A1B2C3D4E5F60718293A4B5C6D7E8F9.pem";

void BM_PassportSign(benchmark::State& state) {
  const kms::pki::PassportClaims c = claims();
  for ([[maybe_unused]] auto _ : state) {
    auto jws = kms::pki::signPassport(c, kX5u, *fx().signer);
    if (!jws) {
      state.SkipWithError(jws.error().toString().c_str());
      break;
    }
    benchmark::DoNotOptimize(jws->data());
  }
  state.counters["tokens/s"] = benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

/// One ATIS-1000082 request as the route handles it; false (the benchmark skipped) on an error.
bool signOneRequest(benchmark::State& state) {
  static const std::string body =
      R"({"signingRequest":{"attest":"A","dest":{"tn":["+1 235 555 1212"]},"orig":{"tn":"12155551212"}}})";
  auto request = kms::daemon::parseSigningRequest(body, 1767225600);
  auto* r = std::get_if<kms::daemon::SigningRequest>(&request);
  if (r == nullptr) {
    state.SkipWithError("request refused");
    return false;
  }
  auto jws = kms::pki::signPassport(r->claims, kX5u, *fx().signer);
  if (!jws) {
    state.SkipWithError(jws.error().toString().c_str());
    return false;
  }
  auto response = kms::daemon::signingResponseBody(kms::pki::identityHeader(*jws, kX5u, r->claims.type));
  benchmark::DoNotOptimize(response.data());
  return true;
}

void BM_SigningRequest(benchmark::State& state) {
  for ([[maybe_unused]] auto _ : state) {
    if (!signOneRequest(state)) {
      break;
    }
  }
  state.counters["tokens/s"] = benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

/// The same with what SigningService::sign adds for the metrics (the request timed, then
/// counted in the SigningCounters all signing threads share): the metrics' cost on signing.
void BM_SigningRequestCounted(benchmark::State& state) {
  static kms::daemon::SigningCounters counters;
  for ([[maybe_unused]] auto _ : state) {
    const auto start = std::chrono::steady_clock::now();
    if (!signOneRequest(state)) {
      break;
    }
    counters.signedOne(std::chrono::steady_clock::now() - start);
  }
  state.counters["tokens/s"] = benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

BENCHMARK(BM_BarePkcs11Sign)->Threads(1)->Threads(2)->UseRealTime()->MinTime(2.0);
BENCHMARK(BM_PassportSign)->Threads(1)->Threads(2)->UseRealTime()->MinTime(2.0);
BENCHMARK(BM_SigningRequest)->Threads(1)->Threads(2)->UseRealTime()->MinTime(2.0);
BENCHMARK(BM_SigningRequestCounted)->Threads(1)->Threads(2)->UseRealTime()->MinTime(2.0);

}  // namespace

int main(int argc, char** argv) {
  kms::bench::setUp();
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  kms::bench::tearDown();
  return 0;
}
