#pragma once
/// @file kms-lab switches: command line, D/lab-switches.json (read at start), defaults.

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "kms/error.h"

namespace kms::lab {

/// What the STI-CA compares the token's atc.fingerprint with (docs/protocols.md).
enum class FingerprintFlavour { spki, jwkThumbprint };
/// What the STI-CA accepts as identifier value (docs/protocols.md).
enum class IdentifierEncoding { any, padded, base64url };

/// Every behaviour switch. Defaults are the conforming, US-practice behaviour.
struct LabOptions {
  std::string dir;         ///< absolute; everything lives here
  std::uint16_t port = 0;  ///< 0: reuse D/lab.json's port, else pick a free one
  bool portGiven = false;  ///< --port was on the command line

  std::int64_t certLifetime = 90LL * 86400;  ///< seconds, issued certificates
  std::int64_t tokenLifetime = 3600;         ///< seconds, SPC tokens
  std::int64_t accessTokenLifetime = 3600;   ///< seconds, STI-PA login tokens
  FingerprintFlavour fingerprint = FingerprintFlavour::spki;
  std::string challengeMember = "atc";  ///< "atc" or "tkauth"
  IdentifierEncoding identifierEncoding = IdentifierEncoding::any;
  std::vector<std::string> spcs{"1234"};     ///< SPCs the lab STI-PA account owns
  std::vector<std::string> stiPaAllowedIps;  ///< empty: every client address allowed

  // Misbehaviour for tests.
  bool wrongTnAuthList = false;  ///< issue with another SPC in the TNAuthList
  /// Issue certificates that break one SHAKEN profile rule: "key-usage" (digitalSignature
  /// and keyEncipherment), "no-policy" (no certificatePolicies), "no-crl-dp" (no CRL
  /// distribution point); empty: the profile is kept.
  std::string breakProfile;
  /// Append every ACME and STI-PA POST (not the login, which carries the password) to
  /// DIR/requests.jsonl, for tests that check what a client sent with code of their own.
  bool record = false;
  bool brokenChain = false;      ///< serve an intermediate that did not sign the leaf
  int slowMs = 0;                ///< delay every response
  bool failStiPa = false;        ///< every STI-PA call answers 500
  bool failStiCr = false;        ///< every STI-CR fetch answers 503
  int stiCrDelayMs = 0;          ///< STI-CR fetches answer this much later
  bool noEab = false;            ///< externalAccountRequired false
  bool tamperToken = false;      ///< SPC tokens carry a corrupted signature
  bool foreignUrls = false;      ///< token x5u and CRL URL on 127.0.0.2 (another host)
  /// finalize answers "processing" with Retry-After: N; polling the order sooner is
  /// refused (429 rateLimited), afterwards it is valid. 0: valid at once.
  int processingSeconds = 0;
  /// newOrder requests after the first `rateLimitAfter` are refused (429 rateLimited,
  /// Retry-After: the seconds left) for `rateLimitSeconds` from the first refusal. 0: off.
  int rateLimitAfter = 0;
  int rateLimitSeconds = 0;

  /// The switches as JSON (the lab-switches.json spelling), for logs and lab.json.
  [[nodiscard]] nlohmann::json toJson() const;
};

[[nodiscard]] const char* toString(FingerprintFlavour value) noexcept;
[[nodiscard]] const char* toString(IdentifierEncoding value) noexcept;

/// Parses argv (CLI11) and D/lab-switches.json; the command line wins over the file.
/// Returns the exit code to use when parsing ends the program (--help: 0, errors: 2),
/// with the message already printed.
struct ParseOutcome {
  LabOptions options;
  int exitCode = -1;  ///< -1: go on
};
[[nodiscard]] ParseOutcome parseOptions(int argc, char** argv);

}  // namespace kms::lab
