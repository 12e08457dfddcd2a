#include "alerts/notifier.h"

#include <algorithm>
#include <deque>

#include "alerts/conditions.h"
#include "common/time_format.h"
#include "metrics/exposition.h"
#include "pki/passport.h"

namespace kms::daemon {
namespace {

/// A resolved alert stays listed (kmsctl alerts) this long, then goes.
constexpr std::int64_t kKeepResolved = 86400;

constexpr const char* kConditions[] = {kExpired,         kExpiring,       kRenewalFailing,    kSpcTokenUnobtainable,
                                       kRevoked,         kRootDistrusted, kPublicationFailing};

std::string keyOf(const std::string& cert, const std::string& condition) {
  return cert + "/" + condition;
}

}  // namespace

/// One channel's thread and its queue.
struct Notifier::Worker {
  AlertChannel* channel = nullptr;
  std::mutex mutex;
  std::condition_variable cv;
  std::deque<Job> queue;
  bool stopping = false;
  std::thread thread;
};

Notifier::Notifier(std::unique_ptr<storage::AlertLog> log, std::vector<std::unique_ptr<AlertChannel>> channels,
                   const config::AlertsConfig& settings, std::set<std::string> certificates, EventSink& sink,
                   const Clock& clock)
    : log_(std::move(log)),
      channels_(std::move(channels)),
      settings_(settings),
      sink_(sink),
      clock_(clock),
      certificates_(std::move(certificates)) {}

Notifier::~Notifier() {
  stop();
}

void Notifier::start() {
  for (const auto& channel : channels_) {
    auto worker = std::make_unique<Worker>();
    worker->channel = channel.get();
    Worker* w = worker.get();
    worker->thread = std::thread([this, w] {
      for (;;) {
        Job job;
        {
          std::unique_lock lock(w->mutex);
          w->cv.wait(lock, [w] { return w->stopping || !w->queue.empty(); });
          if (w->stopping) {
            return;
          }
          job = std::move(w->queue.front());
          w->queue.pop_front();
        }
        deliver(*w->channel, job);
      }
    });
    workers_.push_back(std::move(worker));
  }
  thread_ = std::thread([this] {
    for (;;) {
      {
        std::unique_lock lock(wakeMutex_);
        wakeCv_.wait_for(lock, settings_.interval, [this] { return stopping_ || woken_; });
        // A burst of events (a thousand renewals) is one evaluation a second at most: each
        // reads every certificate's facts.
        wakeCv_.wait_for(lock, std::chrono::seconds(1), [this] { return stopping_; });
        if (stopping_) {
          return;
        }
        woken_ = false;
      }
      auto failed = runReporting(sink_, "alerts", [this] { evaluate(); });
      (void)failed;  // reported as KMS_INTERNAL_ERROR; the next interval tries again
    }
  });
}

void Notifier::stop() {
  {
    std::lock_guard lock(wakeMutex_);
    stopping_ = true;
  }
  wakeCv_.notify_all();
  for (const auto& channel : channels_) {
    channel->cancel();
  }
  for (const auto& w : workers_) {
    {
      std::lock_guard lock(w->mutex);
      w->stopping = true;
    }
    w->cv.notify_all();
  }
  if (thread_.joinable()) {
    thread_.join();
  }
  for (const auto& w : workers_) {
    if (w->thread.joinable()) {
      w->thread.join();
    }
  }
}

bool Notifier::isOwnEvent(std::string_view id) {
  return id == "KMS_ALERT_FIRING" || id == "KMS_ALERT_RESOLVED" || id == "KMS_ALERT_SENT" ||
         id == "KMS_ALERT_DELIVERY_FAILED";
}

void Notifier::wake() {
  {
    std::lock_guard lock(wakeMutex_);
    woken_ = true;
  }
  wakeCv_.notify_one();
}

void Notifier::setCertificates(std::set<std::string> names) {
  {
    std::lock_guard lock(dbMutex_);
    certificates_ = std::move(names);
  }
  wake();
}

void Notifier::evaluate() {
  const std::int64_t now = unixSeconds(clock_.now());
  std::lock_guard lock(dbMutex_);
  evaluateLocked(now);
  dispatchLocked(now);
}

void Notifier::evaluateLocked(std::int64_t now) {
  auto lastId = log_->lastEventId();
  auto cursor = log_->cursor();
  auto facts = log_->facts(now);
  auto rows = log_->alerts();
  if (!lastId || !cursor || !facts || !rows) {
    const Error& e = !lastId ? lastId.error() : !cursor ? cursor.error() : !facts ? facts.error() : rows.error();
    storeWriteFailed(sink_, std::nullopt, "read the alert state", e);
    return;
  }
  ConditionInputs in;
  in.now = now;
  // The first evaluation ever starts from the present: no alert for history.
  in.cursor = cursor->value_or(*lastId);
  in.configured = certificates_;
  in.failures = settings_.failures;
  in.warningFraction = settings_.warningFraction;
  const std::vector<Condition> holding = evaluateConditions(*facts, in);

  std::map<std::string, const storage::AlertRow*> known;
  for (const storage::AlertRow& row : *rows) {
    known[keyOf(row.certName, row.condition)] = &row;
  }
  std::set<std::string> holds;
  std::map<std::string, std::int64_t> firing;
  for (const Condition& c : holding) {
    const std::string key = keyOf(c.certName, c.condition);
    holds.insert(key);
    ++firing[c.condition];
    auto it = known.find(key);
    if (it != known.end() && !it->second->resolvedAt) {
      if (it->second->summary != c.summary) {
        if (auto r = log_->updateSummary(c.certName, c.condition, c.summary); !r) {
          storeWriteFailed(sink_, c.certName, "update an alert", r.error());
        }
      }
      continue;
    }
    storage::AlertRow row{c.certName, c.condition, c.severity, c.summary, now, std::nullopt};
    if (auto r = log_->fire(row); !r) {
      storeWriteFailed(sink_, c.certName, "record an alert", r.error());
      continue;
    }
    sink_.emit({"KMS_ALERT_FIRING", std::string(c.severity) == "critical" ? storage::EventLevel::error
                                                                     : storage::EventLevel::warning,
          c.certName, c.summary, {{"condition", c.condition}, {"severity", c.severity}}});
  }
  for (const storage::AlertRow& row : *rows) {
    const std::string key = keyOf(row.certName, row.condition);
    if (!row.resolvedAt && holds.count(key) == 0) {
      if (auto r = log_->resolve(row.certName, row.condition, now); !r) {
        storeWriteFailed(sink_, row.certName, "resolve an alert", r.error());
        continue;
      }
      sink_.emit({"KMS_ALERT_RESOLVED", storage::EventLevel::info, row.certName,
            row.condition + " no longer holds (it fired at " + isoTime(row.startedAt) + ")",
            {{"condition", row.condition}}});
    } else if (row.resolvedAt && *row.resolvedAt < now - kKeepResolved && holds.count(key) == 0) {
      if (auto r = log_->forget(row.certName, row.condition); !r) {
        storeWriteFailed(sink_, row.certName, "remove a resolved alert", r.error());
      }
    }
  }
  if (auto r = log_->setCursor(*lastId); !r) {
    storeWriteFailed(sink_, std::nullopt, "record the alert cursor", r.error());
  }
  std::lock_guard counters(countersMutex_);
  firing_ = std::move(firing);
}

void Notifier::dispatchLocked(std::int64_t now) {
  if (channels_.empty() || workers_.size() != channels_.size()) {
    return;  // no channel, or not started: nothing can be sent
  }
  auto rows = log_->alerts();
  auto deliveries = log_->deliveries();
  if (!rows || !deliveries) {
    storeWriteFailed(sink_, std::nullopt, "read the alert deliveries", !rows ? rows.error() : deliveries.error());
    return;
  }
  std::map<std::pair<std::string, std::string>, const storage::DeliveryRow*> byChannel;
  for (const storage::DeliveryRow& d : *deliveries) {
    byChannel[{d.channel, keyOf(d.certName, d.condition)}] = &d;
  }
  const std::int64_t repeat = settings_.repeatInterval.count();
  for (std::size_t i = 0; i < channels_.size(); ++i) {
    AlertChannel& channel = *channels_[i];
    const std::int64_t resend = channel.resendSeconds() > 0 ? std::min(repeat, channel.resendSeconds()) : repeat;
    for (const storage::AlertRow& row : *rows) {
      const std::string key = keyOf(row.certName, row.condition);
      if (inFlight_.count({channel.name(), key}) != 0) {
        continue;
      }
      auto it = byChannel.find({channel.name(), key});
      const storage::DeliveryRow* d =
          it != byChannel.end() && it->second->startedAt == row.startedAt ? it->second : nullptr;
      if (d != nullptr && d->nextTryAt && *d->nextTryAt > now) {
        continue;  // backing off
      }
      const bool toldFiring = d != nullptr && d->sent == std::optional<std::string>("firing");
      bool due = false;
      if (!row.resolvedAt) {
        due = !toldFiring || now - d->sentAt.value_or(0) >= resend;
      } else {
        due = toldFiring;  // a resolve is owed only to a channel told it fired
      }
      if (!due) {
        continue;
      }
      Job job;
      job.channel = channel.name();
      job.notification = Notification{row.certName, row.condition, row.severity, row.summary, row.startedAt,
                                      row.resolvedAt, now, pki::randomUuid()};
      inFlight_.insert({channel.name(), key});
      Worker& w = *workers_.at(i);
      {
        std::lock_guard lock(w.mutex);
        w.queue.push_back(std::move(job));
      }
      w.cv.notify_one();
    }
  }
}

void Notifier::deliver(AlertChannel& channel, const Job& job) {
  Result<void> sent = channel.send(job.notification);
  record(channel, job, sent);
}

std::int64_t Notifier::backoff(std::int64_t attempts, bool lasting) const {
  const std::int64_t first = settings_.retryFirst.count();
  const std::int64_t cap = settings_.retryMax.count();
  if (lasting) {
    return cap;
  }
  std::int64_t wait = first;
  for (std::int64_t i = 1; i < attempts && wait < cap; ++i) {
    wait *= 2;
  }
  return std::min(wait, cap);
}

void Notifier::record(const AlertChannel& channel, const Job& job, const Result<void>& sent) {
  const Notification& n = job.notification;
  const std::int64_t now = unixSeconds(clock_.now());
  const char* status = n.resolved() ? "resolved" : "firing";
  std::optional<EventRecord> event;
  {
    std::lock_guard lock(dbMutex_);
    inFlight_.erase({channel.name(), keyOf(n.certName, n.condition)});
    auto deliveries = log_->deliveries();
    storage::DeliveryRow row{n.certName, n.condition, channel.name(), n.startsAt, std::nullopt, std::nullopt, 0,
                             std::nullopt, std::nullopt};
    if (deliveries) {
      for (const storage::DeliveryRow& d : *deliveries) {
        if (d.channel == channel.name() && d.certName == n.certName && d.condition == n.condition &&
            d.startedAt == n.startsAt) {
          row = d;
        }
      }
    }
    const bool changed = row.sent != std::optional<std::string>(status);
    if (sent) {
      row.sent = status;
      row.sentAt = now;
      row.attempts = 0;
      row.nextTryAt.reset();
      row.lastError.reset();
      // A repeat to Alertmanager (each minute) is not worth an event; a change always is.
      if (changed || channel.resendSeconds() == 0) {
        event = EventRecord{"KMS_ALERT_SENT", storage::EventLevel::info, n.certName,
                            std::string("told ") + channel.kind() + " channel " + channel.name() + " that " +
                                n.condition + (n.resolved() ? " resolved" : " fires"),
                            {{"channel", channel.name()}, {"condition", n.condition}, {"status", status}}};
      }
    } else {
      row.attempts += 1;
      const std::int64_t retryAt = now + backoff(row.attempts, sent.error().code == Errc::protocol);
      row.nextTryAt = retryAt;
      row.lastError = sanitize(sent.error().toString(), 500);
      if (sent.error().code != Errc::cancelled) {
        event = EventRecord{"KMS_ALERT_DELIVERY_FAILED", storage::EventLevel::warning, n.certName,
                            std::string(channel.kind()) + " channel " + channel.name() + " could not be told that " +
                                n.condition + (n.resolved() ? " resolved: " : " fires: ") + *row.lastError +
                                "; next try at " + isoTime(retryAt),
                            {{"channel", channel.name()},
                             {"condition", n.condition},
                             {"attempts", std::to_string(row.attempts)},
                             {"retry_at", isoTime(retryAt)}}};
      }
    }
    if (auto r = log_->saveDelivery(row); !r) {
      storeWriteFailed(sink_, n.certName, "record an alert delivery", r.error());
    }
  }
  {
    std::lock_guard counters(countersMutex_);
    ++notifications_[{channel.name(), sent ? "success" : "failure"}];
  }
  if (event) {
    sink_.emit(*event);
  }
}

Result<Notifier::View> Notifier::view() {
  std::lock_guard lock(dbMutex_);
  auto rows = log_->alerts();
  if (!rows) {
    return fail(rows.error());
  }
  auto deliveries = log_->deliveries();
  if (!deliveries) {
    return fail(deliveries.error());
  }
  return View{std::move(*rows), std::move(*deliveries)};
}

void Notifier::writeMetrics(Exposition& out) const {
  std::lock_guard lock(countersMutex_);
  out.family("kms_alerts_firing", "gauge", "kmsd's own alerts firing now, by condition");
  for (const char* condition : kConditions) {
    auto it = firing_.find(condition);
    out.sample("kms_alerts_firing", {{"condition", condition}}, it == firing_.end() ? std::int64_t{0} : it->second);
  }
  out.family("kms_alert_notifications_total", "counter",
             "notifications sent to each alert channel, by result (success, failure)");
  for (const auto& channel : channels_) {
    for (const char* result : {"success", "failure"}) {
      auto it = notifications_.find({channel->name(), result});
      out.sample("kms_alert_notifications_total", {{"channel", channel->name()}, {"result", result}},
                 static_cast<std::int64_t>(it == notifications_.end() ? 0 : it->second));
    }
  }
}

}  // namespace kms::daemon
