#include "engine.h"
#include "time_format.h"

#include <sys/stat.h>

#include <algorithm>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <ostream>
#include <random>
#include <sstream>
#include <thread>

#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <nlohmann/json.hpp>

#include "acme/client.h"
#include "acme/http01_responder.h"
#include "acme/issuer.h"
#include "acme/transport.h"
#include "hsm/token.h"
#include "kms/secret.h"
#include "pki/encoding.h"
#include "pki/shaken_profile.h"
#include "pki/tn_auth_list.h"
#include "pki/x509.h"
#include "publisher/web_root.h"
#include "sti_pa/client.h"
#include "storage/db.h"
#include "storage/store.h"

namespace kms::daemon {
namespace {

using Clock = std::chrono::system_clock;

std::int64_t unixNow() {
  return static_cast<std::int64_t>(std::time(nullptr));
}
std::int64_t toUnix(pki::SystemTime t) {
  return static_cast<std::int64_t>(Clock::to_time_t(t));
}

std::string lowerHex(const pki::Bytes& b) {
  std::string h = pki::hexEncode(b);
  std::transform(h.begin(), h.end(), h.begin(), [](unsigned char c) { return std::tolower(c); });
  return h;
}

Result<std::string> readText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return fail(Errc::io, "cannot read file", path);
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

/// Backoff after n consecutive failures: 1, 2, 4 … minutes up to 6 h, ±20% jitter.
std::int64_t backoffSeconds(std::int64_t failures) {
  std::int64_t base = 60LL << std::min<std::int64_t>(failures, 9);
  base = std::min<std::int64_t>(base, std::int64_t{6} * 3600);
  thread_local std::mt19937 rng(std::random_device{}());
  std::uniform_real_distribution<double> jitter(0.8, 1.2);
  return static_cast<std::int64_t>(static_cast<double>(base) * jitter(rng));
}

}  // namespace

class EngineImpl {
 public:
  explicit EngineImpl(config::Config cfg)
      : cfg_(std::move(cfg)), webRoot_(cfg_.publisher.webRoot, cfg_.publisher.baseUrl) {}

  config::Config cfg_;
  std::unique_ptr<storage::Db> db_;
  std::unique_ptr<storage::Store> store_;
  std::mutex storeMutex_;  // one SQLite connection: one writer at a time
  std::unique_ptr<hsm::Token> token_;
  std::unique_ptr<acme::Transport> transport_;
  std::unique_ptr<acme::AcmeClient> client_;
  std::unique_ptr<acme::Http01Responder> responder_;
  std::unique_ptr<acme::Http01Solver> http01_;
  std::unique_ptr<acme::Dns01HookSolver> dns01_;
  std::unique_ptr<sti_pa::StiPaClient> stiPa_;
  std::unique_ptr<sti_pa::TkauthSolver> tkauth_;
  std::map<std::string, acme::ChallengeSolver*> solvers_;
  std::vector<pki::Certificate> anchors_;
  std::unique_ptr<hsm::KeySigner> accountKey_;
  std::string accountUrl_;
  Error connectError_;  // why the CA could not be reached, when client_ is null
  publisher::WebRoot webRoot_;

  template <class F>
  auto withStore(F&& f) {
    std::lock_guard<std::mutex> lock(storeMutex_);
    return f(*store_);
  }

  void event(const std::optional<std::string>& cert, const char* id, storage::EventLevel level,
             const std::string& message) {
    storage::Event e;
    e.time = unixNow();
    e.certName = cert;
    e.eventId = id;
    e.level = level;
    e.message = message;
    // The event log is best effort: a failure to log must not fail the certificate.
    (void)withStore([&](storage::Store& s) { return s.appendEvent(e); });
  }

  /// A key about to be generated. Its CKA_ID, and so its URI, is chosen first so that the
  /// DB records the key before the token has it: a crash in between leaves a recorded key
  /// the token does not have (retired when next looked up), never a key the DB does not know.
  struct PlannedKey {
    std::string label;
    pki::Bytes id;
    storage::HsmKey row;
  };

  Result<PlannedKey> planKey(const std::string& label, storage::KeyPurpose purpose) {
    auto id = hsm::Token::newKeyId();
    if (!id) {
      return fail(id.error());
    }
    PlannedKey k{label, *id, {}};
    k.row.keyUri = token_->keyUri(label, *id).toString();
    k.row.ckaIdHex = lowerHex(*id);
    k.row.label = label;
    k.row.purpose = purpose;
    k.row.createdAt = unixNow();
    return k;
  }

