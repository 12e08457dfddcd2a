#include "lifecycle/publication.h"

#include "common/failpoint.h"
#include "common/time_format.h"
#include "lifecycle/order_record.h"

namespace kms::daemon {

using storage::CertState;

Error Publication::publishFailed(const std::string& cert, Error e) {
  e.message = "publish to [publisher] web_root: " + e.message;
  e.disposition = Disposition::retry;  // a full or read-only disk can be mended; the certificate stays valid
  ctx_.events.emit({"KMS_PUBLISH_FAILED", storage::EventLevel::error, cert, e.toString(), {}});
  return e;
}

Result<StepOutcome> Publication::publish(const storage::Order& order, const config::CertificateConfig& c,
                                         PollState& poll) {
  auto row = orderCertificate(ctx_, order, c.name, "issued");
  if (!row) {
    return fail(row.error());
  }
  auto published = ctx_.services.webRoot().writeImmutable(c.name, row->serial, row->chainPem);
  if (!published) {
    return fail(publishFailed(c.name, published.error()));
  }
  const auto settings = ctx_.services.config();
  const config::PublisherConfig& pub = settings->publisher;
  if (pub.publicationCheck == config::PublicationCheck::fetch) {
    // What a verifier will get from the x5u URL must be what was written, before anything
    // relies on it; the previous certificate stays active until then.
    if (auto problem = checkServed(published->x5uUrl, row->chainPem)) {
      if (poll.round < pub.checkRetries) {
        ++poll.round;
        return pollAgainAfter(std::chrono::seconds(2));
      }
      poll.round = 0;
      Error e{Errc::protocol, "publication check: " + *problem, published->x5uUrl, 0, {}, Disposition::retry,
              std::nullopt};
      ctx_.events.emit({"KMS_PUBLICATION_CHECK_FAILED", storage::EventLevel::error, c.name, e.toString(),
                        {{"x5u", published->x5uUrl}, {"serial", row->serial}}});
      return fail(e);
    }
  }
  failpoint("chain_written");  // verifiers can fetch it; kmsd has not recorded it
  const std::int64_t t = ctx_.now();
  auto tx = ctx_.store().with([&](storage::Store& st) {
    return st.transact([&]() -> Result<void> {
      if (auto r = st.markPublished(row->id, published->x5uUrl, t); !r) {
        return r;
      }
      if (auto r = st.advanceOrder(order.id, orderAt(CertState::published)); !r) {
        return fail(r.error());
      }
      return ok();
    });
  });
  if (!tx) {
    return fail(tx.error());
  }
  failpoint("published");
  ctx_.events.emit({"KMS_CERT_PUBLISHED", storage::EventLevel::info, c.name, "published " + published->x5uUrl,
                    {{"serial", row->serial}, {"x5u", published->x5uUrl}}});
  return StepOutcome{};
}

std::optional<std::string> Publication::checkServed(const std::string& url, const std::string& expected) {
  auto got = ctx_.services.fetchPublished(url);
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

Result<StepOutcome> Publication::activate(const storage::Order& order, const config::CertificateConfig& c) {
  auto row = orderCertificate(ctx_, order, c.name, "published");
  if (!row) {
    return fail(row.error());
  }
  if (auto r = ctx_.services.webRoot().switchCurrent(c.name, row->chainPem); !r) {
    return fail(publishFailed(c.name, r.error()));
  }
  // The renewal instant without ARI, chosen now with jitter; the CA's window (when it
  // offers one) is read by the next step and replaces it.
  const std::int64_t renewAt =
      fractionRenewalTime(row->notBefore, row->notAfter, c.renewBeforeFraction, ctx_.random.unit());
  const std::optional<std::int64_t> ariCheck =
      ctx_.services.ca().ariOffered() ? std::optional<std::int64_t>(ctx_.now()) : std::nullopt;
  auto tx = ctx_.store().with([&](storage::Store& st) {
    return st.transact([&]() -> Result<void> {
      if (auto r = st.closeOrder(order.id, storage::OrderStatus::done); !r) {
        return r;
      }
      if (auto r = st.setState(c.name, CertState::active, std::nullopt); !r) {
        return r;
      }
      return st.setRenewal(c.name, renewAt, ariCheck);
    });
  });
  if (!tx) {
    return fail(tx.error());
  }
  failpoint("activated");
  ctx_.services.keys().forgetOrderKey(row->keyUri);
  snapshots_.keyPresent(row->keyUri);
  // One renewal time per activation: this one, unless the CA's window (read next, logged as
  // KMS_RENEWAL_PLANNED) replaces it.
  Fields fields{{"serial", row->serial}, {"x5u", row->x5uUrl.value_or("")}};
  if (!ariCheck) {
    fields.emplace_back("renew_at", isoTime(renewAt));
  }
  ctx_.events.emit(
      {"KMS_CERT_ACTIVATED", storage::EventLevel::info, c.name,
       "serial " + row->serial + " active, not after " + isoTime(row->notAfter) + ", x5u " + row->x5uUrl.value_or(""),
       std::move(fields)});
  StepOutcome out;
  out.activated = *row;
  return out;
}

}  // namespace kms::daemon
