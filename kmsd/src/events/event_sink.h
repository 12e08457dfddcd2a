#pragma once
// Everything the daemon notices goes through one EventSink: a row in the DB event log and
// one log line (text with key=value fields, or one JSON object). Metrics and alerts hang
// off the same sink later, so new outputs never grow the engine.

#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "config/config.h"
#include "kms/text.h"
#include "storage/store.h"

namespace kms::daemon {

using Fields = std::vector<std::pair<std::string, std::string>>;

/// One thing that happened. `id` is a stable ID listed in kmsd/EVENTS.md.
struct EventRecord {
  const char* id = "";
  storage::EventLevel level = storage::EventLevel::info;
  std::optional<std::string> cert;
  std::string message;
  Fields fields;
};

class EventSink {
 public:
  virtual ~EventSink() = default;
  virtual void emit(const EventRecord& event) = 0;
};

/// The state DB shared by worker threads: one SQLite connection, one caller at a time.
class LockedStore {
 public:
  explicit LockedStore(storage::Store& store) : store_(store) {}
  template <class F>
  auto with(F&& f) {
    std::lock_guard<std::mutex> lock(mutex_);
    return f(store_);
  }

 private:
  storage::Store& store_;
  std::mutex mutex_;
};

/// KMS_STORE_WRITE_FAILED: a failed state DB write its caller cannot act on (never silent).
inline void storeWriteFailed(EventSink& sink, const std::optional<std::string>& cert, const char* what,
                             const Error& e) {
  sink.emit({"KMS_STORE_WRITE_FAILED", storage::EventLevel::error, cert, std::string("could not ") + what + ": " +
                                                                             e.toString(), {}});
}

/// KMS_INTERNAL_ERROR: a job threw (a bug, or a peer's bytes no check caught) in `where`;
/// kmsd goes on.
void internalError(EventSink& sink, const std::string& where, const std::string& what);
/// Runs `job`; what it throws is reported (internalError naming `where`) and returned.
/// Nothing it throws reaches the caller: a worker thread would call std::terminate.
[[nodiscard]] std::optional<std::string> runReporting(EventSink& sink, const std::string& where,
                                                      const std::function<void()>& job);

/// Text for a log line, the DB or a terminal: the lines of a multi-line text joined with
/// "; " (blank lines and a trailing newline dropped), other control characters escaped
/// (kms::escapeControl), at most `maxBytes`.
[[nodiscard]] std::string sanitize(const std::string& text, std::size_t maxBytes = 2048);

/// The log: stderr (journald), text or JSON lines. Thread-safe.
class Logger {
 public:
  explicit Logger(config::LogFormat format);
  ~Logger();
  Logger(const Logger&) = delete;
  Logger& operator=(const Logger&) = delete;
  void setFormat(config::LogFormat format);
  void write(const EventRecord& event);
  /// The line write() would print (without the time stamp for text), for tests.
  [[nodiscard]] std::string format(const EventRecord& event) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// DB event log + log line. A failure to append to the DB is logged, never fatal.
class StoreEventSink final : public EventSink {
 public:
  StoreEventSink(LockedStore& store, Logger& log) : store_(store), log_(log) {}
  void emit(const EventRecord& event) override;
  /// `listener` is told of every event after it is logged and recorded (the signing keys
  /// follow activations; metrics and alerts later). Added before the engine starts, never
  /// after; called on the emitting thread, never with the state DB locked.
  void addListener(std::function<void(const EventRecord&)> listener) { listeners_.push_back(std::move(listener)); }
  /// Before the listeners go (nothing emits concurrently then).
  void clearListeners() { listeners_.clear(); }

 private:
  LockedStore& store_;
  Logger& log_;
  std::vector<std::function<void(const EventRecord&)>> listeners_;
};

}  // namespace kms::daemon
