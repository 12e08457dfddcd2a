#include "engine/engine.h"

#include <algorithm>

#include "kms/process.h"

namespace kms::daemon {

/// The per-certificate state the loop keeps in memory (the DB holds the rest).
struct Engine::Runtime {
  std::uint64_t key = 0;
  std::shared_ptr<const config::CertificateConfig> cfg;  ///< shared with the turn in flight
  std::string definition;                                ///< what it is issued under (a hash)
  std::uint64_t gen = 0;  ///< heap entries of older generations are stale
  bool running = false;
  bool removed = false;
  bool renewRequested = false;
  /// Holds an order slot: its order is being worked on at the CA (not waiting on backoff,
  /// the STI-CR, a hook or the CA's Retry-After).
  bool holdsSlot = false;
  PollState poll;
  Plan lastPlan;
  std::unique_ptr<ExitWatch> exitWatch;  ///< a hook the step waits for
};

Engine::Engine(Executor& executor, const Clock& clock, Random& random, Lifecycle& lifecycle, LockedStore& store,
               EventSink& events, EngineSettings settings)
    : executor_(executor),
      clock_(clock),
      lifecycle_(lifecycle),
      events_(events),
      settings_(settings),
      slots_(settings.maxOrders),
      failures_(lifecycle, store, events, clock, random, pause_),
      worker_(lifecycle, store, events, clock, slots_, pause_, failures_),
      scheduler_(executor, clock, [this](std::uint64_t key, std::uint64_t gen) { due(key, gen); }) {
  failures_.setPolicy(settings.retry);
}

Engine::~Engine() {
  for (auto& rt : byKey_) {
    rt->exitWatch.reset();  // before the executor goes: its pending wait refers to the runtime
  }
}

void Engine::add(config::CertificateConfig c, std::string definition) {
  auto rt = std::make_shared<Runtime>();
  rt->key = byKey_.size();
  rt->definition = std::move(definition);
  const std::string name = c.name;
  rt->cfg = std::make_shared<const config::CertificateConfig>(std::move(c));
  if (auto old = certs_.find(name); old != certs_.end()) {
    old->second->removed = true;  // added again after a removal: a new runtime
  }
  byKey_.push_back(rt);
  certs_[name] = rt;
  order_.push_back(name);
  if (settings_.once) {
    once_.add(name);
  }
  if (started_) {
    schedule(rt, clock_.now());
  }
}

void Engine::update(config::CertificateConfig c, std::string definition) {
  auto it = certs_.find(c.name);
  if (it == certs_.end() || it->second->removed) {
    return add(std::move(c), std::move(definition));
  }
  Runtime& rt = *it->second;
  if (!(*rt.cfg == c)) {
    rt.cfg = std::make_shared<const config::CertificateConfig>(std::move(c));
  }
  rt.definition = std::move(definition);
}

void Engine::remove(const std::string& name) {
  auto it = certs_.find(name);
  if (it == certs_.end() || it->second->removed) {
    return;
  }
  Runtime& rt = *it->second;
  rt.removed = true;
  rt.exitWatch.reset();
  if (!rt.running) {
    rt.holdsSlot = slots_.release(rt.holdsSlot);
    wakeSlotWaiters();
  }
  std::erase(order_, name);
}

bool Engine::manages(const std::string& name) const {
  auto it = certs_.find(name);
  return it != certs_.end() && !it->second->removed;
}

std::shared_ptr<const config::CertificateConfig> Engine::definition(const std::string& name) const {
  auto it = certs_.find(name);
  return it != certs_.end() && !it->second->removed ? it->second->cfg : nullptr;
}

void Engine::start() {
  started_ = true;
  for (const auto& name : order_) {
    schedule(certs_.at(name), clock_.now());
  }
  if (settings_.once && order_.empty()) {
    executor_.stop();
  }
}

void Engine::wake(const std::string& name) {
  auto it = certs_.find(name);
  if (started_ && it != certs_.end() && !it->second->removed && !it->second->running) {
    schedule(it->second, clock_.now());
  }
}

void Engine::requestRenewal(const std::string& name) {
  auto it = certs_.find(name);
  if (it != certs_.end() && !it->second->removed) {
    it->second->renewRequested = true;
    wake(name);
  }
}

void Engine::stop(std::function<void()> onStopped) {
  stopping_ = true;
  onStopped_ = std::move(onStopped);
  scheduler_.stop();
  maybeStopped();
}

void Engine::jobDone() {
  --running_;
  maybeStopped();
}

void Engine::maybeStopped() {
  if (stopping_ && running_ == 0 && onStopped_) {
    auto done = std::exchange(onStopped_, nullptr);
    done();
  }
}

void Engine::setMaxOrders(std::size_t max) {
  slots_.setMax(max);
  wakeSlotWaiters();
}

void Engine::schedule(const RuntimePtr& rt, TimePoint at) {
  ++rt->gen;
  scheduler_.schedule(rt->key, rt->gen, at);
}

void Engine::due(std::uint64_t key, std::uint64_t gen) {
  const RuntimePtr& rt = byKey_.at(key);
  if (rt->gen != gen || rt->removed || rt->running || stopping_) {
    return;  // stale; a running certificate is rescheduled when its turn completes
  }
  dispatch(rt);
}

void Engine::dispatch(const RuntimePtr& rt) {
  rt->running = true;
  ++running_;
  executor_.work([this, rt, cfg = rt->cfg, definition = rt->definition, poll = rt->poll,
                   renew = rt->renewRequested, holds = rt->holdsSlot] {
    WorkResult result = worker_.run(*cfg, definition, poll, renew, holds);
    executor_.post([this, rt, result = std::move(result)]() mutable { complete(rt, std::move(result)); });
  });
}

void Engine::complete(const RuntimePtr& rt, WorkResult r) {
  rt->running = false;
  --running_;
  rt->exitWatch.reset();
  rt->poll = r.poll;
  rt->lastPlan = r.plan;
  if (r.ranStep && r.plan.action == Action::startOrder) {
    rt->renewRequested = false;
  }
  rt->holdsSlot = rt->removed ? slots_.release(r.holdsSlot) : r.holdsSlot;
  wakeSlotWaiters();
  if (r.activated) {
    if (settings_.once) {
      once_.issued(rt->cfg->name, *r.activated);
    }
    if (onActivated) {
      onActivated();
    }
  }
  if (stopping_) {
    return maybeStopped();
  }
  if (rt->removed) {
    return;
  }
  if (settings_.once && once_.settle(rt->cfg->name, r, unixSeconds(clock_.now()), rt->poll.since.has_value())) {
    if (once_.allSettled()) {
      executor_.stop();
    }
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
  schedule(rt, nextTurn(rt, r));
}

TimePoint Engine::nextTurn(const RuntimePtr& rt, const WorkResult& r) {
  const TimePoint now = clock_.now();
  if (r.error && r.retryAt) {
    // The failure policy's decision, scheduled as decided (no round trip through the DB).
    rt->lastPlan.at = *r.retryAt;
    rt->lastPlan.why = r.retryWhy;
    return std::max(now, fromUnix(*r.retryAt));
  }
  if (r.error) {
    return now + std::chrono::seconds(1);  // stopping, or nothing recorded: look again shortly
  }
  if (r.wait) {
    if (r.waitFor) {
      watchExit(rt, *r.waitFor);
    }
    return now + *r.wait;
  }
  if (!r.ranStep) {
    return std::max(now, fromUnix(r.plan.at));
  }
  return now;  // the next step at once
}

void Engine::watchExit(const RuntimePtr& rt, const ChildProcess& child) {
  // Runs the certificate again as soon as the child exits (the step's timeout still wakes it).
  rt->exitWatch = executor_.watchExit(child, [this, rt] {
    if (!stopping_ && !rt->removed && !rt->running) {
      schedule(rt, clock_.now());
    }
  });
}

void Engine::wakeSlotWaiters() {
  // As many slot waiters as there are free slots run again, in their order (a woken one
  // that finds none free queues again).
  std::size_t free = slots_.free();
  while (free > 0 && !slotWaiters_.empty()) {
    std::string name = slotWaiters_.front();
    slotWaiters_.pop_front();
    auto it = certs_.find(name);
    if (it != certs_.end() && !it->second->removed && !it->second->running) {
      schedule(it->second, clock_.now());
      --free;
    }
  }
}

RuntimeViews Engine::runtimeInfo(const std::optional<std::string>& only) const {
  RuntimeViews out;
  out.reserve(only ? 1 : certs_.size());
  for (const auto& [name, rt] : certs_) {
    if (!rt->removed && (!only || *only == name)) {
      out.emplace(name, RuntimeView{toString(rt->lastPlan.action), rt->lastPlan.why, rt->renewRequested});
    }
  }
  return out;
}

Engine::Counters Engine::counters() const {
  return Counters{order_.size(), slots_.inUse(), slots_.max(), running_, pause_.until()};
}

}  // namespace kms::daemon
