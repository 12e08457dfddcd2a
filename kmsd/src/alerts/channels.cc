#include "alerts/channels.h"

#include <algorithm>
#include <ctime>

#include <nlohmann/json.hpp>

#include "alerts/conditions.h"
#include "common/time_format.h"
#include "events/event_sink.h"
#include "http/smtp.h"
#include "kms/secret.h"
#include "pki/encoding.h"

namespace kms::daemon {
namespace {

/// Alertmanager is sent a firing alert again each minute at most, with an endsAt four of
/// those ahead (as Prometheus does): it resolves on its own when kmsd stops sending.
constexpr std::int64_t kAlertmanagerResend = 60;

/// A peer's answer as it goes into an error: one line, at most 300 bytes.
std::string answerOf(const http::HttpResponse& response) {
  std::string text = "HTTP " + std::to_string(response.status);
  if (!response.body.empty()) {
    text += ": " + sanitize(response.body, 300);
  }
  return text;
}

Result<void> checkAnswer(const std::string& who, const http::HttpResponse& response) {
  if (response.status >= 200 && response.status < 300) {
    return {};
  }
  // A 4xx (but a timeout or a rate limit) will come back the same until the channel or the
  // alert changes; a 5xx may mend soon.
  const bool lasting = response.status >= 400 && response.status < 500 && response.status != 408 &&
                       response.status != 429;
  return fail(lasting ? Errc::protocol : Errc::network, who + " answered " + answerOf(response));
}

Result<std::unique_ptr<http::Transport>> transportFor(const std::optional<std::string>& caBundle,
                                                      std::chrono::seconds timeout) {
  http::TransportOptions options;
  options.caBundle = caBundle;
  options.connectTimeout = timeout;
  options.requestTimeout = timeout;
  options.maxBodyBytes = std::size_t{64} * 1024;
  options.userAgent = "shaken-kms-alerts";
  return http::makeCurlTransport(options);
}

class AlertmanagerChannel final : public AlertChannel {
 public:
  AlertmanagerChannel(const config::AlertmanagerChannelConfig& c, std::unique_ptr<http::Transport> transport)
      : config_(c), transport_(std::move(transport)) {
    std::string base = c.url;
    while (!base.empty() && base.back() == '/') {
      base.pop_back();
    }
    url_ = base + "/api/v2/alerts";
  }
  const std::string& name() const override { return config_.name; }
  const char* kind() const override { return "alertmanager"; }
  std::int64_t resendSeconds() const override { return kAlertmanagerResend; }
  Result<void> send(const Notification& n) override {
    http::HttpRequest request;
    request.method = "POST";
    request.url = url_;
    request.headers = {{"Content-Type", "application/json"}};
    request.body = alertmanagerBody(n, config_.labels, kAlertmanagerResend);
    auto response = transport_->send(request);
    if (!response) {
      return fail(response.error());
    }
    return checkAnswer("Alertmanager " + url_, *response);
  }
  void cancel() override { transport_->cancel(); }

 private:
  config::AlertmanagerChannelConfig config_;
  std::unique_ptr<http::Transport> transport_;
  std::string url_;
};

class WebhookChannel final : public AlertChannel {
 public:
  WebhookChannel(const config::WebhookChannelConfig& c, std::unique_ptr<http::Transport> transport)
      : config_(c), transport_(std::move(transport)) {}
  const std::string& name() const override { return config_.name; }
  const char* kind() const override { return "webhook"; }
  Result<void> send(const Notification& n) override {
    auto key = readSecretFile(config_.secretFile);  // read at each send: a rotated key applies at once
    if (!key) {
      return fail(key.error());
    }
    http::HttpRequest request;
    request.method = "POST";
    request.url = config_.url;
    request.body = webhookBody(n);
    auto signature = webhookSignature(key->view(), request.body);
    if (!signature) {
      return fail(signature.error());
    }
    request.headers = {{"Content-Type", "application/json"},
                       {"X-Kms-Signature-256", *signature},
                       {"X-Kms-Timestamp", std::to_string(n.now)}};
    auto response = transport_->send(request);
    if (!response) {
      return fail(response.error());
    }
    return checkAnswer("webhook " + config_.url, *response);
  }
  void cancel() override { transport_->cancel(); }

 private:
  config::WebhookChannelConfig config_;
  std::unique_ptr<http::Transport> transport_;
};

class SmtpChannel final : public AlertChannel {
 public:
  SmtpChannel(const config::SmtpChannelConfig& c, std::chrono::seconds timeout) : config_(c), timeout_(timeout) {}
  const std::string& name() const override { return config_.name; }
  const char* kind() const override { return "smtp"; }
  Result<void> send(const Notification& n) override {
    http::SmtpOptions options;
    options.url = config_.url;
    options.startTls = config_.startTls == config::StartTls::required        ? http::SmtpOptions::StartTls::required
                       : config_.startTls == config::StartTls::opportunistic ? http::SmtpOptions::StartTls::opportunistic
                                                                              : http::SmtpOptions::StartTls::off;
    options.caBundle = config_.caBundle;
    options.timeout = timeout_;
    options.cancelled = &cancelled_;
    std::optional<SecretBytes> password;
    if (config_.passwordFile) {
      auto read = readSecretFile(*config_.passwordFile);
      if (!read) {
        return fail(read.error());
      }
      password = std::move(*read);
      options.username = config_.username;
      options.password = std::string(password->view());
    }
    auto sent = http::sendMail(options, http::Mail{config_.from, config_.to, mailText(n, config_)});
    if (options.password) {
      std::fill(options.password->begin(), options.password->end(), '\0');
    }
    return sent;
  }
  void cancel() override { cancelled_.store(true); }

