// The engine's loop: scheduler, worker pool, signals, reload and the control API routes.
// The one translation unit of kmsd that instantiates Boost.Asio's timers and pools.
#include "engine/engine.h"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <malloc.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <deque>
#include <filesystem>
#include <map>
#include <ostream>
#include <queue>
#include <thread>
#include <unordered_map>
#include <utility>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/thread_pool.hpp>
#include <nlohmann/json.hpp>

#include "daemon/activation.h"
#include "common/clock.h"
#include "daemon/commands.h"
#include "control/control_api.h"
#include "events/event_sink.h"
#include "pki/json_limits.h"
#include "engine/planner.h"
#include "services/services.h"
#include "lifecycle/steps.h"
#include "common/time_format.h"
#include "trust/trust.h"

namespace kms::daemon {

namespace asio = boost::asio;
using storage::EventLevel;

namespace {

/// The per-certificate state the loop keeps in memory (the DB holds the rest).
struct CertRuntime {
  std::shared_ptr<const config::CertificateConfig> cfg;  ///< shared with steps in flight
  std::uint64_t gen = 0;                                 ///< heap entries of older generations are stale
  bool running = false;
  bool removed = false;
  bool renewRequested = false;
  /// Holds an order slot: its order is being worked on at the CA (not waiting on backoff,
  /// the STI-CR, a hook or the CA's Retry-After).
  bool holdsSlot = false;
  PollState poll;
  Plan lastPlan;
  std::unique_ptr<asio::posix::stream_descriptor> exitWatch;  ///< a hook the step waits for
  // --once bookkeeping
  bool settled = false;
  CertOutcome outcome;
};
using CertPtr = std::shared_ptr<CertRuntime>;

struct HeapEntry {
  TimePoint at;
  std::uint64_t seq = 0;
  CertRuntime* cert = nullptr;  ///< runtimes are never freed while the loop runs
  std::uint64_t gen = 0;
  bool operator>(const HeapEntry& o) const { return at != o.at ? at > o.at : seq > o.seq; }
};

/// The caller of a control request, for the events it causes: {"uid": N} from the kernel.
Fields callerFields(const http::ServerRequest& req) {
  if (!req.peer) {
    return {};
  }
  return {{"uid", std::to_string(req.peer->uid)}};
}

/// Why `peer` may not revoke under [daemon] control_admin_group `group`; nullopt when it may
/// (no group set, root, kmsd's own user, or a member of the group).
std::optional<std::string> adminRefusal(const std::optional<http::PeerCredentials>& peer,
                                        const std::optional<std::string>& group) {
  if (!group) {
    return std::nullopt;
  }
  const std::string why = "revocation is restricted to root, kmsd's user and the members of group " + *group +
                          " ([daemon] control_admin_group)";
  if (!peer) {
    return why;
  }
  if (peer->uid == 0 || peer->uid == ::geteuid()) {
    return std::nullopt;
  }
  // The _r forms: this runs on a worker thread.
  std::vector<char> buf(16384);
  struct group gr {};
  struct group* g = nullptr;
  if (::getgrnam_r(group->c_str(), &gr, buf.data(), buf.size(), &g) != 0 || g == nullptr) {
    return why + "; the group no longer exists";
  }
  const gid_t adminGid = g->gr_gid;
  if (peer->gid == adminGid) {
    return std::nullopt;
  }
  std::vector<char> pwBuf(16384);
  struct passwd pwd {};
  struct passwd* pw = nullptr;
  if (::getpwuid_r(peer->uid, &pwd, pwBuf.data(), pwBuf.size(), &pw) == 0 && pw != nullptr) {
    std::vector<gid_t> groups(64);
    int n = static_cast<int>(groups.size());
    if (::getgrouplist(pw->pw_name, pw->pw_gid, groups.data(), &n) < 0) {
      groups.resize(static_cast<std::size_t>(n));
      (void)::getgrouplist(pw->pw_name, pw->pw_gid, groups.data(), &n);
    }
    groups.resize(static_cast<std::size_t>(std::max(n, 0)));
    if (std::find(groups.begin(), groups.end(), adminGid) != groups.end()) {
      return std::nullopt;
    }
  }
  return why + "; uid " + std::to_string(peer->uid) + " is not one of them";
}

/// What a worker found and did for one certificate.
struct WorkResult {
  Plan plan;
  bool ranStep = false;
  std::optional<Error> error;
  std::optional<Millis> wait;
  std::shared_ptr<ChildProcess> waitFor;  ///< run again when this child exits
  std::optional<storage::IssuedCert> activated;
  bool holdsSlot = false;                      ///< the certificate holds an order slot after this work
  bool needSlot = false;                       ///< planned order work but no slot was free
  bool urgent = false;                         ///< a slot waiter that goes before routine renewals
  std::optional<std::int64_t> activeNotAfter;  ///< of the certificate verifiers get now
  PollState poll;
};

/// An exclusive lock on the state directory: one kmsd per state dir.
class DirLock {
 public:
  static Result<std::unique_ptr<DirLock>> take(const std::string& dir) {
    std::string path = dir + "/kmsd.lock";
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
      return fail(Errc::io, std::string("[daemon] state_dir: cannot open lock file: ") + std::strerror(errno), path);
    }
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      ::close(fd);
      return fail(Errc::alreadyExists, "[daemon] state_dir: another kmsd holds this state directory", dir);
    }
    return std::unique_ptr<DirLock>(new DirLock(fd));
  }
  ~DirLock() { ::close(fd_); }
  DirLock(const DirLock&) = delete;
  DirLock& operator=(const DirLock&) = delete;

 private:
  explicit DirLock(int fd) : fd_(fd) {}
  int fd_;
};

/// How long SIGTERM waits for steps in flight before cancelling their requests (the
/// process must be gone within 10 s).
constexpr std::chrono::seconds kStopGrace{6};

std::size_t defaultConcurrency(const config::Config& c) {
  if (c.daemon.maxConcurrentOrders > 0) {
    return static_cast<std::size_t>(c.daemon.maxConcurrentOrders);
  }
  return std::size_t{2} * std::max(1U, std::thread::hardware_concurrency());
}

}  // namespace

class Engine::Impl {
 public:
  Impl(const config::Config& config, Logger& log, Options options)
      : config_(config),
        options_(std::move(options)),
        log_(log),
        clock_(systemClock()),
        random_(systemRandom()),
        maxOrders_(defaultConcurrency(config)),
        pool_(maxOrders_),
        timer_(io_),
        stopTimer_(io_),
        trustTimer_(io_),
        signals_(io_) {}

  ~Impl() {
    pool_.join();
    for (auto& [name, rt] : certs_) {
      rt->exitWatch.reset();  // before io_ goes: its pending wait holds the runtime
    }
  }

