#include "loader.h"

#include <sys/stat.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <initializer_list>
#include <optional>
#include <string_view>
#include <tuple>
#include <utility>

#include "alerts_reader.h"
#include "checks.h"
#include "daemon_reader.h"
#include "kms/text.h"
#include "section_reader.h"
#include "signing_reader.h"

namespace kms::config::detail {
namespace {

constexpr std::size_t kMaxTokenLabel = 32;   // CK_TOKEN_INFO.label
constexpr std::size_t kMaxSubjectO = 64;     // X.520 ub-organization-name

bool isTableSection(std::string_view name) {
  return std::find(std::begin(kTableSections), std::end(kTableSections), name) != std::end(kTableSections);
}

std::string_view trim(std::string_view text) {
  return kms::trimBlanks(text);
}

void readHsm(SectionReader& r, HsmConfig& out) {
  out.module = r.trustedFile("module", Need::optional).value_or("");
  if (auto label = r.nonEmpty("token_label", Need::required)) {
    if (label->size() > kMaxTokenLabel) {
      r.fail("token_label",
             "must be at most 32 bytes (the PKCS#11 token label size), got " + std::to_string(label->size()));
    }
    out.tokenLabel = *label;
  }
  out.pinFile = r.secretFile("pin_file", Need::required).value_or("");
  out.softhsm2Conf = r.trustedFile("softhsm2_conf", Need::optional);
  readInteger(r, "session_pool", 1, 64, out.sessionPool);
}

void readStiPa(SectionReader& r, StiPaConfig& out) {
  out.url = r.url("url", Need::required).value_or("");
  out.userId = r.nonEmpty("user_id", Need::required).value_or("");
  out.passwordFile = r.secretFile("password_file", Need::required).value_or("");
  out.trustAnchor = r.pemFile("trust_anchor", Need::optional);
  out.caBundle = r.pemFile("ca_bundle", Need::optional);
  out.crlSigner = r.pemFile("crl_signer", Need::optional);
  readDuration(r, "trust_refresh", std::chrono::seconds(1), std::chrono::seconds(86400),
               "must be between 1s and 1d", out.trustRefresh);
  readChoice(r, "fingerprint", {{"spki", Fingerprint::spki}, {"jwk-thumbprint", Fingerprint::jwkThumbprint}},
             R"(must be "spki" or "jwk-thumbprint")", out.fingerprint);
  out.insecureSkipSignerCheck = r.boolean("insecure_skip_signer_check", Need::optional).value_or(false);
  if (auto hosts = r.strings("allowed_hosts", Need::optional)) {
    for (std::size_t i = 0; i < hosts->size(); ++i) {
      const std::string& h = (*hosts)[i];
      if (h.empty() || h.find_first_of("/@ ") != std::string::npos) {
        r.failElement("allowed_hosts", i, R"(must be "host" or "host:port", without scheme or path)");
      }
    }
    out.allowedHosts = *hosts;
  }
}

void readAcme(SectionReader& r, AcmeConfig& out) {
  out.directoryUrl = r.url("directory_url", Need::required).value_or("");
  out.caBundle = r.pemFile("ca_bundle", Need::optional);
  out.trustAnchors = r.pemFile("trust_anchors", Need::optional);
  out.eabKid = r.nonEmpty("eab_kid", Need::optional);
  out.eabHmacFile = r.secretFile("eab_hmac_file", Need::optional);
  if (r.has("eab_kid") && !r.has("eab_hmac_file")) {
    r.fail("eab_kid", "needs eab_hmac_file too (external account binding uses both)");
  } else if (r.has("eab_hmac_file") && !r.has("eab_kid")) {
    r.fail("eab_hmac_file", "needs eab_kid too (external account binding uses both)");
  }
  if (auto contacts = r.strings("contact", Need::optional)) {
    for (std::size_t i = 0; i < contacts->size(); ++i) {
      const std::string& contact = (*contacts)[i];
      if (!contact.starts_with("mailto:") || contact.size() == 7) {
        r.failElement("contact", i, R"(must be "mailto:ADDRESS")");
      }
    }
    out.contact = *contacts;
  }
  if (auto listen = r.string("http01_listen", Need::optional)) {
    auto parsed = parseHostPort(*listen);
    if (parsed.has_value()) {
      out.http01Listen = parsed.value();
    } else {
      r.fail("http01_listen", parsed.error());
    }
  }
  if (auto hook = r.nonEmpty("dns01_hook", Need::optional)) {
    if (auto problem = r.checksFiles() ? checkExecutableFile(*hook) : std::nullopt) {
      r.fail("dns01_hook", std::move(*problem));
    }
    out.dns01Hook = *hook;
  }
  out.insecureSkipChainCheck = r.boolean("insecure_skip_chain_check", Need::optional).value_or(false);
}

void readPublisher(SectionReader& r, PublisherConfig& out) {
  out.webRoot = r.absolutePath("web_root", Need::required).value_or("");
  if (struct stat st {}; r.checksFiles() && !out.webRoot.empty() && ::stat(out.webRoot.c_str(), &st) == 0) {
    if (auto problem = checkOwnership(out.webRoot)) {  // what verifiers are served
      r.fail("web_root", std::move(*problem));
    }
  }
  if (auto base = r.url("base_url", Need::required)) {
    if (!base->ends_with('/')) {
      r.fail("base_url", R"(must end with "/")");
    }
    out.baseUrl = *base;
  }
  readDuration(r, "retain", std::chrono::seconds(1), std::chrono::seconds::max(), "", out.retain);
  readChoice(r, "publication_check", {{"fetch", PublicationCheck::fetch}, {"file", PublicationCheck::file}},
             R"(must be "fetch" or "file")", out.publicationCheck);
  readDuration(r, "check_timeout", std::chrono::seconds(1), std::chrono::seconds(300), "must be between 1s and 5m",
               out.checkTimeout);
  readInteger(r, "check_retries", 0, 10, out.checkRetries);
  out.caBundle = r.pemFile("ca_bundle", Need::optional);
  readDuration(r, "hook_timeout", std::chrono::seconds(1), std::chrono::hours(1), "must be between 1s and 1h",
               out.hookTimeout);
}

void readIdentifiers(SectionReader& r, CertificateConfig& out) {
  auto identifiers = r.strings("identifiers", Need::optional);
  if (!identifiers) {
    return;
  }
  if (identifiers->empty()) {
    r.fail("identifiers", "must not be empty");
    return;
  }
  for (std::size_t i = 0; i < identifiers->size(); ++i) {
    const std::string& identifier = (*identifiers)[i];
    if (!identifier.starts_with("dns:")) {
      r.failElement("identifiers", i, R"(must be "dns:NAME")");
      continue;
    }
    std::string name = toLower(std::string_view(identifier).substr(4));
    if (!isValidDnsName(name)) {
      r.failElement("identifiers", i, quoted(identifier.substr(4)) + " is not a valid DNS name");
      continue;
    }
    if (name.starts_with("*.") && out.challenge != Challenge::dns01) {
      r.failElement("identifiers", i, R"(a wildcard name needs challenge "dns-01")");
    }
    if (std::find(out.dnsNames.begin(), out.dnsNames.end(), name) != out.dnsNames.end()) {
      r.failElement("identifiers", i, "duplicate identifier " + quoted(identifier));
      continue;
    }
    out.dnsNames.push_back(std::move(name));
  }
}

void readCertificate(SectionReader& r, CertificateConfig& out) {
  out.name = r.string("name", Need::required).value_or("");
  if (r.has("name") && r.node("name")->is_string() && !isValidCertificateName(out.name)) {
    r.fail("name", "must be 1..64 characters from A-Z a-z 0-9 . _ -");
  } else if (!out.name.empty() && out.name.front() == '.') {
    // It names web_root/<name>/ and <name>.pem: a hidden file, or ".." itself.
    r.fail("name", "must not start with '.'");
  }
  const bool hasSpc = r.has("spc");
  const bool hasIdentifiers = r.has("identifiers");
  if (hasSpc && hasIdentifiers) {
    r.fail("identifiers", "cannot be combined with spc (use exactly one of them)");
  } else if (!hasSpc && !hasIdentifiers) {
    r.missing("", "needs exactly one of spc or identifiers");
  }

  auto challenge = r.string("challenge", Need::optional);
  if (hasSpc && !hasIdentifiers) {
    out.challenge = Challenge::tkauth01;
    if (challenge && *challenge != "tkauth-01") {
      r.fail("challenge", R"(must be "tkauth-01" with spc)");
    }
  } else if (hasIdentifiers && !hasSpc) {
    out.challenge = Challenge::http01;
    if (challenge && *challenge == "dns-01") {
      out.challenge = Challenge::dns01;
    } else if (challenge && *challenge != "http-01") {
      r.fail("challenge", R"(must be "http-01" or "dns-01" with identifiers)");
    }
  }

  if (auto spc = r.string("spc", Need::optional)) {
    if (!isValidSpc(*spc)) {
      r.fail("spc", "must be digits and upper-case letters (A-Z, 0-9)");
    }
    out.spc = *spc;
  }
  readIdentifiers(r, out);

  if (auto reuse = r.boolean("reuse_key", Need::optional)) {
    out.reuseKey = *reuse;
  }
  if (auto hook = r.nonEmpty("deploy_hook", Need::optional)) {
    if (auto problem = r.checksFiles() ? checkExecutableFile(*hook) : std::nullopt) {
      r.fail("deploy_hook", std::move(*problem));
    }
    out.deployHook = *hook;
  }
  out.subjectO = r.nonEmpty("subject_o", Need::optional);
  if (hasSpc && !r.has("subject_o")) {
    r.missing("subject_o", "missing required key (needed with spc)");
  }
  if (out.subjectO && out.subjectO->size() > kMaxSubjectO) {
    r.fail("subject_o", "must be at most 64 bytes");
  }
  if (auto country = r.string("subject_c", Need::optional)) {
    bool valid = country->size() == 2;
    for (char c : *country) {
      valid = valid && c >= 'A' && c <= 'Z';
    }
    if (!valid) {
      r.fail("subject_c", R"(must be two upper-case letters (ISO 3166 code, e.g. "US"))");
    }
    out.subjectC = *country;
  }
  if (auto fraction = r.number("renew_before_fraction", Need::optional)) {
    if (!(*fraction > 0.0 && *fraction < 1.0)) {
      r.fail("renew_before_fraction", "must be greater than 0 and less than 1");
    }
    out.renewBeforeFraction = *fraction;
  }
}

}  // namespace

const toml::node* setFromText(toml::table& table, std::string_view key, Kind kind, std::string_view text,
                              std::string& error) {
  switch (kind) {
    case Kind::string: {
      table.insert_or_assign(key, std::string(text));
      break;
    }
    case Kind::integer: {
      std::int64_t value = 0;
      auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
      if (text.empty() || ec != std::errc() || end != text.data() + text.size()) {
        error = "expected an integer, got " + quoted(text);
        return nullptr;
      }
      table.insert_or_assign(key, value);
      break;
    }
    case Kind::number: {
      double value = 0;
      auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
      if (text.empty() || ec != std::errc() || end != text.data() + text.size()) {
        error = "expected a number, got " + quoted(text);
        return nullptr;
      }
      table.insert_or_assign(key, value);
      break;
    }
    case Kind::boolean: {
      if (text != "true" && text != "false") {
        error = "expected true or false, got " + quoted(text);
        return nullptr;
      }
      table.insert_or_assign(key, text == "true");
      break;
    }
    case Kind::tableArray:
      error = "cannot be set from the environment";
      return nullptr;
    case Kind::stringArray: {
      toml::array array;
      std::size_t start = 0;
      while (start <= text.size()) {
        std::size_t comma = text.find(',', start);
        std::string_view item =
            trim(text.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start));
        if (!item.empty()) {
          array.push_back(std::string(item));
        }
        if (comma == std::string_view::npos) {
          break;
        }
        start = comma + 1;
      }
      table.insert_or_assign(key, std::move(array));
      break;
    }
  }
  return table.get(key);
}

