#include "pki/jose.h"

#include <nlohmann/json.hpp>

#include "pki/encoding.h"
#include "pki/json_limits.h"

namespace kms::pki {
namespace {

using nlohmann::json;

/// JSON from outside: nesting is bounded so a deep document cannot exhaust the stack.
Result<std::string> decodePart(std::string_view part, const char* what) {
  auto bytes = base64UrlDecode(part);
  if (!bytes) {
    return fail(Errc::invalidArgument, std::string("JWS ") + what + " is not base64url");
  }
  return std::string(bytes->begin(), bytes->end());
}

Result<ParsedJws> assemble(std::string_view protectedB64, std::string_view payloadB64, std::string_view sigB64) {
  auto header = decodePart(protectedB64, "protected header");
  if (!header) {
    return fail(header.error());
  }
  auto payload = decodePart(payloadB64, "payload");
  if (!payload) {
    return fail(payload.error());
  }
  auto sig = base64UrlDecode(sigB64);
  if (!sig) {
    return fail(Errc::invalidArgument, "JWS signature is not base64url");
  }
  if (!checkJsonLimits(*header) || !json::accept(*header)) {
    return fail(Errc::invalidArgument, "JWS protected header is not JSON");
  }
  ParsedJws out;
  out.protectedJson = std::move(*header);
  out.payload = std::move(*payload);
  out.signingInput = std::string(protectedB64) + "." + std::string(payloadB64);
  out.signature = std::move(*sig);
  return out;
}

}  // namespace

Result<ParsedJws> parseCompactJws(std::string_view compact) {
  std::size_t a = compact.find('.');
  std::size_t b = a == std::string_view::npos ? a : compact.find('.', a + 1);
  if (a == std::string_view::npos || b == std::string_view::npos ||
      compact.find('.', b + 1) != std::string_view::npos) {
    return fail(Errc::invalidArgument, "compact JWS must have exactly three parts");
  }
  return assemble(compact.substr(0, a), compact.substr(a + 1, b - a - 1), compact.substr(b + 1));
}

Result<ParsedJws> parseFlattenedJws(std::string_view text) {
  if (auto limits = checkJsonLimits(text); !limits) {
    return fail(Errc::invalidArgument, "flattened JWS: " + limits.error().message);
  }
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return fail(Errc::invalidArgument, "flattened JWS is not a JSON object");
  }
  for (const char* member : {"protected", "payload", "signature"}) {
    if (!j.contains(member) || !j[member].is_string()) {
      return fail(Errc::invalidArgument, std::string("flattened JWS has no string member '") + member + "'");
    }
  }
  return assemble(j["protected"].get<std::string>(), j["payload"].get<std::string>(),
                  j["signature"].get<std::string>());
}

std::string jwsSigningInput(std::string_view protectedJson, std::string_view payload) {
  return base64UrlEncode(asBytes(protectedJson)) + "." + base64UrlEncode(asBytes(payload));
}

Result<void> verifyEs256(const ParsedJws& jws, const EcPublicKey& key) {
  auto good = key.verifyEs256(asBytes(jws.signingInput), jws.signature);
  if (!good) {
    return fail(good.error());
  }
  if (!*good) {
    return fail(Errc::crypto, "JWS signature does not verify");
  }
  return ok();
}

}  // namespace kms::pki
