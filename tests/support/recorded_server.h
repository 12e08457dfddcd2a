#pragma once
/// @file A real HTTP server on 127.0.0.1 answering recorded responses (Debian's python3
/// running tests/support/recorded_server.py), for what no ACME server here can be made
/// to say: ARI windows, malformed JSON, wrong media types, oversized bodies.

#include <sys/types.h>

#include <string>

#include "sandbox.h"

namespace kms::test {

class RecordedServer {
 public:
  /// routesJson: {"GET /dir": {"status":200,"headers":{...},"body":"..."}, ...}; "@PORT@"
  /// in bodies and headers becomes the bound port. Throws std::runtime_error if it does not start.
  explicit RecordedServer(const std::string& routesJson);
  ~RecordedServer();
  RecordedServer(const RecordedServer&) = delete;
  RecordedServer& operator=(const RecordedServer&) = delete;

  /// "http://127.0.0.1:<port>" + path
  [[nodiscard]] std::string url(const std::string& path) const;

 private:
  Sandbox sandbox_;
  pid_t pid_ = -1;
  int port_ = 0;
};

}  // namespace kms::test
