#pragma once
/// @file A real SoftHSM2 token created in a sandbox for one test process.

#include <string>

#include "sandbox.h"

namespace kms::test {

/// Writes a softhsm2.conf whose token directory is inside a Sandbox, points
/// SOFTHSM2_CONF at it (this process and its children) and initialises a token with
/// known PINs through softhsm2-util. Must be created before the PKCS#11 module is
/// initialised in this process.
class SoftHsmToken {
 public:
  static constexpr const char* kUserPin = "1234-user";
  static constexpr const char* kSoPin = "5678-so";

  explicit SoftHsmToken(std::string label = "kms-test");

  [[nodiscard]] const std::string& label() const { return label_; }
  [[nodiscard]] const std::string& confPath() const { return conf_; }
  /// A file holding the user PIN (mode 0600).
  [[nodiscard]] const std::string& pinFile() const { return pinFile_; }
  [[nodiscard]] const Sandbox& sandbox() const { return sandbox_; }
  /// Path of the SoftHSM2 module found at build time.
  static std::string modulePath();

 private:
  Sandbox sandbox_;
  std::string label_;
  std::string conf_;
  std::string pinFile_;
};

}  // namespace kms::test
