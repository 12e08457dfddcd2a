// GET /metrics from a kmsd that got its certificate from kms-lab: the values agree with the
// control API's, and promtool (Debian's prometheus package) accepts the text without a lint.
#include <gtest/gtest.h>

#include <csignal>
#include <cstring>
#include <ctime>
#include <chrono>
#include <fstream>
#include <memory>
#include <optional>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "background_process.h"
#include "cli.h"
#include "control/control_api.h"
#include "daemon_process.h"
#include "lab_process.h"
#include "must.h"
#include "openssl_pki.h"
#include "sandbox.h"

namespace kms {
namespace {

/// "2027-03-05T09:55:56Z" as Unix seconds.
std::int64_t unixOf(const std::string& iso) {
  std::tm tm{};
  EXPECT_NE(::strptime(iso.c_str(), "%Y-%m-%dT%H:%M:%SZ", &tm), nullptr) << iso;
  return static_cast<std::int64_t>(::timegm(&tm));
}

TEST(Metrics, TheScrapeAgreesWithTheControlApiAndPassesPromtool) {
  test::Sandbox sandbox;
  test::LabProcess lab(sandbox.file("lab"));
  test::DaemonProcess kmsd(lab.file("softhsm2.conf"), lab.file("kmsd.toml"), sandbox.file("kmsd.log"));
  ASSERT_TRUE(kmsd.waitFor("KMS_CERT_ACTIVATED cert=main")) << kmsd.log();
  const std::string socket = lab.file("kmsd.sock");
  auto certs = nlohmann::json::parse(test::must(daemon::controlRequest(socket, "GET", "/v1/certificates/main")).body);
  const std::int64_t notAfter = unixOf(certs["not_after"].get<std::string>());

  // One PASSporT signed, one refused (a certificate that does not exist).
  const std::string env = "SOFTHSM2_CONF=" + lab.file("softhsm2.conf");
  test::CmdResult good = test::runTool(env, test::kKmsctl, lab.file("kmsd.toml"),
                                       "passport sign --orig 12025550100 --dest 12025550101 --attest A");
  ASSERT_EQ(good.rc, 0) << good.output;
  test::CmdResult bad = test::runTool(env, test::kKmsctl, lab.file("kmsd.toml"),
                                      "passport sign --cert nosuch --orig 12025550100 --dest 12025550101 --attest A");
  ASSERT_NE(bad.rc, 0) << bad.output;
  auto scrape = test::must(daemon::controlRequest(socket, "GET", "/metrics"));
  ASSERT_EQ(scrape.status, 200) << scrape.body;
  EXPECT_EQ(scrape.contentType, "text/plain; version=0.0.4; charset=utf-8");
  const std::string& text = scrape.body;
  EXPECT_NE(text.find("\nkms_certificate_expiration_timestamp_seconds{name=\"main\"} " + std::to_string(notAfter) +
                      "\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("\nkms_certificate_ready_status{name=\"main\",condition=\"True\"} 1\n"), std::string::npos)
      << text;
  EXPECT_NE(text.find("\nkms_renewal_attempts_total{name=\"main\",result=\"success\",stage=\"activate\"} 1\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("\nkms_events_total{id=\"KMS_CERT_ISSUED\"} 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("\nkms_certificate_not_before_timestamp_seconds{name=\"main\"} "), std::string::npos) << text;
  EXPECT_NE(text.find("\nkms_certificate_last_success_timestamp_seconds{name=\"main\"} "), std::string::npos) << text;
  EXPECT_NE(text.find("\nkms_trust_document_age_seconds{kind=\"ca_list\"} "), std::string::npos) << text;
  EXPECT_NE(text.find("\nkms_trust_document_age_seconds{kind=\"crl\"} "), std::string::npos) << text;
  EXPECT_NE(text.find("\nkms_crl_next_update_timestamp_seconds "), std::string::npos) << text;
  EXPECT_NE(text.find("\nkms_spc_token_expiration_timestamp_seconds{spc=\"1234\"} "), std::string::npos) << text;
  // Outside kmsd.service adjtimex answers (synchronized or not, as this machine is).
  EXPECT_TRUE(std::regex_search(text, std::regex("\nkms_clock_synchronized [01]\n"))) << text;
  // Every request to the CA and the STI-PA, by action and status, and timed.
  EXPECT_NE(text.find("\nkms_acme_requests_total{action=\"newOrder\",status=\"201\"} 1\n"), std::string::npos)
      << text;
  EXPECT_NE(text.find("\nkms_acme_requests_total{action=\"finalize\",status=\"200\"} 1\n"), std::string::npos)
      << text;
  EXPECT_NE(text.find("\nkms_sti_pa_requests_total{action=\"spc_token\",status=\"200\"} 1\n"), std::string::npos)
      << text;
  EXPECT_NE(text.find("\nkms_passport_signed_total 1\n"), std::string::npos) << text;
  // The token: the order's key and the account key made, signatures (JWS, CSR, the PASSporT).
  EXPECT_NE(text.find("\nkms_hsm_operations_total{op=\"generate\",result=\"ok\"} 2\n"), std::string::npos) << text;
  std::smatch signs;
  ASSERT_TRUE(std::regex_search(text, signs, std::regex("\nkms_hsm_operations_total\\{op=\"sign\",result=\"ok\"\\} ([0-9]+)\n")))
      << text;
  EXPECT_GE(std::stoi(signs[1]), 3);
  EXPECT_NE(text.find("\nkms_hsm_operation_duration_seconds_count{op=\"sign\"} " + std::string(signs[1]) + "\n"),
            std::string::npos)
      << text;
  EXPECT_TRUE(std::regex_search(text, std::regex("\nkms_passport_refused_total\\{reason=\"[A-Z]+[0-9]+\"\\} 1\n")))
      << text;
  // Both were timed: the refusal reached the signer (it looked the certificate up).
  EXPECT_NE(text.find("\nkms_passport_request_duration_seconds_count 2\n"), std::string::npos) << text;
  std::smatch count;
  ASSERT_TRUE(std::regex_search(text, count, std::regex("\nkms_acme_request_duration_seconds_count ([0-9]+)\n")))
      << text;
  EXPECT_GE(std::stoi(count[1]), 6);  // directory, nonce, account, order, authorization, challenge, ...
  EXPECT_NE(text.find("\nkms_acme_request_duration_seconds_bucket{le=\"+Inf\"} " + std::string(count[1]) + "\n"),
            std::string::npos)
      << text;
  std::smatch renew;
  ASSERT_TRUE(std::regex_search(text, renew, std::regex("\nkms_certificate_renewal_timestamp_seconds\\{name=\"main\"\\} "
                                                        "([0-9]+)\n")))
      << text;
  EXPECT_LT(std::stoll(renew[1]), notAfter);

  // promtool reads the exposition from stdin: exit 0 and nothing said means no lint.
  const std::string file = sandbox.write("metrics.txt", text);
  std::string out;
  EXPECT_EQ(test::runCommand("promtool check metrics < " + file, &out), 0) << out;
  EXPECT_EQ(out, "") << out;
}

/// The lab's configuration with `line` added to [daemon].
void addToDaemon(const std::string& config, const std::string& line) {
  std::string toml = test::readFile(config);
  toml.replace(toml.find("[daemon]\n"), 9, "[daemon]\n" + line + "\n");
  std::ofstream(config, std::ios::trunc) << toml;
}

/// kmsd on the lab's configuration with [daemon] metrics_listen on a free port (and `more`,
/// [daemon] lines of the test's); that port and the daemon.
std::pair<std::uint16_t, std::unique_ptr<test::DaemonProcess>> kmsdWithMetricsListen(const test::Sandbox& sandbox,
                                                                                     const test::LabProcess& lab,
                                                                                     const std::string& more = "") {
  const std::uint16_t port = test::freePort();
  addToDaemon(lab.file("kmsd.toml"), "metrics_listen = \"127.0.0.1:" + std::to_string(port) + "\"" + more);
  return {port, std::make_unique<test::DaemonProcess>(lab.file("softhsm2.conf"), lab.file("kmsd.toml"),
                                                       sandbox.file("kmsd.log"))};
}

TEST(Metrics, MetricsListenServesTheProbesOnTcpAndOnlyThem) {
  test::Sandbox sandbox;
  test::LabProcess lab(sandbox.file("lab"));
  auto daemon = kmsdWithMetricsListen(sandbox, lab);
  const std::uint16_t port = daemon.first;
  test::DaemonProcess& kmsd = *daemon.second;
  ASSERT_TRUE(kmsd.waitFor("KMS_CERT_ACTIVATED cert=main")) << kmsd.log();
  const std::string base = "http://127.0.0.1:" + std::to_string(port);
  std::string out;
  ASSERT_EQ(test::runCommand("curl -sf " + base + "/metrics", &out), 0) << out;
  EXPECT_NE(out.find("\nkms_certificate_ready_status{name=\"main\",condition=\"True\"} 1\n"), std::string::npos)
      << out;
  EXPECT_EQ(test::runCommand("curl -sf " + base + "/readyz", &out), 0) << out;
  EXPECT_EQ(test::runCommand("curl -sf " + base + "/healthz", &out), 0) << out;
  // The control API is not on it.
  EXPECT_EQ(test::runCommand("curl -s -o /dev/null -w '%{http_code}' " + base + "/v1/status", &out), 0);
  EXPECT_EQ(out, "404");
  EXPECT_EQ(test::runCommand("curl -s -o /dev/null -w '%{http_code}' -X POST " + base + "/v1/backup", &out), 0);
  EXPECT_EQ(out, "404");
}

TEST(Metrics, APortInUseStopsTheStartNamingTheSetting) {
  test::Sandbox sandbox;
  test::LabProcess lab(sandbox.file("lab"));
  // kms-lab holds its port: kmsd is told to listen there too.
  const std::string taken = lab.baseUrl().substr(lab.baseUrl().rfind(':') + 1);
  addToDaemon(lab.file("kmsd.toml"), "metrics_listen = \"127.0.0.1:" + taken + "\"");
  test::CmdResult r = test::runTool("SOFTHSM2_CONF=" + lab.file("softhsm2.conf"), test::kKmsd, lab.file("kmsd.toml"), "");
  EXPECT_EQ(r.rc, 1) << r.output;
  EXPECT_NE(r.output.find("[daemon] metrics_listen 127.0.0.1:" + taken + ": "), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("KMS_ORDER_CREATED"), std::string::npos) << r.output;
}

/// Prometheus' answer to an instant query: the first result's value, or nullopt.
std::optional<std::string> promQuery(std::uint16_t port, const std::string& query) {
  std::string out;
  if (test::runCommand("curl -sf -G http://127.0.0.1:" + std::to_string(port) +
                           "/api/v1/query --data-urlencode 'query=" + query + "'",
                       &out) != 0) {
    return std::nullopt;
  }
  auto j = nlohmann::json::parse(out, nullptr, false);
  if (j.is_discarded() || j.value("status", "") != "success" || j["data"]["result"].empty()) {
    return std::nullopt;
  }
  return j["data"]["result"][0]["value"][1].get<std::string>();
}

/// Debian's prometheus on 127.0.0.1:`port`, scraping kmsd's metrics_listen each second and
/// evaluating rules each second; `extra` is added to its configuration (rule_files), `scrape`
/// to the kmsd job's (scheme, tls_config, basic_auth) and may add jobs after it.
std::unique_ptr<test::BackgroundProcess> startPrometheus(const test::Sandbox& sandbox, std::uint16_t port,
                                                         std::uint16_t metricsPort, const std::string& extra,
                                                         const std::string& scrape = "") {
  const std::string config = sandbox.write("prometheus.yml", "global:\n"
                                                             "  scrape_interval: 1s\n"
                                                             "  scrape_timeout: 1s\n"
                                                             "  evaluation_interval: 1s\n" +
                                                                 extra +
                                                                 "scrape_configs:\n"
                                                                 "  - job_name: kmsd\n"
                                                                 "    static_configs:\n"
                                                                 "      - targets: ['127.0.0.1:" +
                                                                 std::to_string(metricsPort) + "']\n" + scrape);
  return std::make_unique<test::BackgroundProcess>(
      std::vector<std::string>{"/usr/bin/prometheus", "--config.file=" + config,
                               "--storage.tsdb.path=" + sandbox.file("tsdb"),
                               "--web.listen-address=127.0.0.1:" + std::to_string(port)},
      sandbox.file("prometheus.log"), std::vector<std::string>{"GOMAXPROCS=1"});
}

TEST(Metrics, APrometheusScrapesKmsdAndAnswersWithTheCertificatesNotAfter) {
  test::Sandbox sandbox;
  test::LabProcess lab(sandbox.file("lab"));
  auto daemon = kmsdWithMetricsListen(sandbox, lab);
  const std::uint16_t metricsPort = daemon.first;
  test::DaemonProcess& kmsd = *daemon.second;
  ASSERT_TRUE(kmsd.waitFor("KMS_CERT_ACTIVATED cert=main")) << kmsd.log();
  auto certs = nlohmann::json::parse(
      test::must(daemon::controlRequest(lab.file("kmsd.sock"), "GET", "/v1/certificates/main")).body);
  const std::int64_t notAfter = unixOf(certs["not_after"].get<std::string>());

  const std::uint16_t promPort = test::freePort();
  auto started = startPrometheus(sandbox, promPort, metricsPort, "");
  test::BackgroundProcess& prometheus = *started;
  // Scraped once a second: the series appears within a few scrapes (60 s is the bound, not the wait).
  std::optional<std::string> value;
  for (auto end = std::chrono::steady_clock::now() + std::chrono::seconds(60);
       !value && std::chrono::steady_clock::now() < end && prometheus.running();) {
    value = promQuery(promPort, "kms_certificate_expiration_timestamp_seconds{name=\"main\"}");
    if (!value) {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  }
  ASSERT_TRUE(value.has_value()) << prometheus.log();
  EXPECT_EQ(std::stoll(*value), notAfter);
  EXPECT_EQ(promQuery(promPort, "up{job=\"kmsd\"}"), "1");
  EXPECT_EQ(promQuery(promPort, "kms_certificate_ready_status{name=\"main\",condition=\"True\"}"), "1");

  // deploy/grafana/kmsd-dashboard.json: every query names only metrics kmsd exports, and
  // Prometheus evaluates each one (with the dashboard's $instance as any instance).
  std::string metrics;
  ASSERT_EQ(test::runCommand("curl -sf http://127.0.0.1:" + std::to_string(metricsPort) + "/metrics", &metrics), 0);
  auto dashboard = nlohmann::json::parse(test::readFile(KMS_SOURCE_DIR "/deploy/grafana/kmsd-dashboard.json"));
  int queries = 0;
  for (const auto& panel : dashboard["panels"]) {
    for (const auto& target : panel["targets"]) {
      const std::string expr = target["expr"].get<std::string>();
      ++queries;
      const std::regex name("kms_[a-z0-9_]+");
      for (auto it = std::sregex_iterator(expr.begin(), expr.end(), name); it != std::sregex_iterator(); ++it) {
        std::string family = it->str();
        for (const char* suffix : {"_bucket", "_sum", "_count"}) {
          if (family.ends_with(suffix) && metrics.find("# TYPE " + family.substr(0, family.size() - std::strlen(suffix)) +
                                                       " histogram") != std::string::npos) {
            family.resize(family.size() - std::strlen(suffix));
          }
        }
        EXPECT_NE(metrics.find("# TYPE " + family + " "), std::string::npos)
            << panel["title"] << ": " << family << " is not a metric kmsd exports";
      }
      std::string out;
      const std::string concrete = std::regex_replace(expr, std::regex("\\$instance"), ".+");
      EXPECT_EQ(test::runCommand("curl -sf -G http://127.0.0.1:" + std::to_string(promPort) +
                                     "/api/v1/query --data-urlencode 'query=" + concrete + "'",
                                 &out),
                0)
          << panel["title"] << ": " << concrete << "\n" << out;
    }
  }
  EXPECT_GE(queries, 12);
}

TEST(Metrics, TheShippedRulesFireInAPrometheusWhenKmsLabRefusesTheRenewals) {
  test::Sandbox sandbox;
  test::LabProcess lab(sandbox.file("lab"), {"--fail-sti-pa"});  // every SPC token request: 500
  auto daemon = kmsdWithMetricsListen(sandbox, lab, "\nretry_first = \"1s\"\nretry_max = \"2s\"");
  const std::uint16_t metricsPort = daemon.first;
  test::DaemonProcess& kmsd = *daemon.second;
  // The shipped rules with the test's own `for:` windows (the file keeps production values).
  std::string rules = test::readFile(KMS_SOURCE_DIR "/deploy/prometheus/kmsd-rules.yml");
  rules = std::regex_replace(rules, std::regex("for: [0-9]+[smhd]"), "for: 1s");
  const std::string rulesFile = sandbox.write("kmsd-rules.yml", rules);
  const std::uint16_t promPort = test::freePort();
  auto started = startPrometheus(sandbox, promPort, metricsPort, "rule_files: ['" + rulesFile + "']\n");
  test::BackgroundProcess& prometheus = *started;
  // kmsd fails at fetch_token every 1-2 s: three in a row, then KmsRenewalFailing fires.
  nlohmann::json firing;
  for (auto end = std::chrono::steady_clock::now() + std::chrono::seconds(90);
       firing.is_null() && std::chrono::steady_clock::now() < end && prometheus.running();) {
    std::string out;
    if (test::runCommand("curl -sf http://127.0.0.1:" + std::to_string(promPort) + "/api/v1/alerts", &out) == 0) {
      auto j = nlohmann::json::parse(out, nullptr, false);
      if (!j.is_discarded()) {
        for (const auto& a : j["data"]["alerts"]) {
          if (a["labels"].value("alertname", "") == "KmsRenewalFailing" && a.value("state", "") == "firing") {
            firing = a;
          }
        }
      }
    }
    if (firing.is_null()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
    }
  }
  ASSERT_FALSE(firing.is_null()) << kmsd.log() << prometheus.log();
  // Not ready either: without the STI-PA there is no CA list to check issued chains against.
  std::string ready;
  EXPECT_EQ(test::runCommand("curl -s -w ' %{http_code}' http://127.0.0.1:" + std::to_string(metricsPort) + "/readyz",
                             &ready),
            0);
  EXPECT_EQ(ready, R"({"status":"no STI-PA CA list kept yet"} 503)");
  EXPECT_EQ(firing["labels"]["name"], "main");
  EXPECT_EQ(firing["labels"]["severity"], "warning");
  EXPECT_GE(std::stod(firing["value"].get<std::string>()), 3.0);
  EXPECT_NE(kmsd.log().find("KMS_RENEW_FAILED cert=main"), std::string::npos) << kmsd.log();
}

/// kmsd with metrics_listen over HTTPS, with a certificate for kmsd.test and 127.0.0.1 from
/// the test's own CA (metrics-ca.pem), behind basic auth prometheus:kMetricsPassword.
constexpr const char* kMetricsPassword = "scrape-7f3a91c2";

std::pair<std::uint16_t, std::unique_ptr<test::DaemonProcess>> kmsdWithSecureMetrics(const test::Sandbox& sandbox,
                                                                                      const test::LabProcess& lab,
                                                                                      const test::OpensslPki& pki) {
  pki.makeCa("metrics-ca", "/CN=Metrics Test CA");
  pki.makeLeaf("metrics", "/CN=kmsd.test", "metrics-ca", 1, "subjectAltName=DNS:kmsd.test,IP:127.0.0.1");
  const std::string auth = sandbox.write("metrics.auth", std::string("prometheus:") + kMetricsPassword + "\n");
  return kmsdWithMetricsListen(sandbox, lab,
                               "\nmetrics_tls_certificate = \"" + pki.pem("metrics") + "\"\nmetrics_tls_key = \"" +
                                   pki.key("metrics") + "\"\nmetrics_basic_auth_file = \"" + auth + "\"");
}

TEST(Metrics, MetricsListenOverTlsAnswersOnlyTheRightBasicAuthCredentials) {
  test::Sandbox sandbox;
  test::LabProcess lab(sandbox.file("lab"));
  test::OpensslPki pki(sandbox);
  auto daemon = kmsdWithSecureMetrics(sandbox, lab, pki);
  const std::uint16_t port = daemon.first;
  test::DaemonProcess& kmsd = *daemon.second;
  ASSERT_TRUE(kmsd.waitFor("KMS_CERT_ACTIVATED cert=main")) << kmsd.log();
  const std::string url = "https://127.0.0.1:" + std::to_string(port);
  const std::string curl = "curl -s --cacert " + pki.pem("metrics-ca") + " ";
  const std::string right = std::string("-u prometheus:") + kMetricsPassword + " ";
  std::string out;
  ASSERT_EQ(test::runCommand(curl + "-f " + right + url + "/metrics", &out), 0) << out;
  EXPECT_NE(out.find("\nkms_build_info{version=\""), std::string::npos) << out;
  EXPECT_NE(out.find("\nkms_certificate_ready_status{name=\"main\",condition=\"True\"} 1\n"), std::string::npos)
      << out;
  EXPECT_EQ(test::runCommand(curl + "-f " + right + url + "/readyz", &out), 0) << out;

  // No credentials, a wrong password, a wrong user, another scheme: 401 with the challenge,
  // on every route of the listener.
  const std::string status = "-o /dev/null -w '%{http_code}' ";
  for (const std::string& credentials :
       {std::string(), std::string("-u prometheus:wrong "), std::string("-u grafana:") + kMetricsPassword + " ",
        std::string("-u prometheus:") + kMetricsPassword + "x ", std::string("-H 'Authorization: Bearer x' ")}) {
    std::string request = curl;
    request.append(status).append(credentials).append(url);
    for (const char* route : {"/metrics", "/healthz", "/readyz", "/v1/status"}) {
      EXPECT_EQ(test::runCommand(request + route, &out), 0) << out;
      EXPECT_EQ(out, "401") << credentials << route;
    }
  }
  EXPECT_EQ(test::runCommand(curl + "-D - -o /dev/null " + url + "/metrics", &out), 0) << out;
  EXPECT_NE(out.find("WWW-Authenticate: Basic realm=\"kmsd\"\r\n"), std::string::npos) << out;
  // The scheme's name in any case (RFC 7617), the credentials in base64.
  const std::string basic = "cHJvbWV0aGV1czpzY3JhcGUtN2YzYTkxYzI=";  // prometheus:scrape-7f3a91c2
  EXPECT_EQ(test::runCommand(curl + status + "-H 'Authorization: bAsIc " + basic + "' " + url + "/metrics", &out), 0);
  EXPECT_EQ(out, "200");

  // Clear text to the TLS port gets no answer at all.
  EXPECT_NE(test::runCommand("curl -s " + right + "http://127.0.0.1:" + std::to_string(port) + "/metrics", &out), 0)
      << out;
  // The control socket's /metrics stays as it was: its file mode decides who may read it.
  auto scrape = test::must(daemon::controlRequest(lab.file("kmsd.sock"), "GET", "/metrics"));
  EXPECT_EQ(scrape.status, 200) << scrape.body;
  EXPECT_EQ(kmsd.log().find(kMetricsPassword), std::string::npos) << kmsd.log();

  // Restart-only: a SIGHUP naming another file keeps the one read at start, and says so.
  const std::string other = sandbox.write("other.auth", "prometheus:other-password\n");
  std::string toml = test::readFile(lab.file("kmsd.toml"));
  toml.replace(toml.find(sandbox.file("metrics.auth")), sandbox.file("metrics.auth").size(), other);
  std::ofstream(lab.file("kmsd.toml"), std::ios::trunc) << toml;
  kmsd.signal(SIGHUP);
  ASSERT_TRUE(kmsd.waitFor("KMS_RELOADED")) << kmsd.log();
  const std::string log = kmsd.log();
  const auto restart = log.find("KMS_RELOAD_NEEDS_RESTART");
  ASSERT_NE(restart, std::string::npos) << log;
  EXPECT_NE(log.find("[daemon] metrics_basic_auth_file", restart), std::string::npos) << log;
  EXPECT_EQ(test::runCommand(curl + status + right + url + "/metrics", &out), 0);
  EXPECT_EQ(out, "200");
  EXPECT_EQ(test::runCommand(curl + status + "-u prometheus:other-password " + url + "/metrics", &out), 0);
  EXPECT_EQ(out, "401");
}

TEST(Metrics, APrometheusScrapesKmsdOverHttpsWithBasicAuth) {
  test::Sandbox sandbox;
  test::LabProcess lab(sandbox.file("lab"));
  test::OpensslPki pki(sandbox);
  auto daemon = kmsdWithSecureMetrics(sandbox, lab, pki);
  const std::uint16_t metricsPort = daemon.first;
  test::DaemonProcess& kmsd = *daemon.second;
  ASSERT_TRUE(kmsd.waitFor("KMS_CERT_ACTIVATED cert=main")) << kmsd.log();
  const std::string password = sandbox.write("prometheus.password", std::string(kMetricsPassword) + "\n");
  const std::string wrong = sandbox.write("wrong.password", "not-the-password\n");
  auto job = [&](const std::string& passwordFile) {
    return "    scheme: https\n"
           "    tls_config:\n"
           "      ca_file: " +
           pki.pem("metrics-ca") +
           "\n"
           "      server_name: kmsd.test\n"
           "    basic_auth:\n"
           "      username: prometheus\n"
           "      password_file: " +
           passwordFile + "\n";
  };
  // The kmsd job with the password, and a second job on the same target with a wrong one.
  const std::string scrape = job(password) +
                             "  - job_name: kmsd-wrong-password\n"
                             "    static_configs:\n"
                             "      - targets: ['127.0.0.1:" +
                             std::to_string(metricsPort) + "']\n" + job(wrong);
  const std::uint16_t promPort = test::freePort();
  auto started = startPrometheus(sandbox, promPort, metricsPort, "", scrape);
  test::BackgroundProcess& prometheus = *started;
  std::optional<std::string> up;
  std::optional<std::string> upWrong;
  for (auto end = std::chrono::steady_clock::now() + std::chrono::seconds(60);
       (up != "1" || !upWrong) && std::chrono::steady_clock::now() < end && prometheus.running();) {
    up = promQuery(promPort, "up{job=\"kmsd\"}");
    upWrong = promQuery(promPort, "up{job=\"kmsd-wrong-password\"}");
    if (up != "1" || !upWrong) {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  }
  ASSERT_EQ(up, "1") << prometheus.log();
  EXPECT_EQ(upWrong, "0") << prometheus.log();
  EXPECT_EQ(promQuery(promPort, "kms_certificate_ready_status{job=\"kmsd\",name=\"main\",condition=\"True\"}"), "1");
  EXPECT_EQ(promQuery(promPort, "count(kms_build_info{job=\"kmsd-wrong-password\"})"), std::nullopt);
}

TEST(Metrics, AMetricsTlsKeyThatDoesNotMatchTheCertificateStopsTheStartNamingTheSettings) {
  test::Sandbox sandbox;
  test::LabProcess lab(sandbox.file("lab"));
  test::OpensslPki pki(sandbox);
  pki.makeCa("metrics-ca", "/CN=Metrics Test CA");
  pki.makeLeaf("metrics", "/CN=kmsd.test", "metrics-ca", 1, "subjectAltName=IP:127.0.0.1");
  pki.makeLeaf("other", "/CN=other.test", "metrics-ca", 2, "subjectAltName=IP:127.0.0.1");
  // --check-config cannot tell (it does not pair keys with certificates): the start does.
  addToDaemon(lab.file("kmsd.toml"), "metrics_listen = \"127.0.0.1:" + std::to_string(test::freePort()) +
                                         "\"\nmetrics_tls_certificate = \"" + pki.pem("metrics") +
                                         "\"\nmetrics_tls_key = \"" + pki.key("other") + "\"");
  test::CmdResult r = test::runTool("SOFTHSM2_CONF=" + lab.file("softhsm2.conf"), test::kKmsd, lab.file("kmsd.toml"), "");
  EXPECT_EQ(r.rc, 78) << r.output;  // EX_CONFIG: the operator mends it, kmsd.service does not restart on it
  EXPECT_NE(r.output.find("[daemon] metrics_tls_certificate, metrics_tls_key: the key in " + pki.key("other") +
                          " does not match the certificate in " + pki.pem("metrics")),
            std::string::npos)
      << r.output;
  EXPECT_EQ(r.output.find("KMS_ORDER_CREATED"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace kms
