#pragma once
/// @file Shared fixture for the config tests: a sandbox holding every file a config can
/// reference, and helpers returning a Config or the exact error lines.

#include <sys/stat.h>

#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "config/config.h"
#include "sandbox.h"
#include "test_pem.h"

namespace kms::config::test {

/// A valid config with only the required keys. Line numbers matter to the error tests:
///  1 [daemon]   2 state_dir   4 [hsm]   5 module   6 token_label   7 pin_file
///  9 [acme]    10 directory_url   12 [publisher]   13 web_root   14 base_url
inline constexpr const char* kMinimal = R"([daemon]
state_dir = "/var/lib/kmsd"

[hsm]
module = "@DIR@/libpkcs11.so"
token_label = "kms"
pin_file = "@DIR@/hsm.pin"

[acme]
directory_url = "https://ca.example/dir"

[publisher]
web_root = "/var/www/cr"
base_url = "https://cr.example.net/"
)";

/// Minimal [sti_pa] section, for configs with SHAKEN certificates.
inline constexpr const char* kStiPa = R"(
[sti_pa]
url = "https://sti-pa.example/api/v1"
user_id = "ops"
password_file = "@DIR@/sti-pa.password"
)";

/// The PIN written to hsm.pin; it must never show up in errors or summaries.
inline constexpr const char* kPin = "pin-8c1f7e";

class ConfigFixture : public ::testing::Test {
 protected:
  ConfigFixture() {
    sandbox_.write("libpkcs11.so", "not really a module");
    sandbox_.write("hsm.pin", std::string(kPin) + "\n");
    sandbox_.write("sti-pa.password", "sti-pa-password");
    sandbox_.write("sti-pa-root.pem", kms::test::kTestRootPem);
    sandbox_.write("acme-tls-ca.pem", kms::test::kTestRootPem);
    sandbox_.write("sti-pa-tls-ca.pem", kms::test::kTestRootPem);
    sandbox_.write("sti-pa-crl.pem", kms::test::kTestRootPem);
    sandbox_.write("sti-ca-roots.pem", kms::test::kTestRootPem);
    sandbox_.write("eab.key", "eab-hmac-key");
    sandbox_.write("empty.pin", "");
    const std::string hook = sandbox_.write("dns01-hook.sh", "#!/bin/sh\nexit 0\n");
    ::chmod(hook.c_str(), 0700);
    const std::string fuzzHook = sandbox_.write("hook.sh", "#!/bin/sh\nexit 0\n");  // the fuzz seeds' name
    ::chmod(fuzzHook.c_str(), 0700);
  }

  /// Replaces every "@DIR@" with the sandbox path.
  [[nodiscard]] std::string expand(std::string text) const {
    const std::string marker = "@DIR@";
    for (std::size_t at = text.find(marker); at != std::string::npos; at = text.find(marker, at + dir().size())) {
      text.replace(at, marker.size(), dir());
    }
    return text;
  }

  [[nodiscard]] const std::string& dir() const { return sandbox_.path(); }

  /// Loads `text` (after expand) as "kmsd.toml".
  [[nodiscard]] tl::expected<Config, ConfigErrors> load(const std::string& text, const Environment& env = {}) const {
    return loadConfigString(expand(text), "kmsd.toml", env);
  }

  /// Loads a config that must be valid.
  [[nodiscard]] Config loadOk(const std::string& text, const Environment& env = {}) const {
    auto result = load(text, env);
    EXPECT_TRUE(result.has_value()) << formatErrors(result.error());
    return result.has_value() ? result.value() : Config{};
  }

  /// Loads a config that must be invalid; returns its error lines, with the sandbox path
  /// replaced back by "@DIR@".
  [[nodiscard]] std::vector<std::string> errors(const std::string& text, const Environment& env = {}) const {
    auto result = load(text, env);
    if (result.has_value()) {
      ADD_FAILURE() << "expected errors, the config loaded";
      return {};
    }
    EXPECT_FALSE(result.error().empty());
    std::vector<std::string> lines;
    for (const ConfigError& error : result.error()) {
      std::string line = error.toString();
      for (std::size_t at = line.find(dir()); at != std::string::npos; at = line.find(dir())) {
        line.replace(at, dir().size(), "@DIR@");
      }
      lines.push_back(line);
    }
    return lines;
  }

  kms::test::Sandbox sandbox_;
};

using Lines = std::vector<std::string>;

}  // namespace kms::config::test
