// [signing] and its [[signing.client]] entries.
#include "signing_reader.h"

#include <algorithm>
#include <map>

#include "checks.h"

namespace kms::config::detail {
namespace {

constexpr std::int64_t kMiB = std::int64_t{1024} * 1024;

void readClient(SectionReader& r, SigningClientConfig& out, const SigningConfig& signing) {
  out.name = r.string("name", Need::required).value_or("");
  if (r.has("name") && r.node("name")->is_string() && !isValidCertificateName(out.name)) {
    r.fail("name", "must be 1 to 64 of A-Z a-z 0-9 . _ -");
  }
  out.tokenFile = r.secretFile("token_file", Need::optional);
  out.certificateSubject = r.nonEmpty("certificate_subject", Need::optional);
  if (r.has("token_file") == r.has("certificate_subject")) {
    r.fail(r.has("token_file") ? "certificate_subject" : "token_file",
           "a client has exactly one credential: token_file or certificate_subject");
  }
  if (out.certificateSubject && !signing.clientCa) {
    r.fail("certificate_subject", "needs [signing] client_ca (the CAs its certificate must chain to)");
  }
  if (auto certs = r.strings("certificates", Need::required)) {
    if (certs->empty()) {
      r.fail("certificates", "must name at least one SHAKEN [[certificate]]");
    }
    out.certificates = *certs;
  }
  if (auto levels = r.strings("attest", Need::optional)) {
    if (levels->empty()) {
      r.fail("attest", "must allow at least one of \"A\", \"B\", \"C\"");
    }
    for (std::size_t i = 0; i < levels->size(); ++i) {
      if ((*levels)[i] != "A" && (*levels)[i] != "B" && (*levels)[i] != "C") {
        r.failElement("attest", i, "must be \"A\", \"B\" or \"C\"");
      }
    }
    out.attest = *levels;
  }
  if (auto rate = r.integer("rate_limit", Need::optional)) {
    if (*rate < 0 || *rate > 1'000'000) {
      r.fail("rate_limit", "must be between 0 (no limit) and 1000000 requests per second");
    } else {
      out.rateLimit = static_cast<int>(*rate);
    }
  }
}

}  // namespace

void readSigning(Loader& loader, SectionReader& r, toml::table& table, SigningConfig& out) {
  readInteger(r, "threads", 1, 64, out.threads);
  if (auto listen = r.nonEmpty("listen", Need::optional)) {
    if (auto parsed = parseHostPort(*listen)) {
      out.listen = *parsed;
    } else {
      r.fail("listen", parsed.error());
    }
  }
  out.tlsCertificate = r.pemFile("tls_certificate", Need::optional);
  out.tlsKey = r.secretFile("tls_key", Need::optional);
  out.clientCa = r.pemFile("client_ca", Need::optional);
  if (r.has("tls_certificate") != r.has("tls_key")) {
    r.fail(r.has("tls_key") ? "tls_certificate" : "tls_key", "tls_certificate and tls_key go together");
  }
  if (r.has("client_ca") && !r.has("tls_certificate")) {
    r.fail("client_ca", "client certificates need TLS: set tls_certificate and tls_key");
  }
  if (out.listen && !r.has("tls_certificate") && !isLoopbackHost(out.listen->host)) {
    r.fail("listen", "would carry bearer tokens in clear text: set tls_certificate and tls_key, or listen on a "
                     "loopback address");
  }
  if (!out.listen && (r.has("tls_certificate") || r.has("client_ca"))) {
    r.fail(r.has("tls_certificate") ? "tls_certificate" : "client_ca", "is for the TCP listener: set listen too");
  }
  out.record = r.absolutePath("record", Need::optional);
  if (auto size = r.integer("record_max_size", Need::optional)) {
    if (*size < kMiB || *size > kMiB * 64 * 1024) {
      r.fail("record_max_size", "must be between 1048576 (1 MiB) and 68719476736 (64 GiB)");
    } else {
      out.recordMaxBytes = *size;
    }
  }
  if (auto keep = r.integer("record_keep", Need::optional)) {
    if (*keep < 1 || *keep > 1000) {
      r.fail("record_keep", "must be between 1 and 1000");
    } else {
      out.recordKeep = static_cast<int>(*keep);
    }
  }

  toml::array* entries = table.get_as<toml::array>("client");
  if (entries == nullptr || !entries->is_array_of_tables()) {
    if (out.listen) {
      r.fail("listen", "needs at least one [[signing.client]] (who may sign over TCP)");
    }
    return;  // a wrong type was reported by checkKeysAndApplyDefaults
  }
  std::map<std::string, Position> firstByName;
  std::map<std::string, std::string> subjects;  // subject -> first client label
  for (std::size_t i = 0; i < entries->size(); ++i) {
    toml::table& entry = *entries->get(i)->as_table();
    std::string label = "signing.client[" + std::to_string(i) + "]";
    if (const auto* name = entry.get_as<std::string>("name"); name != nullptr && isValidCertificateName(name->get())) {
      label = "signing.client." + name->get();
    }
    SectionReader reader(loader, entry, label, "signing.client");
    reader.checkKeysAndApplyDefaults();
    SigningClientConfig client;
    readClient(reader, client, out);
    if (!client.name.empty()) {
      const Position here = loader.positionOf(entry.get("name"), loader.headerOf(entry));
      if (auto [it, inserted] = firstByName.emplace(client.name, here); !inserted) {
        reader.fail("name", "duplicate client name (first defined at " + it->second.file + ":" +
                                std::to_string(it->second.line) + ":" + std::to_string(it->second.column) + ")");
      }
    }
    if (client.certificateSubject) {
      if (auto [it, inserted] = subjects.emplace(*client.certificateSubject, label); !inserted) {
        reader.fail("certificate_subject", "is also " + it->second + "'s: a credential names one client");
      }
    }
    out.clients.push_back(std::move(client));
  }
  if (!r.has("listen")) {
    r.fail("client", "clients sign over the TCP listener: set listen (the control socket admits its admins only)");
  }
}

void checkSigningClients(Loader& loader, toml::table& root, const Config& config) {
  const toml::array* entries = nullptr;
  if (const auto* signing = root.get_as<toml::table>("signing")) {
    entries = signing->get_as<toml::array>("client");
  }
  if (entries == nullptr || !entries->is_array_of_tables()) {
    return;
  }
  for (std::size_t i = 0; i < config.signing.clients.size() && i < entries->size(); ++i) {
    const SigningClientConfig& client = config.signing.clients[i];
    const toml::table& entry = *entries->get(i)->as_table();
    const toml::array* names = entry.get_as<toml::array>("certificates");
    for (std::size_t j = 0; j < client.certificates.size(); ++j) {
      const std::string& wanted = client.certificates[j];
      const auto found = std::find_if(config.certificates.begin(), config.certificates.end(),
                                      [&](const CertificateConfig& c) { return c.name == wanted; });
      std::string problem;
      if (found == config.certificates.end()) {
        problem = "no [[certificate]] is named \"" + wanted + "\"";
      } else if (!found->spc) {
        problem = "\"" + wanted + "\" is not a SHAKEN certificate (it has no spc)";
      } else {
        continue;
      }
      const toml::node* at = names != nullptr ? names->get(j) : nullptr;
      loader.report(loader.positionOf(at, loader.headerOf(entry)),
                    "signing.client." + (client.name.empty() ? std::to_string(i) : client.name),
                    "certificates[" + std::to_string(j) + "]", std::move(problem));
    }
  }
}

}  // namespace kms::config::detail
