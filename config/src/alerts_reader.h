#pragma once
/// @file [alerts] and its channels [[alerts.alertmanager]], [[alerts.webhook]] and
/// [[alerts.smtp]] (private to kms_config).

#include <toml++/toml.h>

#include "config/config.h"
#include "loader.h"
#include "section_reader.h"

namespace kms::config::detail {

/// Reads [alerts] (`r` over `table`) and each channel in it. Channel names are unique
/// across the three kinds: they label the delivery metrics and events.
void readAlerts(Loader& loader, SectionReader& r, toml::table& table, AlertsConfig& out);

}  // namespace kms::config::detail
