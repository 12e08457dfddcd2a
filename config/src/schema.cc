#include "schema.h"

#include <array>
#include <cctype>

#ifndef KMS_DEFAULT_PKCS11_MODULE
#error "KMS_DEFAULT_PKCS11_MODULE must be defined by the build (config/CMakeLists.txt)"
#endif

namespace kms::config::detail {
namespace {

constexpr std::array kSettings = {
    // [daemon]
    Setting{"daemon", "state_dir", Kind::string, "", "absolute directory holding kmsd.db"},
    Setting{"daemon", "control_socket", Kind::string, "/run/kmsd/control.sock",
            "absolute path of the control API Unix socket"},
    Setting{"daemon", "metrics_listen", Kind::string, "",
            "host:port serving GET /metrics, /healthz and /readyz over HTTP (Prometheus)"},
    Setting{"daemon", "metrics_tls_certificate", Kind::string, "",
            "PEM certificate chain: metrics_listen serves HTTPS (with metrics_tls_key)"},
    Setting{"daemon", "metrics_tls_key", Kind::string, "", "its private key (a secret file)"},
    Setting{"daemon", "metrics_basic_auth_file", Kind::string, "",
            "secret file of one line user:password that requests on metrics_listen must present (HTTP basic auth)"},
    Setting{"daemon", "log_format", Kind::string, "text", "\"text\" or \"json\""},
    Setting{"daemon", "max_concurrent_orders", Kind::integer, "0",
            "ACME orders in flight at once (1..1024); 0: two per CPU core"},
    Setting{"daemon", "retry_first", Kind::string, "1m", "first wait after a failed step (1s..1d)"},
    Setting{"daemon", "retry_max", Kind::string, "1h", "longest wait between retries (at least retry_first)"},
    Setting{"daemon", "listener_max_connections", Kind::integer, "256",
            "open connections per listener (control API, http-01), 1..65536"},
    Setting{"daemon", "listener_max_per_peer", Kind::integer, "16",
            "open connections from one peer address on a TCP listener, 1..65536"},
    Setting{"daemon", "stop_grace", Kind::string, "6s",
            "after SIGTERM, how long steps in flight may finish before their requests are cancelled (1s..8s)"},
    Setting{"daemon", "listener_header_timeout", Kind::string, "5s",
            "time a request's headers may take to arrive (1s..5m)"},
    Setting{"daemon", "control_admin_group", Kind::string, "",
            "group whose members (with root and kmsd's user) may revoke through the control API; any "
            "user who can open the socket when unset"},
    Setting{"daemon", "events_keep", Kind::string, "90d", "age after which events leave the event log (1h..10y)"},
    Setting{"daemon", "events_max", Kind::integer, "100000", "events the event log keeps at most (100..10^8)"},
    // [hsm]
    Setting{"hsm", "module", Kind::string, KMS_DEFAULT_PKCS11_MODULE, "PKCS#11 module (.so) path"},
    Setting{"hsm", "token_label", Kind::string, "", "label of the token (1..32 bytes)"},
    Setting{"hsm", "pin_file", Kind::string, "", "file holding the user PIN"},
    Setting{"hsm", "session_pool", Kind::integer, "4", "PKCS#11 sessions kept open (1..64)"},
    Setting{"hsm", "softhsm2_conf", Kind::string, "",
            "SoftHSM2 only: its softhsm2.conf (the token directory), set as SOFTHSM2_CONF before the module loads"},
    // [sti_pa]
    Setting{"sti_pa", "url", Kind::string, "", "STI-PA API base URL"},
    Setting{"sti_pa", "user_id", Kind::string, "", "STI-PA API user"},
    Setting{"sti_pa", "password_file", Kind::string, "", "file holding the STI-PA password"},
    Setting{"sti_pa", "trust_anchor", Kind::string, "", "PEM roots verifying SPC tokens and the CA list"},
    Setting{"sti_pa", "ca_bundle", Kind::string, "", "extra PEM roots for the STI-PA's TLS (separate from [acme])"},
    Setting{"sti_pa", "crl_signer", Kind::string, "", "PEM certificate that signs the STI-PA CRL"},
    Setting{"sti_pa", "trust_refresh", Kind::string, "1h", "how often the CA list and the CRL are read"},
    Setting{"sti_pa", "allowed_hosts", Kind::stringArray, "",
            "hosts the STI-PA may name for x5u and the CRL (default: its own)"},
    Setting{"sti_pa", "fingerprint", Kind::string, "spki", "\"spki\" or \"jwk-thumbprint\""},
    Setting{"sti_pa", "insecure_skip_signer_check", Kind::boolean, "false",
            "labs only: no trust_anchor (tokens trusted on their own x5u)"},
    // [acme]
    Setting{"acme", "directory_url", Kind::string, "", "ACME directory URL"},
    Setting{"acme", "ca_bundle", Kind::string, "", "extra PEM roots for the ACME server's TLS"},
    Setting{"acme", "trust_anchors", Kind::string, "", "PEM roots an issued chain must verify to"},
    Setting{"acme", "eab_kid", Kind::string, "", "external account binding key id"},
    Setting{"acme", "eab_hmac_file", Kind::string, "", "file holding the EAB HMAC key"},
    Setting{"acme", "contact", Kind::stringArray, "", "account contacts, each \"mailto:...\""},
    Setting{"acme", "http01_listen", Kind::string, "127.0.0.1:80", "host:port of the http-01 responder"},
    Setting{"acme", "dns01_hook", Kind::string, "", "executable run for dns-01 challenges"},
    Setting{"acme", "insecure_skip_chain_check", Kind::boolean, "false",
            "labs only: accept issued chains unchecked without trust anchors"},
    // [publisher]
    // [metrics]
    Setting{"metrics", "per_certificate_limit", Kind::integer, "1000",
            "certificates (by name) with series of their own in /metrics; beyond, aggregates only"},
    // [alerts]
    Setting{"alerts", "interval", Kind::string, "30s", "how often the alert conditions are evaluated (1s..10m)"},
    Setting{"alerts", "repeat_interval", Kind::string, "4h", "a firing alert is sent again this often (1m..30d)"},
    Setting{"alerts", "failures", Kind::integer, "3", "failures in a row before renewal_failing fires (1..1000)"},
    Setting{"alerts", "warning_fraction", Kind::number, "0.1667",
            "expiring fires inside this share of the lifetime before notAfter, when not renewed"},
    Setting{"alerts", "timeout", Kind::string, "10s", "one delivery to a channel at most (1s..2m)"},
    Setting{"alerts", "retry_first", Kind::string, "30s", "first wait after a failed delivery (1s..1h)"},
    Setting{"alerts", "retry_max", Kind::string, "30m", "longest wait between delivery attempts (1s..1d)"},
    Setting{"alerts", "alertmanager", Kind::tableArray, "", "[[alerts.alertmanager]] channels"},
    Setting{"alerts", "webhook", Kind::tableArray, "", "[[alerts.webhook]] channels"},
    Setting{"alerts", "smtp", Kind::tableArray, "", "[[alerts.smtp]] channels"},
    Setting{"alerts.alertmanager", "name", Kind::string, "", "unique channel name, [A-Za-z0-9._-]{1,64}"},
    Setting{"alerts.alertmanager", "url", Kind::string, "", "Alertmanager's base URL (POST <url>/api/v2/alerts)"},
    Setting{"alerts.alertmanager", "ca_bundle", Kind::string, "", "extra PEM roots for its TLS"},
    Setting{"alerts.alertmanager", "labels", Kind::stringArray, "", "labels added to each alert, \"name=value\""},
    Setting{"alerts.webhook", "name", Kind::string, "", "unique channel name, [A-Za-z0-9._-]{1,64}"},
    Setting{"alerts.webhook", "url", Kind::string, "", "URL receiving a JSON POST per notification"},
    Setting{"alerts.webhook", "secret_file", Kind::string, "",
            "secret file holding the HMAC-SHA256 key of X-Kms-Signature-256"},
    Setting{"alerts.webhook", "ca_bundle", Kind::string, "", "extra PEM roots for its TLS"},
    Setting{"alerts.smtp", "name", Kind::string, "", "unique channel name, [A-Za-z0-9._-]{1,64}"},
    Setting{"alerts.smtp", "url", Kind::string, "", "smtp://host[:port] or smtps://host[:port]"},
    Setting{"alerts.smtp", "from", Kind::string, "", "sender address"},
    Setting{"alerts.smtp", "to", Kind::stringArray, "", "recipient addresses"},
    Setting{"alerts.smtp", "starttls", Kind::string, "required",
            "\"required\", \"opportunistic\" or \"off\" (smtp:// only)"},
    Setting{"alerts.smtp", "username", Kind::string, "", "SMTP AUTH user"},
    Setting{"alerts.smtp", "password_file", Kind::string, "", "secret file holding the SMTP AUTH password"},
    Setting{"alerts.smtp", "ca_bundle", Kind::string, "", "extra PEM roots for its TLS"},
    Setting{"signing", "threads", Kind::integer, "2",
            "threads signing PASSporTs (1..64), each with a token session of its own"},
    Setting{"signing", "listen", Kind::string, "",
            "host:port of the TCP signing API (ATIS-1000082); clear text on a loopback address only"},
    Setting{"signing", "tls_certificate", Kind::string, "", "PEM certificate chain served on listen"},
    Setting{"signing", "tls_key", Kind::string, "", "its private key (a secret file)"},
    Setting{"signing", "client_ca", Kind::string, "", "PEM CAs that client certificates must chain to"},
    Setting{"signing", "record", Kind::string, "",
            "file recording each signature (time, client, serial, attest, orig, dest count, origid)"},
    Setting{"signing", "record_max_size", Kind::integer, "67108864",
            "bytes after which the record is rotated (1 MiB..64 GiB)"},
    Setting{"signing", "record_keep", Kind::integer, "5", "rotated record files kept (1..1000)"},
    Setting{"signing", "client", Kind::tableArray, "", "[[signing.client]] entries"},
    // [[signing.client]]
    Setting{"signing.client", "name", Kind::string, "", "unique name, [A-Za-z0-9._-]{1,64}"},
    Setting{"signing.client", "token_file", Kind::string, "", "secret file holding the client's bearer token"},
    Setting{"signing.client", "certificate_subject", Kind::string, "",
            "RFC 2253 subject of the client's TLS certificate (\"CN=sbc1,O=Example\")"},
    Setting{"signing.client", "certificates", Kind::stringArray, "",
            "names of the SHAKEN [[certificate]] entries it may sign with"},
    Setting{"signing.client", "attest", Kind::stringArray, "A,B,C", "attestation levels it may ask for"},
    Setting{"signing.client", "rate_limit", Kind::integer, "0", "signing requests per second (0: no limit)"},
    Setting{"publisher", "web_root", Kind::string, "", "absolute directory served at base_url"},
    Setting{"publisher", "base_url", Kind::string, "", "public URL of web_root, ending in \"/\""},
    Setting{"publisher", "retain", Kind::string, "24h",
            "how long replaced certificates stay published (90s, 30m, 24h, 7d)"},
    Setting{"publisher", "publication_check", Kind::string, "fetch",
            "\"fetch\": the x5u is fetched back and compared before activation; \"file\": the file suffices"},
    Setting{"publisher", "check_timeout", Kind::string, "10s", "timeout of one publication check fetch"},
    Setting{"publisher", "check_retries", Kind::integer, "3", "check fetches after the first, 2 s apart (0..10)"},
    Setting{"publisher", "ca_bundle", Kind::string, "", "extra PEM roots for fetching base_url"},
    Setting{"publisher", "hook_timeout", Kind::string, "5m", "a deploy hook running longer is killed"},
    // [[certificate]]
    Setting{"certificate", "name", Kind::string, "", "unique name, [A-Za-z0-9._-]{1,64}"},
    Setting{"certificate", "spc", Kind::string, "", "SHAKEN service provider code"},
    Setting{"certificate", "identifiers", Kind::stringArray, "", "generic ACME identifiers, each \"dns:NAME\""},
    Setting{"certificate", "challenge", Kind::string, "",
            "tkauth-01 with spc; http-01 (default) or dns-01 with identifiers"},
    Setting{"certificate", "subject_o", Kind::string, "", "subject O (required with spc)"},
    Setting{"certificate", "subject_c", Kind::string, "US", "subject C, two upper-case letters"},
    Setting{"certificate", "renew_before_fraction", Kind::number, "0.333",
            "renew when this fraction of the lifetime is left, in (0, 1)"},
    Setting{"certificate", "reuse_key", Kind::boolean, "false",
            "renew with the active certificate's key (a lost or compromised key is still replaced)"},
    Setting{"certificate", "deploy_hook", Kind::string, "",
            "executable run after each new certificate is active (KMS_NAME, KMS_CERT_PATH, ...)"},
};

}  // namespace

std::span<const Setting> settings() {
  return kSettings;
}

const Setting* findSetting(std::string_view section, std::string_view key) {
  for (const Setting& setting : kSettings) {
    if (setting.section == section && setting.key == key) {
      return &setting;
    }
  }
  return nullptr;
}

const char* kindName(Kind kind) {
  switch (kind) {
    case Kind::string:
      return "a string";
    case Kind::integer:
      return "an integer";
    case Kind::number:
      return "a number";
    case Kind::boolean:
      return "true or false";
    case Kind::tableArray:
      return "an array of tables";
    case Kind::stringArray:
      return "an array of strings";
  }
  return "a value";
}

std::string envName(std::string_view section, std::string_view key) {
  std::string name = "KMSD_";
  for (char c : section) {
    name += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  name += '_';
  for (char c : key) {
    name += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  return name;
}

}  // namespace kms::config::detail
