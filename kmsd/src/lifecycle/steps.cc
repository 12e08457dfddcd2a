#include "lifecycle/steps.h"

#include <sys/stat.h>

#include <algorithm>
#include <fstream>

#include <nlohmann/json.hpp>

#include "acme/jws.h"
#include "common/failpoint.h"
#include "pki/encoding.h"
#include "pki/shaken_profile.h"
#include "pki/tn_auth_list.h"
#include "common/time_format.h"

namespace kms::daemon {
namespace {

/// The shortest wait after a failed renewalInfo read (a CA answering 503 with Retry-After: 1
/// is not read again every second).
constexpr std::int64_t kMinAriRetrySeconds = 60;

using storage::CertState;

storage::OrderUpdate at(CertState step) {
  storage::OrderUpdate u;
  u.step = step;
  return u;
}

Error nonRetryable(Error e) {
  e.retryable = false;
  return e;
}

Error protocolError(std::string message, std::string context) {
  Error e;
  e.code = Errc::protocol;
  e.message = std::move(message);
  e.context = std::move(context);
  return e;
}

StepOutcome pollAgainAfter(Millis wait) {
  StepOutcome out;
  out.wait = wait;
  return out;
}

/// The newest certificate issued with `keyUri` (the one an order produced).
std::optional<storage::IssuedCert> issuedWithKey(const std::vector<storage::IssuedCert>& issued,
                                                 const std::string& keyUri) {
  for (const auto& i : issued) {
    if (i.keyUri == keyUri) {
      return i;
    }
  }
  return std::nullopt;
}

}  // namespace

Result<CertSnapshot> Steps::snapshot(const config::CertificateConfig& c, bool renewRequested) {
  const std::int64_t t = now();
  CertSnapshot snap;
  auto read = s_.store().with([&](storage::Store& st) -> Result<void> {
    auto cert = st.getCertificate(c.name);
    if (!cert) {
      return fail(cert.error());
    }
    if (!*cert) {
      return fail(Errc::notFound, "certificate '" + c.name + "' is not in the state DB");
    }
    snap.cert = std::move(**cert);
    auto order = st.getOpenOrder(c.name);
    if (!order) {
      return fail(order.error());
    }
    snap.order = std::move(*order);
    auto issued = st.listIssued(c.name);  // newest notBefore first
    if (!issued) {
      return fail(issued.error());
    }
    // The newest published certificate is the current one; revoked or expired, there is
    // none: a certificate it superseded never becomes current again.
    for (auto& i : *issued) {
      if (i.publishedAt) {
        if (!i.revokedAt && i.notAfter > t) {
          snap.active = std::move(i);
        }
        break;
      }
    }
    return ok();
  });
  if (!read) {
    return fail(read.error());
  }
  snap.shaken = c.spc.has_value();
  snap.renewRequested = renewRequested;
  snap.renewBeforeFraction = c.renewBeforeFraction;
  snap.deployHook = c.deployHook.has_value();
  snap.activeDistrusted = snap.active && s_.distrusted(snap.active->id);
  if (snap.activeDistrusted && !snap.order && s_.distrustedWithItsRootApproved(snap.active->id)) {
    // Distrusted while its root is still approved: the CA's doing, within the budget only.
    const auto [used, window] = earlyRenewalsUsed(c, *snap.active);
    if (used >= kEarlyRenewalBudget) {
      snap.activeDistrusted = false;
      std::lock_guard<std::mutex> lock(checkedMutex_);
      if (distrustHeld_.insert(snap.active->id).second) {
        events_.emit({"KMS_EARLY_RENEWAL_LIMITED",
                      storage::EventLevel::error,
                      c.name,
                      "serial " + snap.active->serial + " is distrusted while its root is still approved, but " +
                          std::to_string(used) + " early renewals the CA brought about in the last " +
                          std::to_string(window) + " s spent the budget; it renews at its usual time",
                      {{"serial", snap.active->serial}}});
      }
    }
  }
  if (snap.active && !snap.order) {
    std::unique_lock<std::mutex> lock(checkedMutex_);
    if (!tokenListed_) {
      // One pass over the token at start instead of a search per certificate.
      tokenListed_ = true;
      if (auto keys = s_.token().listKeys()) {
        for (const auto& k : *keys) {
          keyChecked_.insert(k.uri.toString());
        }
      }
    }
    bool checked = keyChecked_.count(snap.active->keyUri) != 0;
    lock.unlock();
    if (!checked) {
      auto key = s_.recordedKey(c.name, snap.active->keyUri);
      if (!key && key.error().code != Errc::notFound) {
        return fail(key.error());
      }
      snap.activeKeyMissing = !key;
      lock.lock();
      if (key) {
        keyChecked_.insert(snap.active->keyUri);
      }
    }
  }
  return snap;
}

Result<StepOutcome> Steps::run(Action action, const CertSnapshot& snap, const config::CertificateConfig& c,
                               PollState& poll) {
  if (poll.action != action) {
    poll = PollState{0, std::nullopt, action};
  }
  reapCleanups();
  switch (action) {
    case Action::wait:
      return StepOutcome{};
    case Action::startOrder:
      return startOrder(snap, c);
    case Action::refreshRenewal:
      return refreshRenewal(snap, c);
    case Action::deploy:
      return deploy(snap, c);
    default:
      break;
  }
  if (!snap.order) {
    return fail(Errc::internal, std::string("no open order for ") + toString(action), c.name);
  }
  const storage::Order& o = *snap.order;
  switch (action) {
    case Action::generateKey:
      return generateKey(o, c);
    case Action::fetchToken:
      return fetchToken(o, c);
    case Action::newOrder:
      return newOrder(snap, c);
    case Action::authorize:
      return authorize(o, c, poll);
    case Action::finalize:
      return finalize(o, c, poll);
    case Action::awaitIssuance:
      return awaitIssuance(o, c, poll);
    case Action::publish:
      return publish(o, c, poll);
    case Action::activate:
      return activate(o, c);
    default:
      return fail(Errc::internal, std::string("unexpected action ") + toString(action), c.name);
  }
}

Result<void> Steps::advance(const storage::Order& order, const storage::OrderUpdate& update) {
  auto r = s_.store().with([&](storage::Store& st) { return st.advanceOrder(order.id, update); });
  if (!r) {
    return fail(r.error());
  }
  return ok();
}

Result<Steps::HookRun> Steps::awaitHook(const std::string& key, Millis timeout,
                                        const std::function<Result<std::unique_ptr<ChildProcess>>()>& start) {
  RunningHook hook;
  {
    std::lock_guard<std::mutex> lock(hooksMutex_);
    auto it = hooks_.find(key);
    if (it == hooks_.end()) {
      auto child = start();
      if (!child) {
        return fail(child.error());
      }
      hook = RunningHook{std::shared_ptr<ChildProcess>(std::move(*child)), clock_.now()};
      hooks_.emplace(key, hook);
      return HookRun{hook, std::nullopt};
    }
    hook = it->second;
    if (!hook.child->exitStatus() && clock_.now() - hook.started <= timeout) {
      return HookRun{hook, std::nullopt};  // woken early: still running
    }
    hooks_.erase(it);
  }
  auto status = hook.child->exitStatus();
  if (!status) {
    hook.child->kill();
    (void)hook.child->wait(Millis(1000));
  }
  return HookRun{std::nullopt, status};
}

StepOutcome Steps::waitForHook(const RunningHook& hook, Millis timeout) const {
  const auto elapsed = std::chrono::duration_cast<Millis>(clock_.now() - hook.started);
  StepOutcome waiting;
  waiting.wait = std::max(Millis(1000), timeout - elapsed + Millis(1000));
  waiting.waitFor = hook.child;
  return waiting;
}

Result<std::optional<StepOutcome>> Steps::dnsPresent(const acme::Authorization& authz,
                                                     const acme::Challenge& challenge, const std::string& keyAuth) {
  acme::Dns01HookSolver* hook = s_.dns01();
  if (hook == nullptr) {
    return fail(nonRetryable(Error{Errc::unsupported, "no dns-01 hook configured ([acme] dns01_hook)", challenge.url, 0,
                                   {}, false, std::nullopt}));
  }
  auto run = awaitHook("present " + challenge.url, hookTimeout,
                       [&] { return hook->start("present", authz, challenge, keyAuth); });
  if (!run) {
    return fail(run.error());
  }
  if (run->running) {
    return std::optional<StepOutcome>(waitForHook(*run->running, hookTimeout));
  }
  if (!run->status) {
    Error e{Errc::timeout,
            "dns-01 hook 'present' ran longer than " +
                std::to_string(std::chrono::duration_cast<std::chrono::seconds>(hookTimeout).count()) +
                " s and was killed",
            hook->hook(),
            0,
            {},
            true,
            std::nullopt};
    return fail(e);
  }
  if (!exitedCleanly(*run->status)) {
    Error e{Errc::io,
            "dns-01 hook 'present' failed with " + describeExit(*run->status) + " for " + authz.identifier.value,
            hook->hook(),
            0,
            {},
            true,
            std::nullopt};
    return fail(e);
  }
  return std::optional<StepOutcome>();
}

bool Steps::remember(std::int64_t orderId, const acme::Authorization& authz, const acme::Challenge& challenge,
                     const std::string& keyAuth, const std::string& type) {
  std::lock_guard<std::mutex> lock(hooksMutex_);
  auto& list = presented_[orderId];
  for (const auto& p : list) {
    if (p.challenge.url == challenge.url) {
      return false;
    }
  }
  list.push_back(Presented{authz, challenge, keyAuth, type});
  return true;
}

bool Steps::wasAnswered(std::int64_t orderId, const std::string& challengeUrl) {
  std::lock_guard<std::mutex> lock(hooksMutex_);
  auto it = presented_.find(orderId);
  return it != presented_.end() && std::any_of(it->second.begin(), it->second.end(), [&](const Presented& p) {
           return p.answered && p.challenge.url == challengeUrl;
         });
}

void Steps::markAnswered(std::int64_t orderId, const std::string& challengeUrl) {
  std::lock_guard<std::mutex> lock(hooksMutex_);
  for (Presented& p : presented_[orderId]) {
    if (p.challenge.url == challengeUrl) {
      p.answered = true;
    }
  }
}

void Steps::withdraw(std::int64_t orderId) {
  std::vector<Presented> list;
  {
    std::lock_guard<std::mutex> lock(hooksMutex_);
    auto it = presented_.find(orderId);
    if (it == presented_.end()) {
      return;
    }
    list = std::move(it->second);
    presented_.erase(it);
  }
  auto solvers = s_.solvers();
  for (const Presented& p : list) {
    if (p.type == "dns-01") {
      // Not waited for: reaped by the next step that passes by (reapCleanups).
      if (acme::Dns01HookSolver* hook = s_.dns01(); hook != nullptr) {
        auto child = hook->start("cleanup", p.authz, p.challenge, p.keyAuth);
        if (!child) {
          events_.emit({"KMS_DNS01_CLEANUP_FAILED", storage::EventLevel::warning, std::nullopt,
                        child.error().toString() + " (the TXT record for " + p.authz.identifier.value + " stays)",
                        {{"domain", p.authz.identifier.value}}});
          continue;
        }
        std::lock_guard<std::mutex> lock(hooksMutex_);
        cleanups_.push_back(Cleanup{std::move(*child), clock_.now(), p.authz.identifier.value});
      }
    } else if (auto solver = solvers.find(p.type); solver != solvers.end()) {
      solver->second->cleanup(p.authz, p.challenge, p.keyAuth);
    }
  }
  reapCleanups();
}

void Steps::reapCleanups() {
  std::vector<Cleanup> done;
  {
    std::lock_guard<std::mutex> lock(hooksMutex_);
    const TimePoint t = clock_.now();
    for (auto it = cleanups_.begin(); it != cleanups_.end();) {
      if (it->child->exitStatus() || t - it->started > hookTimeout) {
        done.push_back(std::move(*it));
        it = cleanups_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (Cleanup& c : done) {
    auto status = c.child->exitStatus();
    if (!status || !exitedCleanly(*status)) {
      events_.emit({"KMS_DNS01_CLEANUP_FAILED", storage::EventLevel::warning, std::nullopt,
                    "dns-01 hook 'cleanup' for " + c.domain + " " +
                        (status ? "failed with " + describeExit(*status) : std::string("ran too long and was killed")) +
                        " (the TXT record may stay)",
                    {{"domain", c.domain}}});
    }
  }
}

Steps::~Steps() {
  // Cleanup hooks still running get 2 s in all to finish before they are killed (the
  // stop must be over within 10 s).
  std::lock_guard<std::mutex> lock(hooksMutex_);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  for (Cleanup& c : cleanups_) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    (void)c.child->wait(std::max(left, std::chrono::milliseconds(0)));
  }
}

Result<Millis> Steps::pollWait(PollState& poll, std::optional<std::chrono::seconds> retryAfter, const std::string& what,
                               const std::string& url) {
  const TimePoint t = clock_.now();
  if (!poll.since) {
    poll.since = t;
  }
  if (t - *poll.since > pollDeadline) {
    Error e;
    e.code = Errc::timeout;
    e.retryable = true;
    e.message = what + " still not final after polling for " +
                std::to_string(std::chrono::duration_cast<std::chrono::seconds>(pollDeadline).count()) + " s";
    e.context = url;
    poll = PollState{0, std::nullopt, poll.action};
    return fail(e);
  }
  Millis wait = pollFirst * (1 << std::min(poll.round, 16));
  wait = std::min(wait, pollMax);
  // The CA's Retry-After is a minimum: jitter only adds to it.
  double factor = 0.9 + 0.2 * random_.unit();
  if (retryAfter) {
    wait = std::chrono::duration_cast<Millis>(*retryAfter);
    factor = 1.0 + 0.1 * random_.unit();
  }
  ++poll.round;
  return Millis(static_cast<Millis::rep>(static_cast<double>(wait.count()) * factor));
}

Result<acme::IssueRequest> Steps::requestFor(const config::CertificateConfig& c, pki::Signer* certKey) {
  acme::IssueRequest request;
  if (c.spc) {
    auto der = pki::TnAuthList::forSpc(*c.spc).toDer();
    if (!der) {
      return fail(der.error());
    }
    // US practice: padded standard base64, the same bytes as the token's tkvalue (spec §9.3).
    request.identifiers.push_back({"TNAuthList", pki::base64Encode(*der)});
    auto csr = pki::CsrRequest::shaken(*c.spc, c.subjectO.value_or(""), c.subjectC);
    if (!csr) {
      return fail(csr.error());
    }
    request.csr = std::move(*csr);
    std::string spc = *c.spc;
    request.extraCheck = [spc](const std::vector<pki::Certificate>& chain) {
      return pki::checkShakenProfile(chain.front(), spc);
    };
  } else {
    request.csr.dnsNames = c.dnsNames;
  }
  for (const std::string& n : c.dnsNames) {
    request.identifiers.push_back({"dns", n});
  }
  request.challengeType = config::toString(c.challenge);
  request.certKey = certKey;
  request.trustAnchors = s_.trustAnchors();
  return request;
}

// --- planned: a key recorded with its order -------------------------------------------

bool Steps::earlyByTheCa(const CertSnapshot& snap, const config::CertificateConfig& c) const {
  if (!snap.active || snap.activeKeyMissing || snap.renewRequested) {
    return false;  // nothing valid, a lost key, or the operator: never counted
  }
  if (snap.activeDistrusted) {
    return s_.distrustedWithItsRootApproved(snap.active->id);
  }
  // Renewing before the earliest lifetime-based time (its jitter at the full 10 %): the
  // CA's ARI window brought it forward.
  const std::int64_t earliestOwn =
      fractionRenewalTime(snap.active->notBefore, snap.active->notAfter, c.renewBeforeFraction, 1.0);
  return snap.cert.renewAt.has_value() && *snap.cert.renewAt < earliestOwn;
}

Result<StepOutcome> Steps::startOrder(const CertSnapshot& snap, const config::CertificateConfig& c) {
  // reuse_key: the order uses the active certificate's key and starts at key_ready;
  // otherwise a new key is planned (recorded now, generated by the next step).
  // An emergency renewal (the active chain's root left the CA list) takes a new key.
  const bool reuse = c.reuseKey && snap.active && !snap.activeKeyMissing && !snap.activeDistrusted;
  std::optional<Services::PlannedKey> planned;
  if (!reuse) {
    auto key = s_.planKey(c.name + "-" + std::to_string(now()), storage::KeyPurpose::certificate);
    if (!key) {
      return fail(key.error());
    }
    planned = std::move(*key);
  }
  const std::string keyUri = reuse ? snap.active->keyUri : planned->row.keyUri;
  const CertState step = reuse ? CertState::keyReady : CertState::planned;
  // Key record and order in one transaction: a kill leaves nothing or an order whose key
  // is recorded (and generated by the next step, or found already generated).
  auto tx = s_.store().with([&](storage::Store& st) {
    return st.transact([&]() -> Result<void> {
      if (planned) {
        if (auto k = st.recordKey(planned->row); !k) {
          return fail(k.error());
        }
      }
      auto o = st.createOrder(c.name, step);
      if (!o) {
        return fail(o.error());
      }
      storage::OrderUpdate u = at(step);
      u.keyUri = keyUri;
      if (earlyByTheCa(snap, c)) {
        u.cause = "ca";
      }
      if (auto r = st.advanceOrder(o->id, u); !r) {
        return fail(r.error());
      }
      return ok();
    });
  });
  if (!tx) {
    return fail(tx.error());
  }
  if (planned) {
    std::lock_guard<std::mutex> lock(checkedMutex_);
    plannedHere_.insert(keyUri);
  }
  failpoint("key_recorded");
  std::string why = !snap.active            ? "no valid certificate"
                    : snap.activeKeyMissing ? "the active key is missing"
                    : snap.renewRequested   ? "renewal requested"
                                            : "renewal due";
  events_.emit({"KMS_RENEWAL_STARTED",
                storage::EventLevel::info,
                c.name,
                "order started: " + why + (reuse ? " (key reused)" : ""),
                {{"key", keyUri}, {"reason", why}}});
  return StepOutcome{};
}

// --- key_ready ------------------------------------------------------------------------

Result<StepOutcome> Steps::generateKey(const storage::Order& order, const config::CertificateConfig& c) {
  const std::string uriText = order.keyUri.value_or("");
  auto uri = hsm::Pkcs11Uri::parse(uriText);
  if (!uri) {
    return fail(uri.error());
  }
  // Recorded by an earlier process? Then it may have generated the key before a kill: look
  // on the token first. A key recorded by this process is generated without a search.
  bool fresh = false;
  {
    std::lock_guard<std::mutex> lock(checkedMutex_);
    fresh = plannedHere_.erase(uriText) != 0;
  }
  std::unique_ptr<hsm::KeySigner> existing;
  if (!fresh) {
    auto found = s_.token().signer(*uri);
    if (!found && found.error().code != Errc::notFound) {
      return fail(found.error());
    }
    if (found) {
      existing = std::move(*found);
    }
  }
  if (!existing) {
    auto key = s_.generate(uri->path("object").value_or(c.name), uri->id());
    if (!key) {
      return fail(key.error());
    }
    existing = std::move(*key);
    failpoint("key_generated");
  }
  s_.keepOrderKey(uriText, std::move(existing));
  if (auto r = advance(order, at(CertState::keyReady)); !r) {
    return fail(r.error());
  }
  return StepOutcome{};
}

// --- token_ready (SHAKEN) -------------------------------------------------------------

Result<StepOutcome> Steps::fetchToken(const storage::Order& order, const config::CertificateConfig& c) {
  auto account = s_.account();
  if (!account) {
    return fail(account.error());
  }
  sti_pa::StiPaClient* sp = s_.stiPa();
  if (sp == nullptr) {
    return fail(Errc::config, "spc needs the [sti_pa] section", c.name);
  }
  auto token = sp->spcToken(*c.spc, account->key.publicKey());
  if (!token) {
    return fail(token.error());
  }
  storage::SpcTokenMeta meta;
  meta.spc = token->spc;
  meta.accountKeyFingerprint = token->fingerprint;
  meta.jti = token->jti;
  meta.exp = unixSeconds(token->exp);
  meta.fetchedAt = now();
  auto saved = s_.store().with([&](storage::Store& st) { return st.saveSpcToken(meta); });
  if (!saved) {
    s_.storeWriteFailed(c.name, "record the SPC token's metadata", saved.error());
  }
  if (auto r = advance(order, at(CertState::tokenReady)); !r) {
    return fail(r.error());
  }
  failpoint("token_obtained");
  return StepOutcome{};
}

// --- order_pending --------------------------------------------------------------------

Result<StepOutcome> Steps::newOrder(const CertSnapshot& snap, const config::CertificateConfig& c) {
  auto ca = s_.ca();
  if (!ca) {
    return fail(ca.error());
  }
  // The key must exist before the CA hears of the order (a lost object file, an old run).
  if (auto key = s_.orderKey(c.name, snap.order->keyUri.value_or("")); !key) {
    return key.error().code == Errc::notFound ? abandonForMissingKey(*snap.order, c) : fail(key.error());
  }
  auto request = requestFor(c, nullptr);
  if (!request) {
    return fail(request.error());
  }
  std::optional<std::string> replaces;
  if (snap.active && snap.active->ariCertId && ca->client.directory().renewalInfo) {
    replaces = snap.active->ariCertId;
  }
  auto created = ca->client.newOrder(ca->account, request->identifiers, replaces);
  if (!created && replaces && created.error().nativeName == "alreadyReplaced") {
    // An order for this renewal reached the CA before a kill and was never recorded: the CA
    // lets one order replace a certificate, so this one goes without `replaces`.
    events_.emit({"KMS_ORDER_REPLACES_DROPPED",
                  storage::EventLevel::warning,
                  c.name,
                  "the CA says certificate " + *replaces + " was already replaced; ordering without replaces",
                  {{"replaces", *replaces}}});
    created = ca->client.newOrder(ca->account, request->identifiers, std::nullopt);
  }
  if (!created) {
    return fail(created.error());
  }
  storage::OrderUpdate u = at(CertState::orderPending);
  u.orderUrl = created->url;
  u.authorizationUrlsJson = nlohmann::json(created->authorizations).dump();
  u.finalizeUrl = created->finalize;
  u.acmeStatus = created->status;
  if (auto r = advance(*snap.order, u); !r) {
    return fail(r.error());
  }
  failpoint("order_created");
  events_.emit(
      {"KMS_ORDER_CREATED", storage::EventLevel::info, c.name, "order " + created->url, {{"order", created->url}}});
  return StepOutcome{};
}

// --- authorized -----------------------------------------------------------------------

Result<StepOutcome> Steps::authorize(const storage::Order& order, const config::CertificateConfig& c, PollState& poll) {
  auto ca = s_.ca();
  if (!ca) {
    return fail(ca.error());
  }
  const std::string url = order.orderUrl.value_or("");
  auto o = ca->client.getOrder(ca->account, url);
  if (!o) {
    return fail(o.error());
  }
  if (o->status == "ready") {
    storage::OrderUpdate u = at(CertState::authorized);
    u.acmeStatus = o->status;
    if (auto r = advance(order, u); !r) {
      return fail(r.error());
    }
    withdraw(order.id);
    return StepOutcome{};
  }
  if (o->status == "processing" || o->status == "valid") {  // finalized before a kill
    if (auto r = advance(order, at(CertState::finalizing)); !r) {
      return fail(r.error());
    }
    withdraw(order.id);
    return StepOutcome{};
  }
  auto solvers = s_.solvers();
  const std::string type = config::toString(c.challenge);
  std::optional<std::chrono::seconds> retryAfter = o->retryAfter;
  bool answeredNow = false;   // a challenge was answered in this step ...
  bool decidedAtOnce = true;  // ... and every answer came back already decided
  for (const std::string& authzUrl : o->authorizations) {
    auto authz = ca->client.getAuthorization(ca->account, authzUrl);
    if (!authz) {
      return fail(authz.error());
    }
    if (authz->status == "valid") {
      continue;
    }
    auto ch = std::find_if(authz->challenges.begin(), authz->challenges.end(),
                           [&](const acme::Challenge& x) { return x.type == type; });
    if (authz->status != "pending") {
      Error e = protocolError("authorization for " + authz->identifier.value + " is " + authz->status, authzUrl);
      if (ch != authz->challenges.end() && ch->error) {
        e = *ch->error;
        e.code = e.code == Errc::internal ? Errc::protocol : e.code;
        e.message = type + " challenge for " + authz->identifier.value + " failed: " + e.message;
        e.context = authzUrl;
      }
      return fail(nonRetryable(e));
    }
    if (o->status == "invalid") {
      continue;  // only looking for the authorization that failed
    }
    if (ch == authz->challenges.end()) {
      return fail(nonRetryable(Error{Errc::unsupported,
                                     "the CA offers no " + type + " challenge for " + authz->identifier.value,
                                     authzUrl,
                                     0,
                                     {},
                                     false,
                                     std::nullopt}));
    }
    auto solver = solvers.find(type);
    if (solver == solvers.end()) {
      return fail(nonRetryable(
          Error{Errc::unsupported, "no solver configured for " + type, authzUrl, 0, {}, false, std::nullopt}));
    }
    // What reaches a hook's environment and the logs from here is checked first.
    std::vector<acme::Identifier> asked;
    if (c.spc) {
      asked.push_back({"TNAuthList", ""});
    }
    for (const std::string& n : c.dnsNames) {
      asked.push_back({"dns", n});
    }
    if (auto checked = acme::checkAuthorization(*authz, *ch, asked); !checked) {
      return fail(nonRetryable(checked.error()));
    }
    const std::string keyAuth = acme::keyAuthorization(ch->token, ca->account.key.publicKey());
    // Answered already (by this process, or by one killed after recording it): a CA that
    // keeps the challenge "pending" while it validates (Pebble) is not answered again.
    const bool answeredBefore = order.challengeUrl == ch->url || wasAnswered(order.id, ch->url);
    if (ch->status == "pending" && !answeredBefore) {
      Result<std::string> payload = std::string("{}");
      if (type == "dns-01") {
        // The operator's hook may take minutes (DNS propagation): it runs on its own and
        // the step runs again when it exits, instead of a worker waiting for it.
        auto waiting = dnsPresent(*authz, *ch, keyAuth);
        if (!waiting) {
          return fail(waiting.error());
        }
        if (*waiting) {
          return **waiting;
        }
      } else {
        payload = solver->second->present(*authz, *ch, keyAuth);
        if (!payload) {
          solver->second->cleanup(*authz, *ch, keyAuth);
          return fail(payload.error());
        }
      }
      remember(order.id, *authz, *ch, keyAuth, type);
      auto answered = ca->client.respondChallenge(ca->account, ch->url, *payload);
      if (!answered) {
        return fail(answered.error());
      }
      markAnswered(order.id, ch->url);
      // A CA that validated while answering (kms-lab, some STI-CAs) is read back at once.
      decidedAtOnce = decidedAtOnce && (answered->status == "valid" || answered->status == "invalid");
      storage::OrderUpdate u = at(CertState::orderPending);
      u.challengeUrl = ch->url;
      if (auto r = advance(order, u); !r) {
        return fail(r.error());
      }
      failpoint("challenge_answered");
      answeredNow = true;
      events_.emit({"KMS_CHALLENGE_ANSWERED",
                    storage::EventLevel::info,
                    c.name,
                    type + " for " + authz->identifier.value,
                    {{"challenge", ch->url}}});
    } else if (type == "http-01") {
      // Answered by an earlier process: serve the answer again while the CA validates (a
      // dns-01 record was in place before the challenge was answered; tkauth-01 is in the POST).
      auto payload = solver->second->present(*authz, *ch, keyAuth);
      if (!payload) {
        return fail(payload.error());
      }
      if (remember(order.id, *authz, *ch, keyAuth, type)) {
        events_.emit({"KMS_CHALLENGE_RESUMED",
                      storage::EventLevel::info,
                      c.name,
                      type + " answer for " + authz->identifier.value + " served again while the CA validates",
                      {{"challenge", ch->url}}});
      }
    }
    if (authz->retryAfter) {
      retryAfter = authz->retryAfter;
    }
  }
  if (o->status == "invalid") {
    Error e = o->error.value_or(protocolError("order is invalid", url));
    e.message = "order invalid: " + e.message;
    return fail(nonRetryable(e));
  }
  if (answeredNow && decidedAtOnce) {
    return StepOutcome{};  // read the authorizations again now
  }
  auto wait = pollWait(poll, retryAfter, "authorization", url);
  if (!wait) {
    return fail(wait.error());
  }
  return pollAgainAfter(*wait);
}

// --- finalizing -----------------------------------------------------------------------

Result<StepOutcome> Steps::finalize(const storage::Order& order, const config::CertificateConfig& c, PollState& poll) {
  auto ca = s_.ca();
  if (!ca) {
    return fail(ca.error());
  }
  auto key = s_.orderKey(c.name, order.keyUri.value_or(""));
  if (!key) {
    return key.error().code == Errc::notFound ? abandonForMissingKey(order, c) : fail(key.error());
  }
  auto request = requestFor(c, key->get());
  if (!request) {
    return fail(request.error());
  }
  auto csr = pki::buildCsr(request->csr, **key);
  if (!csr) {
    return fail(csr.error());
  }
  acme::Order o;
  o.url = order.orderUrl.value_or("");
  o.finalize = order.finalizeUrl.value_or("");
  auto finalized = ca->client.finalize(ca->account, o, *csr);
  if (!finalized) {
    if (finalized.error().nativeName == "orderNotReady") {
      // Finalized by an earlier process: carry on with the order as it is.
      auto current = ca->client.getOrder(ca->account, o.url);
      if (current && (current->status == "processing" || current->status == "valid")) {
        if (auto r = advance(order, at(CertState::finalizing)); !r) {
          return fail(r.error());
        }
        return StepOutcome{};
      }
    }
    return fail(finalized.error());
  }
  storage::OrderUpdate u = at(CertState::finalizing);
  u.acmeStatus = finalized->status;
  u.certificateUrl = finalized->certificate;
  if (auto r = advance(order, u); !r) {
    return fail(r.error());
  }
  failpoint("finalized");
  events_.emit({"KMS_ORDER_FINALIZED",
                storage::EventLevel::info,
                c.name,
                "CSR sent, order " + finalized->status,
                {{"order", o.url}}});
  if (finalized->status == "processing") {
    // Honour the CA's Retry-After before the first poll.
    PollState fresh{0, std::nullopt, Action::awaitIssuance};
    auto wait = pollWait(fresh, finalized->retryAfter, "order", o.url);
    if (!wait) {
      return fail(wait.error());
    }
    poll = fresh;
    return pollAgainAfter(*wait);
  }
  return StepOutcome{};
}

// --- issued ---------------------------------------------------------------------------

Result<StepOutcome> Steps::awaitIssuance(const storage::Order& order, const config::CertificateConfig& c,
                                         PollState& poll) {
  auto ca = s_.ca();
  if (!ca) {
    return fail(ca.error());
  }
  const std::string url = order.orderUrl.value_or("");
  auto o = ca->client.getOrder(ca->account, url);
  if (!o) {
    return fail(o.error());
  }
  if (o->status == "processing") {
    auto wait = pollWait(poll, o->retryAfter, "order", url);
    if (!wait) {
      return fail(wait.error());
    }
    return pollAgainAfter(*wait);
  }
  if (o->status == "ready") {  // the finalize never reached the CA
    if (auto r = advance(order, at(CertState::authorized)); !r) {
      return fail(r.error());
    }
    return StepOutcome{};
  }
  if (o->status != "valid") {
    Error e = o->error.value_or(protocolError("order ended " + o->status, url));
    return fail(nonRetryable(e));
  }
  auto key = s_.orderKey(c.name, order.keyUri.value_or(""));
  if (!key) {
    return key.error().code == Errc::notFound ? abandonForMissingKey(order, c) : fail(key.error());
  }
  auto request = requestFor(c, key->get());
  if (!request) {
    return fail(request.error());
  }
  if (request->trustAnchors.empty() && s_.stiPa() != nullptr) {
    // Fail closed: a chain is never accepted unchecked while the CA list is not yet known.
    Error e{Errc::config,
            "no trust anchors to check the issued chain against: [acme] trust_anchors is not set and no STI-PA "
            "CA list has been kept yet",
            c.name, 0, {}, true, std::nullopt};
    return fail(e);
  }
  auto chain = acme::downloadCheckedChain(ca->client, ca->account, *request, *o);
  if (!chain) {
    return fail(chain.error());
  }
  failpoint("downloaded");
  const pki::Certificate& leaf = chain->chain.front();
  storage::IssuedCert row;
  row.certName = c.name;
  row.serial = leaf.serialHex();
  row.notBefore = unixSeconds(leaf.notBefore());
  row.notAfter = unixSeconds(leaf.notAfter());
  row.chainPem = chain->pem;
  row.keyUri = *order.keyUri;
  if (auto id = leaf.ariCertId()) {
    row.ariCertId = *id;
  }
  auto tx = s_.store().with([&](storage::Store& st) {
    return st.transact([&]() -> Result<void> {
      if (auto id = st.insertIssued(row); !id) {  // idempotent for a resumed order
        return fail(id.error());
      }
      storage::OrderUpdate u = at(CertState::issued);
      u.acmeStatus = o->status;
      u.certificateUrl = o->certificate;
      if (auto r = st.advanceOrder(order.id, u); !r) {
        return fail(r.error());
      }
      return ok();
    });
  });
  if (!tx) {
    return fail(tx.error());
  }
  failpoint("recorded");
  events_.emit({"KMS_CERT_ISSUED",
                storage::EventLevel::info,
                c.name,
                "serial " + row.serial + " not after " + isoTime(row.notAfter),
                {{"serial", row.serial}, {"not_after", isoTime(row.notAfter)}}});
  return StepOutcome{};
}

Error Steps::publishFailed(const std::string& cert, Error e) {
  e.message = "publish to [publisher] web_root: " + e.message;
  e.retryable = true;  // a full or read-only disk can be mended; the certificate stays valid
  events_.emit({"KMS_PUBLISH_FAILED", storage::EventLevel::error, cert, e.toString(), {}});
  return e;
}

Result<storage::IssuedCert> Steps::orderCertificate(const storage::Order& order, const config::CertificateConfig& c,
                                                    const char* step) {
  auto issued = s_.store().with([&](storage::Store& st) { return st.listIssued(c.name); });
  if (!issued) {
    return fail(issued.error());
  }
  auto row = issuedWithKey(*issued, order.keyUri.value_or(""));
  if (!row) {
    return fail(Errc::internal, std::string("order at ") + step + " has no recorded certificate", c.name);
  }
  return std::move(*row);
}

// --- published ------------------------------------------------------------------------

Result<StepOutcome> Steps::publish(const storage::Order& order, const config::CertificateConfig& c, PollState& poll) {
  auto row = orderCertificate(order, c, "issued");
  if (!row) {
    return fail(row.error());
  }
  auto published = s_.webRoot().writeImmutable(c.name, row->serial, row->chainPem);
  if (!published) {
    return fail(publishFailed(c.name, published.error()));
  }
  if (s_.config().publisher.publicationCheck == config::PublicationCheck::fetch) {
    // What a verifier will get from the x5u URL must be what was written, before anything
    // relies on it; the previous certificate stays active until then.
    auto problem = checkServed(published->x5uUrl, row->chainPem);
    if (problem) {
      if (poll.round < s_.config().publisher.checkRetries) {
        ++poll.round;
        return pollAgainAfter(std::chrono::seconds(2));
      }
      poll.round = 0;
      Error e{Errc::protocol, "publication check: " + *problem, published->x5uUrl, 0, {}, true, std::nullopt};
      events_.emit({"KMS_PUBLICATION_CHECK_FAILED",
                    storage::EventLevel::error,
                    c.name,
                    e.toString(),
                    {{"x5u", published->x5uUrl}, {"serial", row->serial}}});
      return fail(e);
    }
  }
  auto tx = s_.store().with([&](storage::Store& st) {
    return st.transact([&]() -> Result<void> {
      if (auto r = st.markPublished(row->id, published->x5uUrl, now()); !r) {
        return r;
      }
      if (auto r = st.advanceOrder(order.id, at(CertState::published)); !r) {
        return fail(r.error());
      }
      return ok();
    });
  });
  if (!tx) {
    return fail(tx.error());
  }
  failpoint("published");
  events_.emit({"KMS_CERT_PUBLISHED",
                storage::EventLevel::info,
                c.name,
                "published " + published->x5uUrl,
                {{"serial", row->serial}, {"x5u", published->x5uUrl}}});
  return StepOutcome{};
}

std::optional<std::string> Steps::checkServed(const std::string& url, const std::string& expected) {
  auto got = s_.fetchPublished(url);
  if (!got) {
    return got.error().toString();
  }
  if (got->status != 200) {
    return "GET " + url + " answered HTTP " + std::to_string(got->status);
  }
  if (got->body != expected) {
    return "GET " + url + " served " + std::to_string(got->body.size()) + " bytes that differ from the " +
           std::to_string(expected.size()) + " written";
  }
  return std::nullopt;
}

// --- deploy hook ----------------------------------------------------------------------

Result<StepOutcome> Steps::deploy(const CertSnapshot& snap, const config::CertificateConfig& c) {
  if (!snap.active || !c.deployHook) {
    return StepOutcome{};
  }
  const storage::IssuedCert& active = *snap.active;
  const std::string& hook = *c.deployHook;
  const Millis timeout = std::chrono::duration_cast<Millis>(s_.config().publisher.hookTimeout);
  const std::string outDir = s_.config().daemon.stateDir + "/hook-output";
  const std::string outFile = outDir + "/" + c.name + ".log";
  auto run = awaitHook("deploy " + c.name + "/" + active.serial, timeout, [&] {
    ::mkdir(outDir.c_str(), 0700);
    const std::string chainPath = s_.config().publisher.webRoot + "/" + c.name + ".pem";
    const std::string certPath = s_.config().publisher.webRoot + "/" + c.name + "/" + active.serial + ".pem";
    return ChildProcess::spawn({hook},
                               {"KMS_NAME=" + c.name, "KMS_CERT_PATH=" + certPath, "KMS_CHAIN_PATH=" + chainPath,
                                "KMS_X5U=" + active.x5uUrl.value_or(""), "KMS_KEY_URI=" + active.keyUri,
                                "KMS_SERIAL=" + active.serial, "KMS_NOT_AFTER=" + isoTime(active.notAfter)},
                               outFile);
  });
  if (!run) {
    Error e = run.error();
    e.message = "cannot run the deploy hook: " + e.message;
    e.retryable = true;
    events_.emit(
        {"KMS_DEPLOY_HOOK_FAILED", storage::EventLevel::error, c.name, e.toString(), {{"serial", active.serial}}});
    return fail(e);
  }
  if (run->running) {
    return waitForHook(*run->running, timeout);
  }
  const std::optional<int> status = run->status;
  // What the hook printed, bounded, for the event log (sanitized there).
  std::string output;
  if (std::ifstream in(outFile, std::ios::binary); in) {
    output.resize(4096);
    in.read(output.data(), static_cast<std::streamsize>(output.size()));
    output.resize(static_cast<std::size_t>(in.gcount()));
  }
  if (status && exitedCleanly(*status)) {
    auto tx = s_.store().with([&](storage::Store& st) {
      return st.transact([&]() -> Result<void> {
        if (auto r = st.markDeployed(active.id, now()); !r) {
          return r;
        }
        return st.setState(c.name, CertState::active, std::nullopt);
      });
    });
    if (!tx) {
      return fail(tx.error());
    }
    events_.emit({"KMS_DEPLOY_HOOK_RAN",
                  storage::EventLevel::info,
                  c.name,
                  "deploy hook ran for serial " + active.serial,
                  {{"serial", active.serial}, {"output", output}}});
    return StepOutcome{};
  }
  Error e{Errc::io,
          std::string("deploy hook ") +
              (status ? "failed with " + describeExit(*status)
                      : "ran longer than " + std::to_string(std::chrono::duration_cast<std::chrono::seconds>(timeout).count()) +
                            " s and was killed"),
          hook,
          0,
          {},
          true,
          std::nullopt};
  events_.emit({"KMS_DEPLOY_HOOK_FAILED",
                storage::EventLevel::error,
                c.name,
                e.toString(),
                {{"serial", active.serial}, {"output", output}}});
  return fail(e);
}

// --- active ---------------------------------------------------------------------------

Result<StepOutcome> Steps::activate(const storage::Order& order, const config::CertificateConfig& c) {
  auto row = orderCertificate(order, c, "published");
  if (!row) {
    return fail(row.error());
  }
  if (auto r = s_.webRoot().switchCurrent(c.name, row->chainPem); !r) {
    return fail(publishFailed(c.name, r.error()));
  }
  // The renewal instant without ARI, chosen now with jitter; the CA's window (when it
  // offers one) is read by the next step and replaces it.
  const std::int64_t renewAt =
      fractionRenewalTime(row->notBefore, row->notAfter, c.renewBeforeFraction, random_.unit());
  auto tx = s_.store().with([&](storage::Store& st) {
    return st.transact([&]() -> Result<void> {
      if (auto r = st.closeOrder(order.id, storage::OrderStatus::done); !r) {
        return r;
      }
      if (auto r = st.setState(c.name, CertState::active, std::nullopt); !r) {
        return r;
      }
      return st.setRenewal(c.name, renewAt, s_.ariOffered() ? std::optional<std::int64_t>(now()) : std::nullopt);
    });
  });
  if (!tx) {
    return fail(tx.error());
  }
  failpoint("activated");
  s_.forgetOrderKey(row->keyUri);
  {
    std::lock_guard<std::mutex> lock(checkedMutex_);
    keyChecked_.insert(row->keyUri);
  }
  events_.emit(
      {"KMS_CERT_ACTIVATED",
       storage::EventLevel::info,
       c.name,
       "serial " + row->serial + " active, not after " + isoTime(row->notAfter) + ", x5u " + row->x5uUrl.value_or(""),
       {{"serial", row->serial}, {"x5u", row->x5uUrl.value_or("")}, {"renew_at", isoTime(renewAt)}}});
  StepOutcome out;
  out.activated = *row;
  return out;
}

std::pair<std::int64_t, std::int64_t> Steps::earlyRenewalsUsed(const config::CertificateConfig& c,
                                                              const storage::IssuedCert& active) {
  const std::int64_t window = std::max<std::int64_t>(86400, (active.notAfter - active.notBefore) / 3);
  auto used = s_.store().with([&](storage::Store& st) { return st.countOrdersWithCause(c.name, "ca", now() - window); });
  // The count is a guard: a DB that cannot count does not stop a renewal.
  return {used ? *used : 0, window};
}

std::optional<std::int64_t> Steps::holdAriRenewal(const storage::IssuedCert& active,
                                                  const config::CertificateConfig& c, std::int64_t ariTime) {
  // A CA that asks for every new certificate to be renewed at once would have kmsd renew in a
  // loop, with a new HSM key each time. The CA may bring a renewal forward while the
  // certificate's early-renewal budget lasts; then its window no longer does.
  const std::int64_t ownTime =
      fractionRenewalTime(active.notBefore, active.notAfter, c.renewBeforeFraction, random_.unit());
  if (ariTime >= ownTime) {
    return std::nullopt;
  }
  const auto [used, window] = earlyRenewalsUsed(c, active);
  if (used < kEarlyRenewalBudget) {
    return std::nullopt;
  }
  events_.emit({"KMS_ARI_IGNORED",
                storage::EventLevel::warning,
                c.name,
                "the CA asks for an early renewal again (" + std::to_string(used) +
                    " early renewals the CA brought about in the last " + std::to_string(window) +
                    " s, the budget); renewing at " + isoTime(ownTime) + " instead of " + isoTime(ariTime),
                {{"renew_at", isoTime(ownTime)}, {"ari_time", isoTime(ariTime)}}});
  return ownTime;
}

Result<StepOutcome> Steps::refreshRenewal(const CertSnapshot& snap, const config::CertificateConfig& c) {
  if (!snap.active) {
    return StepOutcome{};
  }
  const storage::IssuedCert& a = *snap.active;
  std::int64_t renewAt =
      snap.cert.renewAt.value_or(fractionRenewalTime(a.notBefore, a.notAfter, c.renewBeforeFraction, random_.unit()));
  std::optional<std::int64_t> nextCheck;
  auto client = s_.acme();
  if (!client && snap.cert.ariNextCheck) {
    // The CA cannot be reached now: keep reading ARI later rather than forget it.
    nextCheck = now() + 3600;
    events_.emit({"KMS_ARI_FAILED",
                  storage::EventLevel::warning,
                  c.name,
                  "renewalInfo: " + client.error().toString() + "; keeping " + isoTime(renewAt),
                  {}});
  } else if (client && (*client)->directory().renewalInfo && a.ariCertId) {
    auto info = (*client)->renewalInfo(*a.ariCertId);
    if (info) {
      // RFC 9773 §4.2: a random instant inside the window; read again when the CA says,
      // and at least daily.
      renewAt = unixSeconds(acme::pickRenewalTime(*info, clock_.now(), random_.next()));
      nextCheck = now() + std::min<std::int64_t>(info->retryAfter.count(), 86400);
      if (auto held = holdAriRenewal(a, c, renewAt)) {
        renewAt = *held;
      }
      events_.emit({"KMS_RENEWAL_PLANNED",
                    storage::EventLevel::info,
                    c.name,
                    "renewal at " + isoTime(renewAt) + " (ARI window " + isoTime(unixSeconds(info->windowStart)) +
                        " .. " + isoTime(unixSeconds(info->windowEnd)) + ")",
                    {{"renew_at", isoTime(renewAt)}, {"source", "ari"}}});
    } else {
      // A failed read waits at least a minute, whatever Retry-After the CA sent with it.
      nextCheck = now() + std::max<std::int64_t>(
                              kMinAriRetrySeconds, info.error().retryAfter ? info.error().retryAfter->count() : 3600);
      events_.emit({"KMS_ARI_FAILED",
                    storage::EventLevel::warning,
                    c.name,
                    "renewalInfo: " + info.error().toString() + "; keeping " + isoTime(renewAt),
                    {}});
    }
  } else if (!snap.cert.renewAt) {
    events_.emit({"KMS_RENEWAL_PLANNED",
                  storage::EventLevel::info,
                  c.name,
                  "renewal at " + isoTime(renewAt),
                  {{"renew_at", isoTime(renewAt)}, {"source", "lifetime"}}});
  }
  auto r = s_.store().with([&](storage::Store& st) { return st.setRenewal(c.name, renewAt, nextCheck); });
  if (!r) {
    return fail(r.error());
  }
  return StepOutcome{};
}

Result<StepOutcome> Steps::abandonForMissingKey(const storage::Order& order, const config::CertificateConfig& c) {
  auto closed =
      s_.store().with([&](storage::Store& st) { return st.closeOrder(order.id, storage::OrderStatus::abandoned); });
  if (!closed) {
    return fail(closed.error());
  }
  events_.emit({"KMS_ORDER_ABANDONED",
                storage::EventLevel::warning,
                c.name,
                "the order's key is not on the token; a new order starts",
                {{"key", order.keyUri.value_or("")}}});
  StepOutcome out;
  withdraw(order.id);
  out.orderClosed = true;
  return out;
}

// --- housekeeping ---------------------------------------------------------------------

Result<int> Steps::retireKeys() {
  const std::int64_t t = now();
  const std::int64_t retain = s_.config().publisher.retain.count();
  auto keys = s_.store().with([&](storage::Store& st) { return st.listRetirableKeys(t, retain); });
  if (!keys) {
    return fail(keys.error());
  }
  int destroyed = 0;
  for (const auto& [uri, cert] : *keys) {
    if (auto r = s_.destroyKey(cert, uri); !r) {
      events_.emit({"KMS_KEY_DESTROY_FAILED",
                    storage::EventLevel::warning,
                    cert,
                    "could not destroy " + uri + ": " + r.error().toString(),
                    {{"key", uri}}});
      continue;
    }
    failpoint("old_key_destroyed");
    ++destroyed;
  }
  // Chains no verifier needs any more leave the web root (a verifier may hold a call
  // signed a minute before a switch: the old x5u keeps working for [publisher] retain).
  auto stale = s_.store().with([&](storage::Store& st) { return st.listStaleChains(t, retain, 1000); });
  if (!stale) {
    return fail(stale.error());
  }
  for (const auto& chain : *stale) {
    if (auto r = s_.webRoot().removeImmutable(chain.certName, chain.serial); !r) {
      events_.emit({"KMS_PUBLISH_FAILED", storage::EventLevel::warning, chain.certName,
                    "could not remove the replaced chain: " + r.error().toString(), {{"serial", chain.serial}}});
      continue;
    }
    auto marked = s_.store().with([&](storage::Store& st) { return st.markUnpublished(chain.issuedId, t); });
    if (!marked) {
      s_.storeWriteFailed(chain.certName, "record an unpublished chain", marked.error());
      continue;
    }
    events_.emit({"KMS_CHAIN_UNPUBLISHED",
                  storage::EventLevel::info,
                  chain.certName,
                  "serial " + chain.serial + " removed from the web root (replaced, expired or revoked)",
                  {{"serial", chain.serial}}});
  }
  return destroyed;
}

Result<std::string> Steps::revoke(const config::CertificateConfig& c, int reason,
                                  const Fields& caller) {
  auto snap = snapshot(c, false);
  if (!snap) {
    return fail(snap.error());
  }
  if (!snap->active) {
    return fail(Errc::notFound, "no active certificate to revoke", c.name);
  }
  auto ca = s_.ca();
  if (!ca) {
    return fail(ca.error());
  }
  auto chain = pki::parsePemChain(snap->active->chainPem);
  if (!chain) {
    return fail(chain.error());
  }
  if (auto r = ca->client.revoke(ca->account, chain->front().der(), reason); !r) {
    return fail(r.error());
  }
  auto marked = s_.store().with([&](storage::Store& st) { return st.markRevoked(snap->active->id, now()); });
  if (!marked) {
    return fail(marked.error());
  }
  Fields fields{{"serial", snap->active->serial}, {"reason", std::to_string(reason)}};
  fields.insert(fields.end(), caller.begin(), caller.end());  // who asked
  events_.emit({"KMS_CERT_REVOKED",
                storage::EventLevel::warning,
                c.name,
                "serial " + snap->active->serial + " revoked (reason " + std::to_string(reason) + ")",
                std::move(fields)});
  return snap->active->serial;
}

}  // namespace kms::daemon
