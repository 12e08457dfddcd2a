#include "alerts/conditions.h"

#include <cctype>

#include "common/time_format.h"
#include "events/event_sink.h"

namespace kms::daemon {
namespace {

/// "3d 4h", "5h 2m", "40s": how far away `seconds` is.
std::string span(std::int64_t seconds) {
  if (seconds < 0) {
    seconds = -seconds;
  }
  const std::int64_t days = seconds / 86400;
  const std::int64_t hours = seconds % 86400 / 3600;
  const std::int64_t minutes = seconds % 3600 / 60;
  if (days > 0) {
    return std::to_string(days) + "d " + std::to_string(hours) + "h";
  }
  if (hours > 0) {
    return std::to_string(hours) + "h " + std::to_string(minutes) + "m";
  }
  return minutes > 0 ? std::to_string(minutes) + "m" : std::to_string(seconds) + "s";
}

std::string lastError(const storage::AlertFacts& f) {
  return f.lastError ? sanitize(*f.lastError, 300) : std::string("no error recorded");
}

}  // namespace

std::vector<Condition> evaluateConditions(const std::vector<storage::AlertFacts>& facts, const ConditionInputs& in) {
  std::vector<Condition> out;
  for (const storage::AlertFacts& f : facts) {
    if (in.configured.count(f.name) == 0) {
      continue;
    }
    auto add = [&](const char* condition, const char* severity, std::string summary) {
      out.push_back(Condition{f.name, condition, severity, std::move(summary)});
    };
    if (f.notAfter && f.notBefore && *f.notAfter > *f.notBefore) {
      const std::int64_t lifetime = *f.notAfter - *f.notBefore;
      const auto window = static_cast<std::int64_t>(static_cast<double>(lifetime) * in.warningFraction);
      if (in.now >= *f.notAfter) {
        add(kExpired, "critical",
            "certificate " + f.name + " expired at " + isoTime(*f.notAfter) + " (" + span(in.now - *f.notAfter) +
                " ago) and no replacement is published: verifiers reject its PASSporTs; last error: " + lastError(f));
      } else if (in.now >= *f.notAfter - window) {
        add(kExpiring, "warning",
            "certificate " + f.name + " expires at " + isoTime(*f.notAfter) + " (in " + span(*f.notAfter - in.now) +
                ") and is not renewed yet; last error: " + lastError(f));
      }
    }
    if (f.failureCount >= in.failures) {
      const std::string step = f.lastFailedStep.value_or("unknown");
      if (step == "fetch_token") {
        add(kSpcTokenUnobtainable, "critical",
            "the STI-PA gave no SPC token for " + f.name + " " + std::to_string(f.failureCount) +
                " times in a row: " + lastError(f));
      } else {
        add(kRenewalFailing, "warning",
            "renewal of " + f.name + " failed " + std::to_string(f.failureCount) + " times in a row (step " + step +
                "): " + lastError(f));
      }
    }
    if (f.crlRevokedEvent > 0 && (f.crlRevokedEvent > f.activatedEvent || f.crlRevokedEvent > in.cursor)) {
      add(kRevoked, "critical",
          "a certificate of " + f.name + " is on the STI-PA CRL (revoked); kmsd renews it with a new key: find out "
          "why it was revoked");
    }
    if (f.distrustedEvent > 0 && (f.distrustedEvent > f.activatedEvent || f.distrustedEvent > in.cursor)) {
      add(kRootDistrusted, "critical",
          "the chain of " + f.name + " no longer verifies to the STI-PA CA list (its root was dropped); kmsd renews it");
    }
    if (f.publicationFailedEvent > std::max(f.publishedEvent, f.activatedEvent)) {
      add(kPublicationFailing, "warning",
          "the new chain of " + f.name + " could not be published or is not served back at its x5u URL; the "
          "previous certificate stays active; last error: " + lastError(f));
    }
  }
  return out;
}

std::string alertName(const std::string& condition) {
  std::string out = "Kms";
  bool upper = true;
  for (char c : condition) {
    if (c == '_') {
      upper = true;
      continue;
    }
    out += upper ? static_cast<char>(std::toupper(static_cast<unsigned char>(c))) : c;
    upper = false;
  }
  return out;
}

}  // namespace kms::daemon
