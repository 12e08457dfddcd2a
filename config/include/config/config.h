#pragma once
/// @file kmsd configuration: one TOML file parsed into a typed, validated `Config`.
///
/// Loading never throws on bad input. Every problem found is reported at once, one
/// `ConfigError` each, printed in Kea's style:
///
///     kmsd.toml:12:17: [acme] directory_url: must be https (http is accepted only for ...)
///     env KMSD_HSM_SESSION_POOL: [hsm] session_pool: expected an integer, got "many"
///
/// Secrets are only referenced by file name (pin_file, password_file, eab_hmac_file). The
/// loader checks that those files are readable but never keeps or prints their content.
///
/// Environment overrides: `KMSD_<SECTION>_<KEY>` (upper case) replaces a scalar key of one of
/// the single-table sections daemon, hsm, sti_pa, acme, publisher (arrays: comma-separated).
/// An override for a section missing from the file creates that section. A variable whose
/// prefix names a section but whose key is unknown is an error; other variables are ignored.

#include <chrono>
#include <cstdint>
#include <iosfwd>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <tl/expected.hpp>

namespace kms::config {

/// `host:port` as written for listen addresses; IPv6 hosts are stored without brackets.
struct HostPort {
  std::string host;
  std::uint16_t port = 0;

  /// "127.0.0.1:80", "[::1]:9464".
  [[nodiscard]] std::string toString() const;
  bool operator==(const HostPort&) const = default;
};

enum class LogFormat { text, json };
/// How the STI-PA expects the account key fingerprint (docs/protocols.md).
enum class Fingerprint { spki, jwkThumbprint };
enum class Challenge { tkauth01, http01, dns01 };
enum class PublicationCheck { fetch, file };

/// Config-file spelling: "text", "json", "spki", "jwk-thumbprint", "tkauth-01", ...
[[nodiscard]] const char* toString(LogFormat value) noexcept;
[[nodiscard]] const char* toString(Fingerprint value) noexcept;
[[nodiscard]] const char* toString(Challenge value) noexcept;
[[nodiscard]] const char* toString(PublicationCheck value) noexcept;

/// [daemon]
struct DaemonConfig {
  std::string stateDir;  ///< absolute path; kmsd.db lives here
  std::string controlSocket = "/run/kmsd/control.sock";
  LogFormat logFormat = LogFormat::text;
  int maxConcurrentOrders = 0;                 ///< 0: two per core
  std::chrono::seconds retryFirst{60};         ///< first backoff after a failure
  std::chrono::seconds retryMax{3600};         ///< backoff cap
  /// Every listener (control API, http-01): open connections at most, per peer address
  /// (TCP) at most, and the time a request's headers may take.
  int listenerMaxConnections = 256;
  int listenerMaxPerPeer = 16;
  std::chrono::seconds listenerHeaderTimeout{5};
  /// After SIGTERM: how long steps in flight may finish before their requests are cancelled.
  std::chrono::seconds stopGrace{6};
  /// The control API's revoke is restricted to this group's members (and root and kmsd's
  /// own user) when set; the socket's mode still decides who may connect at all.
  std::optional<std::string> controlAdminGroup;
  /// The event log keeps events younger than eventsKeep, and the newest eventsMax at most.
  std::chrono::seconds eventsKeep{90L * 86400};
  int eventsMax = 100000;
  /// GET /metrics, /healthz and /readyz on TCP (the control socket serves them too).
  std::optional<HostPort> metricsListen;
  /// HTTPS on metricsListen: the PEM chain and its key (a secret file), both or neither.
  std::optional<std::string> metricsTlsCertificate;
  std::optional<std::string> metricsTlsKey;
  /// A secret file of one line "user:password" that every request on metricsListen must
  /// present (HTTP basic authentication); needs TLS unless metricsListen is a loopback address.
  std::optional<std::string> metricsBasicAuthFile;
  bool operator==(const DaemonConfig&) const = default;
};

/// [metrics]
struct MetricsConfig {
  /// Per-certificate series for this many certificates (by name); beyond, aggregates only.
  int perCertificateLimit = 1000;
  bool operator==(const MetricsConfig&) const = default;
};

/// How an SMTP channel uses STARTTLS on an smtp:// URL (smtps:// is TLS from the start).
enum class StartTls { required, opportunistic, off };
[[nodiscard]] const char* toString(StartTls value) noexcept;

/// One [[alerts.alertmanager]]: Alertmanager's API v2 (`POST <url>/api/v2/alerts`).
struct AlertmanagerChannelConfig {
  std::string name;                      ///< [A-Za-z0-9._-]{1,64}, unique among all channels
  std::string url;                       ///< base URL, e.g. "http://127.0.0.1:9093"
  std::optional<std::string> caBundle;   ///< extra PEM trust for its TLS
  /// Labels added to every alert, as "name=value" (kept as written: Alertmanager itself
  /// decides which names it accepts).
  std::vector<std::pair<std::string, std::string>> labels;
  bool operator==(const AlertmanagerChannelConfig&) const = default;
};

/// One [[alerts.webhook]]: a JSON POST signed with HMAC-SHA256 (X-Kms-Signature-256).
struct WebhookChannelConfig {
  std::string name;
  std::string url;
  std::string secretFile;  ///< the HMAC key (a secret file)
  std::optional<std::string> caBundle;
  bool operator==(const WebhookChannelConfig&) const = default;
};

/// One [[alerts.smtp]]: mail through libcurl.
struct SmtpChannelConfig {
  std::string name;
  std::string url;  ///< smtp://host[:port] or smtps://host[:port]
  std::string from;
  std::vector<std::string> to;
  StartTls startTls = StartTls::required;
  std::optional<std::string> username;
  std::optional<std::string> passwordFile;  ///< a secret file; needs TLS (smtps or STARTTLS required)
  std::optional<std::string> caBundle;
  bool operator==(const SmtpChannelConfig&) const = default;
};

/// [alerts]: kmsd's own alerts, for sites without Prometheus (docs/operations.md).
struct AlertsConfig {
  std::chrono::seconds interval{30};           ///< how often the conditions are evaluated
  std::chrono::seconds repeatInterval{4 * 3600};  ///< a firing alert is sent again this often
  int failures = 3;                            ///< failures in a row before renewal_failing
  double warningFraction = 1.0 / 6;            ///< expiring: this share of the lifetime before notAfter
  std::chrono::seconds timeout{10};            ///< one delivery at most
  std::chrono::seconds retryFirst{30};         ///< first wait after a failed delivery
  std::chrono::seconds retryMax{1800};         ///< longest wait between delivery attempts
  std::vector<AlertmanagerChannelConfig> alertmanagers;
  std::vector<WebhookChannelConfig> webhooks;
  std::vector<SmtpChannelConfig> smtp;
  [[nodiscard]] bool empty() const { return alertmanagers.empty() && webhooks.empty() && smtp.empty(); }
  bool operator==(const AlertsConfig&) const = default;
};

/// [hsm]
struct HsmConfig {
  std::string module;      ///< PKCS#11 module; default: the SoftHSM2 module found at build time
  std::string tokenLabel;  ///< 1..32 bytes (CK_TOKEN_INFO label size)
  std::string pinFile;     ///< user PIN file; re-read when needed, never cached here
  /// SoftHSM2 only: the softhsm2.conf naming its token directory, set as SOFTHSM2_CONF
  /// before the module is loaded; unset: the environment's SOFTHSM2_CONF, else SoftHSM2's
  /// default (/etc/softhsm/softhsm2.conf).
  std::optional<std::string> softhsm2Conf;
  int sessionPool = 4;     ///< 1..64
  bool operator==(const HsmConfig&) const = default;
};

/// [sti_pa]: present only when the section is configured.
struct StiPaConfig {
  std::string url;
  std::string userId;
  std::string passwordFile;
  std::optional<std::string> trustAnchor;  ///< verifies SPC tokens and the CA list
  std::optional<std::string> caBundle;     ///< extra TLS trust for the STI-PA (not the ACME server's)
  /// The certificate that signs the STI-PA CRL (cRLIssuer); without it the CRL is not read.
  std::optional<std::string> crlSigner;
  std::chrono::seconds trustRefresh{3600};  ///< how often the CA list and the CRL are read
  /// Hosts ("host" or "host:port") the STI-PA may name for a token's x5u and the CRL;
  /// empty: only the STI-PA's own host (url's).
  std::vector<std::string> allowedHosts;
  Fingerprint fingerprint = Fingerprint::spki;
  /// Labs only: run without trust_anchor (a token or CA list is then trusted on the word of
  /// the certificate its own x5u serves). kmsd warns at every start.
  bool insecureSkipSignerCheck = false;
  bool operator==(const StiPaConfig&) const = default;
};

/// [acme]
struct AcmeConfig {
  std::string directoryUrl;
  std::optional<std::string> caBundle;      ///< extra TLS trust for the ACME server
  std::optional<std::string> trustAnchors;  ///< roots an issued chain must verify to
  std::optional<std::string> eabKid;        ///< set together with eabHmacFile, or neither
  std::optional<std::string> eabHmacFile;
  std::vector<std::string> contact;  ///< each "mailto:..."
  HostPort http01Listen{"127.0.0.1", 80};
  std::optional<std::string> dns01Hook;  ///< executable run for dns-01 challenges
  /// Labs only: accept issued chains unchecked when neither trust_anchors nor an STI-PA CA
  /// list gives anchors. kmsd warns at every start.
  bool insecureSkipChainCheck = false;
  bool operator==(const AcmeConfig&) const = default;
};

/// [publisher]
struct PublisherConfig {
  std::string webRoot;  ///< absolute path
  std::string baseUrl;  ///< ends with "/"; x5u = baseUrl + path under webRoot
  std::chrono::seconds retain{24 * 3600};
  /// Before a new certificate becomes active: "fetch" its x5u URL back and compare the
  /// bytes (base_url must be reachable from kmsd), or trust the "file" written.
  PublicationCheck publicationCheck = PublicationCheck::fetch;
  std::chrono::seconds checkTimeout{10};  ///< per fetch
  int checkRetries = 3;                   ///< fetches after the first, 2 s apart, before the step fails
  std::optional<std::string> caBundle;    ///< extra TLS trust for fetching base_url
  std::chrono::seconds hookTimeout{300};  ///< a deploy hook running longer is killed
  bool operator==(const PublisherConfig&) const = default;
};

/// One [[signing.client]]: a caller of the TCP signing API, known by a bearer token or by
/// its TLS client certificate's subject, and what it may sign with.
struct SigningClientConfig {
  std::string name;                               ///< [A-Za-z0-9._-]{1,64}, unique
  std::optional<std::string> tokenFile;           ///< secret file holding its bearer token
  std::optional<std::string> certificateSubject;  ///< RFC 2253 subject of its client certificate
  std::vector<std::string> certificates;          ///< SHAKEN [[certificate]] names it may sign with
  std::vector<std::string> attest{"A", "B", "C"};  ///< attestation levels it may ask for
  int rateLimit = 0;                              ///< signing requests per second; 0: no limit
  bool operator==(const SigningClientConfig&) const = default;
};

/// [signing]: PASSporT signing with the managed keys.
struct SigningConfig {
  /// Threads that sign (each with a token session of its own, beside [hsm] session_pool).
  int threads = 2;
  std::optional<HostPort> listen;                ///< the TCP signing API; none: control socket only
  std::optional<std::string> tlsCertificate;     ///< PEM chain served on `listen`
  std::optional<std::string> tlsKey;             ///< its key, a secret file
  std::optional<std::string> clientCa;           ///< PEM CAs client certificates must chain to
  std::optional<std::string> record;             ///< the signing record file (absolute path)
  std::int64_t recordMaxBytes = 64LL * 1024 * 1024;  ///< rotated beyond this size
  int recordKeep = 5;                            ///< rotated files kept (record.1 .. record.N)
  std::vector<SigningClientConfig> clients;      ///< [[signing.client]]
  bool operator==(const SigningConfig&) const = default;
};

/// One [[certificate]] entry. Exactly one of `spc` (SHAKEN) or `dnsNames` (generic ACME).
struct CertificateConfig {
  std::string name;                   ///< [A-Za-z0-9._-]{1,64}, unique
  std::optional<std::string> spc;     ///< [0-9A-Z]+; challenge is then tkauth-01
  std::vector<std::string> dnsNames;  ///< from identifiers = ["dns:NAME", ...], without "dns:"
  Challenge challenge = Challenge::http01;
  std::optional<std::string> subjectO;  ///< required with spc
  std::string subjectC = "US";
  double renewBeforeFraction = 0.333;  ///< in (0, 1)
  std::optional<std::string> deployHook;  ///< executable run after each new certificate is active
  bool reuseKey = false;                  ///< renew with the active certificate's key
  bool operator==(const CertificateConfig&) const = default;
};

/// The whole validated configuration.
struct Config {
  std::string source;  ///< file name (or source name) it was loaded from
  DaemonConfig daemon;
  HsmConfig hsm;
  std::optional<StiPaConfig> stiPa;
  AcmeConfig acme;
  PublisherConfig publisher;
  SigningConfig signing;
  MetricsConfig metrics;
  AlertsConfig alerts;
  std::vector<CertificateConfig> certificates;
  std::vector<std::string> envOverrides;  ///< names of the KMSD_* variables applied, sorted
  bool operator==(const Config&) const = default;
};

/// One problem in the configuration.
struct ConfigError {
  std::string file;     ///< config file name, or "env KMSD_..." for an override
  int line = 0;         ///< 1-based; 0 when there is no position (environment, unreadable file)
  int column = 0;       ///< 1-based; 0 when there is no position
  std::string section;  ///< "acme", "certificate.main", "certificate[2]", "toml"; may be empty
  std::string key;      ///< "directory_url", "contact[1]"; may be empty
  std::string what;     ///< what is wrong, without the position

