#include "events/event_sink.h"

#include <atomic>
#include <cstdio>

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "common/clock.h"

namespace kms::daemon {

std::string sanitize(const std::string& text, std::size_t maxBytes) {
  std::string joined;
  joined.reserve(text.size());
  bool lineBreak = false;  // one or more line ends since the last character kept
  for (char c : text) {
    if (c == '\n' || c == '\r') {
      lineBreak = true;
      continue;
    }
    if (lineBreak && !joined.empty()) {
      joined += "; ";
    }
    lineBreak = false;
    joined += c;
  }
  return escapeControl(joined, maxBytes);
}
namespace {

spdlog::level::level_enum spdLevel(storage::EventLevel level) {
  switch (level) {
    case storage::EventLevel::debug:
      return spdlog::level::debug;
    case storage::EventLevel::info:
      return spdlog::level::info;
    case storage::EventLevel::warning:
      return spdlog::level::warn;
    case storage::EventLevel::error:
      return spdlog::level::err;
  }
  return spdlog::level::info;
}

/// key="value" with quotes only where needed.
void appendField(std::string& out, const std::string& key, const std::string& value) {
  out += ' ';
  out += key;
  out += '=';
  bool plain = !value.empty() && value.find_first_of(" \"=\\") == std::string::npos;
  if (plain) {
    out += value;
    return;
  }
  out += '"';
  for (char c : value) {
    if (c == '"' || c == '\\') {
      out += '\\';
    }
    out += c;
  }
  out += '"';
}

}  // namespace

struct Logger::Impl {
  std::shared_ptr<spdlog::logger> logger;
  std::atomic<config::LogFormat> format{config::LogFormat::text};
};

Logger::Logger(config::LogFormat format) : impl_(std::make_unique<Impl>()) {
  auto sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  impl_->logger = std::make_shared<spdlog::logger>("kmsd", sink);
  impl_->logger->set_level(spdlog::level::debug);
  impl_->logger->flush_on(spdlog::level::debug);
  setFormat(format);
}

Logger::~Logger() = default;

void Logger::setFormat(config::LogFormat format) {
  impl_->format = format;
  // JSON lines carry their own time stamp; text lines get one in UTC.
  if (format == config::LogFormat::json) {
    impl_->logger->set_pattern("%v");
  } else {
    impl_->logger->set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %l %v", spdlog::pattern_time_type::utc);
  }
}

std::string Logger::format(const EventRecord& e) const {
  if (impl_->format == config::LogFormat::json) {
    nlohmann::json j;
    j["time"] = unixSeconds(std::chrono::system_clock::now());
    j["level"] = storage::toString(e.level);
    j["event"] = e.id;
    if (e.cert) {
      j["cert"] = *e.cert;
    }
    j["message"] = sanitize(e.message);
    for (const auto& [k, v] : e.fields) {
      j[k] = sanitize(v);
    }
    return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  }
  std::string line = e.id;
  if (e.cert) {
    appendField(line, "cert", *e.cert);
  }
  for (const auto& [k, v] : e.fields) {
    appendField(line, k, sanitize(v));
  }
  appendField(line, "msg", sanitize(e.message));
  return line;
}

void Logger::write(const EventRecord& event) {
  impl_->logger->log(spdLevel(event.level), "{}", format(event));
}

void StoreEventSink::emit(const EventRecord& event) {
  log_.write(event);
  storage::Event row;
  row.certName = event.cert;
  row.eventId = event.id;
  row.level = event.level;
  row.message = sanitize(event.message);
  nlohmann::json fields = nlohmann::json::object();
  for (const auto& [k, v] : event.fields) {
    fields[k] = sanitize(v);
  }
  row.fieldsJson = fields.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  auto appended = store_.with([&](storage::Store& s) { return s.appendEvent(row); });
  if (!appended) {
    log_.write(
        EventRecord{"KMS_EVENT_LOG_FAILED",
                    storage::EventLevel::error,
                    event.cert,
                    "could not append " + std::string(event.id) + " to the event log: " + appended.error().toString(),
                    {}});
  }
  for (const auto& listener : listeners_) {
    listener(event);
  }
}

void internalError(EventSink& sink, const std::string& where, const std::string& what) {
  sink.emit({"KMS_INTERNAL_ERROR", storage::EventLevel::error, std::nullopt,
             "internal error in " + where + ": " + what + "; kmsd goes on", {}});
}

std::optional<std::string> runReporting(EventSink& sink, const std::string& where, const std::function<void()>& job) {
  std::string what;
  try {
    job();
    return std::nullopt;
  } catch (const std::exception& e) {
    what = e.what();
  } catch (...) {
    what = "unknown exception";
  }
  internalError(sink, where, what);
  return what;
}

}  // namespace kms::daemon
