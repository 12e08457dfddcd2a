#pragma once
/// @file Debian's nginx started by a test on 127.0.0.1 (on a socket the test bound to port 0
/// and nginx inherits), serving a directory through deploy/nginx/sti-cr-locations.conf, in
/// the foreground with every file (config, pid, logs, temp dirs) in its own directory, and
/// stopped by PID.

#include <sys/types.h>

#include <cstdint>
#include <string>

namespace kms::test {

class NginxServer {
 public:
  /// Starts nginx with `root` as the document root and `include` (the shipped STI-CR rules)
  /// inside its server block; throws std::runtime_error with nginx's error log when it does
  /// not answer HTTP within 10 s.
  NginxServer(std::string dir, const std::string& root, const std::string& include);
  ~NginxServer();
  NginxServer(const NginxServer&) = delete;
  NginxServer& operator=(const NginxServer&) = delete;

  [[nodiscard]] std::uint16_t port() const { return port_; }
  /// http://127.0.0.1:<port>/
  [[nodiscard]] std::string baseUrl() const;
  [[nodiscard]] std::string errorLog() const;
  void stop();

  static std::string binary();

 private:
  std::string dir_;
  std::uint16_t port_ = 0;
  pid_t pid_ = -1;
};

}  // namespace kms::test
