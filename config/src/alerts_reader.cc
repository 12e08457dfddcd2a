// [alerts] and its channels.
#include "alerts_reader.h"

#include <map>

#include "checks.h"

namespace kms::config::detail {
namespace {

/// The kinds of channel, as the sub-tables are named.
constexpr const char* kAlertmanager = "alertmanager";
constexpr const char* kWebhook = "webhook";
constexpr const char* kSmtp = "smtp";

std::string readName(SectionReader& r) {
  std::string name = r.string("name", Need::required).value_or("");
  if (r.has("name") && r.node("name")->is_string() && !isValidCertificateName(name)) {
    r.fail("name", "must be 1 to 64 of A-Z a-z 0-9 . _ -");
  }
  return name;
}

void readAlertmanager(SectionReader& r, AlertmanagerChannelConfig& out) {
  out.name = readName(r);
  out.url = r.url("url", Need::required).value_or("");
  out.caBundle = r.pemFile("ca_bundle", Need::optional);
  auto labels = r.strings("labels", Need::optional);
  if (!labels) {
    return;
  }
  for (std::size_t i = 0; i < labels->size(); ++i) {
    const std::string& label = (*labels)[i];
    const std::size_t eq = label.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == label.size()) {
      r.failElement("labels", i, "must be \"name=value\" with both parts non-empty");
      continue;
    }
    out.labels.emplace_back(label.substr(0, eq), label.substr(eq + 1));
  }
}

void readWebhook(SectionReader& r, WebhookChannelConfig& out) {
  out.name = readName(r);
  out.url = r.url("url", Need::required).value_or("");
  out.secretFile = r.secretFile("secret_file", Need::required).value_or("");
  out.caBundle = r.pemFile("ca_bundle", Need::optional);
}

/// smtp://host[:port] or smtps://host[:port], nothing after the authority but "/".
std::optional<std::string> checkSmtpUrl(const std::string& url) {
  for (const char* scheme : {"smtp://", "smtps://"}) {
    const std::string prefix(scheme);
    if (url.compare(0, prefix.size(), prefix) != 0) {
      continue;
    }
    const std::string rest = url.substr(prefix.size());
    const std::size_t slash = rest.find_first_of("/?#");
    if (slash != std::string::npos && rest.substr(slash) != "/") {
      return std::string("must be smtp://host[:port] or smtps://host[:port] (no path)");
    }
    return checkUrl("https://" + rest);  // the authority's rules are the same
  }
  return std::string("must be smtp://host[:port] or smtps://host[:port]");
}

void readSmtp(SectionReader& r, SmtpChannelConfig& out) {
  out.name = readName(r);
  if (auto url = r.nonEmpty("url", Need::required)) {
    if (auto problem = checkSmtpUrl(*url)) {
      r.fail("url", *problem);
    }
    out.url = *url;
  }
  out.from = r.nonEmpty("from", Need::required).value_or("");
  if (auto to = r.strings("to", Need::required)) {
    if (to->empty()) {
      r.fail("to", "must name at least one recipient");
    }
    for (std::size_t i = 0; i < to->size(); ++i) {
      const std::string& address = (*to)[i];
      if (address.find('@') == std::string::npos || address.find_first_of("<>\r\n ,") != std::string::npos) {
        r.failElement("to", i, "must be a plain address (user@domain)");
      }
    }
    out.to = *to;
  }
  if (out.from.find('@') == std::string::npos || out.from.find_first_of("<>\r\n ,") != std::string::npos) {
    if (r.has("from")) {
      r.fail("from", "must be a plain address (user@domain)");
    }
  }
  if (auto mode = r.string("starttls", Need::optional)) {
    if (*mode == "required") {
      out.startTls = StartTls::required;
    } else if (*mode == "opportunistic") {
      out.startTls = StartTls::opportunistic;
    } else if (*mode == "off") {
      out.startTls = StartTls::off;
    } else {
      r.fail("starttls", R"(must be "required", "opportunistic" or "off")");
    }
  }
  out.username = r.nonEmpty("username", Need::optional);
  out.passwordFile = r.secretFile("password_file", Need::optional);
  if (out.username.has_value() != r.has("password_file")) {
    r.fail(out.username ? "password_file" : "username", "set username and password_file together");
  }
  const bool implicitTls = out.url.rfind("smtps://", 0) == 0;
  if (r.has("password_file") && !implicitTls && out.startTls != StartTls::required) {
    r.fail("starttls", "must be \"required\" with a password_file (else the password could travel in clear)");
  }
  out.caBundle = r.pemFile("ca_bundle", Need::optional);
}

/// Each [[alerts.KIND]] entry read by `read` into a T appended to `out`; names checked
/// against `seen` (all kinds share one name space).
template <class T, class Read>
void readChannels(Loader& loader, toml::table& table, const char* kind, std::vector<T>& out,
                  std::map<std::string, std::string>& seen, Read read) {
  toml::array* entries = table.get_as<toml::array>(kind);
  if (entries == nullptr || !entries->is_array_of_tables()) {
    return;  // a wrong type was reported by checkKeysAndApplyDefaults
  }
  const std::string schema = std::string("alerts.") + kind;
  for (std::size_t i = 0; i < entries->size(); ++i) {
    toml::table& entry = *entries->get(i)->as_table();
    std::string label = schema + "[" + std::to_string(i) + "]";
    if (const auto* name = entry.get_as<std::string>("name"); name != nullptr && isValidCertificateName(name->get())) {
      label = schema + "." + name->get();
    }
    SectionReader reader(loader, entry, label, schema);
    reader.checkKeysAndApplyDefaults();
    T channel;
    read(reader, channel);
    if (!channel.name.empty()) {
      if (auto [it, inserted] = seen.emplace(channel.name, label); !inserted) {
        reader.fail("name", "is also " + it->second + "'s: channel names are unique across all kinds");
      }
    }
    out.push_back(std::move(channel));
  }
}

}  // namespace

void readAlerts(Loader& loader, SectionReader& r, toml::table& table, AlertsConfig& out) {
  readDuration(r, "interval", std::chrono::seconds(1), std::chrono::seconds(600), "must be between 1s and 10m",
               out.interval);
  readDuration(r, "repeat_interval", std::chrono::seconds(60), std::chrono::seconds(30L * 86400),
               "must be between 1m and 30d", out.repeatInterval);
  readDuration(r, "timeout", std::chrono::seconds(1), std::chrono::seconds(120), "must be between 1s and 2m",
               out.timeout);
  readDuration(r, "retry_first", std::chrono::seconds(1), std::chrono::seconds(3600), "must be between 1s and 1h",
               out.retryFirst);
  readDuration(r, "retry_max", std::chrono::seconds(1), std::chrono::seconds(86400), "must be between 1s and 1d",
               out.retryMax);
  if (out.retryMax < out.retryFirst) {
    r.fail("retry_max", "must be at least retry_first (" + formatDuration(out.retryFirst) + ")");
  }
  readInteger(r, "failures", 1, 1000, out.failures);
  if (auto fraction = r.number("warning_fraction", Need::optional)) {
    if (!(*fraction > 0 && *fraction < 1)) {
      r.fail("warning_fraction", "must be between 0 and 1 (a share of the lifetime), exclusive");
    } else {
      out.warningFraction = *fraction;
    }
  }
  std::map<std::string, std::string> seen;
  readChannels(loader, table, kAlertmanager, out.alertmanagers, seen, readAlertmanager);
  readChannels(loader, table, kWebhook, out.webhooks, seen, readWebhook);
  readChannels(loader, table, kSmtp, out.smtp, seen, readSmtp);
}

}  // namespace kms::config::detail
