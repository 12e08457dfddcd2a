#include "services/services.h"

#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "common/failpoint.h"
#include "hsm/token_store.h"
#include "kms/fs.h"
#include "kms/secret.h"
#include "pki/encoding.h"

namespace kms::daemon {
namespace {

std::string lowerHex(const pki::Bytes& b) {
  std::string h = pki::hexEncode(b);
  std::transform(h.begin(), h.end(), h.begin(), [](unsigned char c) { return std::tolower(c); });
  return h;
}

Result<std::vector<pki::Certificate>> readAnchors(const std::string& path, const char* field) {
  auto anchors = pki::readPemFile(path);
  if (!anchors) {
    Error e = anchors.error();
    e.message = std::string(field) + ": " + e.message;
    return fail(e);
  }
  return anchors;
}

}  // namespace

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

http::ConnectionLimits listenerLimits(const config::DaemonConfig& daemon) {
  rlimit nofile{};
  const std::uint64_t descriptorLimit = ::getrlimit(RLIMIT_NOFILE, &nofile) == 0 ? nofile.rlim_cur : 0;
  http::ConnectionLimits limits;
  const std::uint64_t share = descriptorLimit > 2 * kDescriptorReserve ? (descriptorLimit - kDescriptorReserve) / 2 : 32;
  limits.maxConnections =
      static_cast<std::size_t>(std::min<std::uint64_t>(static_cast<std::uint64_t>(daemon.listenerMaxConnections), share));
  limits.maxPerPeer = static_cast<std::size_t>(daemon.listenerMaxPerPeer);
  limits.headerTimeout = daemon.listenerHeaderTimeout;
  return limits;
}

std::uint64_t raiseDescriptorLimit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) {
    return 0;
  }
  if (limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    (void)::setrlimit(RLIMIT_NOFILE, &limit);
    (void)::getrlimit(RLIMIT_NOFILE, &limit);
  }
  return limit.rlim_cur;
}

Result<void> checkStateDir(const std::string& dir, bool create) {
  if (create) {
    std::error_code ec;
    if (std::filesystem::create_directories(dir, ec)) {
      (void)::chmod(dir.c_str(), 0700);
    }
    if (ec) {
      return fail(Errc::io, "[daemon] state_dir: cannot create: " + ec.message(), dir);
    }
  }
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) {
    return fail(ioError("[daemon] state_dir: cannot access", dir, errno));
  }
  if (!S_ISDIR(st.st_mode)) {
    return fail(Errc::config, "[daemon] state_dir: not a directory", dir);
  }
  if (st.st_uid != ::geteuid()) {
    return fail(Errc::config,
                "[daemon] state_dir: owned by uid " + std::to_string(st.st_uid) + ", not by uid " +
                    std::to_string(::geteuid()) + " that kmsd runs as; chown it to that user",
                dir);
  }
  if ((st.st_mode & 022) != 0) {
    char mode[8];
    (void)std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return fail(Errc::config,
                std::string("[daemon] state_dir: writable by group or others (mode ") + mode +
                    "): another local user could replace kmsd.db; run chmod 700 " + dir,
                dir);
  }
  return ok();
}

Result<StateDb> openStateDb(const config::Config& config) {
  if (auto r = checkStateDir(config.daemon.stateDir, true); !r) {
    return fail(r.error());
  }
  StateDb s;
  const std::string path = config.daemon.stateDir + "/kmsd.db";
  auto db = storage::Db::open(path, {});
  if (!db) {
    return fail(db.error());
  }
  // A DB made by an older kmsd, or under a lax umask, is closed to others now.
  for (const char* suffix : {"", "-wal", "-shm"}) {
    (void)::chmod((path + suffix).c_str(), 0600);
  }
  s.db = std::move(*db);
  s.store = storage::makeSqliteStore(*s.db);
  s.locked = std::make_unique<LockedStore>(*s.store);
  return s;
}

