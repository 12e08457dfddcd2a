#include "signing/signing_keys.h"

#include <set>

#include "common/time_format.h"
#include "hsm/pkcs11_uri.h"
#include "hsm/token.h"
#include "trust/trust_state.h"

namespace kms::daemon {

SigningKeys::SigningKeys(LockedStore& store, hsm::Token& token, const TrustState& trust, EventSink& events)
    : store_(store), token_(token), trust_(trust), events_(events), table_(std::make_shared<const Table>()) {}

std::shared_ptr<const SigningKey> SigningKeys::build(const storage::ManagedCert& cert,
                                                     const std::optional<storage::IssuedCert>& current,
                                                     const std::shared_ptr<const SigningKey>& previous) {
  if (cert.kind != storage::CertKind::shaken) {
    return nullptr;  // a DNS certificate has no TNAuthList: no PASSporT verifies with it
  }
  auto entry = std::make_shared<SigningKey>();
  entry->name = cert.name;
  if (current) {
    entry->keyUri = current->keyUri;
    entry->x5u = current->x5uUrl.value_or("");
    entry->serial = current->serial;
    entry->issuedId = current->id;
    entry->notAfter = current->notAfter;
    if (previous && !previous->keyUri.empty() && previous->keyUri == current->keyUri) {
      entry->lazy = previous->lazy;  // reuse_key, or nothing changed: no second search of the token
    }
  }
  return entry;
}

std::string SigningKeys::whyNone(const std::string& name) const {
  auto issued = store_.with([&](storage::Store& s) { return s.listIssued(name); });
  std::string why = "no certificate has been issued and published yet";
  if (issued) {
    for (const auto& c : *issued) {  // newest first: the newest published one decides
      if (!c.publishedAt) {
        continue;
      }
      why = c.revokedAt ? "its certificate (serial " + c.serial + ") was revoked at " + isoTime(*c.revokedAt)
                        : "its certificate (serial " + c.serial + ") expired at " + isoTime(c.notAfter);
      break;
    }
  }
  return "certificate '" + name + "' has no current certificate to sign with: " + why;
}

void SigningKeys::resolve(const SigningKey& key) const {
  LazyKey& lazy = *key.lazy;
  std::lock_guard<std::mutex> lock(lazy.mutex);
  if (lazy.resolved.load(std::memory_order_relaxed)) {
    return;  // another thread looked it up meanwhile
  }
  if (key.keyUri.empty()) {
    lazy.refusal = whyNone(key.name);
  } else {
    auto uri = hsm::Pkcs11Uri::parse(key.keyUri);
    auto signer = uri ? token_.signer(*uri) : Result<std::unique_ptr<hsm::KeySigner>>(fail(uri.error()));
    if (signer) {
      lazy.signer = std::shared_ptr<pki::Signer>(std::move(*signer));
    } else {
      lazy.refusal = "certificate '" + key.name + "' (serial " + key.serial + "): its key cannot sign: " +
                     signer.error().toString();
      events_.emit({"KMS_SIGNING_KEY_UNAVAILABLE", storage::EventLevel::error, key.name, lazy.refusal, {}});
    }
  }
  lazy.resolved.store(true, std::memory_order_release);
}

Result<void> SigningKeys::reloadAll(std::int64_t now) {
  std::lock_guard<std::mutex> lock(writers_);
  auto certs = store_.with([](storage::Store& s) { return s.listCertificates(); });
  if (!certs) {
    return fail(certs.error());
  }
  auto current = store_.with([now](storage::Store& s) { return s.listLatestValid(now, std::nullopt); });
  if (!current) {
    return fail(current.error());
  }
  std::map<std::string, storage::IssuedCert> byName;
  for (auto& c : *current) {
    std::string name = c.certName;
    byName.emplace(std::move(name), std::move(c));
  }
  const auto old = table_.load();
  auto next = std::make_shared<Table>();
  for (const auto& cert : *certs) {
    auto it = byName.find(cert.name);
    auto prev = old->find(cert.name);
    auto entry = build(cert, it == byName.end() ? std::nullopt : std::optional<storage::IssuedCert>(it->second),
                       prev == old->end() ? nullptr : prev->second);
    if (entry) {
      next->emplace(cert.name, std::move(entry));
    }
  }
  table_.store(std::move(next));
  return ok();
}

Result<void> SigningKeys::reload(const std::string& name, std::int64_t now) {
  std::lock_guard<std::mutex> lock(writers_);
  auto cert = store_.with([&](storage::Store& s) { return s.getCertificate(name); });
  if (!cert) {
    return fail(cert.error());
  }
  auto current = store_.with([&](storage::Store& s) { return s.listLatestValid(now, std::string_view(name)); });
  if (!current) {
    return fail(current.error());
  }
  const auto old = table_.load();
  auto next = std::make_shared<Table>(*old);
  auto it = old->find(name);
  const std::shared_ptr<const SigningKey> previous = it == old->end() ? nullptr : it->second;
  next->erase(name);
  {
    std::lock_guard<std::mutex> refusedLock(refusedMutex_);
    refused_.erase(name);  // a refusal after this change is news again
  }
  if (*cert) {
    auto entry = build(**cert,
                       current->empty() ? std::nullopt : std::optional<storage::IssuedCert>(current->front()),
                       previous);
    if (entry) {
      next->emplace(name, std::move(entry));
    }
  }
  table_.store(std::move(next));
  return ok();
}

SigningPick SigningKeys::refuse(const std::string& name, std::string why) const {
  bool first = false;
  {
    std::lock_guard<std::mutex> lock(refusedMutex_);
    auto& last = refused_[name];
    first = last != why;
    last = why;
  }
  if (first) {
    events_.emit({"KMS_SIGNING_REFUSED", storage::EventLevel::error, name, why, {}});
  }
  return SigningPick{nullptr, nullptr, std::move(why)};
}

SigningPick SigningKeys::pick(const std::string& name, std::int64_t now) const {
  const auto table = table_.load();
  auto it = table->find(name);
  if (it == table->end()) {
    return refuse(name, "no SHAKEN certificate named '" + name + "'");
  }
  const auto& key = it->second;
  if (!key->keyUri.empty() && key->notAfter <= now) {
    return refuse(name, "certificate '" + name + "' (serial " + key->serial + ") expired at " +
                            isoTime(key->notAfter));
  }
  if (!key->keyUri.empty() && trust_.distrusted(key->issuedId)) {
    return refuse(name, "certificate '" + name + "' (serial " + key->serial +
                            ") no longer verifies to the STI-PA CA list; its replacement is being issued");
  }
  if (!key->lazy->resolved.load(std::memory_order_acquire)) {
    resolve(*key);
  }
  if (!key->lazy->signer) {
    return refuse(name, key->lazy->refusal);
  }
  return SigningPick{key, key->lazy->signer, {}};
}

std::vector<std::string> SigningKeys::names() const {
  std::vector<std::string> out;
  for (const auto& [name, key] : *table_.load()) {
    out.push_back(name);
  }
  return out;
}

void SigningKeys::follow(const EventRecord& event, std::int64_t now) {
  static const std::set<std::string> kChanges{"KMS_CERT_ACTIVATED", "KMS_CERT_REVOKED", "KMS_ROOT_DISTRUSTED",
                                              "KMS_KEY_MISSING", "KMS_CHAIN_UNPUBLISHED"};
  if (!event.cert || !kChanges.contains(event.id)) {
    return;
  }
  if (auto r = reload(*event.cert, now); !r) {
    events_.emit({"KMS_SIGNING_KEY_UNAVAILABLE", storage::EventLevel::error, event.cert,
                  "the signing key could not be brought up to date: " + r.error().toString(), {}});
  }
}

}  // namespace kms::daemon