  Result<void> open() {
    descriptorLimit_ = raiseDescriptorLimit();
    if (auto problems = trustSettingProblems(config_); !problems.empty()) {
      return fail(Errc::config, problems.front(), options_.configPath);
    }
    // Before the DB: a second kmsd must not touch it at all.
    if (auto dir = checkStateDir(config_.daemon.stateDir, true); !dir) {
      return fail(dir.error());
    }
    auto lock = DirLock::take(config_.daemon.stateDir);
    if (!lock) {
      return fail(lock.error());
    }
    lock_ = std::move(*lock);
    auto state = openStateDb(config_);
    if (!state) {
      return fail(state.error());
    }
    state_ = std::move(*state);
    sink_ = std::make_unique<StoreEventSink>(*state_.locked, log_);
    auto services = Services::create(config_, *clock_, *sink_, *state_.locked,
                                     std::exchange(options_.http01Socket, std::nullopt));
    if (!services) {
      return fail(services.error());
    }
    services_ = std::move(*services);
    steps_ = std::make_unique<Steps>(*services_, *clock_, *random_, *sink_);
    trust_ = std::make_unique<TrustKeeper>(*services_, *clock_, *sink_);
    trust_->load();  // the kept CA list's roots are the anchors until a newer one is read
    policy_ = RetryPolicy{config_.daemon.retryFirst.count(), config_.daemon.retryMax.count()};
    // Every certificate in one transaction (one fsync, not one per certificate). Rows that
    // already say what the configuration says are not written again. Orders left open take
    // a slot again when they go on.
    auto open = state_.locked->with([&](storage::Store& s) -> Result<void> {
      auto known = s.listCertificates();
      if (!known) {
        return fail(known.error());
      }
      std::map<std::string, std::pair<storage::CertKind, std::string>> rows;
      for (auto& k : *known) {
        rows.emplace(std::move(k.name), std::pair(k.kind, std::move(k.identifiersJson)));
      }
      auto tx = s.transact([&]() -> Result<void> {
        for (const auto& c : config_.certificates) {
          auto row = rows.find(c.name);
          if (row != rows.end() && row->second == std::pair(kindOf(c), identifiersOf(c))) {
            continue;
          }
          if (auto r = upsert(s, c); !r) {
            return r;
          }
        }
        return ok();
      });
      return tx;
    });
    if (!open) {
      return fail(open.error());
    }
    for (auto& c : config_.certificates) {
      auto rt = std::make_shared<CertRuntime>();
      rt->outcome.name = c.name;
      order_.push_back(c.name);
      rt->cfg = std::make_shared<const config::CertificateConfig>(std::move(c));
      certs_[rt->cfg->name] = rt;
    }
    // The runtimes hold the certificates from here on (one copy, not three).
    config_.certificates.clear();
    config_.certificates.shrink_to_fit();
    if (options_.controlApi && !options_.once) {
      http::ServerOptions options;
      options.limits = listenerLimits(config_.daemon);
      auto server = http::Server::listenUnix(
          io_, config_.daemon.controlSocket, 0660,
          [this](const ControlRequest& r, const http::Reply& reply) { route(r, reply); }, options);
      if (!server) {
        // The control API is not essential to renewing: say so loudly and keep going.
        sink_->emit({"KMS_CONTROL_API_FAILED",
                     EventLevel::error,
                     std::nullopt,
                     "[daemon] control_socket: " + server.error().toString(),
                     {{"socket", config_.daemon.controlSocket}}});
      } else {
        control_ = std::move(*server);
      }
    }
    return ok();
  }

  static storage::CertKind kindOf(const config::CertificateConfig& c) {
    return c.spc ? storage::CertKind::shaken : storage::CertKind::acme;
  }
  /// The identifiers column: ["spc:1234"], ["dns:a.example", ...].
  static std::string identifiersOf(const config::CertificateConfig& c) {
    nlohmann::json ids = nlohmann::json::array();
    if (c.spc) {
      ids.push_back("spc:" + *c.spc);
    }
    for (const auto& n : c.dnsNames) {
      ids.push_back("dns:" + n);
    }
    return ids.dump();
  }

  /// Records a configured certificate (called with the store locked).
  static Result<void> upsert(storage::Store& s, const config::CertificateConfig& c) {
    auto r = s.upsertCertificate(c.name, kindOf(c), identifiersOf(c));
    if (!r) {
      return fail(r.error());
    }
    return ok();
  }

  int run() {
    started_ = true;
    sink_->emit({"KMS_STARTED",
                 EventLevel::info,
                 std::nullopt,
                 std::string(options_.once ? "kmsd --once" : "kmsd") + " started with " +
                     std::to_string(order_.size()) + " certificate(s)",
                 {{"pid", std::to_string(::getpid())}, {"max_concurrent_orders", std::to_string(maxOrders_)}}});
    const bool skipSigner = config_.stiPa && config_.stiPa->insecureSkipSignerCheck && !config_.stiPa->trustAnchor;
    const bool skipChain = config_.acme.insecureSkipChainCheck && !config_.acme.trustAnchors && !config_.stiPa;
    if (skipSigner || skipChain) {
      sink_->emit({"KMS_INSECURE_TRUST",
                   EventLevel::warning,
                   std::nullopt,
                   std::string("running with trust checks switched off for a lab: ") +
                       (skipSigner ? "SPC tokens and the CA list are not chained to an STI-PA root" : "") +
                       (skipSigner && skipChain ? "; " : "") +
                       (skipChain ? "issued chains are not checked against any trust anchor" : ""),
                   {}});
    }
    if (const auto caps = listenerLimits(config_.daemon);
        static_cast<int>(caps.maxConnections) < config_.daemon.listenerMaxConnections) {
      sink_->emit({"KMS_FD_LIMIT_LOW",
                   EventLevel::warning,
                   std::nullopt,
                   "the descriptor limit (RLIMIT_NOFILE " + std::to_string(descriptorLimit_) +
                       ") holds each listener to " + std::to_string(caps.maxConnections) +
                       " connections instead of [daemon] listener_max_connections = " +
                       std::to_string(config_.daemon.listenerMaxConnections),
                   {{"limit", std::to_string(descriptorLimit_)}}});
    }
    if (config_.stiPa && !config_.stiPa->crlSigner) {
      sink_->emit({"KMS_INSECURE_TRUST",
                   EventLevel::warning,
                   std::nullopt,
                   "[sti_pa] crl_signer is not set: the STI-PA CRL is not read, so a revoked certificate or CA "
                   "goes unnoticed",
                   {}});
    }
    if (!options_.once) {
      signals_.add(SIGTERM);
      signals_.add(SIGINT);
      signals_.add(SIGHUP);
      waitSignal();
    }
    if (services_->stiPa() != nullptr) {
      // The CA list and the CRL first: a chain is checked against current anchors, and an
      // active certificate the CRL lists is replaced before anything else.
      refreshTrust(true, {});
    } else {
      for (const auto& name : order_) {
        schedule(certs_[name], clock_->now());
      }
    }
    runHousekeeping();
    if (order_.empty() && options_.once) {
      return 0;
    }
    // Steps run on the pool and post back: the loop must not run out of work meanwhile.
    auto guard = asio::make_work_guard(io_);
    // A handler's exception leaves run(): reported, and the loop goes on.
    while (true) {
      try {
        io_.run();
        break;
      } catch (const std::exception& e) {
        internalError("an event-loop handler", e.what());
      } catch (...) {
        internalError("an event-loop handler", "unknown exception");
      }
    }
    pool_.join();
    if (!options_.once) {
      sink_->emit({"KMS_STOPPED", EventLevel::info, std::nullopt, "kmsd stopped", {}});
    }
    return 0;
  }

