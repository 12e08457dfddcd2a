#pragma once
/// @file [signing] and its [[signing.client]] entries (private to kms_config).

#include <toml++/toml.h>

#include "config/config.h"
#include "loader.h"
#include "section_reader.h"

namespace kms::config::detail {

/// Reads [signing] (`r` over `table`) and each [[signing.client]] in it.
void readSigning(Loader& loader, SectionReader& r, toml::table& table, SigningConfig& out);
/// After the [[certificate]] entries are read: each client's certificates name SHAKEN ones.
void checkSigningClients(Loader& loader, toml::table& root, const Config& config);

}  // namespace kms::config::detail
