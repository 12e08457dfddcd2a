#include "signing/signing_service.h"

#include <array>
#include <span>

#include "metrics/exposition.h"
#include "pki/passport.h"
#include "signing/signing_record.h"

namespace kms::daemon {

SigningService::SigningService(SigningKeys& keys, const Clock& clock, std::size_t threads)
    : keys_(keys), clock_(clock) {
  for (std::size_t i = 0; i < std::max<std::size_t>(threads, 1); ++i) {
    threads_.emplace_back([this] { run(); });
  }
}

void SigningService::setRecord(std::unique_ptr<SigningRecord> record) {
  record_ = std::move(record);
}

SigningService::~SigningService() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  for (auto& t : threads_) {
    t.join();
  }
}

void SigningService::post(std::function<void()> job) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    jobs_.push_back(std::move(job));
  }
  wake_.notify_one();
}

void SigningService::run() {
  for (;;) {
    std::function<void()> job;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
      if (jobs_.empty()) {
        return;  // stopping, and nothing left
      }
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    job();
  }
}

void SigningCounters::observe(std::chrono::nanoseconds took) {
  const auto micros = std::chrono::duration_cast<std::chrono::microseconds>(took).count();
  for (std::size_t i = 0; i < kBoundsMicros.size(); ++i) {
    if (micros <= kBoundsMicros[i]) {
      buckets_[i].fetch_add(1, std::memory_order_relaxed);
      break;
    }
  }
  sumNanos_.fetch_add(static_cast<std::uint64_t>(took.count()), std::memory_order_relaxed);
}

void SigningCounters::signedOne(std::chrono::nanoseconds took) {
  signed_.fetch_add(1, std::memory_order_relaxed);
  observe(took);
}

void SigningCounters::refusedEarly(const std::string& messageId) {
  std::lock_guard<std::mutex> lock(refusedMutex_);
  ++refused_[messageId];
}

void SigningCounters::refused(const std::string& messageId, std::chrono::nanoseconds took) {
  {
    std::lock_guard<std::mutex> lock(refusedMutex_);
    ++refused_[messageId];
  }
  observe(took);
}

SigningCounters::Snapshot SigningCounters::snapshot() const {
  Snapshot s;
  s.signedCount = signed_.load(std::memory_order_relaxed);
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i < buckets_.size(); ++i) {
    cumulative += buckets_[i].load(std::memory_order_relaxed);
    s.latency[i] = cumulative;
  }
  s.latencySumSeconds = static_cast<double>(sumNanos_.load(std::memory_order_relaxed)) / 1e9;
  std::lock_guard<std::mutex> lock(refusedMutex_);
  s.refused = refused_;
  return s;
}

std::variant<Signed, AtisError> SigningService::sign(std::string_view body, const SigningClient& client) {
  const auto start = std::chrono::steady_clock::now();
  auto result = signUncounted(body, client);
  const auto took = std::chrono::steady_clock::now() - start;
  if (const auto* e = std::get_if<AtisError>(&result)) {
    counters_.refused(e->messageId, took);
  } else {
    counters_.signedOne(took);
    if (record_) {
      record_->add(std::get<Signed>(result), client.id,
                   std::chrono::duration_cast<std::chrono::milliseconds>(clock_.now().time_since_epoch()).count());
    }
  }
  return result;
}

std::variant<Signed, AtisError> SigningService::signUncounted(std::string_view body, const SigningClient& client) const {
  const std::int64_t now = unixSeconds(clock_.now());
  auto parsed = parseSigningRequest(body, now);
  if (auto* e = std::get_if<AtisError>(&parsed)) {
    return *e;
  }
  const SigningRequest& request = std::get<SigningRequest>(parsed);
  if (request.claims.type == pki::PassportType::shaken && !client.attest.empty() &&
      !client.attest.contains(request.claims.attest)) {
    return forbidden(client.id + " may not attest '" + request.claims.attest + "'");
  }
  std::string name;
  if (request.cert) {
    name = *request.cert;
    if (!client.certs.empty() && !client.certs.contains(name)) {
      return forbidden(client.id + " may not sign with certificate '" + name + "'");
    }
  } else {
    std::vector<std::string> mine;
    for (const auto& n : keys_.names()) {
      if (client.certs.empty() || client.certs.contains(n)) {
        mine.push_back(n);
      }
    }
    if (mine.size() != 1) {
      return mine.empty() ? unavailable("no certificate " + client.id + " may use has a current certificate")
                          : missingParameter("cert (kmsd signs for " + std::to_string(mine.size()) +
                                             " certificates: name one)");
    }
    name = mine.front();
  }
  const SigningPick pick = keys_.pick(name, now);
  if (!pick.key) {
    return unavailable(pick.refusal);
  }
  auto jws = pki::signPassport(request.claims, pick.key->x5u, *pick.signer);
  if (!jws) {
    return jws.error().code == Errc::invalidArgument ? invalidParameter("signingRequest", jws.error().message)
                                                     : unavailable("the HSM did not sign: " + jws.error().toString());
  }
  const pki::PassportClaims& c = request.claims;
  return Signed{pki::identityHeader(*jws, pick.key->x5u, c.type), name, pick.key->serial, c.type, c.attest, c.orig,
                c.dest.size(), c.origid, c.iat};
}

void writeSigningMetrics(const SigningCounters& counters, Exposition& out) {
  const SigningCounters::Snapshot s = counters.snapshot();
  out.family("kms_passport_signed_total", "counter", "PASSporTs signed since kmsd started");
  out.sample("kms_passport_signed_total", {}, static_cast<std::int64_t>(s.signedCount));
  out.family("kms_passport_refused_total", "counter",
             "signing requests refused since kmsd started, by ATIS-1000082 messageId");
  for (const auto& [reason, n] : s.refused) {
    out.sample("kms_passport_refused_total", {{"reason", reason}}, static_cast<std::int64_t>(n));
  }
  out.family("kms_passport_request_duration_seconds", "histogram",
             "how long a signing request took in kmsd (parse, key, HSM signature, response)");
  // The last bound counts everything: it is the +Inf bucket.
  constexpr std::size_t kFinite = SigningCounters::kBoundsMicros.size() - 1;
  std::array<double, kFinite> bounds{};
  for (std::size_t i = 0; i < kFinite; ++i) {
    bounds[i] = static_cast<double>(SigningCounters::kBoundsMicros[i]) / 1e6;
  }
  out.histogram("kms_passport_request_duration_seconds", {}, bounds, std::span(s.latency).first(kFinite),
                s.latency[kFinite], s.latencySumSeconds);
}

}  // namespace kms::daemon
