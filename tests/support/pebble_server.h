#pragma once
/// @file A real Pebble ACME test server (Debian package `pebble`) for one test.
///
/// Each PebbleServer owns a Sandbox holding a fixture TLS CA, the leaf certificate Pebble
/// serves its API with (localhost + 127.0.0.1), Pebble's JSON config and the logs. A
/// pebble-challtestsrv runs next to it as a DNS server only, answering 127.0.0.1 for every
/// name, so http-01 validation connects to 127.0.0.1:httpPort(). Every listener is on
/// 127.0.0.1. The processes bind port 0 and the fixture reads the ports the kernel gave them
/// from /proc, so no port is picked free and released for somebody else to take first.
/// Processes are started with fork/exec and stopped by PID; no state survives stop()/start()
/// (Pebble regenerates its issuing CA), but the ports clients hold do (see start()).

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "kms/error.h"
#include "sandbox.h"

namespace kms::test {

struct PebbleOptions {
  bool eabRequired = false;                    ///< config externalAccountBindingRequired
  std::map<std::string, std::string> eabKeys;  ///< kid -> base64url HMAC key (externalAccountMACKeys)
  int nonceRejectPercent = 0;                  ///< PEBBLE_WFE_NONCEREJECT, 0..100
  bool alwaysValid = false;                    ///< PEBBLE_VA_ALWAYS_VALID=1: challenges pass unchecked
  bool noSleep = true;                         ///< PEBBLE_VA_NOSLEEP=1: no random validation delay
  int authzReusePercent = 0;                   ///< PEBBLE_AUTHZREUSE, 0..100
  int alternateRoots = 0;                      ///< PEBBLE_ALTERNATE_ROOTS: extra root hierarchies (alternate chains)
  /// Port Pebble validates http-01 on: the test binds its responder (port 0) first and passes
  /// the port here. 0: none, http-01 validation fails (Pebble's connection to port 0 is refused).
  uint16_t httpPort = 0;
};

/// One HTTPS answer.
struct HttpsResponse {
  long status = 0;  ///< HTTP status
  std::string body;
};

/// GET `url` with libcurl, trusting only the PEM certificates in `caFile`, no proxy.
/// Transport failures (refused, TLS, timeout) are Errc::network with the CURLcode in native.
Result<HttpsResponse> httpsGet(const std::string& url, const std::string& caFile,
                               std::chrono::milliseconds timeout = std::chrono::seconds(5));

/// Ports `pid` has bound on 127.0.0.1, read from the kernel: its socket descriptors
/// (/proc/<pid>/fd) matched against /proc/net/tcp and /proc/net/udp. Empty when the process
/// is gone.
struct LoopbackListeners {
  std::vector<uint16_t> tcp;  ///< listening TCP sockets
  std::vector<uint16_t> udp;  ///< bound, unconnected UDP sockets
};
LoopbackListeners loopbackListeners(pid_t pid);

class PebbleServer {
 public:
  /// Starts Pebble; throws std::invalid_argument on bad options, std::runtime_error (with
  /// the tail of the logs) when the servers do not come up.
  explicit PebbleServer(PebbleOptions options = {});
  /// stop()
  ~PebbleServer();
  PebbleServer(const PebbleServer&) = delete;
  PebbleServer& operator=(const PebbleServer&) = delete;

  /// https://127.0.0.1:<port>/dir
  [[nodiscard]] std::string directoryUrl() const;
  /// Fixture CA that issued Pebble's API certificate: the client's `[acme] ca_bundle`.
  [[nodiscard]] const std::string& tlsCaFile() const { return tlsCaFile_; }

  /// Pebble's current issuing root (management port /roots/0), PEM. Changes at every start.
  [[nodiscard]] std::string issuingRootsPem(int index = 0) const;
  /// Pebble's current intermediate (management port /intermediates/0), PEM.
  [[nodiscard]] std::string intermediatesPem() const;
  /// Writes issuingRootsPem() to `path` (for `[acme] trust_anchors`) and returns `path`.
  std::string writeIssuingRoots(const std::string& path) const;

  [[nodiscard]] uint16_t acmePort() const { return acmePort_; }
  [[nodiscard]] uint16_t managementPort() const { return managementPort_; }
  /// PebbleOptions::httpPort: the fixture binds nothing there and picks no port for it.
  [[nodiscard]] uint16_t httpPort() const { return options_.httpPort; }
  /// UDP port of the pebble-challtestsrv DNS server, the one Pebble queries (-dnsserver). Its
  /// DNS over TCP listens on a port of its own, not necessarily this one. Bound anew at each
  /// start(): only Pebble, started with it, uses it.
  [[nodiscard]] uint16_t dnsPort() const { return dnsPort_; }
  /// pebble-challtestsrv management API (set-txt, clear-txt) for dns-01 tests.
  [[nodiscard]] uint16_t dnsManagementPort() const { return dnsManagementPort_; }
  /// PID of Pebble, -1 when stopped.
  [[nodiscard]] pid_t pid() const { return pebblePid_; }
  /// PID of pebble-challtestsrv, -1 when stopped.
  [[nodiscard]] pid_t dnsServerPid() const { return dnsPid_; }
  [[nodiscard]] bool running() const { return pebblePid_ > 0; }

  /// SIGTERM both processes by PID, SIGKILL after a bounded wait, reap them. Idempotent.
  void stop();
  /// Starts again with the same options and the same acmePort(), managementPort() and
  /// dnsManagementPort(), bound explicitly: clients keep their URLs (Pebble has a new issuing
  /// CA and no accounts). A port still held after stop() is retried a few times; still taken,
  /// throws std::runtime_error with the logs. No-op when running. Throws as the constructor does.
  void start();

  [[nodiscard]] const Sandbox& sandbox() const { return sandbox_; }
  /// Log (stdout+stderr) of the latest Pebble / pebble-challtestsrv start, in the sandbox;
  /// each start attempt writes new files (pebble.1.log, pebble.2.log...).
  [[nodiscard]] std::string pebbleLogFile() const;
  [[nodiscard]] std::string dnsLogFile() const;

 private:
  enum class Outcome { ready, portClash };

  void writeTlsCertificates();
  void writeConfig() const;
  Outcome startOnce();
  /// Polls `ready` until it holds (ready) or a log shows a port clash (portClash); throws when
  /// a process exits or at the deadline, naming the ports `process` listens on.
  Outcome waitUntilReady(const std::string& name, pid_t process, std::chrono::steady_clock::time_point deadline,
                         const std::function<bool()>& ready);
  bool challTestSrvReady();
  bool pebbleReady();
  [[nodiscard]] std::string managementGet(const std::string& path) const;
  [[nodiscard]] std::string failureReport(const std::string& what) const;

  Sandbox sandbox_;
  PebbleOptions options_;
  std::string tlsCaFile_;
  // Ports the kernel gave at first start (0 before it), bound explicitly on a restart.
  uint16_t acmePort_ = 0;
  uint16_t managementPort_ = 0;
  uint16_t dnsManagementPort_ = 0;
  uint16_t dnsPort_ = 0;  ///< found anew at every start
  pid_t pebblePid_ = -1;
  pid_t dnsPid_ = -1;
  int starts_ = 0;  ///< start attempts so far, names the log files
};

}  // namespace kms::test
