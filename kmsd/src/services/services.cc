#include "services/services.h"

#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "common/failpoint.h"
#include "hsm/token_store.h"
#include "metrics/metered_transport.h"
#include "kms/fs.h"
#include "kms/secret.h"
#include "pki/encoding.h"

namespace kms::daemon {
namespace {

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

Services::Services(const config::Config& config, const Clock& clock, EventSink& events, LockedStore& store)
    : config_(settingsOf(config)),
      settings_(*config_),
      clock_(clock),
      events_(events),
      store_(store),
      webRoot_(config.publisher.webRoot, config.publisher.baseUrl) {}

Services::~Services() = default;

std::shared_ptr<const config::Config> settingsOf(const config::Config& config) {
  return std::make_shared<const config::Config>(config::Config{config.source, config.daemon, config.hsm, config.stiPa,
                                                               config.acme, config.publisher, config.signing,
                                                               config.metrics, config.alerts, {}, config.envOverrides});
}

std::shared_ptr<const config::Config> Services::config() const {
  std::lock_guard<std::mutex> lock(configMutex_);
  return config_;
}

void Services::setConfig(std::shared_ptr<const config::Config> config) {
  std::lock_guard<std::mutex> lock(configMutex_);
  config_ = std::move(config);
}

Result<std::unique_ptr<Services>> Services::create(const config::Config& config, const Clock& clock, EventSink& events,
                                                   LockedStore& store, std::optional<int> http01Socket,
                                                   TransportOverrides overrides, Metrics* metrics) {
  std::unique_ptr<Services> s(new Services(config, clock, events, store));
  s->metrics_ = metrics;
  s->transport_ = std::move(overrides.acme);
  s->stiPaTransport_ = std::move(overrides.stiPa);
  for (auto open : {&Services::openToken, &Services::openTransports, &Services::openStiPa}) {
    if (auto r = (s.get()->*open)(config); !r) {
      return fail(r.error());
    }
  }
  if (auto r = s->openSolvers(config, http01Socket); !r) {
    return fail(r.error());
  }
  s->keys_ = std::make_unique<KeyManager>(*s->token_, s->store_, s->events_, s->clock_);
  s->ca_ = std::make_unique<CaConnection>(s->settings_, *s->transport_, s->store_, s->events_, *s->keys_, s->clock_,
                                          s->stiPa_.get(), s->http01_.get());
  return s;
}

namespace {

/// What an operator reads when the token cannot be opened (see openConfiguredToken).
std::string tokenOpenError(const config::Config& config, const hsm::TokenStoreReport& guard, const Error& error) {
  if (error.code == Errc::unauthorized && error.nativeName.rfind("CKR_", 0) == 0) {
    return "[hsm] pin_file " + config.hsm.pinFile + ": the token refused the PIN (" + error.nativeName + ")";
  }
  std::string out = "[hsm] " + error.toString();
  if (error.code == Errc::notFound && !guard.confPath.empty() && error.message.rfind("no token labelled", 0) == 0) {
    out += "; SoftHSM2 read " + guard.confPath + " (tokens in " + guard.tokenDir + "): name the configuration that " +
           "holds the token with [hsm] softhsm2_conf" + (config.hsm.softhsm2Conf ? "" : " or SOFTHSM2_CONF");
  }
  return out;
}

}  // namespace

Result<std::unique_ptr<hsm::Token>> openConfiguredToken(const config::Config& config, hsm::TokenStoreReport& guard) {
  if (config.hsm.softhsm2Conf) {
    // Read by SoftHSM2 when the module initialises: set before anything loads it.
    ::setenv("SOFTHSM2_CONF", config.hsm.softhsm2Conf->c_str(), 1);
  }
  // Before the module is loaded: SoftHSM2 rewrites token.object in place at every C_Login,
  // and a kill in between would lose the token with every key on it.
  hsm::TokenStoreOptions guardOptions;
  guardOptions.modulePath = config.hsm.module;
  auto guarded = hsm::guardSoftHsmStore(guardOptions);
  if (!guarded) {
    Error e = guarded.error();
    e.message = "[hsm] token store: " + e.message;
    return fail(e);
  }
  guard = std::move(*guarded);
  // The signing threads each get a session of their own beside the steps' pool, so a
  // signature never waits for a key generation or a CSR.
  auto token = hsm::Token::open(hsm::TokenOptions{config.hsm.module, config.hsm.tokenLabel, config.hsm.pinFile,
                                                  static_cast<std::size_t>(config.hsm.sessionPool) +
                                                      static_cast<std::size_t>(config.signing.threads)});
  if (!token) {
    Error e = token.error();
    e.message = tokenOpenError(config, guard, e);  // says the context and the PKCS#11 code itself
    e.context.clear();
    e.nativeName.clear();
    return fail(e);
  }
  return token;
}

Result<void> Services::openToken(const config::Config& config) {
  hsm::TokenStoreReport guard;
  auto token = openConfiguredToken(config, guard);
  for (const auto& r : guard.restored) {
    events_.emit({"KMS_TOKEN_RESTORED", storage::EventLevel::warning, std::nullopt,
                  r.path + ": " + r.reason + "; restored from its verified copy", {{"file", r.path}}});
  }
  for (const auto& q : guard.quarantined) {
    events_.emit({"KMS_TOKEN_OBJECT_QUARANTINED", storage::EventLevel::warning, std::nullopt,
                  q.path + ": " + q.reason + "; moved to " + q.movedTo, {{"file", q.path}}});
  }
  if (!token) {
    return fail(token.error());
  }
  token_ = std::move(*token);
  return ok();
}

namespace {

/// A transport with its section's TLS trust: the system store plus `caBundle`.
Result<std::unique_ptr<http::Transport>> transportFor(const std::optional<std::string>& caBundle,
                                                      std::optional<std::chrono::seconds> timeout, const char* field) {
  http::TransportOptions o;
  o.caBundle = caBundle;
  if (timeout) {
    o.requestTimeout = *timeout;
    o.connectTimeout = std::min<std::chrono::milliseconds>(*timeout, o.connectTimeout);
  }
  auto t = http::makeCurlTransport(o);
  if (!t) {
    Error e = t.error();
    e.message = std::string(field) + ": " + e.message;
    return fail(e);
  }
  return t;
}

}  // namespace

Result<void> Services::openTransports(const config::Config& config) {
  if (!transport_) {
    auto transport = transportFor(config.acme.caBundle, std::nullopt, "[acme] ca_bundle");
    if (!transport) {
      return fail(transport.error());
    }
    transport_ = std::move(*transport);
  }
  if (metrics_ != nullptr) {
    transport_ = std::make_unique<MeteredTransport>(std::move(transport_), *metrics_, "acme");
  }
  // Also with publication_check = "file": a reload may switch it to "fetch".
  auto check = transportFor(config.publisher.caBundle, config.publisher.checkTimeout, "[publisher] ca_bundle");
  if (!check) {
    return fail(check.error());
  }
  checkTransport_ = std::move(*check);
  return ok();
}

Result<void> Services::openStiPa(const config::Config& config) {
  if (!config.stiPa) {
    return ok();
  }
  const config::StiPaConfig& c = *config.stiPa;
  if (!stiPaTransport_) {
    auto stiTransport = transportFor(c.caBundle, std::chrono::seconds(30), "[sti_pa] ca_bundle");
    if (!stiTransport) {
      return fail(stiTransport.error());
    }
    stiPaTransport_ = std::move(*stiTransport);
  }
  if (metrics_ != nullptr) {
    stiPaTransport_ = std::make_unique<MeteredTransport>(std::move(stiPaTransport_), *metrics_, "sti_pa");
  }
  sti_pa::StiPaOptions o;
  o.url = c.url;
  o.userId = c.userId;
  o.passwordFile = c.passwordFile;
  o.allowedHosts = c.allowedHosts;
  o.fingerprint = c.fingerprint == config::Fingerprint::spki ? sti_pa::FingerprintKind::spki
                                                             : sti_pa::FingerprintKind::jwkThumbprint;
  if (c.trustAnchor) {
    auto anchors = readAnchors(*c.trustAnchor, "[sti_pa] trust_anchor");
    if (!anchors) {
      return fail(anchors.error());
    }
    o.trustAnchors = std::move(*anchors);
  }
  if (c.crlSigner) {
    auto signer = readAnchors(*c.crlSigner, "[sti_pa] crl_signer");
    if (!signer) {
      return fail(signer.error());
    }
    // The CRL signer is an STI-PA certificate: it must chain to the STI-PA root.
    if (!o.trustAnchors.empty()) {
      if (auto v = pki::verifyChain(*signer, o.trustAnchors, clock_.now()); !v) {
        return fail(Errc::config, "[sti_pa] crl_signer: does not chain to [sti_pa] trust_anchor: " + v.error().message,
                    *c.crlSigner);
      }
    }
    crlSigner_ = signer->front();
  }
  stiPa_ = sti_pa::StiPaClient::create(*stiPaTransport_, std::move(o));
  return ok();
}

Result<void> Services::openSolvers(const config::Config& config, std::optional<int> http01Socket) {
  const bool needHttp01 = std::any_of(config.certificates.begin(), config.certificates.end(),
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
    responder_ = std::move(*responder);
    http01_ = std::make_unique<acme::Http01Solver>(*responder_);
  } else if (http01Socket) {
    ::close(*http01Socket);  // passed, but no certificate answers http-01
  }
  if (config.acme.dns01Hook) {
    dns01_ = std::make_unique<acme::Dns01Hook>(*config.acme.dns01Hook);
  }
  return ok();
}


}  // namespace kms::daemon
