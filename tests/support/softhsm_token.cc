#include "softhsm_token.h"

#include <cstdlib>
#include <filesystem>
#include <stdexcept>

namespace kms::test {

SoftHsmToken::SoftHsmToken(std::string label) : label_(std::move(label)) {
  std::filesystem::create_directories(sandbox_.file("tokens"));
  conf_ = sandbox_.write("softhsm2.conf", "directories.tokendir = " + sandbox_.file("tokens") +
                                              "\nobjectstore.backend = file\n"
                                              "log.level = ERROR\n");
  ::setenv("SOFTHSM2_CONF", conf_.c_str(), 1);
  std::string out;
  int rc = runCommand(
      "softhsm2-util --init-token --free --label '" + label_ + "' --pin " + kUserPin + " --so-pin " + kSoPin, &out);
  if (rc != 0) {
    throw std::runtime_error("softhsm2-util --init-token failed: " + out);
  }
  pinFile_ = sandbox_.write("user.pin", std::string(kUserPin) + "\n");
}

std::string SoftHsmToken::modulePath() {
  const char* env = std::getenv("KMS_SOFTHSM2_MODULE");
  return env != nullptr ? env : KMS_SOFTHSM2_MODULE_PATH;
}

}  // namespace kms::test
