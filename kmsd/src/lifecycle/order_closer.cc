#include "lifecycle/order_closer.h"

#include "lifecycle/authorization.h"

namespace kms::daemon {

Result<void> OrderCloser::abandon(const storage::Order& order, const std::string& cert,
                                  const std::optional<std::string>& destroyKey, const std::string& why) {
  auto closed =
      ctx_.store().with([&](storage::Store& st) { return st.closeOrder(order.id, storage::OrderStatus::abandoned); });
  if (!closed) {
    storeWriteFailed(ctx_.events, cert, "abandon the order", closed.error());
    return fail(closed.error());
  }
  authorizer_.withdraw(order.id);
  ctx_.services.keys().forgetOrderKey(order.keyUri.value_or(""));
  if (destroyKey) {
    if (auto d = ctx_.services.keys().destroyKey(cert, *destroyKey); !d) {
      ctx_.events.emit({"KMS_KEY_DESTROY_FAILED", storage::EventLevel::warning, cert,
                        "could not destroy " + *destroyKey + ": " + d.error().toString(), {{"key", *destroyKey}}});
    }
  }
  ctx_.events.emit({"KMS_ORDER_ABANDONED", storage::EventLevel::warning, cert,
                    "order " + std::to_string(order.id) + " abandoned: " + why +
                        (destroyKey ? "; its key destroyed" : std::string()),
                    {{"key", order.keyUri.value_or("")}}});
  return ok();
}

Result<StepOutcome> OrderCloser::keyMissing(const storage::Order& order, const std::string& cert) {
  // Destroying a key already gone records that it is gone.
  if (auto r = abandon(order, cert, order.keyUri, "the order's key is not on the token; a new order starts"); !r) {
    return fail(r.error());
  }
  StepOutcome out;
  out.orderClosed = true;
  return out;
}

}  // namespace kms::daemon