  std::vector<CertOutcome> outcomes() const {
    std::vector<CertOutcome> out;
    for (const auto& name : order_) {
      out.push_back(certs_.at(name)->outcome);
    }
    return out;
  }

 private:
  // ---------------------------------------------------------------- scheduler (loop thread)

  void schedule(const CertPtr& rt, TimePoint at) {
    ++rt->gen;
    heap_.push(HeapEntry{at, seq_++, rt.get(), rt->gen});
    arm();
  }

  void arm() {
    if (heap_.empty() || stopping_) {
      return;
    }
    const TimePoint head = heap_.top().at;
    if (armedFor_ && *armedFor_ <= head) {
      return;  // already armed as early
    }
    armedFor_ = head;
    auto delay = std::max(Millis(0), std::chrono::duration_cast<Millis>(head - clock_->now()));
    timer_.expires_after(delay);
    timer_.async_wait([this](const boost::system::error_code& ec) {
      if (ec) {
        return;
      }
      armedFor_.reset();
      fire();
    });
  }

  void fire() {
    const TimePoint t = clock_->now();
    while (!heap_.empty() && heap_.top().at <= t && !stopping_) {
      HeapEntry e = heap_.top();
      heap_.pop();
      CertRuntime* rt = e.cert;
      if (rt->gen != e.gen || rt->removed || rt->running) {
        continue;  // stale; a running certificate is rescheduled when its step completes
      }
      dispatch(certs_.at(rt->cfg->name));
    }
    arm();
  }

  void dispatch(const CertPtr& rt) {
    rt->running = true;
    ++running_;
    asio::post(pool_, [this, rt, cfg = rt->cfg, poll = rt->poll, renew = rt->renewRequested,
                       holds = rt->holdsSlot]() mutable {
      WorkResult result;
      result.holdsSlot = holds;
      try {
        result = work(*cfg, poll, renew, holds);
      } catch (const std::exception& ex) {
        result.error = Error{Errc::internal, std::string("internal error: ") + ex.what(), cfg->name, 0, {}, true, {}};
        result.holdsSlot = releaseSlot(holds);
        internalError("the step of '" + cfg->name + "'", ex.what());
      } catch (...) {
        result.error = Error{Errc::internal, "internal error: unknown exception", cfg->name, 0, {}, true, {}};
        result.holdsSlot = releaseSlot(holds);
        internalError("the step of '" + cfg->name + "'", "unknown exception");
      }
      asio::post(io_, [this, rt, result = std::move(result)]() mutable { complete(rt, std::move(result)); });
    });
  }

  // ---------------------------------------------------------------- worker threads

  /// Releases a held slot; returns false (what the certificate holds now).
  bool releaseSlot(bool held) {
    if (held) {
      slotsInUse_.fetch_sub(1);
    }
    return false;
  }

  WorkResult work(const config::CertificateConfig& cfg, PollState poll, bool renewRequested, bool holdsSlot) {
    WorkResult r;
    r.holdsSlot = holdsSlot;
    const std::int64_t now = unixSeconds(clock_->now());
    auto snap = steps_->snapshot(cfg, renewRequested);
    if (!snap) {
      r.holdsSlot = releaseSlot(r.holdsSlot);
      r.error = snap.error();
      r.error->retryable = true;
      recordFailure(cfg, std::nullopt, *r.error, r);
      return r;
    }
    r.plan = plan(*snap, now);
    if (snap->active) {
      r.activeNotAfter = snap->active->notAfter;
    }
    const std::int64_t caPause = caPausedUntil_.load();
    if (needsCa(r.plan.action) && caPause > r.plan.at) {
      r.plan.at = caPause;
      r.plan.why = "the CA asked to wait until " + isoTime(caPause);
    }
    // Slots bound the orders being worked on at the CA, nothing else: a certificate that
    // waits (backoff, Retry-After), publishes, activates or deploys holds none.
    if (r.plan.action == Action::wait || r.plan.at > now || !needsSlot(r.plan.action)) {
      r.holdsSlot = releaseSlot(r.holdsSlot);
    }
    if (r.plan.action == Action::wait || r.plan.at > now) {
      r.poll = poll;
      return r;
    }
    if (needsSlot(r.plan.action) && !r.holdsSlot) {
      if (slotsInUse_.fetch_add(1) >= maxOrders_) {
        slotsInUse_.fetch_sub(1);
        r.needSlot = true;
        // An operator's renewal, a revoked, expired, distrusted or keyless certificate goes
        // before routine renewals.
        r.urgent = renewRequested || !snap->active || snap->activeDistrusted || snap->activeKeyMissing;
        return r;
      }
      r.holdsSlot = true;
    }
    r.ranStep = true;
    auto outcome = steps_->run(r.plan.action, *snap, cfg, poll);
    r.poll = poll;
    if (!outcome) {
      r.holdsSlot = releaseSlot(r.holdsSlot);  // backoff follows
      r.error = outcome.error();
      if (r.error->code == Errc::cancelled) {
        return r;  // stopping: not a failure of the CA's, no backoff
      }
      recordFailure(cfg, snap->order, *r.error, r, &*snap);
      return r;
    }
    r.wait = outcome->wait;
    r.waitFor = outcome->waitFor;
    if (outcome->waitFor) {
      r.holdsSlot = releaseSlot(r.holdsSlot);  // a hook runs: nothing happens at the CA meanwhile
    }
    if (outcome->wait && !outcome->waitFor) {
      // Kept in the DB too, so a restart does not poll a CA that asked to wait.
      auto at = now + std::chrono::duration_cast<std::chrono::seconds>(*outcome->wait).count();
      auto w = state_.locked->with([&](storage::Store& s) { return s.setNextAttempt(cfg.name, at); });
      if (!w) {
        services_->storeWriteFailed(cfg.name, "record the next poll", w.error());
      }
    }
    r.activated = outcome->activated;
    if (outcome->activated || outcome->orderClosed) {
      r.holdsSlot = releaseSlot(r.holdsSlot);
    }
    return r;
  }

