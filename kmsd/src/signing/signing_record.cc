#include "signing/signing_record.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include <nlohmann/json.hpp>

#include "common/time_format.h"

namespace kms::daemon {

Result<std::unique_ptr<SigningRecord>> SigningRecord::open(std::string path, std::int64_t maxBytes, int keep) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640);
  if (fd < 0) {
    return fail(Errc::io, "[signing] record: cannot open " + path + ": " + std::strerror(errno), path);
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return fail(Errc::io, "[signing] record: " + path + " is not a regular file", path);
  }
  return std::unique_ptr<SigningRecord>(new SigningRecord(std::move(path), maxBytes, keep, fd, st.st_size));
}

SigningRecord::SigningRecord(std::string path, std::int64_t maxBytes, int keep, int fd, std::int64_t size)
    : path_(std::move(path)), maxBytes_(maxBytes), keep_(keep), fd_(fd), size_(size) {
  thread_ = std::thread([this] { run(); });
}

SigningRecord::~SigningRecord() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
  ::fdatasync(fd_);
  ::close(fd_);
}

void SigningRecord::add(const Signed& s, const std::string& client, std::int64_t unixMillis) {
  nlohmann::json line{{"time", isoTime(unixMillis / 1000)},
                      {"client", client},
                      {"cert", s.cert},
                      {"serial", s.serial},
                      {"ppt", s.type == pki::PassportType::div ? "div" : "shaken"},
                      {"orig", s.orig},
                      {"dest_count", s.destCount},
                      {"iat", s.iat}};
  if (!s.attest.empty()) {
    line["attest"] = s.attest;
  }
  if (!s.origid.empty()) {
    line["origid"] = s.origid;
  }
  std::string text = line.dump();
  text += '\n';
  bool wake = false;
  {
    std::lock_guard lock(mutex_);
    if (queue_.size() >= kMaxQueued) {
      ++dropped_;
      ++droppedUnsaid_;
      return;
    }
    queue_.push_back(std::move(text));
    wake = queue_.size() == kBatch;  // else the writer's next tick takes it: no wake-up per line
  }
  if (wake) {
    wake_.notify_one();
  }
}

std::uint64_t SigningRecord::written() const {
  std::lock_guard lock(mutex_);
  return written_;
}

std::uint64_t SigningRecord::dropped() const {
  std::lock_guard lock(mutex_);
  return dropped_;
}

void SigningRecord::flush() {
  std::unique_lock lock(mutex_);
  flushWanted_ = true;
  wake_.notify_one();
  idle_.wait(lock, [this] { return queue_.empty() && !busy_; });
}

void SigningRecord::run() {
  for (;;) {
    std::deque<std::string> batch;
    std::uint64_t droppedNow = 0;
    {
      std::unique_lock lock(mutex_);
      busy_ = false;
      if (queue_.empty()) {
        flushWanted_ = false;
        idle_.notify_all();
      }
      wake_.wait_for(lock, kTick, [this] { return stopping_ || flushWanted_ || queue_.size() >= kBatch; });
      if (queue_.empty()) {
        if (stopping_) {
          return;  // all written
        }
        continue;
      }
      batch.swap(queue_);
      droppedNow = std::exchange(droppedUnsaid_, 0);
      busy_ = true;
    }
    std::string text;
    for (const auto& line : batch) {
      text += line;
    }
    if (droppedNow > 0) {
      text += nlohmann::json{{"dropped", droppedNow}}.dump() + "\n";
    }
    writeOut(text);
    std::lock_guard lock(mutex_);
    written_ += batch.size();
  }
}

void SigningRecord::writeOut(const std::string& text) {
  if (size_ > 0 && size_ + static_cast<std::int64_t>(text.size()) > maxBytes_) {
    rotate();
  }
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd_, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      break;  // a full disk: the lines are lost, the signatures were not held up
    }
    done += static_cast<std::size_t>(n);
  }
  size_ += static_cast<std::int64_t>(done);
}

/// FILE.(keep-1) → FILE.keep, …, FILE → FILE.1; then a new FILE.
void SigningRecord::rotate() {
  ::fdatasync(fd_);
  for (int i = keep_ - 1; i >= 1; --i) {
    const std::string from = path_ + "." + std::to_string(i);
    const std::string to = path_ + "." + std::to_string(i + 1);
    (void)std::rename(from.c_str(), to.c_str());  // FILE.i may not exist yet
  }
  (void)std::rename(path_.c_str(), (path_ + ".1").c_str());  // on failure FILE keeps growing
  const int fd = ::open(path_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640);
  if (fd >= 0) {
    ::close(fd_);
    fd_ = fd;
    size_ = 0;
  }
}

}  // namespace kms::daemon
