#include "signing/signing_clients.h"

#include <algorithm>

namespace kms::daemon {

RateLimit::RateLimit(int perSecond) : rate_(perSecond), tokens_(perSecond) {}

bool RateLimit::admit(std::chrono::steady_clock::time_point now) {
  std::lock_guard lock(mutex_);
  if (last_ != std::chrono::steady_clock::time_point{}) {
    const double elapsed = std::chrono::duration<double>(now - last_).count();
    const double rate = rate_;
    tokens_ = std::min(rate, tokens_ + elapsed * rate);
  }
  last_ = now;
  if (tokens_ < 1.0) {
    return false;
  }
  tokens_ -= 1.0;
  return true;
}

Result<std::shared_ptr<const SigningClients>> SigningClients::load(const config::SigningConfig& config) {
  auto clients = std::make_shared<SigningClients>();
  for (const config::SigningClientConfig& c : config.clients) {
    Entry e;
    e.caller.client.id = c.name;
    e.caller.client.certs = {c.certificates.begin(), c.certificates.end()};
    e.caller.client.attest = {c.attest.begin(), c.attest.end()};
    if (c.rateLimit > 0) {
      e.caller.limit = std::make_shared<RateLimit>(c.rateLimit);
    }
    const std::string where = "[[signing.client]] " + c.name;
    if (c.tokenFile) {
      auto token = readSecretFile(*c.tokenFile);
      if (!token) {
        return fail(Errc::config, where + ": token_file: " + token.error().message, *c.tokenFile);
      }
      const std::string_view text = token->view();
      if (text.size() < kMinTokenLength ||
          !std::all_of(text.begin(), text.end(), [](char ch) { return ch > ' ' && ch < 0x7F; })) {
        return fail(Errc::config,
                    where + ": token_file: " + *c.tokenFile + " must hold one token of at least " +
                        std::to_string(kMinTokenLength) + " printable characters (no spaces)",
                    *c.tokenFile);
      }
      for (const Entry& other : clients->entries_) {
        if (!other.token.empty() && other.token.equals(*token)) {
          return fail(Errc::config, where + ": token_file: " + *c.tokenFile + " holds the same token as client " +
                                        other.caller.client.id + "'s: each client needs its own",
                      *c.tokenFile);
        }
      }
      e.token = std::move(*token);
    } else if (c.certificateSubject) {
      e.subject = *c.certificateSubject;
    }
    clients->entries_.push_back(std::move(e));
  }
  return std::shared_ptr<const SigningClients>(std::move(clients));
}

std::variant<const SigningCaller*, AtisError> SigningClients::authenticate(const http::ServerRequest& request) const {
  if (auto authorization = request.header("Authorization")) {
    constexpr std::string_view kBearer = "Bearer ";
    if (authorization->size() <= kBearer.size() ||
        !std::equal(kBearer.begin(), kBearer.end(), authorization->begin(),
                    [](char a, char b) { return a == b || (a == 'B' && b == 'b'); })) {
      return unauthorized("the Authorization header must be \"Bearer TOKEN\"");
    }
    const SecretBytes presented(std::string_view(*authorization).substr(kBearer.size()));
    const SigningCaller* found = nullptr;
    for (const Entry& e : entries_) {  // every token compared, whichever matches
      if (!e.token.empty() && e.token.equals(presented) && found == nullptr) {
        found = &e.caller;
      }
    }
    if (found == nullptr) {
      return unauthorized("the bearer token is no client's");
    }
    return found;
  }
  if (request.tls && request.tls->presented) {
    if (!request.tls->verified) {
      return forbidden("the client certificate (" + request.tls->subject + ") is not trusted: " +
                       request.tls->verifyError);
    }
    for (const Entry& e : entries_) {
      if (!e.subject.empty() && e.subject == request.tls->subject) {
        return &e.caller;
      }
    }
    return forbidden("the client certificate's subject (" + request.tls->subject + ") is no client's");
  }
  return unauthorized("no credential: send Authorization: Bearer TOKEN or a client certificate");
}

}  // namespace kms::daemon