  /// A failed step: failure counted with backoff, event, and for a failure that cannot
  /// succeed the order abandoned and its key destroyed (the active certificate stays).
  void recordFailure(const config::CertificateConfig& cfg, const std::optional<storage::Order>& order, const Error& e,
                     WorkResult& r, const CertSnapshot* snap = nullptr) {
    const std::int64_t now = unixSeconds(clock_->now());
    const std::int64_t failures = (snap != nullptr ? snap->cert.failureCount : 0) + 1;
    std::int64_t delay = backoffSeconds(policy_, failures, random_->unit());
    if (e.retryAfter) {
      delay = std::max<std::int64_t>(1, e.retryAfter->count());
    }
    const bool abandon = !e.retryable && order.has_value();
    const bool hasActive = snap != nullptr && snap->active.has_value();
    auto rec = state_.locked->with([&](storage::Store& s) {
      return s.recordFailure(cfg.name, sanitize(e.toString()), now + delay,
                             abandon && !hasActive ? std::optional(storage::CertState::failed) : std::nullopt);
    });
    if (!rec) {
      services_->storeWriteFailed(cfg.name, "record a failure", rec.error());
    }
    if (abandon) {
      auto closed = state_.locked->with(
          [&](storage::Store& s) { return s.closeOrder(order->id, storage::OrderStatus::abandoned); });
      if (!closed) {
        services_->storeWriteFailed(cfg.name, "abandon the order", closed.error());
      } else {
        steps_->withdraw(order->id);
        // A reused key (reuse_key) is the active certificate's: it stays.
        const bool activeKey = hasActive && snap->active->keyUri == order->keyUri.value_or("");
        if (order->keyUri && !activeKey) {
          if (auto d = services_->destroyKey(cfg.name, *order->keyUri); !d) {
            sink_->emit({"KMS_KEY_DESTROY_FAILED",
                         EventLevel::warning,
                         cfg.name,
                         "could not destroy " + *order->keyUri + ": " + d.error().toString(),
                         {}});
          }
        }
      }
      sink_->emit({"KMS_ISSUE_FAILED",
                   EventLevel::error,
                   cfg.name,
                   e.toString() + "; order abandoned",
                   {{"step", toString(r.plan.action)}, {"retry_at", isoTime(now + delay)}}});
    } else {
      sink_->emit({"KMS_RENEW_FAILED",
                   EventLevel::warning,
                   cfg.name,
                   e.toString(),
                   {{"step", toString(r.plan.action)},
                    {"failures", std::to_string(failures)},
                    {"retry_at", isoTime(now + delay)}}});
    }
    // The CA said to slow down: every order to that CA waits, not only this one.
    if (needsCa(r.plan.action) && (e.retryAfter || e.native == 429 || e.nativeName == "rateLimited")) {
      std::int64_t until = now + delay;
      std::int64_t prev = caPausedUntil_.load();
      while (prev < until && !caPausedUntil_.compare_exchange_weak(prev, until)) {
      }
      if (prev < until) {
        sink_->emit({"KMS_CA_BACKOFF",
                     EventLevel::warning,
                     std::nullopt,
                     "the CA asked to wait; all orders wait until " + isoTime(until),
                     {{"until", isoTime(until)}}});
      }
    }
  }

  // ---------------------------------------------------------------- back on the loop

  void complete(const CertPtr& rt, WorkResult r) {
    rt->running = false;
    --running_;
    rt->exitWatch.reset();
    rt->poll = r.poll;
    rt->lastPlan = r.plan;
    if (r.ranStep && r.plan.action == Action::startOrder) {
      rt->renewRequested = false;
    }
    rt->holdsSlot = rt->removed ? releaseSlot(r.holdsSlot) : r.holdsSlot;
    wakeSlotWaiters();
    if (r.activated) {
      const auto& a = *r.activated;
      rt->outcome.kind = CertOutcome::Kind::issued;
      rt->outcome.line = rt->cfg->name + ": issued serial " + a.serial + ", not after " + isoTime(a.notAfter) +
                         ", published " + a.x5uUrl.value_or("");
      runHousekeeping();
    }
    if (stopping_) {
      maybeFinishStop();
      return;
    }
    if (rt->removed) {
      return;
    }
    if (options_.once && settleOnce(rt, r)) {
      return;
    }
    if (r.needSlot) {
      if (r.urgent) {
        slotWaiters_.push_front(rt->cfg->name);
      } else {
        slotWaiters_.push_back(rt->cfg->name);
      }
      return;
    }
    TimePoint next = clock_->now();
    if (r.error) {
      next = fromUnix(unixSeconds(next) + 1);  // replanned from the DB's backoff
    } else if (r.wait) {
      next += *r.wait;
      if (r.waitFor) {
        watchExit(rt, *r.waitFor);
      }
    } else if (!r.ranStep) {
      next = std::max(next, fromUnix(r.plan.at));
    }
    schedule(rt, next);
  }

  /// Runs the certificate again as soon as `child` exits: its pidfd turns readable.
  void watchExit(const CertPtr& rt, const ChildProcess& child) {
    int fd = ::fcntl(child.pidfd(), F_DUPFD_CLOEXEC, 0);
    if (fd < 0) {
      return;  // the timeout set by the step still wakes it
    }
    rt->exitWatch = std::make_unique<asio::posix::stream_descriptor>(io_, fd);
    rt->exitWatch->async_wait(asio::posix::stream_descriptor::wait_read,
                              [this, rt](const boost::system::error_code& ec) {
                                if (!ec && !stopping_ && !rt->removed && !rt->running) {
                                  schedule(rt, clock_->now());
                                }
                              });
  }

  /// --once: a certificate is done when it failed, or when its plan is a wait without an
  /// order in flight. Returns true when it settled now.
  bool settleOnce(const CertPtr& rt, const WorkResult& r) {
    if (rt->settled) {
      return true;
    }
    bool done = false;
    if (r.error) {
      rt->outcome.kind = CertOutcome::Kind::failed;
      rt->outcome.line = rt->cfg->name + ": FAILED: " + r.error->toString();
      done = true;
    } else if (!r.ranStep && !r.needSlot && (r.plan.action == Action::wait || r.plan.at > unixSeconds(clock_->now()))) {
      if (r.plan.action == Action::wait) {
        if (rt->outcome.kind != CertOutcome::Kind::issued) {
          rt->outcome.kind = CertOutcome::Kind::notDue;
          rt->outcome.line = rt->cfg->name + ": valid until " + isoTime(r.activeNotAfter.value_or(0)) + ", not due (" +
                             r.plan.why + ")";
        }
        done = true;
      } else if (!rt->poll.since) {
        // Held back (backoff, or the CA asked to wait) before doing anything this run.
        rt->outcome.kind = CertOutcome::Kind::failed;
        rt->outcome.line = rt->cfg->name + ": FAILED: not attempted: " + r.plan.why;
        done = true;
      }
    }
    if (done) {
      rt->settled = true;
      if (std::all_of(certs_.begin(), certs_.end(), [](const auto& kv) { return kv.second->settled; })) {
        io_.stop();
      }
    }
    return done;
  }