  /// Generates a key recorded by planKey's caller; when the token fails, the record is
  /// retired (the key never came to exist).
  Result<std::unique_ptr<hsm::KeySigner>> generatePlanned(const PlannedKey& k) {
    auto signer = token_->generateSigner(k.label, k.id);
    if (!signer) {
      (void)withStore([&](storage::Store& s) { return s.markKeyDestroyed(k.row.keyUri, unixNow()); });
      return fail(signer.error());
    }
    return signer;
  }

  /// A new key: recorded in the DB, then generated on the token.
  Result<std::unique_ptr<hsm::KeySigner>> newKey(const std::string& label, storage::KeyPurpose purpose) {
    auto k = planKey(label, purpose);
    if (!k) {
      return fail(k.error());
    }
    auto rec = withStore([&](storage::Store& s) { return s.recordKey(k->row); });
    if (!rec) {
      return fail(rec.error());
    }
    return generatePlanned(*k);
  }

  /// The signer for a recorded key. A key the token does not have (its generation never
  /// ran before a crash, or someone deleted it) is retired in the DB with a warning and
  /// reported as Errc::notFound; any other token failure is returned as it is.
  Result<std::unique_ptr<hsm::KeySigner>> recordedKey(const std::optional<std::string>& cert,
                                                      const std::string& uriText) {
    auto uri = hsm::Pkcs11Uri::parse(uriText);
    if (!uri) {
      return fail(uri.error());
    }
    auto signer = token_->signer(*uri);
    if (!signer && signer.error().code == Errc::notFound) {
      (void)withStore([&](storage::Store& s) { return s.markKeyDestroyed(uriText, unixNow()); });
      event(cert, "KMS_KEY_MISSING", storage::EventLevel::warning,
            "recorded key " + uriText + " is not on the token; retired");
    }
    return signer;
  }

  /// Destroys a key on the token and records that; a key already gone counts as destroyed.
  void destroyKey(const std::string& uriText) {
    auto uri = hsm::Pkcs11Uri::parse(uriText);
    if (!uri) {
      return;
    }
    auto destroyed = token_->destroyKey(*uri);
    if (destroyed || destroyed.error().code == Errc::notFound) {
      (void)withStore([&](storage::Store& s) { return s.markKeyDestroyed(uriText, unixNow()); });
    }
  }

  Result<void> connect() {
    acme::TransportOptions topts;
    topts.caBundle = cfg_.acme.caBundle;
    auto transport = acme::makeCurlTransport(topts);
    if (!transport) {
      return fail(transport.error());
    }
    transport_ = std::move(*transport);
    acme::ClientOptions copts;
    copts.directoryUrl = cfg_.acme.directoryUrl;
    auto client = acme::AcmeClient::create(*transport_, copts);
    if (!client) {
      return fail(client.error());
    }
    client_ = std::move(*client);
    if (cfg_.stiPa && !stiPa_) {
      sti_pa::StiPaOptions o;
      o.url = cfg_.stiPa->url;
      o.userId = cfg_.stiPa->userId;
      o.passwordFile = cfg_.stiPa->passwordFile;
      o.fingerprint = cfg_.stiPa->fingerprint == config::Fingerprint::spki ? sti_pa::FingerprintKind::spki
                                                                           : sti_pa::FingerprintKind::jwkThumbprint;
      if (cfg_.stiPa->trustAnchor) {
        auto pem = readText(*cfg_.stiPa->trustAnchor);
        if (!pem) {
          return fail(pem.error());
        }
        auto anchors = pki::parsePemChain(*pem);
        if (!anchors) {
          Error e = anchors.error();
          e.context = *cfg_.stiPa->trustAnchor;
          return fail(e);
        }
        o.trustAnchors = std::move(*anchors);
      }
      stiPa_ = sti_pa::StiPaClient::create(*transport_, std::move(o));
    }
    return ok();
  }

