#include "lifecycle/steps.h"

#include "lifecycle/authorization.h"
#include "lifecycle/deployment.h"
#include "lifecycle/hook_runner.h"
#include "lifecycle/housekeeping.h"
#include "lifecycle/issuance.h"
#include "lifecycle/order_closer.h"
#include "lifecycle/order_steps.h"
#include "lifecycle/poll_timing.h"
#include "lifecycle/publication.h"
#include "lifecycle/renewal_timing.h"
#include "lifecycle/revocation.h"
#include "lifecycle/snapshot.h"

namespace kms::daemon {

Steps::Steps(Services& services, const TrustState& trust, const Clock& clock, Random& random, EventSink& events)
    : ctx_{services, trust, clock, random, events},
      polls_(std::make_unique<PollTiming>(clock, random)),
      hooks_(std::make_unique<HookRunner>(clock, events)),
      timing_(std::make_unique<RenewalTiming>(ctx_)),
      snapshots_(std::make_unique<SnapshotReader>(ctx_, *timing_)),
      authorizer_(std::make_unique<Authorizer>(ctx_, *hooks_, *polls_)),
      closer_(std::make_unique<OrderCloser>(ctx_, *authorizer_)),
      orders_(std::make_unique<OrderSteps>(ctx_, *timing_, *closer_)),
      issuance_(std::make_unique<Issuance>(ctx_, *polls_, *closer_)),
      publication_(std::make_unique<Publication>(ctx_, *snapshots_)),
      deployment_(std::make_unique<Deployment>(ctx_, *hooks_)),
      housekeeping_(std::make_unique<Housekeeping>(ctx_)),
      revocation_(std::make_unique<Revocation>(ctx_, *snapshots_)) {}

Steps::~Steps() = default;

Result<StepOutcome> Steps::run(Action action, const CertSnapshot& snap, const config::CertificateConfig& c,
                               PollState& poll) {
  if (poll.action != action) {
    poll = PollState{0, std::nullopt, action};
  }
  hooks_->reapCleanups();
  switch (action) {
    case Action::wait:
      return StepOutcome{};
    case Action::startOrder:
      return orders_->startOrder(snap, c);
    case Action::refreshRenewal:
      return timing_->refresh(snap, c);
    case Action::deploy:
      return deployment_->deploy(snap, c);
    default:
      return runOrderStep(action, snap, c, poll);
  }
}

Result<StepOutcome> Steps::runOrderStep(Action action, const CertSnapshot& snap, const config::CertificateConfig& c,
                                        PollState& poll) {
  if (!snap.order) {
    return fail(Errc::internal, std::string("no open order for ") + toString(action), c.name);
  }
  const storage::Order& o = *snap.order;
  switch (action) {
    case Action::generateKey:
      return orders_->generateKey(o, c);
    case Action::fetchToken:
      return orders_->fetchToken(o, c);
    case Action::newOrder:
      return orders_->newOrder(snap, c);
    case Action::authorize:
      return authorizer_->run(o, c, poll);
    case Action::finalize:
      return issuance_->finalize(o, c, poll);
    case Action::awaitIssuance:
      return issuance_->awaitIssuance(o, c, poll);
    case Action::publish:
      return publication_->publish(o, c, poll);
    case Action::activate:
      return publication_->activate(o, c);
    default:
      return fail(Errc::internal, std::string("unexpected action ") + toString(action), c.name);
  }
}

Result<CertSnapshot> Steps::snapshot(const config::CertificateConfig& c, bool renewRequested) {
  return snapshots_->read(c, renewRequested);
}

Result<void> Steps::abandon(const storage::Order& order, const std::string& cert,
                            const std::optional<std::string>& destroyKey, const std::string& why) {
  return closer_->abandon(order, cert, destroyKey, why);
}

Result<int> Steps::retireKeys() {
  return housekeeping_->run();
}

Result<std::string> Steps::revoke(const config::CertificateConfig& c, int reason, const Fields& caller) {
  return revocation_->revoke(c, reason, caller);
}

}  // namespace kms::daemon