Services::Services(const config::Config& config, const Clock& clock, EventSink& events, LockedStore& store)
    : config_(config::Config{config.source,
                             config.daemon,
                             config.hsm,
                             config.stiPa,
                             config.acme,
                             config.publisher,
                             {},
                             config.envOverrides}),
      clock_(clock),
      events_(events),
      store_(store),
      webRoot_(config.publisher.webRoot, config.publisher.baseUrl) {}

Services::~Services() = default;

Result<std::unique_ptr<Services>> Services::create(const config::Config& config, const Clock& clock, EventSink& events,
                                                   LockedStore& store, std::optional<int> http01Socket) {
  std::unique_ptr<Services> s(new Services(config, clock, events, store));
  // Before the module is loaded: SoftHSM2 rewrites token.object in place at every C_Login,
  // and a kill in between would lose the token with every key on it.
  hsm::TokenStoreOptions guardOptions;
  guardOptions.modulePath = config.hsm.module;
  auto guard = hsm::guardSoftHsmStore(guardOptions);
  if (!guard) {
    Error e = guard.error();
    e.message = "[hsm] token store: " + e.message;
    return fail(e);
  }
  for (const auto& r : guard->restored) {
    events.emit({"KMS_TOKEN_RESTORED",
                 storage::EventLevel::warning,
                 std::nullopt,
                 r.path + ": " + r.reason + "; restored from its verified copy",
                 {{"file", r.path}}});
  }
  for (const auto& q : guard->quarantined) {
    events.emit({"KMS_TOKEN_OBJECT_QUARANTINED",
                 storage::EventLevel::warning,
                 std::nullopt,
                 q.path + ": " + q.reason + "; moved to " + q.movedTo,
                 {{"file", q.path}}});
  }
  auto token = hsm::Token::open(hsm::TokenOptions{config.hsm.module, config.hsm.tokenLabel, config.hsm.pinFile,
                                                  static_cast<std::size_t>(config.hsm.sessionPool)});
  if (!token) {
    Error e = token.error();
    e.message = "[hsm] token_label '" + config.hsm.tokenLabel + "': " + e.message;
    return fail(e);
  }
  s->token_ = std::move(*token);
  if (config.acme.trustAnchors) {
    auto anchors = readAnchors(*config.acme.trustAnchors, "[acme] trust_anchors");
    if (!anchors) {
      return fail(anchors.error());
    }
    s->configuredAnchors_ = !anchors->empty();
    s->anchors_ = std::move(*anchors);
  }
  http::TransportOptions topts;
  topts.caBundle = config.acme.caBundle;
  auto transport = http::makeCurlTransport(topts);
  if (!transport) {
    return fail(transport.error());
  }
  s->transport_ = std::move(*transport);
  // Each peer has its own TLS trust: the system store plus its section's ca_bundle.
  auto transportFor = [](const std::optional<std::string>& caBundle, std::chrono::seconds timeout,
                         const char* field) -> Result<std::unique_ptr<http::Transport>> {
    http::TransportOptions o;
    o.caBundle = caBundle;
    o.requestTimeout = timeout;
    o.connectTimeout = std::min<std::chrono::milliseconds>(timeout, o.connectTimeout);
    auto t = http::makeCurlTransport(o);
    if (!t) {
      Error e = t.error();
      e.message = std::string(field) + ": " + e.message;
      return fail(e);
    }
    return t;
  };
  if (config.publisher.publicationCheck == config::PublicationCheck::fetch) {
    auto check = transportFor(config.publisher.caBundle, config.publisher.checkTimeout, "[publisher] ca_bundle");
    if (!check) {
      return fail(check.error());
    }
    s->checkTransport_ = std::move(*check);
  }
  if (config.stiPa) {
    auto stiTransport = transportFor(config.stiPa->caBundle, std::chrono::seconds(30), "[sti_pa] ca_bundle");
    if (!stiTransport) {
      return fail(stiTransport.error());
    }
    s->stiPaTransport_ = std::move(*stiTransport);
    sti_pa::StiPaOptions o;
    o.url = config.stiPa->url;
    o.userId = config.stiPa->userId;
    o.passwordFile = config.stiPa->passwordFile;
    o.allowedHosts = config.stiPa->allowedHosts;
    o.fingerprint = config.stiPa->fingerprint == config::Fingerprint::spki ? sti_pa::FingerprintKind::spki
                                                                           : sti_pa::FingerprintKind::jwkThumbprint;
    if (config.stiPa->trustAnchor) {
      auto anchors = readAnchors(*config.stiPa->trustAnchor, "[sti_pa] trust_anchor");
      if (!anchors) {
        return fail(anchors.error());
      }
      o.trustAnchors = std::move(*anchors);
    }
    if (config.stiPa->crlSigner) {
      auto signer = readAnchors(*config.stiPa->crlSigner, "[sti_pa] crl_signer");
      if (!signer) {
        return fail(signer.error());
      }
      // The CRL signer is an STI-PA certificate: it must chain to the STI-PA root.
      if (!o.trustAnchors.empty()) {
        if (auto v = pki::verifyChain(*signer, o.trustAnchors, clock.now()); !v) {
          return fail(Errc::config, "[sti_pa] crl_signer: does not chain to [sti_pa] trust_anchor: " + v.error().message,
                      *config.stiPa->crlSigner);
        }
      }
      s->crlSigner_ = signer->front();
    }
    s->stiPa_ = sti_pa::StiPaClient::create(*s->stiPaTransport_, std::move(o));
  }
  bool needHttp01 = std::any_of(config.certificates.begin(), config.certificates.end(),
                                [](const auto& c) { return c.challenge == config::Challenge::http01; });
  if (needHttp01) {
    // On the socket passed by socket activation, else on the configured address.
    const http::ConnectionLimits limits = listenerLimits(config.daemon);
    auto responder = http01Socket ? acme::Http01Responder::adopt(*http01Socket, limits)
                                  : acme::Http01Responder::start(config.acme.http01Listen.host,
                                                                 config.acme.http01Listen.port, limits);
    if (!responder) {
      Error e = responder.error();
      e.message = (http01Socket ? std::string("socket activation (http01): ")
                                : "[acme] http01_listen " + config.acme.http01Listen.toString() + ": ") +
                  e.message;
      return fail(e);
    }
    s->responder_ = std::move(*responder);
    s->http01_ = std::make_unique<acme::Http01Solver>(*s->responder_);
  } else if (http01Socket) {
    ::close(*http01Socket);  // passed, but no certificate answers http-01
  }
  if (config.acme.dns01Hook) {
    s->dns01_ = std::make_unique<acme::Dns01HookSolver>(*config.acme.dns01Hook);
  }
  return s;
}

