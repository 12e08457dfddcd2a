#pragma once
/// @file [daemon] (private to kms_config).

#include "config/config.h"
#include "section_reader.h"

namespace kms::config::detail {

/// Reads [daemon] (`r` over its table) into `out`, every problem reported through `r`.
void readDaemon(SectionReader& r, DaemonConfig& out);

}  // namespace kms::config::detail