  /// `FILE:LINE:COL: [section] key: what`; the position, section and key parts are left
  /// out when empty ("env KMSD_X: [acme] eab_kid: ...", "kmsd.toml: cannot read ...").
  [[nodiscard]] std::string toString() const;
  bool operator==(const ConfigError&) const = default;
};

using ConfigErrors = std::vector<ConfigError>;
/// Environment variables by name; tests pass their own, kmsd passes `environmentSnapshot()`.
using Environment = std::map<std::string, std::string>;

/// The KMSD_* variables of this process's environment (others are not copied).
[[nodiscard]] Environment environmentSnapshot();

/// Reads and validates one config file, applying overrides from `env`.
/// @return the Config, or every error found (never empty). An unreadable or oversized file
///         is a single error naming the file; a TOML syntax error is a single error in
///         section "toml" at the parser's position. Does not throw.
[[nodiscard]] tl::expected<Config, ConfigErrors> loadConfigFile(const std::string& path, const Environment& env);

/// Same as loadConfigFile for text already in memory; `sourceName` is used in errors.
/// File references inside (pin_file, module, ...) are still checked on the file system.
[[nodiscard]] tl::expected<Config, ConfigErrors> loadConfigString(const std::string& text,
                                                                  const std::string& sourceName,
                                                                  const Environment& env);

/// Whether loading opens the files a configuration names (PIN, password, trust anchors,
/// hooks, the module, the web root) to check them. kmsd and `--check-config` do; kmsctl
/// does not: those files are kmsd's, and an operator in kmsd's group may not read them.
enum class FileChecks { on, off };

/// A configuration read as far as it is valid, with every error found beside it.
struct ConfigRead {
  Config config;  ///< a setting in error keeps its default (a required one is empty)
  ConfigErrors errors;
};

/// The file read for what can be used of it (kmsctl, when kmsd kept its last good
/// configuration after a typo): every error as loadConfigFile reports it, and the settings
/// that are valid. When the file does not parse (or cannot be read) only [daemon]
/// state_dir and control_socket are taken from it, from lines of the plain form
/// `key = "value"`, and the KMSD_* overrides still apply. Does not throw.
[[nodiscard]] ConfigRead readConfigFile(const std::string& path, const Environment& env, FileChecks files);

/// [daemon] `key`'s string value found line by line without parsing the file (one that does
/// not parse, or one too large to parse for one setting): only `key = "value"` without
/// escapes counts; nullopt when it is absent or written otherwise.
[[nodiscard]] std::optional<std::string> scanDaemonSetting(std::istream& in, std::string_view key);

/// One line per error, each ending in '\n'.
[[nodiscard]] std::string formatErrors(const ConfigErrors& errors);

/// Multi-line TOML-like dump of the effective configuration for logs and `check-config`.
/// Files holding secrets are printed by name only; their content is never read here.
[[nodiscard]] std::string redactedSummary(const Config& config);

}  // namespace kms::config
