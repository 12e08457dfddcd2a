#include "store_lifecycle.h"

#include <algorithm>
#include <cstdio>

namespace kms::daemon::test {

using storage::CertState;

Result<CertSnapshot> StoreLifecycle::snapshot(const config::CertificateConfig& c, bool renewRequested) {
  CertSnapshot snap;
  const std::int64_t t = now();
  auto read = store_.with([&](storage::Store& st) -> Result<void> {
    auto cert = st.getCertificate(c.name);
    if (!cert || !*cert) {
      return fail(Errc::notFound, "not in the DB", c.name);
    }
    snap.cert = **cert;
    auto order = st.getOpenOrder(c.name);
    if (!order) {
      return fail(order.error());
    }
    snap.order = *order;
    auto issued = st.listIssued(c.name);
    if (!issued) {
      return fail(issued.error());
    }
    for (auto& i : *issued) {
      if (i.publishedAt) {
        if (!i.revokedAt && i.notAfter > t) {
          snap.active = i;
        }
        break;
      }
    }
    return ok();
  });
  if (!read) {
    return fail(read.error());
  }
  snap.renewRequested = renewRequested;
  snap.renewBeforeFraction = c.renewBeforeFraction;
  return snap;
}

int StoreLifecycle::count(const std::string& cert, Action action) const {
  return static_cast<int>(std::count(log.begin(), log.end(), Key{cert, action}));
}

Result<StepOutcome> StoreLifecycle::run(Action action, const CertSnapshot& snap, const config::CertificateConfig& c,
                                        PollState& poll) {
  log.emplace_back(c.name, action);
  ++poll.round;
  const bool atCa = needsSlot(action);
  if (atCa) {
    atCaMost = std::max(atCaMost, ++atCaNow);
  }
  auto result = perform(action, snap, c);
  if (atCa) {
    --atCaNow;
  }
  return result;
}

Result<StepOutcome> StoreLifecycle::perform(Action action, const CertSnapshot& snap,
                                            const config::CertificateConfig& c) {
  const Key which{c.name, action};
  if (auto f = failures.find(which); f != failures.end() && !f->second.empty()) {
    Error e = f->second.front();
    f->second.pop_front();
    return fail(e);
  }
  if (auto p = polls.find(which); p != polls.end() && !p->second.empty()) {
    const Millis wait = p->second.front();
    p->second.pop_front();
    return pollAgainAfter(wait);
  }
  switch (action) {
    case Action::startOrder: {
      auto r = store_.with([&](storage::Store& st) -> Result<void> {
        storage::HsmKey key;
        char hex[16];
        (void)std::snprintf(hex, sizeof hex, "%02x", ++serial_);
        key.ckaIdHex = hex;
        key.keyUri = "pkcs11:id=" + c.name + "-" + key.ckaIdHex;
        key.label = c.name;
        key.purpose = storage::KeyPurpose::certificate;
        if (auto k = st.recordKey(key); !k) {
          return fail(k.error());
        }
        auto o = st.createOrder(c.name, CertState::planned);
        if (!o) {
          return fail(o.error());
        }
        storage::OrderUpdate u;
        u.step = CertState::planned;
        u.keyUri = key.keyUri;
        return st.advanceOrder(o->id, u).map([](const storage::Order&) {});
      });
      return r ? Result<StepOutcome>(StepOutcome{}) : fail(r.error());
    }
    case Action::generateKey:
      return advance(snap, CertState::keyReady);
    case Action::newOrder:
      return advance(snap, CertState::orderPending);
    case Action::authorize:
      return advance(snap, CertState::authorized);
    case Action::finalize:
      return advance(snap, CertState::finalizing);
    case Action::awaitIssuance:
      return issue(snap, c);
    case Action::publish:
      return advance(snap, CertState::published);
    case Action::activate:
      return activate(snap, c);
    default:
      return StepOutcome{};
  }
}

Result<StepOutcome> StoreLifecycle::advance(const CertSnapshot& snap, CertState step) {
  storage::OrderUpdate u;
  u.step = step;
  auto r = store_.with([&](storage::Store& st) { return st.advanceOrder(snap.order->id, u); });
  return r ? Result<StepOutcome>(StepOutcome{}) : fail(r.error());
}

Result<StepOutcome> StoreLifecycle::issue(const CertSnapshot& snap, const config::CertificateConfig& c) {
  storage::IssuedCert row;
  row.certName = c.name;
  char serial[16];
  (void)std::snprintf(serial, sizeof serial, "%04x", ++serial_);
  row.serial = serial;
  row.notBefore = now();
  row.notAfter = now() + lifetime;
  row.chainPem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
  row.keyUri = *snap.order->keyUri;
  auto r = store_.with([&](storage::Store& st) { return st.insertIssued(row); });
  if (!r) {
    return fail(r.error());
  }
  return advance(snap, CertState::issued);
}

Result<StepOutcome> StoreLifecycle::activate(const CertSnapshot& snap, const config::CertificateConfig& c) {
  storage::IssuedCert active;
  auto r = store_.with([&](storage::Store& st) -> Result<void> {
    auto issued = st.listIssued(c.name);
    if (!issued || issued->empty()) {
      return fail(Errc::internal, "nothing issued", c.name);
    }
    active = issued->front();
    if (auto m = st.markPublished(active.id, "https://cr.example/" + c.name, now()); !m) {
      return m;
    }
    if (auto m = st.closeOrder(snap.order->id, storage::OrderStatus::done); !m) {
      return m;
    }
    if (auto m = st.setState(c.name, CertState::active, std::nullopt); !m) {
      return m;
    }
    return st.setRenewal(c.name, fractionRenewalTime(active.notBefore, active.notAfter, 0.333, 0.5), std::nullopt);
  });
  if (!r) {
    return fail(r.error());
  }
  StepOutcome out;
  out.activated = active;
  out.orderClosed = true;
  return out;
}

Result<void> StoreLifecycle::abandon(const storage::Order& order, const std::string&,
                                     const std::optional<std::string>& destroyKey, const std::string&) {
  if (destroyKey) {
    destroyedKeys.push_back(*destroyKey);
  }
  return store_.with([&](storage::Store& st) { return st.closeOrder(order.id, storage::OrderStatus::abandoned); });
}

}  // namespace kms::daemon::test
