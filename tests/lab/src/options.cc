#include "options.h"

#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

namespace kms::lab {

namespace {

using json = nlohmann::json;

constexpr const char* kSwitchesFile = "lab-switches.json";

FingerprintFlavour parseFingerprint(const std::string& s) {
  return s == "jwk-thumbprint" ? FingerprintFlavour::jwkThumbprint : FingerprintFlavour::spki;
}

IdentifierEncoding parseEncoding(const std::string& s) {
  if (s == "padded") {
    return IdentifierEncoding::padded;
  }
  if (s == "base64url") {
    return IdentifierEncoding::base64url;
  }
  return IdentifierEncoding::any;
}

/// Plain values parsed by CLI11 before they are mapped onto LabOptions.
struct RawSwitches {
  std::string fingerprint = "spki";
  std::string identifierEncoding = "any";
};

/// Applies one lab-switches.json member unless the command line gave it. Throws
/// std::runtime_error on a wrong type or value (caught by the caller).
void applyFileSwitch(const std::string& key, const json& value, LabOptions& o, RawSwitches& raw) {
  auto need = [&](bool ok) {
    if (!ok) {
      throw std::runtime_error(std::string(kSwitchesFile) + ": " + key + ": wrong type");
    }
  };
  if (key == "cert-lifetime" || key == "token-lifetime" || key == "access-token-lifetime" || key == "slow-ms" ||
      key == "processing-seconds" || key == "rate-limit-after" || key == "rate-limit-seconds" ||
      key == "sti-cr-delay-ms") {
    need(value.is_number_integer() && value.get<std::int64_t>() >= 0);
    auto v = value.get<std::int64_t>();
    if (key == "cert-lifetime") {
      o.certLifetime = v;
    } else if (key == "token-lifetime") {
      o.tokenLifetime = v;
    } else if (key == "access-token-lifetime") {
      o.accessTokenLifetime = v;
    } else if (key == "processing-seconds") {
      o.processingSeconds = static_cast<int>(v);
    } else if (key == "rate-limit-after") {
      o.rateLimitAfter = static_cast<int>(v);
    } else if (key == "rate-limit-seconds") {
      o.rateLimitSeconds = static_cast<int>(v);
    } else if (key == "sti-cr-delay-ms") {
      o.stiCrDelayMs = static_cast<int>(v);
    } else {
      o.slowMs = static_cast<int>(v);
    }
  } else if (key == "fingerprint") {
    need(value.is_string() && (value == "spki" || value == "jwk-thumbprint"));
    raw.fingerprint = value.get<std::string>();
  } else if (key == "break-profile") {
    need(value.is_string() && (value == "" || value == "key-usage" || value == "no-policy" || value == "no-crl-dp"));
    o.breakProfile = value.get<std::string>();
  } else if (key == "challenge-member") {
    need(value.is_string() && (value == "atc" || value == "tkauth"));
    o.challengeMember = value.get<std::string>();
  } else if (key == "identifier-encoding") {
    need(value.is_string() && (value == "any" || value == "padded" || value == "base64url"));
    raw.identifierEncoding = value.get<std::string>();
  } else if (key == "spc" || key == "sti-pa-allowed-ip") {
    need(value.is_array());
    std::vector<std::string> list;
    for (const auto& item : value) {
      need(item.is_string());
      list.push_back(item.get<std::string>());
    }
    (key == "spc" ? o.spcs : o.stiPaAllowedIps) = list;
  } else if (key == "wrong-tnauthlist" || key == "broken-chain" || key == "fail-sti-pa" || key == "no-eab" ||
             key == "tamper-token" || key == "fail-sti-cr" || key == "foreign-urls") {
    need(value.is_boolean());
    bool v = value.get<bool>();
    if (key == "wrong-tnauthlist") {
      o.wrongTnAuthList = v;
    } else if (key == "broken-chain") {
      o.brokenChain = v;
    } else if (key == "fail-sti-pa") {
      o.failStiPa = v;
    } else if (key == "fail-sti-cr") {
      o.failStiCr = v;
    } else if (key == "tamper-token") {
      o.tamperToken = v;
    } else if (key == "foreign-urls") {
      o.foreignUrls = v;
    } else {
      o.noEab = v;
    }
  } else {
    throw std::runtime_error(std::string(kSwitchesFile) + ": unknown switch '" + key + "'");
  }
}

}  // namespace

const char* toString(FingerprintFlavour value) noexcept {
  return value == FingerprintFlavour::spki ? "spki" : "jwk-thumbprint";
}

const char* toString(IdentifierEncoding value) noexcept {
  switch (value) {
    case IdentifierEncoding::padded:
      return "padded";
    case IdentifierEncoding::base64url:
      return "base64url";
    case IdentifierEncoding::any:
      break;
  }
  return "any";
}

json LabOptions::toJson() const {
  return json{{"cert-lifetime", certLifetime},
              {"token-lifetime", tokenLifetime},
              {"access-token-lifetime", accessTokenLifetime},
              {"fingerprint", toString(fingerprint)},
              {"challenge-member", challengeMember},
              {"break-profile", breakProfile},
              {"identifier-encoding", toString(identifierEncoding)},
              {"spc", spcs},
              {"sti-pa-allowed-ip", stiPaAllowedIps},
              {"wrong-tnauthlist", wrongTnAuthList},
              {"broken-chain", brokenChain},
              {"slow-ms", slowMs},
              {"processing-seconds", processingSeconds},
              {"rate-limit-after", rateLimitAfter},
              {"rate-limit-seconds", rateLimitSeconds},
              {"fail-sti-pa", failStiPa},
              {"fail-sti-cr", failStiCr},
              {"sti-cr-delay-ms", stiCrDelayMs},
              {"no-eab", noEab},
              {"tamper-token", tamperToken},
              {"foreign-urls", foreignUrls}};
}

ParseOutcome parseOptions(int argc, char** argv) {
  ParseOutcome out;
  LabOptions& o = out.options;
  RawSwitches raw;
  CLI::App app{"kms-lab: a local STI-PA and ACME STI-CA (tkauth-01) for testing kmsd", "kms-lab"};
  app.add_option("--dir", o.dir, "directory holding the lab's PKI, state and generated client files")->required();
  app.add_option("--port", o.port, "HTTPS port on 127.0.0.1 (0: reuse the one in D/lab.json, else any free one)");
  app.add_option("--cert-lifetime", o.certLifetime, "lifetime of issued certificates, seconds (default 90 days)")
      ->check(CLI::PositiveNumber);
  app.add_option("--token-lifetime", o.tokenLifetime, "lifetime of SPC tokens, seconds")->check(CLI::PositiveNumber);
  app.add_option("--access-token-lifetime", o.accessTokenLifetime, "lifetime of STI-PA access tokens, seconds")
      ->check(CLI::PositiveNumber);
  app.add_option("--fingerprint", raw.fingerprint, "account key fingerprint the CA expects in the token")
      ->check(CLI::IsMember({"spki", "jwk-thumbprint"}));
  app.add_option("--challenge-member", o.challengeMember, "member of the tkauth-01 response carrying the token")
      ->check(CLI::IsMember({"atc", "tkauth"}));
  app.add_flag("--record", o.record, "append every ACME and STI-PA POST but the login to DIR/requests.jsonl");
  app.add_option("--break-profile", o.breakProfile, "issue certificates that break one SHAKEN profile rule")
      ->check(CLI::IsMember({"key-usage", "no-policy", "no-crl-dp"}));
  app.add_option("--identifier-encoding", raw.identifierEncoding, "TNAuthList identifier values the CA accepts")
      ->check(CLI::IsMember({"any", "padded", "base64url"}));
  app.add_option("--spc", o.spcs, "SPC owned by the lab STI-PA account (repeatable; default 1234)");
  app.add_option("--sti-pa-allowed-ip", o.stiPaAllowedIps, "STI-PA client address allow-list (repeatable)");
  app.add_flag("--wrong-tnauthlist", o.wrongTnAuthList, "issue certificates whose TNAuthList names another SPC");
  app.add_flag("--broken-chain", o.brokenChain, "serve an intermediate that did not sign the leaf");
  app.add_option("--slow-ms", o.slowMs, "delay every response by this many milliseconds")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--processing-seconds", o.processingSeconds,
                 "finalize answers processing with this Retry-After; earlier polls are refused")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--rate-limit-after", o.rateLimitAfter,
                 "with --rate-limit-seconds: the newOrder requests after this many are refused")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--rate-limit-seconds", o.rateLimitSeconds,
                 "refuse newOrder (429 rateLimited, Retry-After) for this long from the first refusal")
      ->check(CLI::NonNegativeNumber);
  app.add_flag("--fail-sti-pa", o.failStiPa, "every STI-PA request answers 500");
  app.add_flag("--fail-sti-cr", o.failStiCr, "every STI-CR fetch (/sti-cr/) answers 503");
  app.add_option("--sti-cr-delay-ms", o.stiCrDelayMs, "STI-CR fetches (/sti-cr/) answer this many milliseconds later")
      ->check(CLI::NonNegativeNumber);
  app.add_flag("--no-eab", o.noEab, "do not require External Account Binding");
  app.add_flag("--tamper-token", o.tamperToken, "hand out SPC tokens whose signature does not verify");
  app.add_flag("--foreign-urls", o.foreignUrls,
               "as a hostile STI-PA and CA would: SPC tokens name an x5u and a CRL URL on 127.0.0.2, the ACME "
               "directory names plain-http, other-host and file: URLs");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    out.exitCode = app.exit(e) == 0 ? 0 : 2;
    return out;
  }
  o.portGiven = app.count("--port") > 0 && o.port != 0;

  std::error_code ec;
  o.dir = std::filesystem::absolute(o.dir, ec).lexically_normal().string();
  if (!o.dir.empty() && o.dir.back() == '/') {
    o.dir.pop_back();
  }
  std::string switchesPath = o.dir + "/" + kSwitchesFile;
  if (std::filesystem::exists(switchesPath, ec)) {
    std::ifstream in(switchesPath);
    std::stringstream text;
    text << in.rdbuf();
    json file = json::parse(text.str(), nullptr, false);
    if (file.is_discarded() || !file.is_object()) {
      std::cerr << "kms-lab: " << switchesPath << ": not a JSON object\n";
      out.exitCode = 2;
      return out;
    }
    try {
      for (const auto& [key, value] : file.items()) {
        const CLI::Option* flag = app.get_option_no_throw("--" + key);
        if (flag == nullptr || flag->count() == 0) {
          applyFileSwitch(key, value, o, raw);
        }
      }
    } catch (const std::exception& e) {
      std::cerr << "kms-lab: " << e.what() << "\n";
      out.exitCode = 2;
      return out;
    }
  }
  o.fingerprint = parseFingerprint(raw.fingerprint);
  o.identifierEncoding = parseEncoding(raw.identifierEncoding);
  if (o.spcs.empty()) {
    o.spcs = {"1234"};
  }
  return out;
}

}  // namespace kms::lab
