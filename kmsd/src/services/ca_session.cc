#include "services/ca_session.h"

#include <algorithm>

#include "common/failpoint.h"
#include "kms/secret.h"
#include "pki/encoding.h"

namespace kms::daemon {
namespace {

/// tkauth-01's token source: the STI-PA client, for the ACME account key. Each token is
/// marked used once handed out (a CA may treat jti as single use).
class StiPaTokenSource final : public acme::SpcTokenSource {
 public:
  StiPaTokenSource(sti_pa::StiPaClient& client, pki::EcPublicKey accountKey)
      : client_(client), accountKey_(accountKey) {}
  Result<std::string> spcToken(const std::string& spc) override {
    auto token = client_.takeSpcToken(spc, accountKey_);
    if (!token) {
      return fail(token.error());
    }
    return token->jwt;
  }

 private:
  sti_pa::StiPaClient& client_;
  pki::EcPublicKey accountKey_;
};

}  // namespace

Result<acme::AcmeClient*> CaConnection::client() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!client_) {
    acme::ClientOptions copts;
    copts.directoryUrl = settings_.acme.directoryUrl;
    auto client = acme::AcmeClient::create(transport_, copts);
    if (!client) {
      Error e = client.error();
      e.message = "[acme] directory_url: " + e.message;
      return fail(e);
    }
    client_ = std::move(*client);
  }
  return client_.get();
}

bool CaConnection::ariOffered() {
  std::lock_guard<std::mutex> lock(mutex_);
  return client_ && client_->directory().renewalInfo.has_value();
}

Result<acme::AccountRef> CaConnection::account() {
  auto connected = client();
  if (!connected) {
    return fail(connected.error());
  }
  std::lock_guard<std::mutex> lock(mutex_);
  if (!accountKey_ || accountUrl_.empty()) {
    if (auto r = ensureAccount(); !r) {
      accountKey_.reset();
      accountUrl_.clear();
      return fail(r.error());
    }
  }
  return acme::AccountRef{*accountKey_, accountUrl_};
}

Result<CaSession> CaConnection::session() {
  auto account = this->account();
  if (!account) {
    return fail(account.error());
  }
  std::lock_guard<std::mutex> lock(mutex_);
  return CaSession{*client_, *account};
}