  Result<void> ensureAccount() {
    const std::string& dir = cfg_.acme.directoryUrl;
    auto stored = withStore([&](storage::Store& s) { return s.getAccount(dir); });
    if (!stored) {
      return fail(stored.error());
    }
    std::optional<std::string> keyUri;
    if (*stored) {
      auto signer = recordedKey(std::nullopt, (*stored)->keyUri);
      if (!signer && signer.error().code != Errc::notFound) {
        // The token failed, the key is not known to be gone: no new account for that.
        return fail(signer.error());
      }
      if (signer) {
        accountKey_ = std::move(*signer);
        keyUri = (*stored)->keyUri;
      }
    } else {
      // A run that generated an account key and stopped before registering it left the
      // key recorded and used by no account: register with that one.
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
        if (found->url != (*stored)->accountUrl) {
          return saveAccount(*keyUri);
        }
        return ok();
      }
      if (!found && found.error().code != Errc::notFound) {
        return fail(found.error());
      }
      // The CA forgot the account (e.g. a test CA restarted): register the same key again.
    } else {
      auto key = newKey("acme-account-" + std::to_string(unixNow()), storage::KeyPurpose::account);
      if (!key) {
        return fail(key.error());
      }
      accountKey_ = std::move(*key);
      keyUri = accountKey_->info().uri.toString();
    }
    std::optional<acme::ExternalAccountBinding> eab;
    if (cfg_.acme.eabKid && cfg_.acme.eabHmacFile) {
      auto secret = readSecretFile(*cfg_.acme.eabHmacFile);
      if (!secret) {
        return fail(secret.error());
      }
      auto key = pki::base64UrlDecode(secret->view());
      if (!key) {
        return fail(Errc::config, "EAB HMAC key is not base64url", *cfg_.acme.eabHmacFile);
      }
      eab = acme::ExternalAccountBinding{*cfg_.acme.eabKid, SecretBytes(std::move(*key))};
    }
    auto account = client_->newAccount(*accountKey_, cfg_.acme.contact, eab ? &*eab : nullptr);
    if (!account) {
      return fail(account.error());
    }
    accountUrl_ = account->url;
    event(std::nullopt, "KMS_ACCOUNT_REGISTERED", storage::EventLevel::info, "ACME account " + accountUrl_);
    return saveAccount(*keyUri);
  }