Result<acme::AcmeClient*> Services::acme() {
  std::lock_guard<std::mutex> lock(acmeMutex_);
  if (!client_) {
    acme::ClientOptions copts;
    copts.directoryUrl = config_.acme.directoryUrl;
    auto client = acme::AcmeClient::create(*transport_, copts);
    if (!client) {
      Error e = client.error();
      e.message = "[acme] directory_url: " + e.message;
      e.retryable = true;  // the CA may come back; its directory is what we could not read
      return fail(e);
    }
    client_ = std::move(*client);
  }
  return client_.get();
}

bool Services::ariOffered() {
  std::lock_guard<std::mutex> lock(acmeMutex_);
  return client_ && client_->directory().renewalInfo.has_value();
}

Result<acme::AccountRef> Services::account() {
  auto client = acme();
  if (!client) {
    return fail(client.error());
  }
  std::lock_guard<std::mutex> lock(acmeMutex_);
  if (!accountKey_ || accountUrl_.empty()) {
    if (auto r = ensureAccount(); !r) {
      accountKey_.reset();
      accountUrl_.clear();
      return fail(r.error());
    }
  }
  return acme::AccountRef{*accountKey_, accountUrl_};
}

Result<Services::CaSession> Services::ca() {
  auto account = this->account();
  if (!account) {
    return fail(account.error());
  }
  std::lock_guard<std::mutex> lock(acmeMutex_);
  return CaSession{*client_, *account};
}

