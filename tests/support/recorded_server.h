#pragma once
/// @file A real HTTP server on 127.0.0.1 answering recorded responses (Debian's python3
/// running tests/support/recorded_server.py), for what no ACME server here can be made
/// to say: ARI windows, malformed JSON, wrong media types, oversized bodies. It also holds
/// the client to RFC 8555 §6.2: every POST must be a proper ACME JWS (see violations()).

#include <sys/types.h>

#include <string>
#include <vector>

#include "sandbox.h"

namespace kms::test {

class RecordedServer {
 public:
  /// routesJson: {"GET /dir": {"status":200,"headers":{...},"body":"..."}, ...}; "@PORT@"
  /// in bodies and headers becomes the bound port. Every answer carries a Replay-Nonce:
  /// a fresh random one unless the route sets the header (a fixed value is accepted back
  /// once per time it was sent; an empty value gives the client none). An optional member
  /// "_options": {"verify_kid": bool, "accounts": {"<kid URL>": <JWK>}} declares account
  /// keys up front and makes a kid the server does not know a violation (by default such
  /// a request goes unverified). A jwk request answered with a Location teaches the server
  /// that Location as the kid of its key. Throws std::runtime_error if it does not start.
  explicit RecordedServer(const std::string& routesJson);
  ~RecordedServer();
  RecordedServer(const RecordedServer&) = delete;
  RecordedServer& operator=(const RecordedServer&) = delete;

  /// "http://127.0.0.1:<port>" + path
  [[nodiscard]] std::string url(const std::string& path) const;

  /// What was wrong with the POSTs so far, oldest first, one entry per broken rule:
  /// "POST /path: <what>", e.g. `POST /new-order: nonce "x" was never issued by this
  /// server`. The rules: Content-Type application/jose+json; a flattened JWS of
  /// unpadded base64url protected, payload and signature only; alg ES256; exactly one of
  /// jwk and kid; url = url(path) of the request; a nonce this server sent and has not had
  /// back since; payload empty or a JSON object; the ES256 signature verifies with the jwk
  /// or the kid's key. Such a POST was answered HTTP 400 application/problem+json (badNonce
  /// when only the nonce was wrong, else malformed, the detail naming every violation)
  /// instead of by its route. Empty when every POST was proper, or none was sent.
  [[nodiscard]] std::vector<std::string> violations() const;

 private:
  Sandbox sandbox_;
  std::string violationsFile_;  ///< appended to by the script, a line per violation
  pid_t pid_ = -1;
  int port_ = 0;
};

}  // namespace kms::test
