#include "daemon/basic_auth.h"

#include <openssl/crypto.h>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

#include "control/control_api.h"
#include "kms/text.h"
#include "pki/encoding.h"

namespace kms::daemon {
namespace {

constexpr std::string_view kScheme = "basic";

SecretBytes digestOf(std::string_view credentials) {
  const pki::Digest d = pki::sha256(pki::asBytes(credentials));
  return SecretBytes(std::vector<std::uint8_t>(d.begin(), d.end()));
}

/// "user:password", neither part empty, one line.
bool isUserPassword(std::string_view text) {
  const std::size_t colon = text.find(':');
  return colon != 0 && colon != std::string_view::npos && colon + 1 < text.size() &&
         text.find_first_of("\r\n") == std::string_view::npos;
}

http::ServerResponse challenge() {
  http::ServerResponse r = problem(401, "unauthorized", "this listener needs HTTP basic authentication");
  r.headers.emplace_back("WWW-Authenticate", R"(Basic realm="kmsd")");
  return r;
}

}  // namespace

Result<std::shared_ptr<const BasicAuth>> BasicAuth::load(const std::string& path) {
  Result<SecretBytes> secret = readSecretFile(path);
  if (!secret) {
    return fail(secret.error());
  }
  if (!isUserPassword(secret->view())) {
    return fail(Errc::config, "must hold one line user:password (neither part empty)", path);
  }
  // Only the digest stays; the SecretBytes wipes the password as it goes.
  return std::shared_ptr<const BasicAuth>(new BasicAuth(digestOf(secret->view())));
}

bool BasicAuth::admits(const http::ServerRequest& request) const {
  const std::optional<std::string> authorization = request.header("Authorization");
  if (!authorization) {
    return false;
  }
  const std::string_view value(*authorization);
  const std::size_t space = value.find(' ');
  if (space == std::string_view::npos || !equalsIgnoreCase(value.substr(0, space), kScheme)) {
    return false;
  }
  std::string_view encoded = value.substr(space);
  encoded.remove_prefix(std::min(encoded.find_first_not_of(' '), encoded.size()));
  Result<pki::Bytes> decoded = pki::base64Decode(encoded);
  if (!decoded) {
    return false;
  }
  const SecretBytes credentials(std::move(*decoded));
  const SecretBytes presented = digestOf(credentials.view());
  // Both are SHA-256 digests: equal lengths, and CRYPTO_memcmp's time does not depend on them.
  return CRYPTO_memcmp(presented.data(), digest_.data(), digest_.size()) == 0;
}

http::Handler BasicAuth::guard(std::shared_ptr<const BasicAuth> auth, http::Handler handler) {
  return [auth = std::move(auth), handler = std::move(handler)](const http::ServerRequest& request,
                                                                 http::Reply reply) {
    if (!auth->admits(request)) {
      reply(challenge());
      return;
    }
    handler(request, std::move(reply));
  };
}

}  // namespace kms::daemon
