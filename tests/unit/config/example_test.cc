// deploy/examples/kmsd.toml must stay valid: the only errors it may give on a machine
// without the referenced files are unreadable files.
#include <gtest/gtest.h>

#include "config/config.h"
#include "sandbox.h"
#include "test_pem.h"

namespace kms::config {
namespace {

TEST(ConfigExample, ShippedExampleHasOnlyMissingFileErrors) {
  auto cfg = loadConfigFile(KMS_SOURCE_DIR "/deploy/examples/kmsd.toml", {});
  if (cfg) {
    SUCCEED();
    return;
  }
  for (const ConfigError& e : cfg.error()) {
    bool fileProblem =
        e.what.find("cannot read") != std::string::npos || e.what.find("cannot access") != std::string::npos ||
        e.what.find("does not exist") != std::string::npos || e.what.find("not found") != std::string::npos;
    EXPECT_TRUE(fileProblem) << e.toString();
  }
}

TEST(ConfigExample, ShippedExampleParsesWithFilesPresent) {
  // Point every file reference at a readable file through environment overrides.
  const std::string file = KMS_SOURCE_DIR "/deploy/examples/kmsd.toml";
  test::Sandbox sandbox;
  const std::string secret = sandbox.write("secret", "not-a-real-secret\n");  // 0600: secret files must be
  const std::string pem = sandbox.write("root.pem", kms::test::kTestRootPem);   // PEM settings must parse
  Environment env{{"KMSD_HSM_PIN_FILE", secret},     {"KMSD_STI_PA_PASSWORD_FILE", secret},
                  {"KMSD_STI_PA_TRUST_ANCHOR", pem}, {"KMSD_ACME_CA_BUNDLE", pem},
                  {"KMSD_ACME_TRUST_ANCHORS", pem},  {"KMSD_ACME_EAB_HMAC_FILE", secret},
                  {"KMSD_HSM_MODULE", file},         {"KMSD_STI_PA_CRL_SIGNER", pem}};
  auto cfg = loadConfigFile(KMS_SOURCE_DIR "/deploy/examples/kmsd.toml", env);
  ASSERT_TRUE(cfg.has_value()) << formatErrors(cfg.error());
  ASSERT_EQ(cfg->certificates.size(), 2U);
  EXPECT_EQ(cfg->certificates[0].spc, std::optional<std::string>("1234"));
  EXPECT_EQ(cfg->certificates[0].challenge, Challenge::tkauth01);
  EXPECT_EQ(cfg->certificates[1].dnsNames, std::vector<std::string>{"cr.example.net"});
  EXPECT_EQ(cfg->publisher.retain, std::chrono::hours(24));
  EXPECT_EQ(cfg->stiPa->crlSigner, std::optional<std::string>(pem));
  EXPECT_EQ(cfg->stiPa->trustRefresh, std::chrono::hours(1));
}

}  // namespace
}  // namespace kms::config
