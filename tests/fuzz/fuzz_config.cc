// Fuzzes the kmsd configuration loader: TOML parsing plus schema and semantic checks, with no
// KMSD_* environment overrides. "@DIR@" in the input becomes a fixture directory holding every
// file a config can name (PIN, password, EAB key, PEM files, a hook), made once at start, so
// seeds can load and the success path is fuzzed too.
//
// Invariants: loading never throws or crashes; a failure carries at least one error; neither
// the errors nor the summary ever show the secrets the fixture files hold; and a config that
// loads, written back out as TOML, loads again to an equal Config (the round trip).
#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "config/config.h"
#include "fuzz_check.h"
#include "test_pem.h"

namespace {

namespace config = kms::config;

constexpr const char* kPin = "fuzz-pin-3b9d";
constexpr const char* kPassword = "fuzz-password-51ae";
constexpr const char* kEabKey = "fuzz-eab-key-c07f";

std::string fixtureDir;

void writeFile(const std::string& name, const std::string& content, mode_t mode) {
  const std::string path = fixtureDir + "/" + name;
  std::ofstream(path, std::ios::binary | std::ios::trunc) << content;
  ::chmod(path.c_str(), mode);
}

void removeFixture() { std::filesystem::remove_all(fixtureDir); }

std::string expand(std::string text) {
  const std::string marker = "@DIR@";
  for (std::size_t at = text.find(marker); at != std::string::npos; at = text.find(marker, at + fixtureDir.size())) {
    text.replace(at, marker.size(), fixtureDir);
  }
  return text;
}

/// A TOML basic string: quotes, backslashes and control characters escaped.
std::string quote(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c == 0x7f) {
      char buf[8];
      (void)std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

std::string seconds(std::chrono::seconds s) { return quote(std::to_string(s.count()) + "s"); }

std::string array(const std::vector<std::string>& items, const std::string& prefix = "") {
  std::string out = "[";
  for (const auto& i : items) {
    out += (out.size() > 1 ? ", " : "") + quote(prefix + i);
  }
  return out + "]";
}

void optional(std::string& out, const char* key, const std::optional<std::string>& value) {
  if (value) {
    out += std::string(key) + " = " + quote(*value) + "\n";
  }
}

/// Every field of a loaded Config as TOML, in the loader's own syntax.
std::string emit(const config::Config& c) {
  std::string out = "[daemon]\nstate_dir = " + quote(c.daemon.stateDir) + "\ncontrol_socket = " +
                    quote(c.daemon.controlSocket) + "\n";
  out += "log_format = " + quote(config::toString(c.daemon.logFormat)) + "\nmax_concurrent_orders = " +
         std::to_string(c.daemon.maxConcurrentOrders) + "\nretry_first = " + seconds(c.daemon.retryFirst) +
         "\nretry_max = " + seconds(c.daemon.retryMax) + "\n";
  out += "[hsm]\nmodule = " + quote(c.hsm.module) + "\ntoken_label = " + quote(c.hsm.tokenLabel) +
         "\npin_file = " + quote(c.hsm.pinFile) + "\nsession_pool = " + std::to_string(c.hsm.sessionPool) + "\n";
  if (c.stiPa) {
    const config::StiPaConfig& s = *c.stiPa;
    out += "[sti_pa]\nurl = " + quote(s.url) + "\nuser_id = " + quote(s.userId) + "\npassword_file = " +
           quote(s.passwordFile) + "\n";
    optional(out, "trust_anchor", s.trustAnchor);
    optional(out, "ca_bundle", s.caBundle);
    optional(out, "crl_signer", s.crlSigner);
    out += "trust_refresh = " + seconds(s.trustRefresh) + "\nallowed_hosts = " + array(s.allowedHosts) +
           "\nfingerprint = " + quote(config::toString(s.fingerprint)) +
           "\ninsecure_skip_signer_check = " + (s.insecureSkipSignerCheck ? "true" : "false") + "\n";
  }
  const config::AcmeConfig& a = c.acme;
  out += "[acme]\ndirectory_url = " + quote(a.directoryUrl) + "\n";
  optional(out, "ca_bundle", a.caBundle);
  optional(out, "trust_anchors", a.trustAnchors);
  optional(out, "eab_kid", a.eabKid);
  optional(out, "eab_hmac_file", a.eabHmacFile);
  optional(out, "dns01_hook", a.dns01Hook);
  out += "contact = " + array(a.contact) + "\nhttp01_listen = " + quote(a.http01Listen.toString()) +
         "\ninsecure_skip_chain_check = " + (a.insecureSkipChainCheck ? "true" : "false") + "\n";
  const config::PublisherConfig& p = c.publisher;
  out += "[publisher]\nweb_root = " + quote(p.webRoot) + "\nbase_url = " + quote(p.baseUrl) + "\nretain = " +
         seconds(p.retain) + "\npublication_check = " + quote(config::toString(p.publicationCheck)) +
         "\ncheck_timeout = " + seconds(p.checkTimeout) + "\ncheck_retries = " + std::to_string(p.checkRetries) +
         "\nhook_timeout = " + seconds(p.hookTimeout) + "\n";
  optional(out, "ca_bundle", p.caBundle);
  for (const config::CertificateConfig& cert : c.certificates) {
    char fraction[32];
    (void)std::snprintf(fraction, sizeof fraction, "%.17g", cert.renewBeforeFraction);
    out += "[[certificate]]\nname = " + quote(cert.name) + "\n";
    optional(out, "spc", cert.spc);
    if (!cert.dnsNames.empty()) {
      out += "identifiers = " + array(cert.dnsNames, "dns:") + "\n";
    }
    if (!cert.spc) {  // a SHAKEN certificate's challenge is always tkauth-01, not written
      out += "challenge = " + quote(config::toString(cert.challenge)) + "\n";
    }
    optional(out, "subject_o", cert.subjectO);
    out += "subject_c = " + quote(cert.subjectC) + "\nrenew_before_fraction = " + fraction +
           "\nreuse_key = " + (cert.reuseKey ? "true" : "false") + "\n";
    optional(out, "deploy_hook", cert.deployHook);
  }
  return out;
}

/// True when `shown` holds a secret read from a fixture file that the config text itself does
/// not hold (the fuzzer learns the strings and may write them into the input).
bool showsASecret(const std::string& shown, const std::string& input) {
  for (const char* secret : {kPin, kPassword, kEabKey}) {
    if (shown.find(secret) != std::string::npos && input.find(secret) == std::string::npos) {
      return true;
    }
  }
  return false;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  const char* tmp = std::getenv("TMPDIR");
  std::string pattern = std::string(tmp != nullptr ? tmp : "/tmp") + "/kms-fuzz-config.XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) {
    std::perror("fuzz_config: mkdtemp");
    std::abort();
  }
  fixtureDir = pattern;
  std::atexit(removeFixture);
  writeFile("hsm.pin", std::string(kPin) + "\n", 0600);
  writeFile("sti-pa.password", kPassword, 0600);
  writeFile("eab.key", kEabKey, 0600);
  writeFile("libpkcs11.so", "not really a module", 0644);
  for (const char* pem : {"sti-pa-root.pem", "acme-tls-ca.pem", "sti-pa-tls-ca.pem", "sti-pa-crl.pem",
                          "sti-ca-roots.pem"}) {
    writeFile(pem, kms::test::kTestRootPem, 0644);
  }
  writeFile("hook.sh", "#!/bin/sh\nexit 0\n", 0700);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text = expand(std::string(reinterpret_cast<const char*>(data), size));
  const config::Environment noEnvironment;
  auto loaded = config::loadConfigString(text, "fuzz.toml", noEnvironment);
  if (!loaded) {
    KMS_FUZZ_CHECK(!loaded.error().empty(), "a failed load must report at least one error");
    KMS_FUZZ_CHECK(!showsASecret(config::formatErrors(loaded.error()), text), "an error shows a secret");
    return 0;
  }
  KMS_FUZZ_CHECK(!showsASecret(config::redactedSummary(*loaded), text), "the summary shows a secret");
  const std::string written = emit(*loaded);
  auto again = config::loadConfigString(written, "fuzz.toml", noEnvironment);
  if (!again) {
    std::fprintf(stderr, "written back:\n%s\nerrors:\n%s\n", written.c_str(),
                 config::formatErrors(again.error()).c_str());
  }
  KMS_FUZZ_CHECK(again.has_value(), "a loaded config, written back, must load");
  KMS_FUZZ_CHECK(*again == *loaded, "a loaded config, written back, must load to the same Config");
  return 0;
}
