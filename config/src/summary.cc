#include <charconv>

#include "checks.h"
#include "config/config.h"

namespace kms::config {
namespace {

using detail::quoted;

constexpr std::string_view kSecretNote = "  # secret file; content not shown";

class Writer {
 public:
  void section(std::string_view header) {
    if (!out_.empty()) {
      out_ += '\n';
    }
    out_ += header;
    out_ += '\n';
  }
  void line(std::string_view key, const std::string& value, std::string_view note = {}) {
    out_ += key;
    out_ += " = ";
    out_ += value;
    out_ += note;
    out_ += '\n';
  }
  void text(std::string_view key, const std::string& value, std::string_view note = {}) {
    line(key, quoted(value), note);
  }
  void optionalText(std::string_view key, const std::optional<std::string>& value, std::string_view note = {}) {
    if (value) {
      text(key, *value, note);
    }
  }
  void list(std::string_view key, const std::vector<std::string>& values, std::string_view prefix = {}) {
    std::string joined = "[";
    for (std::size_t i = 0; i < values.size(); ++i) {
      joined += i == 0 ? "" : ", ";
      joined += quoted(std::string(prefix) + values[i]);
    }
    joined += ']';
    line(key, joined);
  }
  void comment(std::string_view text) {
    out_ += "# ";
    out_ += text;
    out_ += '\n';
  }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

std::string formatNumber(double value) {
  char buffer[64];
  auto [end, ec] = std::to_chars(buffer, buffer + sizeof buffer, value);
  if (ec != std::errc()) {
    return "0.0";
  }
  std::string out(buffer, end);
  if (out.find_first_of(".eEn") == std::string::npos) {
    out += ".0";  // keep it a TOML float
  }
  return out;
}

void writeAlerts(Writer& w, const AlertsConfig& alerts) {
  w.section("[alerts]");
  w.text("interval", detail::formatDuration(alerts.interval));
  w.text("repeat_interval", detail::formatDuration(alerts.repeatInterval));
  w.line("failures", std::to_string(alerts.failures));
  w.line("warning_fraction", formatNumber(alerts.warningFraction));
  w.text("timeout", detail::formatDuration(alerts.timeout));
  w.text("retry_first", detail::formatDuration(alerts.retryFirst));
  w.text("retry_max", detail::formatDuration(alerts.retryMax));
  for (const AlertmanagerChannelConfig& am : alerts.alertmanagers) {
    w.section("[[alerts.alertmanager]]");
    w.text("name", am.name);
    w.text("url", am.url);
    w.optionalText("ca_bundle", am.caBundle);
    std::vector<std::string> labels;
    labels.reserve(am.labels.size());
    for (const auto& [name, value] : am.labels) {
      std::string label = name;
      label += '=';
      label += value;
      labels.push_back(std::move(label));
    }
    if (!labels.empty()) {
      w.list("labels", labels);
    }
  }
  for (const WebhookChannelConfig& hook : alerts.webhooks) {
    w.section("[[alerts.webhook]]");
    w.text("name", hook.name);
    w.text("url", hook.url);
    w.text("secret_file", hook.secretFile, kSecretNote);
    w.optionalText("ca_bundle", hook.caBundle);
  }
  for (const SmtpChannelConfig& smtp : alerts.smtp) {
    w.section("[[alerts.smtp]]");
    w.text("name", smtp.name);
    w.text("url", smtp.url);
    w.text("from", smtp.from);
    w.list("to", smtp.to);
    w.text("starttls", toString(smtp.startTls));
    w.optionalText("username", smtp.username);
    w.optionalText("password_file", smtp.passwordFile, kSecretNote);
    w.optionalText("ca_bundle", smtp.caBundle);
  }
}

}  // namespace

std::string redactedSummary(const Config& config) {
  Writer w;
  w.comment("kmsd effective configuration, loaded from " + config.source);
  if (!config.envOverrides.empty()) {
    std::string names;
    for (const std::string& name : config.envOverrides) {
      names += names.empty() ? "" : ", ";
      names += name;
    }
    w.comment("environment overrides: " + names);
  }

  w.section("[daemon]");
  w.text("state_dir", config.daemon.stateDir);
  w.text("control_socket", config.daemon.controlSocket);
  w.text("log_format", toString(config.daemon.logFormat));
  w.line("max_concurrent_orders", std::to_string(config.daemon.maxConcurrentOrders));
  w.text("retry_first", detail::formatDuration(config.daemon.retryFirst));
  w.text("retry_max", detail::formatDuration(config.daemon.retryMax));
  w.line("listener_max_connections", std::to_string(config.daemon.listenerMaxConnections));
  w.line("listener_max_per_peer", std::to_string(config.daemon.listenerMaxPerPeer));
  w.text("listener_header_timeout", detail::formatDuration(config.daemon.listenerHeaderTimeout));
  w.text("stop_grace", detail::formatDuration(config.daemon.stopGrace));
  if (config.daemon.controlAdminGroup) {
    w.text("control_admin_group", *config.daemon.controlAdminGroup);
  }
  w.text("events_keep", detail::formatDuration(config.daemon.eventsKeep));
  w.line("events_max", std::to_string(config.daemon.eventsMax));
  if (config.daemon.metricsListen) {
    w.text("metrics_listen", config.daemon.metricsListen->toString());
  }
  w.optionalText("metrics_tls_certificate", config.daemon.metricsTlsCertificate);
  w.optionalText("metrics_tls_key", config.daemon.metricsTlsKey, kSecretNote);
  w.optionalText("metrics_basic_auth_file", config.daemon.metricsBasicAuthFile, kSecretNote);

  w.section("[hsm]");
  w.text("module", config.hsm.module);
  w.text("token_label", config.hsm.tokenLabel);
  w.text("pin_file", config.hsm.pinFile, kSecretNote);
  w.line("session_pool", std::to_string(config.hsm.sessionPool));
  w.optionalText("softhsm2_conf", config.hsm.softhsm2Conf);

  if (config.stiPa) {
    const StiPaConfig& sti = *config.stiPa;
    w.section("[sti_pa]");
    w.text("url", sti.url);
    w.text("user_id", sti.userId);
    w.text("password_file", sti.passwordFile, kSecretNote);
    w.optionalText("trust_anchor", sti.trustAnchor);
    w.optionalText("ca_bundle", sti.caBundle);
    w.optionalText("crl_signer", sti.crlSigner);
    w.text("trust_refresh", detail::formatDuration(sti.trustRefresh));
    if (!sti.allowedHosts.empty()) {
      w.list("allowed_hosts", sti.allowedHosts);
    }
    w.text("fingerprint", toString(sti.fingerprint));
    if (sti.insecureSkipSignerCheck) {
      w.line("insecure_skip_signer_check", "true");
    }
  }

  const AcmeConfig& acme = config.acme;
  w.section("[acme]");
  w.text("directory_url", acme.directoryUrl);
  w.optionalText("ca_bundle", acme.caBundle);
  w.optionalText("trust_anchors", acme.trustAnchors);
  w.optionalText("eab_kid", acme.eabKid);
  w.optionalText("eab_hmac_file", acme.eabHmacFile, kSecretNote);
  w.list("contact", acme.contact);
  w.text("http01_listen", acme.http01Listen.toString());
  w.optionalText("dns01_hook", acme.dns01Hook);
  if (acme.insecureSkipChainCheck) {
    w.line("insecure_skip_chain_check", "true");
  }

  w.section("[metrics]");
  w.line("per_certificate_limit", std::to_string(config.metrics.perCertificateLimit));

  const AlertsConfig& alerts = config.alerts;
  if (!alerts.empty()) {
    writeAlerts(w, alerts);
  }


  const SigningConfig& signing = config.signing;
  w.section("[signing]");
  w.line("threads", std::to_string(signing.threads));
  if (signing.listen) {
    w.text("listen", signing.listen->toString());
  }
  w.optionalText("tls_certificate", signing.tlsCertificate);
  w.optionalText("tls_key", signing.tlsKey, kSecretNote);
  w.optionalText("client_ca", signing.clientCa);
  if (signing.record) {
    w.text("record", *signing.record);
    w.line("record_max_size", std::to_string(signing.recordMaxBytes));
    w.line("record_keep", std::to_string(signing.recordKeep));
  }
  for (const SigningClientConfig& client : signing.clients) {
    w.section("[[signing.client]]");
    w.text("name", client.name);
    w.optionalText("token_file", client.tokenFile, kSecretNote);
    w.optionalText("certificate_subject", client.certificateSubject);
    w.list("certificates", client.certificates);
    w.list("attest", client.attest);
    w.line("rate_limit", std::to_string(client.rateLimit));
  }
  w.section("[publisher]");
  w.text("web_root", config.publisher.webRoot);
  w.text("base_url", config.publisher.baseUrl);
  w.text("retain", detail::formatDuration(config.publisher.retain));
  w.text("publication_check", toString(config.publisher.publicationCheck));
  w.text("check_timeout", detail::formatDuration(config.publisher.checkTimeout));
  w.line("check_retries", std::to_string(config.publisher.checkRetries));
  w.optionalText("ca_bundle", config.publisher.caBundle);
  w.text("hook_timeout", detail::formatDuration(config.publisher.hookTimeout));

  for (const CertificateConfig& certificate : config.certificates) {
    w.section("[[certificate]]");
    w.text("name", certificate.name);
    w.optionalText("spc", certificate.spc);
    if (!certificate.spc) {
      w.list("identifiers", certificate.dnsNames, "dns:");
    }
    w.text("challenge", toString(certificate.challenge));
    w.optionalText("subject_o", certificate.subjectO);
    w.text("subject_c", certificate.subjectC);
    w.line("renew_before_fraction", formatNumber(certificate.renewBeforeFraction));
    w.line("reuse_key", certificate.reuseKey ? "true" : "false");
    w.optionalText("deploy_hook", certificate.deployHook);
  }
  return w.take();
}

}  // namespace kms::config
