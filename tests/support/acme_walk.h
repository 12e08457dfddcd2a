#pragma once
// One certificate through the ACME operations kmsd's lifecycle uses (acme/client.h and
// acme/issuer.h), each called in the plainest order: for tests of those operations and of a
// CA (Pebble, kms-lab). No resume and no retry: how kmsd sequences, resumes and retries them
// is tested through kmsd itself (kmsd_once, crash and SHAKEN tests).

#include <chrono>
#include <functional>
#include <string>
#include <thread>

#include "acme/client.h"
#include "acme/issuer.h"
#include "acme/jws.h"
#include "pki/csr.h"

namespace kms::test {

/// Makes the answer to one challenge available and returns the payload to POST.
using PresentFn = std::function<Result<std::string>(const acme::Authorization&, const acme::Challenge&,
                                                    const std::string& keyAuthorization)>;

/// `solver`'s present, as a PresentFn.
inline PresentFn presentWith(acme::ChallengeSolver& solver) {
  return [&solver](const acme::Authorization& a, const acme::Challenge& c, const std::string& keyAuth) {
    return solver.present(a, c, keyAuth);
  };
}

/// Reads the object at `url` with `get` until its status leaves pending/processing, every
/// 10 ms for at most 30 s (Errc::timeout then).
template <typename T, typename Get>
Result<T> readUntilDecided(Get get, const std::string& url) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  for (;;) {
    Result<T> current = get(url);
    if (!current || (current->status != "pending" && current->status != "processing")) {
      return current;
    }
    if (std::chrono::steady_clock::now() > end) {
      return fail(Errc::timeout, "still " + current->status + " after 30 s", url);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

inline Result<acme::Order> orderDecided(acme::AcmeClient& client, const acme::AccountRef& ref, const std::string& url) {
  return readUntilDecided<acme::Order>([&](const std::string& u) { return client.getOrder(ref, u); }, url);
}

inline Result<acme::Authorization> authorizationDecided(acme::AcmeClient& client, const acme::AccountRef& ref,
                                                        const std::string& url) {
  return readUntilDecided<acme::Authorization>([&](const std::string& u) { return client.getAuthorization(ref, u); },
                                               url);
}

/// Answers every pending authorization of `order` with `present` (the challenge of
/// `challengeType`, checked by acme::checkAuthorization first) and reads each until decided.
/// An authorization that fails is its challenge's error.
inline Result<void> answerAuthorizations(acme::AcmeClient& client, const acme::AccountRef& ref,
                                         const acme::Order& order, const acme::IssueRequest& request,
                                         const PresentFn& present) {
  for (const std::string& url : order.authorizations) {
    auto authz = client.getAuthorization(ref, url);
    if (!authz) {
      return fail(authz.error());
    }
    if (authz->status == "valid") {
      continue;
    }
    const acme::Challenge* ch = nullptr;
    for (const acme::Challenge& c : authz->challenges) {
      if (c.type == request.challengeType) {
        ch = &c;
      }
    }
    if (ch == nullptr) {
      return fail(Errc::unsupported, "no " + request.challengeType + " challenge offered", url);
    }
    if (auto checked = acme::checkAuthorization(*authz, *ch, request.identifiers); !checked) {
      return fail(checked.error());
    }
    auto payload = present(*authz, *ch, acme::keyAuthorization(ch->token, ref.key.publicKey()));
    if (!payload) {
      return fail(payload.error());
    }
    if (auto answered = client.respondChallenge(ref, ch->url, *payload); !answered) {
      return fail(answered.error());
    }
    auto decided = authorizationDecided(client, ref, url);
    if (!decided) {
      return fail(decided.error());
    }
    if (decided->status != "valid") {
      for (const acme::Challenge& c : decided->challenges) {
        if (c.type == request.challengeType && c.error) {
          return fail(*c.error);
        }
      }
      return fail(Errc::protocol, "authorization is " + decided->status, url);
    }
  }
  return ok();
}

/// newOrder, answerAuthorizations, finalize with a CSR signed by request.certKey, read the
/// order until valid, acme::downloadCheckedChain.
inline Result<acme::IssuedChain> walkOrder(acme::AcmeClient& client, const acme::AccountRef& ref,
                                           const acme::IssueRequest& request, const PresentFn& present) {
  auto order = client.newOrder(ref, request.identifiers, request.replaces);
  if (!order) {
    return fail(order.error());
  }
  if (auto answered = answerAuthorizations(client, ref, *order, request, present); !answered) {
    return fail(answered.error());
  }
  auto ready = orderDecided(client, ref, order->url);
  if (!ready) {
    return fail(ready.error());
  }
  if (ready->status != "ready") {
    return fail(Errc::protocol, "order is " + ready->status + ", not ready", order->url);
  }
  auto csr = pki::buildCsr(request.csr, *request.certKey);
  if (!csr) {
    return fail(csr.error());
  }
  auto finalized = client.finalize(ref, *ready, *csr);
  if (!finalized) {
    return fail(finalized.error());
  }
  auto valid = orderDecided(client, ref, order->url);
  if (!valid) {
    return fail(valid.error());
  }
  if (valid->status != "valid" && valid->error) {
    return fail(*valid->error);
  }
  if (valid->status != "valid") {
    return fail(Errc::protocol, "order is " + valid->status, order->url);
  }
  return acme::downloadCheckedChain(client, ref, request, *valid);
}

}  // namespace kms::test