  /// A recorded account key that is on the token but belongs to no account, if any.
  Result<std::optional<std::unique_ptr<hsm::KeySigner>>> unusedAccountKey() {
    auto rows = withStore([&](storage::Store& s) -> Result<std::vector<storage::HsmKey>> {
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

  Result<void> saveAccount(const std::string& keyUri) {
    storage::AcmeAccount row;
    row.directoryUrl = cfg_.acme.directoryUrl;
    row.accountUrl = accountUrl_;
    row.keyUri = keyUri;
    row.createdAt = unixNow();
    auto saved = withStore([&](storage::Store& s) { return s.saveAccount(row); });
    if (!saved) {
      return fail(saved.error());
    }
    return ok();
  }

  /// Whether the newest valid certificate is due for renewal (ARI first, else fraction).
  bool isDue(const storage::IssuedCert& latest, const config::CertificateConfig& c, std::string* why) {
    std::int64_t now = unixNow();
    if (client_ && client_->directory().renewalInfo && latest.ariCertId) {
      if (auto info = client_->renewalInfo(*latest.ariCertId)) {
        std::int64_t start = toUnix(info->windowStart);
        *why = "ARI window opens " + isoTime(start);
        return now >= start;
      }
    }
    auto lifetime = latest.notAfter - latest.notBefore;
    auto renewAt = latest.notAfter - static_cast<std::int64_t>(static_cast<double>(lifetime) * c.renewBeforeFraction);
    *why = "renewal due " + isoTime(renewAt);
    return now >= renewAt;
  }

  CertOutcome issueOne(const config::CertificateConfig& c) {
    CertOutcome out;
    out.name = c.name;
    auto failed = [&](const Error& e) {
      out.kind = CertOutcome::Kind::failed;
      out.line = c.name + ": FAILED: " + e.toString();
      return out;
    };
    std::vector<acme::Identifier> identifiers;
    nlohmann::json idsJson = nlohmann::json::array();
    if (c.spc) {
      auto der = pki::TnAuthList::forSpc(*c.spc).toDer();
      if (!der) {
        return failed(der.error());
      }
      // US practice: padded standard base64, the same bytes as the token's tkvalue (spec §9.3).
      identifiers.push_back({"TNAuthList", pki::base64Encode(*der)});
      idsJson.push_back("spc:" + *c.spc);
    }
    for (const std::string& n : c.dnsNames) {
      identifiers.push_back({"dns", n});
      idsJson.push_back("dns:" + n);
    }
    auto upsert = withStore([&](storage::Store& s) {
      return s.upsertCertificate(c.name, c.spc ? storage::CertKind::shaken : storage::CertKind::acme, idsJson.dump());
    });
    if (!upsert) {
      return failed(upsert.error());
    }

    // Due?
    auto issued = withStore([&](storage::Store& s) { return s.listIssued(c.name); });
    if (!issued) {
      return failed(issued.error());
    }
    const storage::IssuedCert* latest = nullptr;
    for (const auto& i : *issued) {
      if (!i.revokedAt && i.notAfter > unixNow() && (latest == nullptr || i.notBefore > latest->notBefore)) {
        latest = &i;
      }
    }
    if (latest != nullptr) {
      std::string why;
      if (!isDue(*latest, c, &why)) {
        out.line = c.name + ": valid until " + isoTime(latest->notAfter) + ", not due (" + why + ")";
        return out;
      }
    }

    if (!client_) {
      return failed(connectError_);
    }

    // The order in flight, or a new key and order.
    auto open = withStore([&](storage::Store& s) { return s.getOpenOrder(c.name); });
    if (!open) {
      return failed(open.error());
    }
    std::optional<storage::Order> order = *open;
    std::unique_ptr<hsm::KeySigner> certKey;
    if (order && order->keyUri) {
      auto signer = recordedKey(c.name, *order->keyUri);
      if (!signer && signer.error().code != Errc::notFound) {
        // A token failure is retried later; only a key that is gone abandons the order.
        return failed(signer.error());
      }
      if (signer) {
        certKey = std::move(*signer);
      } else {
        (void)withStore([&](storage::Store& s) { return s.closeOrder(order->id, storage::OrderStatus::abandoned); });
        order.reset();
      }
    }
    if (!order) {
      // Key record and order in one transaction, then the key: a crash at any point leaves
      // either nothing or an order whose key is recorded.
      auto planned = planKey(c.name + "-" + std::to_string(unixNow()), storage::KeyPurpose::certificate);
      if (!planned) {
        return failed(planned.error());
      }
      std::optional<storage::Order> created;
      auto tx = withStore([&](storage::Store& s) {
        return s.transact([&]() -> Result<void> {
          if (auto k = s.recordKey(planned->row); !k) {
            return fail(k.error());
          }
          auto o = s.createOrder(c.name, storage::CertState::keyReady);
          if (!o) {
            return fail(o.error());
          }
          storage::OrderUpdate u;
          u.step = storage::CertState::keyReady;
          u.keyUri = planned->row.keyUri;
          auto advanced = s.advanceOrder(o->id, u);
          if (!advanced) {
            return fail(advanced.error());
          }
          created = std::move(*advanced);
          return ok();
        });
      });
      if (!tx) {
        return failed(tx.error());
      }
      auto key = generatePlanned(*planned);
      if (!key) {
        (void)withStore([&](storage::Store& s) { return s.closeOrder(created->id, storage::OrderStatus::abandoned); });
        return failed(key.error());
      }
      certKey = std::move(*key);
      order = std::move(created);
    }
    const std::int64_t orderId = order->id;
    const std::string keyUri = *order->keyUri;

    acme::IssueRequest request;
    request.identifiers = identifiers;
    request.challengeType = config::toString(c.challenge);
    if (c.spc) {
      auto csr = pki::CsrRequest::shaken(*c.spc, c.subjectO.value_or(""), c.subjectC);
      if (!csr) {
        return failed(csr.error());
      }
      request.csr = std::move(*csr);
      std::string spc = *c.spc;
      request.extraCheck = [spc](const std::vector<pki::Certificate>& chain) {
        return pki::checkShakenProfile(chain.front(), spc);
      };
    } else {
      request.csr.dnsNames = c.dnsNames;
    }
    request.certKey = certKey.get();
    request.resumeOrderUrl = order->orderUrl;
    request.trustAnchors = anchors_;
    if (latest != nullptr && latest->ariCertId && client_->directory().renewalInfo) {
      request.replaces = latest->ariCertId;
    }
    acme::AccountRef account{*accountKey_, accountUrl_};
    auto progress = [&](acme::IssueStep step, const acme::Order& o) -> Result<void> {
      storage::OrderUpdate u;
      u.step = step == acme::IssueStep::orderPending ? storage::CertState::orderPending
               : step == acme::IssueStep::authorized ? storage::CertState::authorized
                                                     : storage::CertState::finalizing;
      u.orderUrl = o.url;
      u.authorizationUrlsJson = nlohmann::json(o.authorizations).dump();
      u.finalizeUrl = o.finalize;
      u.certificateUrl = o.certificate;
      u.acmeStatus = o.status;
      auto r = withStore([&](storage::Store& s) { return s.advanceOrder(orderId, u); });
      if (!r) {
        return fail(r.error());
      }
      return ok();
    };
    auto result = acme::issueCertificate(*client_, account, request, solvers_, progress);
    if (!result) {
      const Error& e = result.error();
      auto failures = withStore([&](storage::Store& s) { return s.getCertificate(c.name); });
      std::int64_t count = failures && *failures ? (*failures)->failureCount : 0;
      (void)withStore([&](storage::Store& s) {
        return s.recordFailure(c.name, e.toString(), unixNow() + backoffSeconds(count),
                               e.retryable ? std::nullopt : std::optional(storage::CertState::failed));
      });
      if (!e.retryable) {
        // The order cannot succeed: abandon it and leave no key behind.
        (void)withStore([&](storage::Store& s) { return s.closeOrder(orderId, storage::OrderStatus::abandoned); });
        certKey.reset();
        destroyKey(keyUri);
      }
      event(c.name, "KMS_ISSUE_FAILED", storage::EventLevel::error, e.toString());
      return failed(e);
    }

    // Record, publish, activate.
    const pki::Certificate& leaf = result->chain.front();
    storage::IssuedCert row;
    row.certName = c.name;
    row.serial = leaf.serialHex();
    row.notBefore = toUnix(leaf.notBefore());
    row.notAfter = toUnix(leaf.notAfter());
    row.chainPem = result->pem;
    row.keyUri = keyUri;
    if (auto id = leaf.ariCertId()) {
      row.ariCertId = *id;
    }
    auto issuedId = withStore([&](storage::Store& s) -> Result<std::int64_t> {
      auto id = s.insertIssued(row);
      if (!id) {
        return id;
      }
      storage::OrderUpdate u;
      u.step = storage::CertState::issued;
      if (auto r = s.advanceOrder(orderId, u); !r) {
        return fail(r.error());
      }
      return id;
    });
    if (!issuedId) {
      return failed(issuedId.error());
    }
    auto published = webRoot_.publish(c.name, row.serial, result->pem);
    if (!published) {
      (void)withStore([&](storage::Store& s) {
        return s.recordFailure(c.name, published.error().toString(), unixNow() + backoffSeconds(0));
      });
      event(c.name, "KMS_PUBLISH_FAILED", storage::EventLevel::error, published.error().toString());
      return failed(published.error());
    }
    auto done = withStore([&](storage::Store& s) -> Result<void> {
      if (auto r = s.markPublished(*issuedId, published->x5uUrl, unixNow()); !r) {
        return r;
      }
      if (auto r = s.closeOrder(orderId, storage::OrderStatus::done); !r) {
        return r;
      }
      return s.setState(c.name, storage::CertState::active, std::nullopt);
    });
    if (!done) {
      return failed(done.error());
    }
    event(c.name, "KMS_CERT_ISSUED", storage::EventLevel::info,
          "serial " + row.serial + " not after " + isoTime(row.notAfter) + " published " + published->x5uUrl);
    out.kind = CertOutcome::Kind::issued;
    out.line = c.name + ": issued serial " + row.serial + ", not after " + isoTime(row.notAfter) + ", published " +
               published->x5uUrl;
    return out;
  }
};

Engine::Engine(std::unique_ptr<EngineImpl> impl) : impl_(std::move(impl)) {}
Engine::~Engine() = default;

Result<std::unique_ptr<Engine>> Engine::create(const config::Config& config) {
  auto impl = std::make_unique<EngineImpl>(config);
  std::error_code ec;
  std::filesystem::create_directories(config.daemon.stateDir, ec);
  if (ec) {
    return fail(Errc::io, "cannot create state_dir: " + ec.message(), config.daemon.stateDir);
  }
  auto db = storage::Db::open(config.daemon.stateDir + "/kmsd.db", {});
  if (!db) {
    return fail(db.error());
  }
  impl->db_ = std::move(*db);
  impl->store_ = storage::makeSqliteStore(*impl->db_);
  auto token = hsm::Token::open(hsm::TokenOptions{config.hsm.module, config.hsm.tokenLabel, config.hsm.pinFile,
                                                  static_cast<std::size_t>(config.hsm.sessionPool)});
  if (!token) {
    return fail(token.error());
  }
  impl->token_ = std::move(*token);
  if (config.acme.trustAnchors) {
    auto pem = readText(*config.acme.trustAnchors);
    if (!pem) {
      return fail(pem.error());
    }
    auto anchors = pki::parsePemChain(*pem);
    if (!anchors) {
      Error e = anchors.error();
      e.context = *config.acme.trustAnchors;
      return fail(e);
    }
    impl->anchors_ = std::move(*anchors);
  }
  return std::unique_ptr<Engine>(new Engine(std::move(impl)));
}

std::vector<CertOutcome> Engine::runOnce() {
  EngineImpl& e = *impl_;
  std::vector<CertOutcome> outcomes(e.cfg_.certificates.size());
  auto failAll = [&](const Error& err) {
    for (std::size_t i = 0; i < outcomes.size(); ++i) {
      outcomes[i] = CertOutcome{e.cfg_.certificates[i].name, CertOutcome::Kind::failed,
                                e.cfg_.certificates[i].name + ": FAILED: " + err.toString()};
    }
    return outcomes;
  };
  if (outcomes.empty()) {
    return outcomes;
  }
  // Certificates that are not due need no CA: a CA outage is only a failure for the others.
  if (auto r = e.connect(); !r) {
    e.connectError_ = r.error();
    e.client_.reset();
  } else if (auto a = e.ensureAccount(); !a) {
    e.connectError_ = a.error();
    e.client_.reset();
  }
  bool needHttp01 = std::any_of(e.cfg_.certificates.begin(), e.cfg_.certificates.end(),
                                [](const auto& c) { return c.challenge == config::Challenge::http01; });
  if (needHttp01 && !e.responder_) {
    auto responder = acme::Http01Responder::start(e.cfg_.acme.http01Listen.host, e.cfg_.acme.http01Listen.port);
    if (!responder) {
      return failAll(responder.error());
    }
    e.responder_ = std::move(*responder);
    e.http01_ = std::make_unique<acme::Http01Solver>(*e.responder_);
    e.solvers_["http-01"] = e.http01_.get();
  }
  if (e.client_ && e.stiPa_ && e.accountKey_ && !e.tkauth_) {
    e.tkauth_ = std::make_unique<sti_pa::TkauthSolver>(*e.stiPa_, e.accountKey_->publicKey());
    e.solvers_["tkauth-01"] = e.tkauth_.get();
  }
  if (e.cfg_.acme.dns01Hook && !e.dns01_) {
    e.dns01_ = std::make_unique<acme::Dns01HookSolver>(*e.cfg_.acme.dns01Hook);
    e.solvers_["dns-01"] = e.dns01_.get();
  }
  // A bounded pool: many orders in flight, never a thread per certificate. Two workers
  // per core: more only adds lock contention in OpenSSL and the token (tests/bench/acme_issue).
  std::size_t perCore = std::size_t{2} * std::max(1U, std::thread::hardware_concurrency());
  std::size_t threads = std::min<std::size_t>(outcomes.size(), std::max<std::size_t>(4, perCore));
  boost::asio::thread_pool pool(threads);
  for (std::size_t i = 0; i < outcomes.size(); ++i) {
    boost::asio::post(pool, [&e, &outcomes, i] {
      try {
        outcomes[i] = e.issueOne(e.cfg_.certificates[i]);
      } catch (const std::exception& ex) {
        outcomes[i] = CertOutcome{e.cfg_.certificates[i].name, CertOutcome::Kind::failed,
                                  e.cfg_.certificates[i].name + ": FAILED: internal error: " + ex.what()};
      }
    });
  }
  pool.join();
  return outcomes;
}

int runOnceCommand(const std::string& configPath, std::ostream& out, std::ostream& err) {
  auto cfg = config::loadConfigFile(configPath, config::environmentSnapshot());
  if (!cfg) {
    err << config::formatErrors(cfg.error());
    return 1;
  }
  auto engine = Engine::create(*cfg);
  if (!engine) {
    err << "kmsd: " << engine.error().toString() << '\n';
    return 1;
  }
  bool allGood = true;
  for (const CertOutcome& o : (*engine)->runOnce()) {
    out << o.line << '\n';
    allGood = allGood && o.kind != CertOutcome::Kind::failed;
  }
  return allGood ? 0 : 3;
}

}  // namespace kms::daemon
