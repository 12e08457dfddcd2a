// tests/bench/metrics_scrape: what kmsd's Prometheus metrics cost (see tests/bench/README.md).
//
//   BM_Scrape/certs/limit/renewed   Metrics::render (a whole GET /metrics but HTTP) over a real
//                                   SQLite state DB of `certs` synthetic certificates, with
//                                   [metrics] per_certificate_limit `limit`; `renewed` 1: after
//                                   every certificate was renewed once since kmsd started (its
//                                   attempt and publication counters). ms per scrape, bytes.
//   BM_ListStatus/certs             the state DB read alone (Store::listStatus), part of the above.
//   BM_AlertEvaluation/certs        one evaluation of kmsd's own alert conditions: the facts
//                                   read from the state DB (AlertLog::facts) and the rules run.
//   BM_SigningCounters              what SigningService::sign adds to each request for the
//                                   metrics: two steady_clock reads and SigningCounters::signedOne.
//   BM_MetricsCount                 Metrics::count, the event sink's listener, per event.
//   BM_ObserveRequest               Metrics::observeRequest, per ACME / STI-PA request.
#include <benchmark/benchmark.h>

#include <sys/stat.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "alerts/conditions.h"
#include "events/event_sink.h"
#include "metrics/exposition.h"
#include "metrics/metrics.h"
#include "sandbox.h"
#include "signing/signing_service.h"
#include "storage/alert_log.h"
#include "storage/db.h"
#include "storage/store.h"
#include "synthetic_state.h"

