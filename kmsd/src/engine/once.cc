#include "engine/once.h"

#include <algorithm>

#include "common/time_format.h"

namespace kms::daemon {

void OnceRun::add(const std::string& name) {
  if (entries_.count(name) == 0) {
    order_.push_back(name);
    entries_[name].outcome.name = name;
  }
}

void OnceRun::issued(const std::string& name, const storage::IssuedCert& a) {
  CertOutcome& o = entries_[name].outcome;
  o.kind = CertOutcome::Kind::issued;
  o.line = name + ": issued serial " + a.serial + ", not after " + isoTime(a.notAfter) + ", published " +
           a.x5uUrl.value_or("");
}

bool OnceRun::settle(const std::string& name, const WorkResult& r, std::int64_t now, bool pollStarted) {
  Entry& e = entries_[name];
  if (e.settled) {
    return true;
  }
  CertOutcome& o = e.outcome;
  if (r.error) {
    o.kind = CertOutcome::Kind::failed;
    o.line = name + ": FAILED: " + r.error->toString();
    e.settled = true;
  } else if (!r.ranStep && !r.needSlot && (r.plan.action == Action::wait || r.plan.at > now)) {
    if (r.plan.action == Action::wait) {
      if (o.kind != CertOutcome::Kind::issued) {
        o.kind = CertOutcome::Kind::notDue;
        o.line = name + ": valid until " + isoTime(r.activeNotAfter.value_or(0)) + ", not due (" + r.plan.why + ")";
      }
      e.settled = true;
    } else if (!pollStarted) {
      // Held back (backoff, or the CA asked to wait) before doing anything this run.
      o.kind = CertOutcome::Kind::failed;
      o.line = name + ": FAILED: not attempted: " + r.plan.why;
      e.settled = true;
    }
  }
  return e.settled;
}

bool OnceRun::allSettled() const {
  return std::all_of(entries_.begin(), entries_.end(), [](const auto& kv) { return kv.second.settled; });
}

void OnceRun::overrode(const std::string& name, const std::string& what) {
  entries_[name].overrode = what;
}

std::vector<CertOutcome> OnceRun::outcomes() const {
  std::vector<CertOutcome> out;
  for (const auto& name : order_) {
    const Entry& e = entries_.at(name);
    out.push_back(e.outcome);
    if (!e.overrode.empty()) {
      out.back().line += " (--force overrode " + e.overrode + ")";
    }
  }
  return out;
}

}  // namespace kms::daemon