 private:
  config::SmtpChannelConfig config_;
  std::chrono::seconds timeout_;
  std::atomic<bool> cancelled_{false};
};

std::string rfc5322Date(std::int64_t t) {
  std::time_t tt = static_cast<std::time_t>(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  static const char* const kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static const char* const kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                        "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  char buf[64];
  if (std::snprintf(buf, sizeof buf, "%s, %02d %s %04d %02d:%02d:%02d +0000", kDays[tm.tm_wday % 7], tm.tm_mday,
                    kMonths[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec) < 0) {
    return isoTime(t);
  }
  return buf;
}

}  // namespace

std::string alertmanagerBody(const Notification& n, const std::vector<std::pair<std::string, std::string>>& labels,
                             std::int64_t resendSeconds) {
  nlohmann::json alert;
  nlohmann::json& l = alert["labels"];
  for (const auto& [key, value] : labels) {
    l[key] = value;
  }
  // kmsd's own labels last: an operator's label cannot rename the alert.
  l["alertname"] = alertName(n.condition);
  l["name"] = n.certName;
  l["condition"] = n.condition;
  l["severity"] = n.severity;
  l["source"] = "kmsd";
  alert["annotations"] = {{"summary", n.summary}};
  alert["startsAt"] = isoTime(n.startsAt);
  alert["endsAt"] = isoTime(n.endsAt ? *n.endsAt : n.now + 4 * resendSeconds);
  return nlohmann::json::array({alert}).dump();
}

std::string webhookBody(const Notification& n) {
  nlohmann::json body;
  body["version"] = 1;
  body["id"] = n.id;
  body["status"] = n.resolved() ? "resolved" : "firing";
  body["sent_at"] = isoTime(n.now);
  body["alert"] = {{"name", n.certName},
                   {"condition", n.condition},
                   {"alertname", alertName(n.condition)},
                   {"severity", n.severity},
                   {"summary", n.summary},
                   {"starts_at", isoTime(n.startsAt)},
                   {"ends_at", n.endsAt ? nlohmann::json(isoTime(*n.endsAt)) : nlohmann::json(nullptr)}};
  return body.dump();
}

Result<std::string> webhookSignature(std::string_view key, std::string_view body) {
  auto mac = pki::hmacSha256(pki::asBytes(key), pki::asBytes(body));
  if (!mac) {
    return fail(mac.error());
  }
  std::string hex = pki::hexEncode(*mac);
  std::transform(hex.begin(), hex.end(), hex.begin(), [](char c) { return c >= 'A' && c <= 'F' ? c - 'A' + 'a' : c; });
  return "sha256=" + hex;
}

std::string mailText(const Notification& n, const config::SmtpChannelConfig& smtp) {
  std::string to;
  for (const std::string& address : smtp.to) {
    if (!to.empty()) {
      to += ", ";
    }
    to += address;
  }
  const std::string status = n.resolved() ? "RESOLVED" : "FIRING";
  std::string text;
  auto line = [&](const std::string& s) { text += s + "\r\n"; };
  line("Date: " + rfc5322Date(n.now));
  line("From: " + smtp.from);
  line("To: " + to);
  line("Subject: [kmsd " + status + "] " + n.certName + ": " + n.condition);
  line("Message-ID: <" + n.id + "@kmsd>");
  line("MIME-Version: 1.0");
  line("Content-Type: text/plain; charset=utf-8");
  line("Content-Transfer-Encoding: 8bit");
  line("X-Kms-Alert: " + alertName(n.condition));
  line("");
  line(n.resolved() ? "Resolved: " + n.summary : n.summary);
  line("");
  line("certificate: " + n.certName);
  line("condition:   " + n.condition + " (" + n.severity + ")");
  line("since:       " + isoTime(n.startsAt));
  if (n.endsAt) {
    line("resolved:    " + isoTime(*n.endsAt));
  }
  line("");
  line("kmsctl status and kmsctl alerts on the kmsd host say more.");
  return text;
}

Result<std::vector<std::unique_ptr<AlertChannel>>> makeAlertChannels(const config::AlertsConfig& alerts) {
  std::vector<std::unique_ptr<AlertChannel>> out;
  for (const auto& c : alerts.alertmanagers) {
    auto transport = transportFor(c.caBundle, alerts.timeout);
    if (!transport) {
      return fail(transport.error());
    }
    out.push_back(std::make_unique<AlertmanagerChannel>(c, std::move(*transport)));
  }
  for (const auto& c : alerts.webhooks) {
    auto transport = transportFor(c.caBundle, alerts.timeout);
    if (!transport) {
      return fail(transport.error());
    }
    out.push_back(std::make_unique<WebhookChannel>(c, std::move(*transport)));
  }
  for (const auto& c : alerts.smtp) {
    out.push_back(std::make_unique<SmtpChannel>(c, alerts.timeout));
  }
  return out;
}

}  // namespace kms::daemon
