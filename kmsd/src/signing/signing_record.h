#pragma once
// The signing record ([signing] record): one JSON line per signature (time, client,
// certificate and serial, ppt, attest, orig, dest count, origid; never the token), appended
// by a thread of its own so that a slow disk never holds a signature up. The file is rotated
// to FILE.1 .. FILE.N past its size limit. Lines the writer cannot keep up with (a queue of
// kMaxQueued) are counted and the count written as a line of its own, never silently lost.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "kms/error.h"
#include "signing/signing_service.h"

namespace kms::daemon {

class SigningRecord {
 public:
  static constexpr std::size_t kMaxQueued = 65536;
  /// The writer takes what is queued every kTick, or at once when kBatch lines wait.
  static constexpr std::chrono::milliseconds kTick{50};
  static constexpr std::size_t kBatch = 4096;

  /// Opens (creates, mode 0640) `path` for appending. Errc::io naming it.
  [[nodiscard]] static Result<std::unique_ptr<SigningRecord>> open(std::string path, std::int64_t maxBytes, int keep);
  ~SigningRecord();  ///< writes what is queued, then closes
  SigningRecord(const SigningRecord&) = delete;
  SigningRecord& operator=(const SigningRecord&) = delete;

  /// Queues the line for one signature by `client` at `unixMillis`.
  void add(const Signed& s, const std::string& client, std::int64_t unixMillis);

  /// Lines written, and lines dropped because the queue was full, since start.
  [[nodiscard]] std::uint64_t written() const;
  [[nodiscard]] std::uint64_t dropped() const;
  /// Waits until every queued line is written (tests, shutdown).
  void flush();

 private:
  SigningRecord(std::string path, std::int64_t maxBytes, int keep, int fd, std::int64_t size);
  void run();
  void writeOut(const std::string& text);
  void rotate();

  const std::string path_;
  const std::int64_t maxBytes_;
  const int keep_;
  int fd_;
  std::int64_t size_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable idle_;
  std::deque<std::string> queue_;
  bool busy_ = false;
  bool flushWanted_ = false;
  bool stopping_ = false;
  std::uint64_t written_ = 0;
  std::uint64_t dropped_ = 0;
  std::uint64_t droppedUnsaid_ = 0;
  std::thread thread_;
};

}  // namespace kms::daemon