  /// As many slot waiters as there are free slots run again, in their order (a woken one
  /// that finds none free queues again).
  void wakeSlotWaiters() {
    std::size_t free = maxOrders_ - std::min(maxOrders_, slotsInUse_.load());
    while (free > 0 && !slotWaiters_.empty()) {
      std::string name = slotWaiters_.front();
      slotWaiters_.pop_front();
      auto it = certs_.find(name);
      if (it != certs_.end() && !it->second->removed && !it->second->running) {
        schedule(it->second, clock_->now());
        --free;
      }
    }
  }

  /// Reads the STI-PA CA list and CRL on the pool and plans the certificates it affected
  /// (every certificate after the first refresh); then arms the next refresh.
  void refreshTrust(bool first, std::function<void(std::vector<std::string>)> done) {
    trustRunning_ = true;
    ++running_;
    asio::post(pool_, [this, first, done = std::move(done)]() mutable {
      std::vector<std::string> affected;
      try {
        affected = trust_->refresh();
      } catch (const std::exception& e) {
        internalError("the trust refresh", e.what());
      } catch (...) {
        internalError("the trust refresh", "unknown exception");
      }
      asio::post(io_, [this, first, affected = std::move(affected), done = std::move(done)] {
        trustRunning_ = false;
        --running_;
        if (stopping_) {
          maybeFinishStop();
          return;
        }
        for (const auto& name : first ? order_ : affected) {
          auto it = certs_.find(name);
          if (it != certs_.end() && !it->second->removed && !it->second->running) {
            schedule(it->second, clock_->now());
          }
        }
        if (!options_.once) {
          trustTimer_.expires_after(config_.stiPa->trustRefresh);
          trustTimer_.async_wait([this](const boost::system::error_code& ec) {
            if (!ec && !stopping_ && !trustRunning_) {
              refreshTrust(false, {});
              runHousekeeping();
            }
          });
        }
        if (done) {
          done(affected);
        }
      });
    });
  }

  /// KMS_INTERNAL_ERROR: a job threw (a bug, or a peer's bytes no check caught); kmsd goes on.
  void internalError(const std::string& where, const std::string& what) {
    sink_->emit({"KMS_INTERNAL_ERROR", EventLevel::error, std::nullopt,
                 "internal error in " + where + ": " + what + "; kmsd goes on", {}});
  }

  /// Runs `job` on the worker pool. Nothing it throws reaches the pool's thread (Boost would
  /// call std::terminate): an exception becomes KMS_INTERNAL_ERROR.
  template <class Job>
  void onPool(std::string where, Job job) {
    asio::post(pool_, [this, where = std::move(where), job = std::move(job)]() mutable {
      try {
        job();
      } catch (const std::exception& e) {
        internalError(where, e.what());
      } catch (...) {
        internalError(where, "unknown exception");
      }
    });
  }

  void runHousekeeping() {
    const std::int64_t keep = config_.daemon.eventsKeep.count();  // read on the loop, which reloads swap
    const std::int64_t most = config_.daemon.eventsMax;
    onPool("event log housekeeping", [this, keep, most] {
      const std::int64_t now = unixSeconds(clock_->now());
      auto pruned = state_.locked->with([&](storage::Store& s) { return s.pruneEvents(now - keep, most); });
      if (!pruned) {
        services_->storeWriteFailed(std::nullopt, "bound the event log", pruned.error());
      }
    });
    onPool("key housekeeping", [this] {
      auto r = steps_->retireKeys();
      if (!r) {
        sink_->emit({"KMS_KEY_DESTROY_FAILED",
                     EventLevel::warning,
                     std::nullopt,
                     "key housekeeping failed: " + r.error().toString(),
                     {}});
      }
    });
  }

  // ---------------------------------------------------------------- signals and reload

  void waitSignal() {
    signals_.async_wait([this](const boost::system::error_code& ec, int sig) {
      if (ec) {
        return;
      }
      if (sig == SIGHUP) {
        reload();
        waitSignal();
        return;
      }
      sink_->emit({"KMS_STOPPING",
                   EventLevel::info,
                   std::nullopt,
                   std::string("signal ") + (sig == SIGTERM ? "TERM" : "INT") + ": finishing the steps in flight",
                   {{"in_flight", std::to_string(running_)}}});
      stopping_ = true;
      timer_.cancel();
      trustTimer_.cancel();
      if (control_) {
        control_->stop();
      }
      // A step waiting on a slow peer would hold the stop up for up to a request timeout:
      // after a grace period its request is cancelled (the order resumes at the next start).
      stopTimer_.expires_after(kStopGrace);
      stopTimer_.async_wait([this](const boost::system::error_code& timerEc) {
        if (!timerEc && running_ > 0) {
          sink_->emit({"KMS_STOP_CANCELLING",
                       EventLevel::info,
                       std::nullopt,
                       "steps still in flight after " + std::to_string(kStopGrace.count()) +
                           " s: cancelling their requests",
                       {{"in_flight", std::to_string(running_)}}});
          services_->cancelTransfers();
        }
      });
      maybeFinishStop();
    });
  }

  void maybeFinishStop() {
    if (stopping_ && running_ == 0) {
      stopTimer_.cancel();
      signals_.cancel();
      io_.stop();
    }
  }

  void reload() {
    auto cfg = config::loadConfigFile(options_.configPath, config::environmentSnapshot());
    if (!cfg) {
      std::string text = config::formatErrors(cfg.error());
      if (!text.empty() && text.back() == '\n') {
        text.pop_back();
      }
      sink_->emit({"KMS_RELOAD_FAILED",
                   EventLevel::error,
                   std::nullopt,
                   "configuration not reloaded, the previous one stays: " + text,
                   {{"file", options_.configPath}}});
      return;
    }
    int added = 0;
    int removed = 0;
    for (const auto& c : cfg->certificates) {
      auto it = certs_.find(c.name);
      if (it == certs_.end() || it->second->removed) {
        if (auto r = state_.locked->with([&](storage::Store& st) { return upsert(st, c); }); !r) {
          sink_->emit({"KMS_RELOAD_FAILED", EventLevel::error, c.name, r.error().toString(), {}});
          continue;
        }
        auto rt = std::make_shared<CertRuntime>();
        rt->cfg = std::make_shared<const config::CertificateConfig>(c);
        rt->outcome.name = c.name;
        certs_[c.name] = rt;
        order_.push_back(c.name);
        schedule(rt, clock_->now());
        ++added;
      } else if (!(*it->second->cfg == c)) {
        it->second->cfg = std::make_shared<const config::CertificateConfig>(c);
        schedule(it->second, clock_->now());
      }
    }
    for (auto& [certName, rt] : certs_) {
      const std::string& name = certName;  // (a structured binding cannot be captured before C++20 in clang 14)
      bool kept = std::any_of(cfg->certificates.begin(), cfg->certificates.end(),
                              [&](const auto& c) { return c.name == name; });
      if (!kept && !rt->removed) {
        rt->removed = true;
        if (!rt->running) {
          rt->holdsSlot = releaseSlot(rt->holdsSlot);
        }
        ++removed;
        sink_->emit({"KMS_CERT_REMOVED",
                     EventLevel::warning,
                     name,
                     "no longer in the configuration: renewal stopped, published files kept",
                     {}});
      }
    }
    std::erase_if(order_, [&](const std::string& n) { return certs_[n]->removed; });
    sink_->emit({"KMS_RELOADED",
                 EventLevel::info,
                 std::nullopt,
                 "configuration reloaded: " + std::to_string(added) + " added, " + std::to_string(removed) + " removed",
                 {{"file", options_.configPath}}});
  }