std::map<std::string, acme::ChallengeSolver*> CaConnection::solvers() {
  std::lock_guard<std::mutex> lock(mutex_);
  std::map<std::string, acme::ChallengeSolver*> out;
  if (http01_) {
    out["http-01"] = http01_;
  }
  if (stiPa_ && accountKey_) {
    if (!tkauth_) {
      spcTokens_ = std::make_unique<StiPaTokenSource>(*stiPa_, accountKey_->publicKey());
      tkauth_ = std::make_unique<acme::TkauthSolver>(*spcTokens_);
    }
    out["tkauth-01"] = tkauth_.get();
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// Accounts (called with mutex_ held)

Result<void> CaConnection::ensureAccount() {
  auto stored = store_.with([&](storage::Store& s) { return s.getAccount(settings_.acme.directoryUrl); });
  if (!stored) {
    return fail(stored.error());
  }
  auto keyUri = existingAccountKey(*stored);
  if (!keyUri) {
    return fail(keyUri.error());
  }
  if (accountKey_) {
    auto known = knownToTheCa(*stored, **keyUri);
    if (!known) {
      return fail(known.error());
    }
    if (*known) {
      return ok();
    }
    // The CA does not know this key (e.g. a test CA restarted): register it again.
  } else {
    auto fresh = newAccountKey();
    if (!fresh) {
      return fail(fresh.error());
    }
    keyUri = std::move(*fresh);
  }
  return registerAccount(**keyUri);
}

Result<std::optional<std::string>> CaConnection::existingAccountKey(const std::optional<storage::AcmeAccount>& stored) {
  if (stored) {
    auto signer = keys_.recordedKey(std::nullopt, stored->keyUri);
    if (!signer && signer.error().code != Errc::notFound) {
      return fail(signer.error());  // the token failed; the key is not known to be gone
    }
    if (!signer) {
      return std::optional<std::string>();
    }
    accountKey_ = std::move(*signer);
    return std::optional<std::string>(stored->keyUri);
  }
  // A run that generated an account key and stopped before saving the account left the
  // key recorded and used by no account: use that one.
  auto unused = unusedAccountKey();
  if (!unused) {
    return fail(unused.error());
  }
  if (!*unused) {
    return std::optional<std::string>();
  }
  std::string uri = (**unused)->info().uri.toString();
  accountKey_ = std::move(**unused);
  return std::optional<std::string>(std::move(uri));
}

Result<bool> CaConnection::knownToTheCa(const std::optional<storage::AcmeAccount>& stored, const std::string& keyUri) {
  auto found = client_->findAccount(*accountKey_);
  if (found && found->status == "valid") {
    accountUrl_ = found->url;
    // No account row yet (a kill after newAccount, before it was saved), or another URL.
    if (!stored || found->url != stored->accountUrl) {
      if (auto r = saveAccount(keyUri); !r) {
        return fail(r.error());
      }
    }
    return true;
  }
  if (!found && found.error().code != Errc::notFound) {
    return fail(found.error());
  }
  return false;
}

Result<std::string> CaConnection::newAccountKey() {
  auto planned = keys_.planKey("acme-account-" + std::to_string(unixSeconds(clock_.now())), storage::KeyPurpose::account);
  if (!planned) {
    return fail(planned.error());
  }
  if (auto r = store_.with([&](storage::Store& s) { return s.recordKey(planned->row); }); !r) {
    return fail(r.error());
  }
  auto key = keys_.generate(planned->label, planned->id);
  if (!key) {
    return fail(key.error());
  }
  accountKey_ = std::move(*key);
  return planned->row.keyUri;
}

Result<void> CaConnection::registerAccount(const std::string& keyUri) {
  std::optional<acme::ExternalAccountBinding> eab;
  if (settings_.acme.eabKid && settings_.acme.eabHmacFile) {
    auto secret = readSecretFile(*settings_.acme.eabHmacFile);
    if (!secret) {
      return fail(secret.error());
    }
    auto key = pki::base64UrlDecode(secret->view());
    if (!key) {
      return fail(Errc::config, "[acme] eab_hmac_file: the EAB HMAC key is not base64url", *settings_.acme.eabHmacFile);
    }
    eab = acme::ExternalAccountBinding{*settings_.acme.eabKid, SecretBytes(std::move(*key))};
  }
  auto account = client_->newAccount(*accountKey_, settings_.acme.contact, eab ? &*eab : nullptr);
  if (!account) {
    return fail(account.error());
  }
  accountUrl_ = account->url;
  failpoint("account_registered");
  if (auto r = saveAccount(keyUri); !r) {
    return r;
  }
  events_.emit({"KMS_ACCOUNT_REGISTERED", storage::EventLevel::info, std::nullopt, "ACME account " + accountUrl_,
                {{"account", accountUrl_}, {"key", keyUri}}});
  return ok();
}

Result<std::optional<std::unique_ptr<hsm::KeySigner>>> CaConnection::unusedAccountKey() {
  auto rows = store_.with([&](storage::Store& s) -> Result<std::vector<storage::HsmKey>> {
    auto keys = s.listKeys(false);
    auto accounts = s.listAccounts();
    if (!keys || !accounts) {
      return fail(!keys ? keys.error() : accounts.error());
    }
    std::vector<storage::HsmKey> out;
    for (auto& k : *keys) {
      bool used = std::any_of(accounts->begin(), accounts->end(),
                              [&](const storage::AcmeAccount& a) { return a.keyUri == k.keyUri; });
      if (k.purpose == storage::KeyPurpose::account && !used) {
        out.push_back(std::move(k));
      }
    }
    return out;
  });
  if (!rows) {
    return fail(rows.error());
  }
  for (auto it = rows->rbegin(); it != rows->rend(); ++it) {  // the newest first
    auto signer = keys_.recordedKey(std::nullopt, it->keyUri);
    if (signer) {
      return std::optional<std::unique_ptr<hsm::KeySigner>>(std::move(*signer));
    }
    if (signer.error().code != Errc::notFound) {
      return fail(signer.error());
    }
  }
  return std::optional<std::unique_ptr<hsm::KeySigner>>();
}

Result<void> CaConnection::saveAccount(const std::string& keyUri) {
  storage::AcmeAccount row;
  row.directoryUrl = settings_.acme.directoryUrl;
  row.accountUrl = accountUrl_;
  row.keyUri = keyUri;
  row.createdAt = unixSeconds(clock_.now());
  auto saved = store_.with([&](storage::Store& s) { return s.saveAccount(row); });
  if (!saved) {
    return fail(saved.error());
  }
  return ok();
}

}  // namespace kms::daemon