namespace {

using kms::daemon::EventRecord;
using kms::daemon::Metrics;

[[noreturn]] void die(const std::string& what) {
  (void)std::fprintf(stderr, "metrics_scrape: %s\n", what.c_str());
  std::exit(1);
}

/// A state DB of N synthetic certificates (100 key rows; no token: render reads no key).
struct StateDb {
  kms::test::Sandbox sandbox;
  std::unique_ptr<kms::storage::Db> db;
  std::unique_ptr<kms::storage::Store> store;
  std::unique_ptr<kms::daemon::LockedStore> locked;
};

StateDb& stateWith(long certs) {
  static std::map<long, std::unique_ptr<StateDb>> made;
  std::unique_ptr<StateDb>& s = made[certs];
  if (s) {
    return *s;
  }
  s = std::make_unique<StateDb>();
  const auto t0 = std::chrono::steady_clock::now();
  auto db = kms::storage::Db::open(s->sandbox.file("kmsd.db"), {});
  if (!db) {
    die(db.error().toString());
  }
  s->db = std::move(*db);
  s->store = kms::storage::makeSqliteStore(*s->db);
  std::vector<std::string> keys;
  keys.reserve(100);
  for (int i = 0; i < 100; ++i) {
    keys.push_back("pkcs11:token=bench;id=%" + std::to_string(10 + i) + ";type=private");
  }
  if (auto r = kms::bench::writeSyntheticCertificates(*s->store, keys, certs, std::time(nullptr)); !r) {
    die(r.error().toString());
  }
  s->locked = std::make_unique<kms::daemon::LockedStore>(*s->store);
  struct stat st {};
  ::stat(s->sandbox.file("kmsd.db").c_str(), &st);
  (void)std::fprintf(stderr, "state DB with %ld certificates written in %.1f s (%.1f MiB)\n", certs,
               std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(),
               static_cast<double>(st.st_size) / (1024.0 * 1024.0));
  return *s;
}

/// The signing counters every kmsd's scrape includes (a collector, as daemon.cc adds it).
kms::daemon::SigningCounters& signingCounters() {
  static kms::daemon::SigningCounters counters;
  return counters;
}

/// Metrics as kmsd keeps them: the signing collector, a few requests counted; with
/// `renewedCerts`, each of that many certificates activated and published once since the start.
std::unique_ptr<Metrics> metricsAfter(long renewedCerts) {
  auto m = std::make_unique<Metrics>();
  m->addCollector([](kms::daemon::Exposition& out) { writeSigningMetrics(signingCounters(), out); });
  for (const char* action : {"directory", "newNonce", "newOrder", "finalize"}) {
    m->observeRequest("acme", action, 200, 0.02);
  }
  m->observeRequest("sti_pa", "spc_token", 200, 0.05);
  for (long i = 0; i < renewedCerts; ++i) {
    const std::string name = kms::bench::certName(i);
    m->count(EventRecord{"KMS_CERT_PUBLISHED", kms::storage::EventLevel::info, name, "", {}});
    m->count(EventRecord{"KMS_CERT_ACTIVATED", kms::storage::EventLevel::info, name, "", {}});
  }
  return m;
}

void BM_Scrape(benchmark::State& state) {
  const long certs = state.range(0);
  const auto limit = static_cast<std::size_t>(state.range(1));
  StateDb& db = stateWith(certs);
  const std::unique_ptr<Metrics> metrics = metricsAfter(state.range(2) != 0 ? certs : 0);
  const std::int64_t now = std::time(nullptr);
  std::size_t bytes = 0;
  for ([[maybe_unused]] auto _ : state) {
    auto text = metrics->render(*db.locked, now, limit);
    if (!text) {
      state.SkipWithError(text.error().toString().c_str());
      break;
    }
    bytes = text->size();
    benchmark::DoNotOptimize(text->data());
  }
  state.counters["bytes"] = static_cast<double>(bytes);
}

void BM_ListStatus(benchmark::State& state) {
  StateDb& db = stateWith(state.range(0));
  const std::int64_t now = std::time(nullptr);
  for ([[maybe_unused]] auto _ : state) {
    auto rows = db.locked->with([&](kms::storage::Store& s) { return s.listStatus(now); });
    if (!rows) {
      state.SkipWithError(rows.error().toString().c_str());
      break;
    }
    benchmark::DoNotOptimize(rows->data());
  }
}

void BM_AlertEvaluation(benchmark::State& state) {
  StateDb& db = stateWith(state.range(0));
  auto log = kms::storage::AlertLog::open(db.sandbox.file("kmsd.db"));
  if (!log) {
    state.SkipWithError(log.error().toString().c_str());
    return;
  }
  kms::daemon::ConditionInputs in;
  in.now = std::time(nullptr);
  for (long i = 0; i < state.range(0); ++i) {
    in.configured.insert(kms::bench::certName(i));
  }
  std::size_t holding = 0;
  for ([[maybe_unused]] auto _ : state) {
    auto facts = (*log)->facts(in.now);
    if (!facts) {
      state.SkipWithError(facts.error().toString().c_str());
      break;
    }
    holding = kms::daemon::evaluateConditions(*facts, in).size();
    benchmark::DoNotOptimize(holding);
  }
  state.counters["holding"] = static_cast<double>(holding);
}

void BM_SigningCounters(benchmark::State& state) {
  kms::daemon::SigningCounters& counters = signingCounters();
  for ([[maybe_unused]] auto _ : state) {
    const auto start = std::chrono::steady_clock::now();
    counters.signedOne(std::chrono::steady_clock::now() - start);
  }
  state.counters["events/s"] = benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

Metrics& sharedMetrics() {
  static Metrics m;
  return m;
}

void BM_MetricsCount(benchmark::State& state) {
  // A renewal failure of one of 1,000 certificates: the costliest kind (three maps touched).
  std::vector<EventRecord> events;
  events.reserve(1000);
  for (int i = 0; i < 1000; ++i) {
    events.push_back({"KMS_RENEW_FAILED", kms::storage::EventLevel::warning, kms::bench::certName(i), "",
                      {{"step", "fetch_token"}}});
  }
  std::size_t i = static_cast<std::size_t>(state.thread_index()) * 500;
  for ([[maybe_unused]] auto _ : state) {
    sharedMetrics().count(events[i++ % events.size()]);
  }
  state.counters["events/s"] = benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

void BM_ObserveRequest(benchmark::State& state) {
  for ([[maybe_unused]] auto _ : state) {
    sharedMetrics().observeRequest("acme", "newOrder", 201, 0.015);
  }
  state.counters["events/s"] = benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

BENCHMARK(BM_Scrape)
    ->Args({1000, 1000, 0})
    ->Args({100000, 1000, 0})
    ->Args({100000, 100000, 0})
    ->Args({100000, 1000, 1})
    ->Args({100000, 100000, 1})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MinTime(2.0);
BENCHMARK(BM_ListStatus)->Arg(1000)->Arg(100000)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(2.0);
BENCHMARK(BM_AlertEvaluation)->Arg(1000)->Arg(100000)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(2.0);
BENCHMARK(BM_SigningCounters)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_MetricsCount)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_ObserveRequest)->Threads(1)->Threads(2)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
