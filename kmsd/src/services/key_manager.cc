#include "services/key_manager.h"

#include <algorithm>

#include "pki/encoding.h"

namespace kms::daemon {
namespace {

std::string lowerHex(const pki::Bytes& b) {
  std::string h = pki::hexEncode(b);
  std::transform(h.begin(), h.end(), h.begin(), [](unsigned char c) { return std::tolower(c); });
  return h;
}

}  // namespace

Result<KeyManager::PlannedKey> KeyManager::planKey(const std::string& label, storage::KeyPurpose purpose) {
  auto id = hsm::Token::newKeyId();
  if (!id) {
    return fail(id.error());
  }
  PlannedKey k{label, *id, {}};
  k.row.keyUri = token_.keyUri(label, *id).toString();
  k.row.ckaIdHex = lowerHex(*id);
  k.row.label = label;
  k.row.purpose = purpose;
  k.row.createdAt = unixSeconds(clock_.now());
  return k;
}

Result<std::unique_ptr<hsm::KeySigner>> KeyManager::generate(const std::string& label, const pki::Bytes& id) {
  return token_.generateSigner(label, id);
}

Result<std::unique_ptr<hsm::KeySigner>> KeyManager::findKey(const std::string& uriText) {
  auto uri = hsm::Pkcs11Uri::parse(uriText);
  if (!uri) {
    return fail(uri.error());
  }
  return token_.signer(*uri);
}

Result<std::unique_ptr<hsm::KeySigner>> KeyManager::recordedKey(const std::optional<std::string>& cert,
                                                              const std::string& uriText) {
  auto signer = findKey(uriText);
  if (!signer && signer.error().code == Errc::notFound) {
    auto retired =
        store_.with([&](storage::Store& s) { return s.markKeyDestroyed(uriText, unixSeconds(clock_.now())); });
    if (!retired && retired.error().code != Errc::notFound) {
      daemon::storeWriteFailed(events_, cert, "retire a missing key", retired.error());
    }
    events_.emit({"KMS_KEY_MISSING",
                  storage::EventLevel::warning,
                  cert,
                  "recorded key " + uriText + " is not on the token; retired",
                  {{"key", uriText}}});
  }
  return signer;
}

Result<std::shared_ptr<hsm::KeySigner>> KeyManager::orderKey(const std::optional<std::string>& cert,
                                                           const std::string& uri) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (auto it = orderKeys_.find(uri); it != orderKeys_.end()) {
      return it->second;
    }
  }
  auto signer = recordedKey(cert, uri);
  if (!signer) {
    return fail(signer.error());
  }
  std::shared_ptr<hsm::KeySigner> shared = std::move(*signer);
  keepOrderKey(uri, shared);
  return shared;
}

void KeyManager::keepOrderKey(const std::string& uri, std::shared_ptr<hsm::KeySigner> signer) {
  std::lock_guard<std::mutex> lock(mutex_);
  orderKeys_[uri] = std::move(signer);
}

void KeyManager::forgetOrderKey(const std::string& uri) {
  std::lock_guard<std::mutex> lock(mutex_);
  orderKeys_.erase(uri);
}

Result<void> KeyManager::destroyKey(const std::optional<std::string>& cert, const std::string& uriText) {
  forgetOrderKey(uriText);
  auto uri = hsm::Pkcs11Uri::parse(uriText);
  if (!uri) {
    return fail(uri.error());
  }
  auto destroyed = token_.destroyKey(*uri);
  if (!destroyed && destroyed.error().code != Errc::notFound) {
    return fail(destroyed.error());
  }
  auto marked = store_.with([&](storage::Store& s) { return s.markKeyDestroyed(uriText, unixSeconds(clock_.now())); });
  if (!marked && marked.error().code != Errc::notFound) {
    return fail(marked.error());
  }
  events_.emit(
      {"KMS_KEY_DESTROYED", storage::EventLevel::info, cert, "key " + uriText + " destroyed", {{"key", uriText}}});
  return ok();
}

}  // namespace kms::daemon
