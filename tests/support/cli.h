#pragma once
/// @file Running kmsd and kmsctl the way an operator does, for system tests.

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "sandbox.h"

namespace kms::test {

inline const std::string kKmsd = KMS_BINARY_DIR "/kmsd/kmsd";
inline const std::string kKmsctl = KMS_BINARY_DIR "/kmsd/kmsctl";

/// Exit status and combined stdout+stderr of one command.
struct CmdResult {
  int rc;
  std::string output;
};

/// `env tool --config config args` through the shell (env: "NAME=value …", may be empty).
inline CmdResult runTool(const std::string& env, const std::string& tool, const std::string& config,
                         const std::string& args) {
  CmdResult r{};
  r.rc = runCommand(env + " " + tool + " --config " + config + " " + args, &r.output);
  return r;
}

/// A TCP socket listening on 127.0.0.1 on a port the kernel chose (bound to port 0), for a
/// child to inherit (not close-on-exec): kmsd takes it as its http-01 socket the way
/// systemd's socket activation hands it over (fd 3, LISTEN_FDS=1, LISTEN_FDNAMES=http01,
/// LISTEN_PID = kmsd's pid), nginx through its NGINX variable. The port is never picked,
/// released and bound again by someone else. Stays open (and listening) while it lives, so
/// several kmsd runs in a row get the same port.
class PassedSocket {
 public:
  PassedSocket() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);  // not CLOEXEC: the shell and kmsd inherit it
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd_, 64) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      throw std::runtime_error("cannot listen on 127.0.0.1:0");
    }
    port_ = ntohs(addr.sin_port);
  }
  ~PassedSocket() { ::close(fd_); }
  PassedSocket(const PassedSocket&) = delete;
  PassedSocket& operator=(const PassedSocket&) = delete;

  [[nodiscard]] std::uint16_t port() const { return port_; }
  [[nodiscard]] int fd() const { return fd_; }
  /// `tool` as runTool's tool argument, started with this socket passed under `name`.
  [[nodiscard]] std::string pass(const std::string& tool, const std::string& name = "http01") const {
    return "LISTEN_FDS=1 LISTEN_FDNAMES=" + name + " sh -c 'LISTEN_PID=$$; export LISTEN_PID; exec \"$0\" \"$@\" 3<&" +
           std::to_string(fd_) + "' " + tool;
  }

 private:
  int fd_ = -1;
  std::uint16_t port_ = 0;
};

/// As if the backoff after a failed `kmsd --once` had passed: clears every certificate's
/// next attempt in the state DB at `dbPath`, so the next run tries again at once.
/// Returns false when sqlite3 failed.
/// SQL on a state DB through the sqlite3 shell (not kmsd's code): its output without the
/// trailing newline. An error throws, which fails the test that asked.
inline std::string sql(const std::string& dbPath, const std::string& query) {
  std::string out;
  if (runCommand("sqlite3 '" + dbPath + "' \"" + query + "\"", &out) != 0) {
    throw std::runtime_error("sqlite3 " + dbPath + " \"" + query + "\": " + out);
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) {
    out.pop_back();
  }
  return out;
}

inline bool backoffPassed(const std::string& dbPath) {
  std::string out;
  return runCommand("sqlite3 '" + dbPath + "' 'UPDATE managed_certificates SET next_attempt_at = NULL'", &out) == 0;
}

inline bool fileExists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

}  // namespace kms::test
