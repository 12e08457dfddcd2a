#include "signing/signing_listener.h"

#include "signing/signing_http.h"

namespace kms::daemon {

SigningListener::SigningListener(SigningService& service, std::size_t threads)
    : service_(service), threads_(threads) {}

SigningListener::~SigningListener() {
  threads_.stop();  // no handler runs any more: the listener goes with nothing racing it
  server_.reset();
}

std::optional<http::TlsIdentity::Files> SigningListener::tlsFiles(const config::SigningConfig& config) {
  if (!config.tlsCertificate || !config.tlsKey) {
    return std::nullopt;
  }
  return http::TlsIdentity::Files{*config.tlsCertificate, *config.tlsKey, config.clientCa};
}

Result<std::unique_ptr<SigningListener>> SigningListener::open(const config::SigningConfig& config,
                                                               SigningService& service,
                                                               const http::ConnectionLimits& limits) {
  if (!config.listen) {
    return fail(Errc::internal, "[signing] listen is not set");
  }
  auto clients = SigningClients::load(config);
  if (!clients) {
    return fail(clients.error());
  }
  std::unique_ptr<SigningListener> self(
      new SigningListener(service, static_cast<std::size_t>(std::max(config.threads, 1))));
  self->clients_.store(*clients);
  if (auto files = tlsFiles(config)) {
    auto identity = http::TlsIdentity::load(*files);
    if (!identity) {
      return fail(identity.error());
    }
    self->identity_ = *identity;
  }
  http::ServerOptions options;
  options.limits = limits;
  options.spread = self->threads_.spread();
  options.refusal = [](int status, const std::string& why) {
    return atisErrorResponse(AtisError{status, "SVC4000", "Invalid request: %1", {why}}, pki::randomUuid());
  };
  auto handler = [raw = self.get()](const http::ServerRequest& r, const http::Reply& reply) { raw->handle(r, reply); };
  const std::string& host = config.listen->host;
  auto server = self->identity_
                    ? http::Server::listenTls(self->threads_.io(), host, config.listen->port, self->identity_, handler,
                                              options)
                    : http::Server::listenTcp(self->threads_.io(), host, config.listen->port, handler, options);
  if (!server) {
    Error e = server.error();
    e.message = "[signing] listen: " + e.message;
    return fail(std::move(e));
  }
  self->server_ = std::move(*server);
  self->threads_.start();
  return self;
}

Result<void> SigningListener::reload(const config::SigningConfig& config) {
  auto clients = SigningClients::load(config);
  if (!clients) {
    return fail(clients.error());
  }
  if (identity_) {
    if (auto files = tlsFiles(config)) {
      if (auto r = identity_->reload(*files); !r) {
        return fail(r.error());
      }
    }
  }
  clients_.store(*clients);
  return ok();
}

void SigningListener::stopAccepting() {
  threads_.post([this] { server_->stop(); });
}

std::uint16_t SigningListener::port() const {
  return server_->port();
}

std::size_t SigningListener::clients() const {
  return clients_.load()->size();
}

void SigningListener::handle(const http::ServerRequest& request, const http::Reply& reply) {
  const std::string requestId = requestIdOf(request);
  const std::string path = request.target.substr(0, request.target.find('?'));
  if (path != "/stir/v1/signing") {
    return reply(atisErrorResponse(notFound(path), requestId));
  }
  if (request.method != "POST") {
    http::ServerResponse r = atisErrorResponse(
        AtisError{405, "SVC4000", "Invalid request: %1", {request.method + " is not allowed here: POST"}}, requestId);
    r.headers.emplace_back("Allow", "POST");
    return reply(std::move(r));
  }
  const std::shared_ptr<const SigningClients> clients = clients_.load();  // this request's table
  auto who = clients->authenticate(request);
  if (const auto* refusal = std::get_if<AtisError>(&who)) {
    service_.countRefusal(*refusal);
    return reply(atisErrorResponse(*refusal, requestId));
  }
  const SigningCaller& caller = *std::get<const SigningCaller*>(who);
  if (caller.limit && !caller.limit->admit(std::chrono::steady_clock::now())) {
    const AtisError e = rateLimited(caller.client.id, caller.limit->perSecond());
    service_.countRefusal(e);
    return reply(atisErrorResponse(e, requestId));
  }
  auto result = service_.sign(request.body, caller.client);
  if (const auto* e = std::get_if<AtisError>(&result)) {
    return reply(atisErrorResponse(*e, requestId));
  }
  reply(signedResponse(std::get<Signed>(result).identity, requestId));
}

}  // namespace kms::daemon
