#include "lifecycle/authorization.h"

#include <algorithm>

#include "acme/jws.h"
#include "common/failpoint.h"
#include "lifecycle/order_record.h"
#include "pki/tn_auth_list.h"

namespace kms::daemon {
namespace {

/// An identifier as an operator reads it: "SPC 1234" for a TNAuthList holding one SPC (not
/// the base64 of its DER), a DNS name as it is.
std::string readable(const acme::Identifier& id) {
  if (id.type == "TNAuthList") {
    if (auto list = pki::TnAuthList::fromIdentifierValue(id.value); list && list->singleSpc()) {
      return "SPC " + *list->singleSpc();
    }
  }
  return id.value;
}

using storage::CertState;

/// Why an authorization that is neither pending nor valid failed: the challenge's own error
/// when the CA gave one. The order cannot succeed any more.
Error failedAuthorization(const acme::Authorization& authz, const acme::Challenge* ch, const std::string& type,
                          const std::string& authzUrl) {
  Error e = protocolError("authorization for " + readable(authz.identifier) + " is " + authz.status, authzUrl);
  if (ch != nullptr && ch->error) {
    e = *ch->error;
    e.code = e.code == Errc::internal ? Errc::protocol : e.code;
    e.message = type + " challenge for " + readable(authz.identifier) + " failed: " + e.message;
    e.context = authzUrl;
  }
  return permanent(e);
}

/// The solver answering `type`; none for dns-01, which the operator's hook answers (dnsPresent).
Result<acme::ChallengeSolver*> solverFor(Services& services, const std::string& type, const std::string& authzUrl) {
  auto solvers = services.ca().solvers();
  if (auto found = solvers.find(type); found != solvers.end()) {
    return found->second;
  }
  if (type == "dns-01") {
    return nullptr;
  }
  return fail(Errc::config, "no solver configured for " + type, authzUrl);
}

}  // namespace

Result<StepOutcome> Authorizer::run(const storage::Order& order, const config::CertificateConfig& c,
                                    PollState& poll) {
  auto at = orderAtTheCa(ctx_, order);
  if (!at) {
    return fail(at.error());
  }
  CaSession& ca = at->ca;
  const acme::Order* o = &at->current;
  const std::string url = order.orderUrl.value_or("");
  if (o->status == "ready") {
    return moveOn(order, *o, CertState::authorized);
  }
  if (o->status == "processing" || o->status == "valid") {  // finalized before a kill
    return moveOn(order, *o, CertState::finalizing);
  }
  std::optional<std::chrono::seconds> retryAfter = o->retryAfter;
  bool answeredNow = false;   // a challenge was answered in this step ...
  bool decidedAtOnce = true;  // ... and every answer came back already decided
  for (const std::string& authzUrl : o->authorizations) {
    auto p = pass(order, c, *o, authzUrl, ca);
    if (!p) {
      return fail(p.error());
    }
    if (p->waiting) {
      return std::move(*p->waiting);
    }
    answeredNow = answeredNow || p->answered;
    decidedAtOnce = decidedAtOnce && p->decided;
    retryAfter = p->retryAfter ? p->retryAfter : retryAfter;
  }
  if (o->status == "invalid") {
    Error e = o->error.value_or(protocolError("order is invalid", url));
    e.message = "order invalid: " + e.message;
    return fail(permanent(e));
  }
  if (answeredNow && decidedAtOnce) {
    return StepOutcome{};  // a CA that validated while answering: read it back at once
  }
  auto wait = polls_.next(poll, retryAfter, "authorization", url);
  if (!wait) {
    return fail(wait.error());
  }
  return pollAgainAfter(*wait);
}

Result<StepOutcome> Authorizer::moveOn(const storage::Order& order, const acme::Order& current, CertState step) {
  storage::OrderUpdate u = orderAt(step);
  u.acmeStatus = current.status;
  if (auto r = advanceOrder(ctx_, order, u); !r) {
    return fail(r.error());
  }
  withdraw(order.id);
  return StepOutcome{};
}

Result<Authorizer::AuthzPass> Authorizer::pass(const storage::Order& order, const config::CertificateConfig& c,
                                               const acme::Order& current, const std::string& authzUrl,
                                               CaSession& ca) {
  auto authz = ca.client.getAuthorization(ca.account, authzUrl);
  if (!authz) {
    return fail(authz.error());
  }
  AuthzPass out;
  out.retryAfter = authz->retryAfter;
  if (authz->status == "valid") {
    return out;
  }
  const std::string type = config::toString(c.challenge);
  auto ch = std::find_if(authz->challenges.begin(), authz->challenges.end(),
                         [&](const acme::Challenge& x) { return x.type == type; });
  const acme::Challenge* offered = ch != authz->challenges.end() ? &*ch : nullptr;
  if (authz->status != "pending") {
    return fail(failedAuthorization(*authz, offered, type, authzUrl));
  }
  if (current.status == "invalid") {
    return out;  // only looking for the authorization that failed
  }
  if (offered == nullptr) {
    return fail(permanent(Error{Errc::unsupported, "the CA offers no " + type + " challenge for " +
                                readable(authz->identifier), authzUrl, 0, {}, Disposition::permanent, std::nullopt}));
  }
  auto solver = solverFor(ctx_.services, type, authzUrl);
  if (!solver) {
    return fail(solver.error());
  }
  // What reaches a hook's environment and the logs from here is checked first.
  if (auto checked = acme::checkAuthorization(*authz, *offered, askedIdentifiers(c)); !checked) {
    return fail(permanent(checked.error()));
  }
  const std::string keyAuth = acme::keyAuthorization(offered->token, ca.account.key.publicKey());
  // Answered already (by this process, or by one killed after recording it): a CA that
  // keeps the challenge "pending" while it validates (Pebble) is not answered again.
  const bool answeredBefore = order.challengeUrl == offered->url || ledger_.wasAnswered(order.id, offered->url);
  if (offered->status == "pending" && !answeredBefore) {
    auto answered = answer(order, c, *authz, *offered, keyAuth, *solver, ca);
    if (answered) {
      answered->retryAfter = out.retryAfter;
    }
    return answered;
  }
  if (type == "http-01") {
    // Answered by an earlier process: serve the answer again while the CA validates (a
    // dns-01 record was in place before the challenge was answered; tkauth-01 is in the POST).
    auto payload = (*solver)->present(*authz, *offered, keyAuth);
    if (!payload) {
      return fail(payload.error());
    }
    if (ledger_.remember(order.id, {*authz, *offered, keyAuth, type})) {
      ctx_.events.emit({"KMS_CHALLENGE_RESUMED", storage::EventLevel::info, c.name,
                        type + " answer for " + readable(authz->identifier) + " served again while the CA validates",
                        {{"challenge", offered->url}}});
    }
  }
  return out;
}

Result<Authorizer::AuthzPass> Authorizer::answer(const storage::Order& order, const config::CertificateConfig& c,
                                                 const acme::Authorization& authz, const acme::Challenge& ch,
                                                 const std::string& keyAuth, acme::ChallengeSolver* solver,
                                                 CaSession& ca) {
  const std::string type = config::toString(c.challenge);
  AuthzPass out;
  Result<std::string> payload = std::string("{}");
  if (type == "dns-01") {
    // The operator's hook may take minutes (DNS propagation): it runs on its own and the
    // step runs again when it exits, instead of a worker waiting for it.
    auto waiting = dnsPresent(authz, ch, keyAuth);
    if (!waiting) {
      return fail(waiting.error());
    }
    if (*waiting) {
      out.waiting = std::move(**waiting);
      return out;
    }
  } else {
    payload = solver->present(authz, ch, keyAuth);
    if (!payload) {
      solver->cleanup(authz, ch, keyAuth);
      return fail(payload.error());
    }
  }
  ledger_.remember(order.id, {authz, ch, keyAuth, type});
  auto answered = ca.client.respondChallenge(ca.account, ch.url, *payload);
  if (!answered) {
    return fail(answered.error());
  }
  failpoint("challenge_sent");  // the CA validates; kmsd has not recorded it
  ledger_.markAnswered(order.id, ch.url);
  out.answered = true;
  out.decided = answered->status == "valid" || answered->status == "invalid";
  storage::OrderUpdate u = orderAt(CertState::orderPending);
  u.challengeUrl = ch.url;
  if (auto r = advanceOrder(ctx_, order, u); !r) {
    return fail(r.error());
  }
  failpoint("challenge_answered");
  ctx_.events.emit({"KMS_CHALLENGE_ANSWERED", storage::EventLevel::info, c.name,
                    type + " for " + readable(authz.identifier), {{"challenge", ch.url}}});
  return out;
}

Result<std::optional<StepOutcome>> Authorizer::dnsPresent(const acme::Authorization& authz,
                                                          const acme::Challenge& challenge,
                                                          const std::string& keyAuth) {
  acme::Dns01Hook* hook = ctx_.services.dns01();
  if (hook == nullptr) {
    // The configuration's doing: retried (at once after a reload that sets one).
    return fail(Errc::config, "no dns-01 hook configured ([acme] dns01_hook)", challenge.url);
  }
  const Millis timeout = hooks_.dnsHookTimeout;
  auto run = hooks_.await("present " + challenge.url, timeout,
                          [&] { return hook->start("present", authz, challenge, keyAuth); });
  if (!run) {
    return fail(run.error());
  }
  if (run->running) {
    return std::optional<StepOutcome>(hooks_.waitFor(*run->running, timeout));
  }
  if (!run->status) {
    return fail(Errc::timeout,
                "dns-01 hook 'present' ran longer than " +
                    std::to_string(std::chrono::duration_cast<std::chrono::seconds>(timeout).count()) +
                    " s and was killed",
                hook->hook());
  }
  if (!exitedCleanly(*run->status)) {
    return fail(Errc::io,
                "dns-01 hook 'present' failed with " + describeExit(*run->status) + " for " + authz.identifier.value,
                hook->hook());
  }
  return std::optional<StepOutcome>();
}

void Authorizer::withdraw(std::int64_t orderId) {
  auto solvers = ctx_.services.ca().solvers();
  for (const ChallengeLedger::Presented& p : ledger_.take(orderId)) {
    if (p.type == "dns-01") {
      // Not waited for: reaped by the next step that passes by.
      if (acme::Dns01Hook* hook = ctx_.services.dns01(); hook != nullptr) {
        auto child = hook->start("cleanup", p.authz, p.challenge, p.keyAuth);
        if (!child) {
          ctx_.events.emit({"KMS_DNS01_CLEANUP_FAILED", storage::EventLevel::warning, std::nullopt,
                            child.error().toString() + " (the TXT record for " + p.authz.identifier.value + " stays)",
                            {{"domain", p.authz.identifier.value}}});
          continue;
        }
        hooks_.keepCleanup(std::move(*child), p.authz.identifier.value);
      }
    } else if (auto solver = solvers.find(p.type); solver != solvers.end()) {
      solver->second->cleanup(p.authz, p.challenge, p.keyAuth);
    }
  }
  hooks_.reapCleanups();
}

}  // namespace kms::daemon