Position Loader::positionOf(const toml::node* node, const Position& fallback) const {
  if (node == nullptr) {
    return fallback;
  }
  if (auto it = envOrigin_.find(node); it != envOrigin_.end()) {
    return Position{"env " + it->second, 0, 0};
  }
  const toml::source_position begin = node->source().begin;
  if (begin.line == 0) {
    return fallback;
  }
  return Position{source_, static_cast<int>(begin.line), static_cast<int>(begin.column)};
}

Position Loader::headerOf(const toml::node& table) const {
  return positionOf(&table, Position{source_, 1, 1});
}

Position Loader::keyPosition(const toml::key& key) const {
  const toml::source_position begin = key.source().begin;
  if (begin.line == 0) {
    return Position{source_, 1, 1};
  }
  return Position{source_, static_cast<int>(begin.line), static_cast<int>(begin.column)};
}

void Loader::report(const Position& where, std::string section, std::string key, std::string what) {
  errors_.push_back(
      ConfigError{where.file, where.line, where.column, std::move(section), std::move(key), std::move(what)});
}

void Loader::applyEnvironment(toml::table& root, const Environment& env) {
  for (const auto& [name, value] : env) {
    for (std::string_view section : kTableSections) {
      const std::string prefix = envName(section, "");
      if (!name.starts_with(prefix)) {
        continue;
      }
      const Setting* setting = nullptr;
      for (const Setting& candidate : settings()) {
        if (candidate.section == section && envName(section, candidate.key) == name) {
          setting = &candidate;
        }
      }
      const Position where{"env " + name, 0, 0};
      if (setting == nullptr) {
        report(where, std::string(section), toLower(name.substr(prefix.size())), "unknown key");
        break;
      }
      if (!root.contains(section)) {
        root.insert(section, toml::table{});
      }
      toml::table* table = root.get_as<toml::table>(section);
      if (table == nullptr) {
        break;  // "expected a table" is reported by checkRoot
      }
      std::string error;
      const toml::node* node = setFromText(*table, setting->key, setting->kind, value, error);
      if (node == nullptr) {
        report(where, std::string(section), std::string(setting->key), std::move(error));
        break;
      }
      envOrigin_[node] = name;
      applied_.push_back(name);
      break;
    }
  }
}