  // ---------------------------------------------------------------- control API routes

  void route(const ControlRequest& req, std::function<void(ControlResponse)> reply);

  /// The loop's view of one certificate, copied on the loop thread for a listing.
  struct RuntimeView {
    const char* action = "wait";
    std::string why;
    bool renewRequested = false;
  };
  std::unordered_map<std::string, RuntimeView> runtimeInfo(const std::optional<std::string>& only = {}) const {
    std::unordered_map<std::string, RuntimeView> out;
    out.reserve(only ? 1 : certs_.size());
    for (const auto& [name, rt] : certs_) {
      if (!rt->removed && (!only || *only == name)) {
        out.emplace(name, RuntimeView{toString(rt->lastPlan.action), rt->lastPlan.why, rt->renewRequested});
      }
    }
    return out;
  }

  static void appendCertificateJson(std::string& out, const storage::CertStatus& c,
                                    const std::unordered_map<std::string, RuntimeView>& runtime);

  /// Every certificate as a JSON array, written as text (one query; 100,000 rows must not
  /// become 100,000 JSON objects first).
  std::string listJson(const std::unordered_map<std::string, RuntimeView>& runtime,
                       const std::optional<std::string>& only = {}) {
    const std::int64_t now = unixSeconds(clock_->now());
    auto rows =
        state_.locked->with([&](storage::Store& s) { return only ? s.listStatus(now, *only) : s.listStatus(now); });
    if (!rows) {
      throw std::runtime_error(rows.error().toString());
    }
    std::string out = "[";
    out.reserve(rows->size() * 320);
    bool first = true;
    for (const auto& c : *rows) {
      out += first ? "" : ",";
      first = false;
      appendCertificateJson(out, c, runtime);
    }
    out += "]";
    return out;
  }

  config::Config config_;
  Options options_;
  Logger& log_;
  std::unique_ptr<Clock> clock_;
  std::unique_ptr<Random> random_;
  std::size_t maxOrders_;
  asio::io_context io_;
  asio::thread_pool pool_;
  asio::steady_timer timer_;
  asio::steady_timer stopTimer_;  ///< the grace before requests in flight are cancelled
  asio::steady_timer trustTimer_;  ///< the next CA list and CRL refresh
  asio::signal_set signals_;
  std::unique_ptr<DirLock> lock_;
  StateDb state_;
  std::unique_ptr<StoreEventSink> sink_;
  std::unique_ptr<Services> services_;
  std::unique_ptr<Steps> steps_;
  std::unique_ptr<TrustKeeper> trust_;
  std::unique_ptr<http::Server> control_;
  RetryPolicy policy_;

  // loop thread only
  std::map<std::string, CertPtr> certs_;
  std::vector<std::string> order_;  ///< config order
  std::priority_queue<HeapEntry, std::vector<HeapEntry>, std::greater<>> heap_;
  std::uint64_t seq_ = 0;
  std::optional<TimePoint> armedFor_;
  std::deque<std::string> slotWaiters_;
  int running_ = 0;
  bool stopping_ = false;
  bool started_ = false;
  bool trustRunning_ = false;

  // shared with workers
  std::uint64_t descriptorLimit_ = 0;  ///< RLIMIT_NOFILE after raising it to the hard limit
  std::atomic<std::size_t> slotsInUse_{0};  ///< certificates whose order is being worked on at the CA
  std::atomic<std::int64_t> caPausedUntil_{0};
};

