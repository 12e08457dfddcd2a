#include "metrics/metered_transport.h"

#include <chrono>

#include "metrics/metrics.h"

namespace kms::daemon {

Result<http::HttpResponse> MeteredTransport::send(const http::HttpRequest& request) {
  const auto start = std::chrono::steady_clock::now();
  auto r = inner_->send(request);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  metrics_.observeRequest(peer_, request.what != nullptr ? request.what : "other", r ? r->status : 0, seconds);
  return r;
}

}  // namespace kms::daemon
