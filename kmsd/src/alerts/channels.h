#pragma once
// Where kmsd's alerts go: Alertmanager (API v2), a signed webhook, mail. Each channel sends
// one notification at a time and blocks at most [alerts] timeout; the notifier runs each
// channel on a thread of its own so that one hanging channel holds nothing else.

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "config/config.h"
#include "http/transport.h"
#include "kms/error.h"

namespace kms::daemon {

/// One message about one alert: it fires (again), or it resolved at `endsAt`.
struct Notification {
  std::string certName;
  std::string condition;
  std::string severity;
  std::string summary;
  std::int64_t startsAt = 0;
  std::optional<std::int64_t> endsAt;  ///< resolved at
  std::int64_t now = 0;
  std::string id;  ///< unique per message (the webhook's "id", the mail's Message-ID)
  [[nodiscard]] bool resolved() const { return endsAt.has_value(); }
};

class AlertChannel {
 public:
  virtual ~AlertChannel() = default;
  [[nodiscard]] virtual const std::string& name() const = 0;
  [[nodiscard]] virtual const char* kind() const = 0;  ///< "alertmanager" | "webhook" | "smtp"
  /// How often a firing alert is sent again at most, when [alerts] repeat_interval is longer
  /// (Alertmanager forgets an alert at its endsAt unless it is sent again); 0: no limit.
  [[nodiscard]] virtual std::int64_t resendSeconds() const { return 0; }
  /// Sends one notification (blocking, within the timeout). An error names the channel's
  /// peer and what it answered; Errc::protocol for an answer retrying will not change soon
  /// (a 4xx, a refused recipient).
  [[nodiscard]] virtual Result<void> send(const Notification& n) = 0;
  /// Makes a send in progress, and every later one, fail soon (kmsd stops).
  virtual void cancel() = 0;
};

/// The channels of `alerts`, in file order (Alertmanager, webhook, SMTP).
[[nodiscard]] Result<std::vector<std::unique_ptr<AlertChannel>>> makeAlertChannels(const config::AlertsConfig& alerts);

/// The body an Alertmanager channel posts (a JSON array of one alert), and a webhook's
/// (one JSON object), and the mail's text: exposed for the unit tests.
[[nodiscard]] std::string alertmanagerBody(const Notification& n,
                                           const std::vector<std::pair<std::string, std::string>>& labels,
                                           std::int64_t resendSeconds);
[[nodiscard]] std::string webhookBody(const Notification& n);
/// `sha256=` and the lower-case hex HMAC-SHA256 of `body` under `key`.
[[nodiscard]] Result<std::string> webhookSignature(std::string_view key, std::string_view body);
[[nodiscard]] std::string mailText(const Notification& n, const config::SmtpChannelConfig& smtp);

}  // namespace kms::daemon