namespace {

/// "/v1/certificates/main/renew?x=1" -> {"v1","certificates","main","renew"}, query.
std::vector<std::string> pathParts(const std::string& target, std::string* query) {
  std::string path = target.substr(0, target.find('?'));
  *query = target.size() > path.size() ? target.substr(path.size() + 1) : std::string();
  std::vector<std::string> parts;
  std::size_t i = 0;
  while (i < path.size()) {
    std::size_t j = path.find('/', i);
    if (j == std::string::npos) {
      j = path.size();
    }
    if (j > i) {
      parts.push_back(path.substr(i, j - i));
    }
    i = j + 1;
  }
  return parts;
}

std::optional<std::int64_t> queryInt(const std::string& query, const std::string& name) {
  std::size_t pos = 0;
  while (pos < query.size()) {
    std::size_t end = query.find('&', pos);
    std::string kv = query.substr(pos, end == std::string::npos ? std::string::npos : end - pos);
    if (kv.rfind(name + "=", 0) == 0) {
      try {
        std::size_t used = 0;
        std::int64_t v = std::stoll(kv.substr(name.size() + 1), &used);
        if (used == kv.size() - name.size() - 1) {
          return v;
        }
      } catch (const std::exception&) {
      }
      return std::nullopt;
    }
    if (end == std::string::npos) {
      break;
    }
    pos = end + 1;
  }
  return std::nullopt;
}

ControlResponse jsonResponse(int status, const nlohmann::json& j) {
  return jsonBody(status, j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

}  // namespace

namespace {

/// A JSON string: quotes, escapes, control characters as \u00XX, invalid UTF-8 as U+FFFD.
void appendJsonString(std::string& out, std::string_view text) {
  out += '"';
  for (std::size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
      ++i;
    } else if (c < 0x20) {
      static const char* hex = "0123456789abcdef";
      out += "\\u00";
      out += hex[c >> 4];
      out += hex[c & 15];
      ++i;
    } else if (c < 0x80) {
      out += static_cast<char>(c);
      ++i;
    } else {
      const std::size_t len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 ? 2 : 0;
      bool valid = len != 0 && c <= 0xF4 && i + len <= text.size();
      for (std::size_t k = 1; valid && k < len; ++k) {
        valid = (static_cast<unsigned char>(text[i + k]) & 0xC0) == 0x80;
      }
      if (valid) {
        out.append(text.substr(i, len));
        i += len;
      } else {
        out += "\xEF\xBF\xBD";
        ++i;
      }
    }
  }
  out += '"';
}

void appendField(std::string& out, const char* key, std::string_view value) {
  out += ",\"";
  out += key;
  out += "\":";
  appendJsonString(out, value);
}

}  // namespace

void Engine::Impl::appendCertificateJson(std::string& out, const storage::CertStatus& c,
                                         const std::unordered_map<std::string, RuntimeView>& runtime) {
  out += "{\"name\":";
  appendJsonString(out, c.name);
  appendField(out, "kind", storage::toString(c.kind));
  appendField(out, "state", storage::toString(c.state));
  out += ",\"failures\":" + std::to_string(c.failureCount);
  if (c.lastError) {
    appendField(out, "last_error", sanitize(*c.lastError));
  }
  if (c.renewAt) {
    appendField(out, "renew_at", isoTime(*c.renewAt));
  }
  if (c.nextAttemptAt) {
    appendField(out, "next_attempt_at", isoTime(*c.nextAttemptAt));
  }
  if (c.serial) {
    appendField(out, "serial", *c.serial);
    appendField(out, "not_after", isoTime(c.notAfter.value_or(0)));
    if (c.x5uUrl) {
      appendField(out, "x5u", *c.x5uUrl);
    }
  }
  auto it = runtime.find(c.name);
  out += ",\"managed\":";
  out += it != runtime.end() ? "true" : "false";
  if (it != runtime.end()) {
    appendField(out, "next_action", it->second.action);
    appendField(out, "plan", it->second.why);
    out += ",\"renewal_requested\":";
    out += it->second.renewRequested ? "true" : "false";
  }
  out += '}';
}

void Engine::Impl::route(const ControlRequest& req, std::function<void(ControlResponse)> reply) {
  std::string query;
  const auto parts = pathParts(req.target, &query);
  const bool get = req.method == "GET";
  const bool post = req.method == "POST";
  auto notAllowed = [&] { reply(problem(405, "method not allowed", req.method + " " + req.target)); };

  if (parts.size() == 1 && (parts[0] == "healthz" || parts[0] == "readyz")) {
    if (!get) {
      return notAllowed();
    }
    if (parts[0] == "readyz" && (!started_ || stopping_)) {
      return reply(jsonResponse(503, {{"status", stopping_ ? "stopping" : "starting"}}));
    }
    return reply(jsonResponse(200, {{"status", "ok"}}));
  }
  if (parts.empty() || parts[0] != "v1" || parts.size() < 2) {
    return reply(problem(404, "not found", req.target));
  }
  const std::string& what = parts[1];
  // Reads run on the pool (one SQLite connection, shared with the steps), replies from there.
  auto readDb = [this, reply](std::function<ControlResponse()> body) {
    asio::post(pool_, [this, reply, body = std::move(body)] {
      try {
        reply(body());
      } catch (const std::exception& e) {
        internalError("a control API read", e.what());
        reply(problem(500, "internal error", e.what()));
      } catch (...) {
        internalError("a control API read", "unknown exception");
        reply(problem(500, "internal error", "unknown exception"));
      }
    });
  };
  if (what == "status" && parts.size() == 2) {
    if (!get) {
      return notAllowed();
    }
    nlohmann::json daemon{{"pid", ::getpid()},
                          {"certificates", order_.size()},
                          {"open_orders", slotsInUse_.load()},
                          {"max_concurrent_orders", maxOrders_},
                          {"steps_running", running_},
                          {"ca_paused_until", caPausedUntil_.load() > 0 ? isoTime(caPausedUntil_.load()) : ""}};
    return readDb([this, daemon, rt = runtimeInfo()]() {
      return jsonBody(200, "{\"daemon\":" + daemon.dump() + ",\"certificates\":" + listJson(rt) + "}");
    });
  }
  if (what == "keys" && parts.size() == 2) {
    if (!get) {
      return notAllowed();
    }
    return readDb([this, retain = config_.publisher.retain.count()]() {
      auto known = state_.locked->with([](storage::Store& s) { return s.listKeys(false); });
      if (!known) {
        return problem(500, "state DB", known.error().toString());
      }
      auto usage = state_.locked->with(
          [this, retain](storage::Store& s) { return s.listKeyUsage(unixSeconds(clock_->now()), retain); });
      if (!usage) {
        return problem(500, "state DB", usage.error().toString());
      }
      auto report = keysJson(services_->token(), *known, *usage);
      if (!report) {
        return problem(503, "HSM token", report.error().toString());
      }
      return jsonBody(200, "{\"keys\":" + *report + "}");
    });
  }
  if (what == "trust" && (parts.size() == 2 || (parts.size() == 3 && parts[2] == "refresh"))) {
    auto report = [this]() {
      auto docs = state_.locked->with([](storage::Store& s) { return readKeptTrust(s); });
      if (!docs) {
        throw std::runtime_error(docs.error().toString());
      }
      nlohmann::json j = trustReport(*docs, unixSeconds(clock_->now()));
      j["daemon"] = trust_->status();
      j["anchors"] = services_->anchorsConfigured() ? "[acme] trust_anchors" : "ca_list";
      j["crl_checked"] = services_->crlSigner().has_value();
      return j;
    };
    if (parts.size() == 2) {
      if (!get) {
        return notAllowed();
      }
      return readDb([report]() { return jsonResponse(200, report()); });
    }
    if (!post) {
      return notAllowed();
    }
    if (services_->stiPa() == nullptr) {
      return reply(problem(409, "no STI-PA", "[sti_pa] is not configured: there is no CA list or CRL to read"));
    }
    if (trustRunning_) {
      return reply(problem(409, "refresh running", "a CA list and CRL refresh is running; ask again shortly"));
    }
    return refreshTrust(false, [readDb, report](const std::vector<std::string>& affected) {
      readDb([report, affected]() {
        nlohmann::json j = report();
        j["affected"] = affected;
        return jsonResponse(200, j);
      });
    });
  }
  if (what == "certificates") {
    if (parts.size() == 2) {
      if (!get) {
        return notAllowed();
      }
      return readDb([this, rt = runtimeInfo()]() { return jsonBody(200, "{\"certificates\":" + listJson(rt) + "}"); });
    }
    const std::string& name = parts[2];
    auto it = certs_.find(name);
    if (parts.size() == 3) {
      if (!get) {
        return notAllowed();
      }
      return readDb([this, name, rt = runtimeInfo(name)]() {
        std::string list = listJson(rt, name);  // "[{...}]" or "[]"
        if (list.size() <= 2) {
          return problem(404, "no such certificate", name);
        }
        return jsonBody(200, list.substr(1, list.size() - 2));
      });
    }
    if (parts.size() != 4) {
      return reply(problem(404, "not found", req.target));
    }
    if (it == certs_.end() || it->second->removed) {
      return reply(problem(404, "no such certificate", "'" + name + "' is not a configured certificate"));
    }
    if (!post) {
      return notAllowed();
    }
    if (parts[3] == "renew") {
      // An operator's renewal is not held back by a stored wait (backoff, a CA's Retry-After
      // for this certificate): it is cleared, and the answer says what it overrode.
      onPool("the renewal request of '" + name + "'", [this, name, reply, rt = it->second, caller = callerFields(req)] {
        std::string overrode;
        const std::int64_t now = unixSeconds(clock_->now());
        auto cleared = state_.locked->with([&](storage::Store& st) -> Result<void> {
          auto cert = st.getCertificate(name);
          if (!cert) {
            return fail(cert.error());
          }
          if (*cert && (*cert)->nextAttemptAt && *(*cert)->nextAttemptAt > now) {
            overrode = "a wait until " + isoTime(*(*cert)->nextAttemptAt) +
                       ((*cert)->failureCount > 0 ? " after " + std::to_string((*cert)->failureCount) + " failure(s)"
                                                  : std::string());
            return st.setNextAttempt(name, std::nullopt);
          }
          return ok();
        });
        if (!cleared) {
          reply(problem(500, "renewal not requested", cleared.error().toString()));
          return;
        }
        sink_->emit({"KMS_RENEW_REQUESTED", EventLevel::info, name,
                     "renewal requested through the control API" + (overrode.empty() ? "" : "; overrides " + overrode),
                     caller});
        nlohmann::json body{{"name", name}, {"renewal_requested", true}};
        if (!overrode.empty()) {
          body["overrides"] = overrode;
        }
        reply(jsonResponse(202, body));
        asio::post(io_, [this, rt] {
          rt->renewRequested = true;
          if (!rt->running && !rt->removed) {
            schedule(rt, clock_->now());
          }
        });
      });
      return;
    }
    if (parts[3] == "revoke") {
      int reason = 0;
      if (!req.body.empty()) {
        auto body = pki::checkJsonLimits(req.body) ? nlohmann::json::parse(req.body, nullptr, false)
                                                   : nlohmann::json(nlohmann::json::value_t::discarded);
        if (body.is_discarded() || !body.is_object() ||
            (body.contains("reason") && !body["reason"].is_number_integer())) {
          return reply(problem(400, "bad request", R"(body must be {"reason": <RFC 5280 reason code>})"));
        }
        reason = body.value("reason", 0);
      }
      if (reason < 0 || reason > 10 || reason == 7) {
        return reply(problem(400, "bad request", "reason must be an RFC 5280 code 0..10 other than 7"));
      }
      auto cfg = it->second->cfg;
      onPool("the revocation of '" + cfg->name + "'", [this, cfg, reason, reply, rt = it->second,
                                                         caller = callerFields(req), peer = req.peer,
                                                         adminGroup = config_.daemon.controlAdminGroup] {
        if (auto refusal = adminRefusal(peer, adminGroup)) {
          reply(problem(403, "revocation not allowed", *refusal));
          return;
        }
        Result<std::string> serial = fail(Errc::internal, "internal error (KMS_INTERNAL_ERROR in the log)");
        try {
          serial = steps_->revoke(*cfg, reason, caller);
        } catch (...) {
          reply(problem(500, "revocation failed", serial.error().toString()));
          throw;  // onPool reports it
        }
        if (!serial) {
          const int status = serial.error().code == Errc::notFound ? 409 : 502;
          reply(problem(status, "revocation failed", serial.error().toString()));
          return;
        }
        reply(jsonResponse(200, {{"name", cfg->name}, {"revoked_serial", *serial}, {"reason", reason}}));
        // No valid certificate now: the planner starts a new order.
        asio::post(io_, [this, rt] {
          if (!rt->running && !rt->removed) {
            schedule(rt, clock_->now());
          }
        });
      });
      return;
    }
    return reply(problem(404, "not found", req.target));
  }
  if (what == "events" && parts.size() == 2) {
    if (!get) {
      return notAllowed();
    }
    std::int64_t since = 0;
    if (!query.empty()) {
      auto v = queryInt(query, "since");
      if (!v || *v < 0) {
        return reply(problem(400, "bad request", "since must be a non-negative event id"));
      }
      since = *v;
    }
    return readDb([this, since]() {
      auto events = state_.locked->with([&](storage::Store& s) { return s.listEventsAfter(since, 1000); });
      if (!events) {
        return problem(500, "state DB", events.error().toString());
      }
      nlohmann::json arr = nlohmann::json::array();
      for (const auto& e : *events) {
        arr.push_back({{"id", e.id},
                       {"time", isoTime(e.time)},
                       {"level", storage::toString(e.level)},
                       {"event", e.eventId},
                       {"cert", e.certName.value_or("")},
                       {"message", sanitize(e.message)}});
      }
      return jsonResponse(200, {{"events", arr}});
    });
  }
  reply(problem(404, "not found", req.target));
}

Engine::Engine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Engine::~Engine() = default;

Result<std::unique_ptr<Engine>> Engine::create(const config::Config& config, Logger& log, Options options) {
  auto impl = std::make_unique<Impl>(config, log, std::move(options));
  if (auto r = impl->open(); !r) {
    return fail(r.error());
  }
  return std::unique_ptr<Engine>(new Engine(std::move(impl)));
}

int Engine::run() {
  return impl_->run();
}

std::vector<CertOutcome> Engine::outcomes() const {
  return impl_->outcomes();
}

int runOnceCommand(const std::string& configPath, std::ostream& out, std::ostream& err) {
  auto cfg = loadConfig(configPath, err);
  if (!cfg) {
    return kExitCheckFailed;
  }
  auto sockets = takeActivatedSockets();
  if (!sockets) {
    err << "kmsd: " << sockets.error().toString() << '\n';
    return kExitCheckFailed;
  }
  Logger log(cfg->daemon.logFormat);
  auto engine = Engine::create(*cfg, log, Engine::Options{true, configPath, false, sockets->http01});
  if (!engine) {
    err << "kmsd: " << engine.error().toString() << '\n';
    return 1;
  }
  (*engine)->run();
  bool allGood = true;
  for (const CertOutcome& o : (*engine)->outcomes()) {
    out << sanitize(o.line, 8192) << '\n';
    allGood = allGood && o.kind != CertOutcome::Kind::failed;
  }
  return allGood ? 0 : 3;
}

int runDaemonCommand(const std::string& configPath, std::ostream& err) {
  auto cfg = loadConfig(configPath, err);
  if (!cfg) {
    return kExitCheckFailed;
  }
  auto sockets = takeActivatedSockets();
  if (!sockets) {
    err << "kmsd: " << sockets.error().toString() << '\n';
    return kExitCheckFailed;
  }
  Logger log(cfg->daemon.logFormat);
  auto engine = Engine::create(*cfg, log, Engine::Options{false, configPath, true, sockets->http01});
  if (!engine) {
    err << "kmsd: " << engine.error().toString() << '\n';
    return 1;
  }
  // The configuration's parse tree is gone: give its memory back to the system (a config
  // with 100,000 certificates leaves ~100 MB of free heap otherwise).
  *cfg = config::Config{};
  ::malloc_trim(0);
  return (*engine)->run();
}

}  // namespace kms::daemon