void Loader::checkRoot(const toml::table& root) {
  for (auto&& [key, value] : root) {
    const std::string name(key.str());
    if (isTableSection(name)) {
      if (!value.is_table()) {
        report(positionOf(&value, keyPosition(key)), name, "", std::string("expected a table, got ") + typeName(value));
      }
    } else if (name == kCertificateSection) {
      if (!value.is_array()) {
        report(positionOf(&value, keyPosition(key)), name, "",
               std::string("expected an array of tables ([[certificate]]), got ") + typeName(value));
      }
    } else if (value.is_table()) {
      report(positionOf(&value, keyPosition(key)), name, "", "unknown section");
    } else {
      report(keyPosition(key), "", name, "unknown key");
    }
  }
}

void Loader::readCertificates(toml::table& root, Config& config) {
  toml::array* entries = root.get_as<toml::array>(kCertificateSection);
  if (entries == nullptr) {
    return;
  }
  std::map<std::string, Position> firstByName;
  for (std::size_t i = 0; i < entries->size(); ++i) {
    toml::node& entry = *entries->get(i);
    const std::string indexLabel = "certificate[" + std::to_string(i) + "]";
    toml::table* table = entry.as_table();
    if (table == nullptr) {
      report(positionOf(&entry, Position{source_, 1, 1}), indexLabel, "",
             std::string("expected a table, got ") + typeName(entry));
      continue;
    }
    std::string label = indexLabel;
    const toml::node* nameNode = table->get("name");
    if (nameNode != nullptr && nameNode->is_string() && isValidCertificateName(nameNode->as_string()->get())) {
      label = "certificate." + nameNode->as_string()->get();
    }
    SectionReader reader(*this, *table, label, kCertificateSection);
    reader.checkKeysAndApplyDefaults();
    CertificateConfig certificate;
    readCertificate(reader, certificate);
    if (label != indexLabel) {
      Position here = positionOf(nameNode, headerOf(*table));
      auto [it, inserted] = firstByName.emplace(certificate.name, here);
      if (!inserted) {
        const Position& first = it->second;
        reader.fail("name", "duplicate certificate name (first defined at " + first.file + ":" +
                                std::to_string(first.line) + ":" + std::to_string(first.column) + ")");
      }
    }
    if (certificate.spc && firstSpc_ == nullptr) {
      firstSpc_ = table->get("spc");
      firstSpcLabel_ = label;
    }
    config.certificates.push_back(std::move(certificate));
  }
}

