#include "control/status_view.h"

#include <nlohmann/json.hpp>

#include "common/time_format.h"

namespace kms::daemon {

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
      out.append(valid ? text.substr(i, len) : std::string_view("\xEF\xBF\xBD"));
      i += valid ? len : 1;
    }
  }
  out += '"';
}

namespace {

void appendField(std::string& out, const char* key, std::string_view value) {
  out += ",\"";
  out += key;
  out += "\":";
  appendJsonString(out, value);
}

void appendCertificate(std::string& out, const storage::CertStatus& c, const RuntimeViews& runtime) {
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
  const bool managed = it != runtime.end();
  out += ",\"managed\":";
  out += managed ? "true" : "false";
  appendField(out, "next_action", managed ? it->second.action : "");
  appendField(out, "plan", managed ? it->second.why : "");
  out += ",\"renewal_requested\":";
  out += managed && it->second.renewRequested ? "true" : "false";
  out += '}';
}

}  // namespace

Result<std::string> certificatesJson(LockedStore& store, std::int64_t now, const RuntimeViews& runtime,
                                     const std::optional<std::string>& only) {
  auto rows = store.with([&](storage::Store& s) { return only ? s.listStatus(now, *only) : s.listStatus(now); });
  if (!rows) {
    return fail(rows.error());
  }
  std::string out = "[";
  out.reserve(rows->size() * 320);
  bool first = true;
  for (const auto& c : *rows) {
    out += first ? "" : ",";
    first = false;
    appendCertificate(out, c, runtime);
  }
  out += "]";
  return out;
}

nlohmann::json eventsJson(const std::vector<storage::Event>& events) {
  nlohmann::json arr = nlohmann::json::array();
  for (const auto& e : events) {
    arr.push_back({{"id", e.id},
                   {"time", isoTime(e.time)},
                   {"level", storage::toString(e.level)},
                   {"event", e.eventId},
                   {"cert", e.certName.value_or("")},
                   {"message", sanitize(e.message)}});
  }
  return arr;
}

}  // namespace kms::daemon
