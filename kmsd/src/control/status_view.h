#pragma once
// The one status view: every certificate as JSON, written as text from one query (100,000
// rows must not become 100,000 JSON objects first). The daemon adds its engine's view of
// each certificate; kmsctl, with the daemon down, the same fields from the configuration.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "engine/runtime_view.h"
#include "events/event_sink.h"
#include "storage/alert_log.h"

namespace kms::daemon {

/// The certificates array ("[{...},...]") of the DB's certificates at `now`, or of `only`.
/// A certificate in `runtime` is "managed" with its next action and plan; one that is not
/// (removed from the configuration) is "managed": false with empty ones.
[[nodiscard]] Result<std::string> certificatesJson(LockedStore& store, std::int64_t now, const RuntimeViews& runtime,
                                                   const std::optional<std::string>& only = {});

/// Events as the control API gives them: id, time, level, event, cert, message (one line).
[[nodiscard]] nlohmann::json eventsJson(const std::vector<storage::Event>& events);

/// kmsd's own alerts as the control API gives them (GET /v1/alerts and kmsctl alerts with kmsd
/// down): each with the deliveries of its current firing.
[[nodiscard]] nlohmann::json alertsJson(const std::vector<storage::AlertRow>& alerts,
                                        const std::vector<storage::DeliveryRow>& deliveries);

/// The conditions firing by certificate name (`/v1/status`'s "alerts_firing": kmsctl status'
/// ALERTS column): {"main": ["expiring", ...], ...}.
[[nodiscard]] nlohmann::json firingJson(const std::vector<storage::AlertRow>& alerts);

/// One JSON string: quotes, escapes, control characters as \u00XX, invalid UTF-8 as U+FFFD.
void appendJsonString(std::string& out, std::string_view text);

}  // namespace kms::daemon