tl::expected<Config, ConfigErrors> Loader::load(toml::table& root, const Environment& env) {
  ConfigRead result = read(root, env);
  if (!result.errors.empty()) {
    return tl::unexpected(std::move(result.errors));
  }
  return std::move(result.config);
}

ConfigRead Loader::read(toml::table& root, const Environment& env) {
  applyEnvironment(root, env);
  checkRoot(root);
  for (std::string_view section : {"daemon", "hsm", "acme", "publisher"}) {
    if (!root.contains(section)) {
      root.insert(section, toml::table{});
    }
  }

  Config config;
  config.source = source_;
  auto readSection = [&](std::string_view section, auto&& read) {
    if (toml::table* table = root.get_as<toml::table>(section)) {
      SectionReader reader(*this, *table, std::string(section), section);
      reader.checkKeysAndApplyDefaults();
      read(reader);
    }
  };
  readSection("daemon", [&](SectionReader& r) { readDaemon(r, config.daemon); });
  readSection("hsm", [&](SectionReader& r) { readHsm(r, config.hsm); });
  readSection("sti_pa", [&](SectionReader& r) { readStiPa(r, config.stiPa.emplace()); });
  readSection("acme", [&](SectionReader& r) { readAcme(r, config.acme); });
  readSection("publisher", [&](SectionReader& r) { readPublisher(r, config.publisher); });
  readSection("metrics", [&](SectionReader& r) {
    readInteger(r, "per_certificate_limit", 0, 1000000, config.metrics.perCertificateLimit);
  });
  if (toml::table* signing = root.get_as<toml::table>("signing")) {
    SectionReader reader(*this, *signing, "signing", "signing");
    reader.checkKeysAndApplyDefaults();
    readSigning(*this, reader, *signing, config.signing);
  }
  if (toml::table* alerts = root.get_as<toml::table>("alerts")) {
    SectionReader reader(*this, *alerts, "alerts", "alerts");
    reader.checkKeysAndApplyDefaults();
    readAlerts(*this, reader, *alerts, config.alerts);
  }
  readCertificates(root, config);
  checkSigningClients(*this, root, config);

  if (!root.contains("sti_pa") && firstSpc_ != nullptr) {
    report(positionOf(firstSpc_, Position{source_, 1, 1}), "sti_pa", "",
           "section is required because " + firstSpcLabel_ + " uses spc");
  }

  std::sort(applied_.begin(), applied_.end());
  config.envOverrides = applied_;
  std::stable_sort(errors_.begin(), errors_.end(), [](const ConfigError& a, const ConfigError& b) {
    auto rank = [](const ConfigError& e) { return std::tuple(e.line == 0, e.line, e.column); };
    return rank(a) < rank(b);
  });
  return ConfigRead{std::move(config), std::move(errors_)};
}

}  // namespace kms::config::detail
