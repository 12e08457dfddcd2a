#include "daemon/registration.h"

#include <map>
#include <utility>

#include <nlohmann/json.hpp>

#include "pki/encoding.h"

namespace kms::daemon {

storage::CertKind kindOf(const config::CertificateConfig& c) {
  return c.spc ? storage::CertKind::shaken : storage::CertKind::acme;
}

std::string identifiersOf(const config::CertificateConfig& c) {
  nlohmann::json ids = nlohmann::json::array();
  if (c.spc) {
    ids.push_back("spc:" + *c.spc);
  }
  for (const auto& n : c.dnsNames) {
    ids.push_back("dns:" + n);
  }
  return ids.dump();
}

DefinitionHasher::DefinitionHasher(const config::Config& settings) {
  config::Config only = settings;
  only.certificates.clear();
  only.source.clear();  // where it was read from is not what it says
  const std::string text = config::redactedSummary(only);
  settings_ = pki::hexEncode(pki::sha256(pki::asBytes(text)));
}

std::string DefinitionHasher::operator()(const config::CertificateConfig& c) const {
  std::string text = settings_;
  for (const std::string& field :
       {c.name, c.spc.value_or("-"), identifiersOf(c), std::string(config::toString(c.challenge)),
        c.subjectO.value_or("-"), c.subjectC, std::to_string(c.renewBeforeFraction), c.deployHook.value_or("-"),
        std::string(c.reuseKey ? "reuse" : "new")}) {
    text += '\x1f';
    text += field;
  }
  const auto digest = pki::sha256(pki::asBytes(text));
  return pki::hexEncode(pki::ByteView(digest.data(), 16));
}

void announceReleased(EventSink& sink, const std::vector<std::string>& names) {
  for (const auto& name : names) {
    sink.emit({"KMS_RETRY_AFTER_CHANGE", storage::EventLevel::info, name,
               "the configuration changed since the last failure: tried again at once, not after kmsd's backoff",
               {}});
  }
}

Result<Registered> registerCertificates(LockedStore& store, const std::vector<config::CertificateConfig>& certs,
                                        const DefinitionHasher& hash) {
  Registered out;
  std::vector<std::string>& written = out.written;
  auto r = store.with([&](storage::Store& s) -> Result<void> {
    auto known = s.listCertificates();
    if (!known) {
      return fail(known.error());
    }
    std::map<std::string, std::pair<storage::CertKind, std::string>> rows;
    std::map<std::string, std::string> backingOff;  ///< failed with kmsd's own wait: the config it failed under
    for (auto& k : *known) {
      if (k.failureCount > 0 && k.nextAttemptAt && k.failureWait == "backoff" && k.failureConfig) {
        backingOff.emplace(k.name, *k.failureConfig);
      }
      rows.emplace(std::move(k.name), std::pair(k.kind, std::move(k.identifiersJson)));
    }
    // Every certificate in one transaction (one fsync, not one per certificate). Rows that
    // already say what the configuration says are not written again.
    return s.transact([&]() -> Result<void> {
      for (const auto& c : certs) {
        auto row = rows.find(c.name);
        if (row != rows.end() && row->second == std::pair(kindOf(c), identifiersOf(c))) {
          continue;
        }
        if (auto u = s.upsertCertificate(c.name, kindOf(c), identifiersOf(c)); !u) {
          return fail(u.error());
        }
        written.push_back(c.name);
      }
      // Only the few that back off are looked at again (100,000 certificates must not mean
      // 100,000 updates at every start).
      for (const auto& c : certs) {
        auto failed = backingOff.find(c.name);
        if (failed == backingOff.end()) {
          continue;
        }
        const std::string definition = hash(c);
        if (failed->second == definition) {
          continue;
        }
        auto released = s.releaseBackoff(c.name, definition);
        if (!released) {
          return fail(released.error());
        }
        if (*released) {
          out.released.push_back(c.name);
        }
      }
      return ok();
    });
  });
  if (!r) {
    return fail(r.error());
  }
  return out;
}

}  // namespace kms::daemon
