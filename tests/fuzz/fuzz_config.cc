// Fuzzes the kmsd configuration loader: TOML parsing plus schema and semantic checks, with no
// KMSD_* environment overrides. Loading must never throw or crash; a config that loads can be
// summarised. (The checks stat the files a config names; that touches the file system only.)
#include <cstddef>
#include <cstdint>
#include <string>

#include "config/config.h"
#include "fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  const kms::config::Environment noEnvironment;
  auto config = kms::config::loadConfigString(text, "fuzz.toml", noEnvironment);
  if (config) {
    (void)kms::config::redactedSummary(*config);
  } else {
    KMS_FUZZ_CHECK(!config.error().empty(), "a failed load must report at least one error");
    (void)kms::config::formatErrors(config.error());
  }
  return 0;
}
