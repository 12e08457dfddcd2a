#pragma once
// An http::Transport that counts each request and its duration in Metrics, by peer ("acme",
// "sti_pa"), action (HttpRequest::what, a client's constant) and status ("200", ...,
// "error" when nothing came back), then hands it to the transport it wraps.

#include <memory>

#include "http/transport.h"

namespace kms::daemon {

class Metrics;

class MeteredTransport final : public http::Transport {
 public:
  MeteredTransport(std::unique_ptr<http::Transport> inner, Metrics& metrics, const char* peer)
      : inner_(std::move(inner)), metrics_(metrics), peer_(peer) {}
  [[nodiscard]] Result<http::HttpResponse> send(const http::HttpRequest& request) override;
  void cancel() override { inner_->cancel(); }

 private:
  std::unique_ptr<http::Transport> inner_;
  Metrics& metrics_;
  const char* peer_;
};

}  // namespace kms::daemon