std::map<std::string, acme::ChallengeSolver*> Services::solvers() {
  std::lock_guard<std::mutex> lock(acmeMutex_);
  std::map<std::string, acme::ChallengeSolver*> out;
  if (http01_) {
    out["http-01"] = http01_.get();
  }
  if (dns01_) {
    out["dns-01"] = dns01_.get();
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
// Accounts (called with acmeMutex_ held)

Result<void> Services::ensureAccount() {
  const std::string& dir = config_.acme.directoryUrl;
  auto stored = store_.with([&](storage::Store& s) { return s.getAccount(dir); });
  if (!stored) {
    return fail(stored.error());
  }
  std::optional<std::string> keyUri;
  if (*stored) {
    auto signer = recordedKey(std::nullopt, (*stored)->keyUri);
    if (!signer && signer.error().code != Errc::notFound) {
      return fail(signer.error());  // the token failed; the key is not known to be gone
    }
    if (signer) {
      accountKey_ = std::move(*signer);
      keyUri = (*stored)->keyUri;
    }
  } else {
    // A run that generated an account key and stopped before saving the account left the
    // key recorded and used by no account: use that one.
    auto unused = unusedAccountKey();
    if (!unused) {
      return fail(unused.error());
    }
    if (*unused) {
      keyUri = (**unused)->info().uri.toString();
      accountKey_ = std::move(**unused);
    }
  }
  if (accountKey_) {
    auto found = client_->findAccount(*accountKey_);
    if (found && found->status == "valid") {
      accountUrl_ = found->url;
      // No account row yet (a kill after newAccount, before it was saved), or another URL.
      if (!*stored || found->url != (*stored)->accountUrl) {
        return saveAccount(*keyUri);
      }
      return ok();
    }
    if (!found && found.error().code != Errc::notFound) {
      return fail(found.error());
    }
    // The CA does not know this key (e.g. a test CA restarted): register it again.
  } else {
    auto planned = planKey("acme-account-" + std::to_string(unixSeconds(clock_.now())), storage::KeyPurpose::account);
    if (!planned) {
      return fail(planned.error());
    }
    if (auto r = store_.with([&](storage::Store& s) { return s.recordKey(planned->row); }); !r) {
      return fail(r.error());
    }
    auto key = generate(planned->label, planned->id);
    if (!key) {
      return fail(key.error());
    }
    accountKey_ = std::move(*key);
    keyUri = planned->row.keyUri;
  }
  std::optional<acme::ExternalAccountBinding> eab;
  if (config_.acme.eabKid && config_.acme.eabHmacFile) {
    auto secret = readSecretFile(*config_.acme.eabHmacFile);
    if (!secret) {
      return fail(secret.error());
    }
    auto key = pki::base64UrlDecode(secret->view());
    if (!key) {
      return fail(Errc::config, "[acme] eab_hmac_file: the EAB HMAC key is not base64url", *config_.acme.eabHmacFile);
    }
    eab = acme::ExternalAccountBinding{*config_.acme.eabKid, SecretBytes(std::move(*key))};
  }
  auto account = client_->newAccount(*accountKey_, config_.acme.contact, eab ? &*eab : nullptr);
  if (!account) {
    return fail(account.error());
  }
  accountUrl_ = account->url;
  failpoint("account_registered");
  if (auto r = saveAccount(*keyUri); !r) {
    return r;
  }
  events_.emit({"KMS_ACCOUNT_REGISTERED",
                storage::EventLevel::info,
                std::nullopt,
                "ACME account " + accountUrl_,
                {{"account", accountUrl_}, {"key", *keyUri}}});
  return ok();
}

Result<std::optional<std::unique_ptr<hsm::KeySigner>>> Services::unusedAccountKey() {
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
    auto signer = recordedKey(std::nullopt, it->keyUri);
    if (signer) {
      return std::optional<std::unique_ptr<hsm::KeySigner>>(std::move(*signer));
    }
    if (signer.error().code != Errc::notFound) {
      return fail(signer.error());
    }
  }
  return std::optional<std::unique_ptr<hsm::KeySigner>>();
}

Result<void> Services::saveAccount(const std::string& keyUri) {
  storage::AcmeAccount row;
  row.directoryUrl = config_.acme.directoryUrl;
  row.accountUrl = accountUrl_;
  row.keyUri = keyUri;
  row.createdAt = unixSeconds(clock_.now());
  auto saved = store_.with([&](storage::Store& s) { return s.saveAccount(row); });
  if (!saved) {
    return fail(saved.error());
  }
  return ok();
}

// ---------------------------------------------------------------------------------------
// Keys

Result<Services::PlannedKey> Services::planKey(const std::string& label, storage::KeyPurpose purpose) {
  auto id = hsm::Token::newKeyId();
  if (!id) {
    return fail(id.error());
  }
  PlannedKey k{label, *id, {}};
  k.row.keyUri = token_->keyUri(label, *id).toString();
  k.row.ckaIdHex = lowerHex(*id);
  k.row.label = label;
  k.row.purpose = purpose;
  k.row.createdAt = unixSeconds(clock_.now());
  return k;
}

Result<std::unique_ptr<hsm::KeySigner>> Services::generate(const std::string& label, const pki::Bytes& id) {
  return token_->generateSigner(label, id);
}

Result<std::unique_ptr<hsm::KeySigner>> Services::recordedKey(const std::optional<std::string>& cert,
                                                              const std::string& uriText) {
  auto uri = hsm::Pkcs11Uri::parse(uriText);
  if (!uri) {
    return fail(uri.error());
  }
  auto signer = token_->signer(*uri);
  if (!signer && signer.error().code == Errc::notFound) {
    auto retired =
        store_.with([&](storage::Store& s) { return s.markKeyDestroyed(uriText, unixSeconds(clock_.now())); });
    if (!retired && retired.error().code != Errc::notFound) {
      storeWriteFailed(cert, "retire a missing key", retired.error());
    }
    events_.emit({"KMS_KEY_MISSING",
                  storage::EventLevel::warning,
                  cert,
                  "recorded key " + uriText + " is not on the token; retired",
                  {{"key", uriText}}});
  }
  return signer;
}

Result<std::shared_ptr<hsm::KeySigner>> Services::orderKey(const std::optional<std::string>& cert,
                                                           const std::string& uri) {
  {
    std::lock_guard<std::mutex> lock(keysMutex_);
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

void Services::keepOrderKey(const std::string& uri, std::shared_ptr<hsm::KeySigner> signer) {
  std::lock_guard<std::mutex> lock(keysMutex_);
  orderKeys_[uri] = std::move(signer);
}

void Services::forgetOrderKey(const std::string& uri) {
  std::lock_guard<std::mutex> lock(keysMutex_);
  orderKeys_.erase(uri);
}

Result<void> Services::destroyKey(const std::optional<std::string>& cert, const std::string& uriText) {
  forgetOrderKey(uriText);
  auto uri = hsm::Pkcs11Uri::parse(uriText);
  if (!uri) {
    return fail(uri.error());
  }
  auto destroyed = token_->destroyKey(*uri);
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

void Services::storeWriteFailed(const std::optional<std::string>& cert, const char* what, const Error& e) {
  events_.emit({"KMS_STORE_WRITE_FAILED",
                storage::EventLevel::error,
                cert,
                std::string("could not ") + what + ": " + e.toString(),
                {}});
}

}  // namespace kms::daemon
