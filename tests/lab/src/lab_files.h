#pragma once
/// @file Files kms-lab writes for its clients under D: secrets, lab.json, kmsd.toml,
/// softhsm2.conf and the SoftHSM2 token "kms".

#include <cstdint>
#include <optional>
#include <string>

#include "kms/error.h"
#include "lab_context.h"

namespace kms::lab {

/// D/sti-pa.password and D/eab.key (base64url), created once (0600), then reused.
struct LabSecrets {
  std::string stiPaPassword;
  pki::Bytes eabKey;
};
[[nodiscard]] Result<LabSecrets> ensureSecrets(const std::string& dir);

/// The port recorded in D/lab.json by an earlier start, if any.
[[nodiscard]] std::optional<std::uint16_t> previousPort(const std::string& dir);

/// Writes D/lab.json and D/kmsd.toml for the running lab (every start).
[[nodiscard]] Result<void> writeClientFiles(const LabContext& ctx);

/// Writes D/softhsm2.conf and, unless D/softhsm/hsm.pin exists, initialises a token
/// labelled "kms" with random PINs through softhsm2-util. Fails when softhsm2-util fails.
[[nodiscard]] Result<void> ensureSoftHsmToken(const std::string& dir);

}  // namespace kms::lab
