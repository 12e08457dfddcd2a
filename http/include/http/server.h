#pragma once
/// @file One small HTTP/1.1 server (Boost.Beast) that every kmsd listener uses: the http-01
/// responder (TCP), the control API (a Unix socket), later metrics and the signing API.
///
/// Requests are read with header and body limits, a header timeout and a read timeout, and
/// each listener caps its connections (in all and per peer address); a malformed, oversized
/// or slow request closes the connection without an answer. Answers use the request's
/// HTTP version and honour keep-alive / Connection: close. The handler runs on the loop thread and may
/// reply later, from any thread, exactly once.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <string_view>
#include <vector>

#include "kms/error.h"

namespace boost::asio {
class io_context;
}

namespace kms::http {

/// The peer of a Unix-socket connection, from the kernel (SO_PEERCRED).
struct PeerCredentials {
  std::uint32_t uid = 0;
  std::uint32_t gid = 0;
};

/// A TLS client's certificate, as the handshake left it. The handshake admits any
/// certificate, so that the handler can answer an untrusted one with a reason (403) instead
/// of a closed connection; `verified` says whether it chains to the listener's client CA.
struct TlsPeer {
  bool presented = false;   ///< the client sent a certificate
  bool verified = false;    ///< and it verified against the client CA (X509_V_OK)
  std::string subject;      ///< its subject, RFC 2253 ("CN=sbc1,O=Example"), when presented
  std::string verifyError;  ///< why it did not verify ("self-signed certificate", ...)
};

struct ServerRequest {
  std::string method;  ///< "GET", "HEAD", "POST", ...
  std::string target;  ///< "/v1/status?x=y"
  std::string body;
  std::optional<PeerCredentials> peer;  ///< on a Unix socket only
  /// The request's headers, names as sent.
  std::vector<std::pair<std::string, std::string>> headers;
  std::optional<TlsPeer> tls;  ///< on a TLS listener only
  std::string remote;          ///< the peer's IP address on TCP, "" on a Unix socket

  /// The first header named `name` (ASCII case-insensitive), or nullopt.
  [[nodiscard]] std::optional<std::string> header(std::string_view name) const;
};

struct ServerResponse {
  int status = 200;
  std::string contentType = "text/plain";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  ///< extra headers ("Allow", ...)
};

using Reply = std::function<void(ServerResponse)>;
using Handler = std::function<void(const ServerRequest&, Reply)>;

/// What one listener takes from its peers before it refuses more (the operator's
/// `[daemon] listener_*` settings). A connection over a cap is accepted and closed at once,
/// so it neither waits in the kernel's backlog nor holds a descriptor.
struct ConnectionLimits {
  std::size_t maxConnections = 256;      ///< open connections on the listener
  std::size_t maxPerPeer = 16;           ///< open connections from one peer address (TCP)
  std::chrono::seconds headerTimeout{5};  ///< to receive a request's headers (slowloris)
};

struct ServerOptions {
  std::uint32_t headerLimit = 16 * 1024;
  std::uint64_t bodyLimit = 64 * 1024;
  std::chrono::seconds readTimeout{10};  ///< per request, from the first byte awaited
  std::chrono::seconds writeTimeout{10};
  ConnectionLimits limits;
  /// The answer to a request refused before any handler saw it (413: body over bodyLimit);
  /// plain text when unset. The connection closes after it.
  std::function<ServerResponse(int status, const std::string& why)> refusal;
  /// Where each new TCP connection lives (ServerThread::spread()); the listener's io_context
  /// when unset.
  std::function<boost::asio::io_context&()> spread;
};

/// A TLS listener's certificate chain, private key and (optional) client CA: the files are
/// read when loaded and again at each reload(); connections accepted after a reload use the
/// new ones, those open keep theirs. Thread-safe.
class TlsIdentity {
 public:
  struct Files {
    std::string certificate;              ///< PEM: the server certificate, then its chain
    std::string key;                      ///< PEM private key, a secret file (kms::readSecretFile)
    std::optional<std::string> clientCa;  ///< PEM: CAs whose client certificates verify
  };
  /// Errc::config naming the file that cannot be used (and why).
  [[nodiscard]] static Result<std::shared_ptr<TlsIdentity>> load(const Files& files);
  /// Reads the files again; on an error the identity in use stays.
  [[nodiscard]] Result<void> reload(const Files& files);
  ~TlsIdentity();
  TlsIdentity(const TlsIdentity&) = delete;
  TlsIdentity& operator=(const TlsIdentity&) = delete;

  struct Impl;
  [[nodiscard]] Impl& impl() { return *impl_; }

 private:
  explicit TlsIdentity(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

class Server {
 public:
  /// Listens on host:port (port 0: a free one) on `io`. Errc::io naming the address.
  [[nodiscard]] static Result<std::unique_ptr<Server>> listenTcp(boost::asio::io_context& io, const std::string& host,
                                                                 std::uint16_t port, Handler handler,
                                                                 const ServerOptions& options = {});
  /// HTTPS (TLS 1.2 or later) on host:port with `identity`; the handshake must complete within
  /// the header timeout. Requests carry the client's certificate (ServerRequest::tls).
  [[nodiscard]] static Result<std::unique_ptr<Server>> listenTls(boost::asio::io_context& io, const std::string& host,
                                                                 std::uint16_t port, std::shared_ptr<TlsIdentity> identity,
                                                                 Handler handler, const ServerOptions& options = {});
  /// Serves on a listening TCP socket someone else bound (socket activation); takes `fd`
  /// over, closing it on every error. Errc::io when it is not a listening TCP socket.
  [[nodiscard]] static Result<std::unique_ptr<Server>> adoptTcp(boost::asio::io_context& io, int fd, Handler handler,
                                                                const ServerOptions& options = {});
  /// Listens on the Unix socket `path`, created with `mode` (a stale socket file is
  /// replaced; any other file there is an error). Errc::io naming the path.
  [[nodiscard]] static Result<std::unique_ptr<Server>> listenUnix(boost::asio::io_context& io, const std::string& path,
                                                                  unsigned mode, Handler handler,
                                                                  const ServerOptions& options = {});
  virtual ~Server() = default;
  /// The TCP port bound (0 for a Unix socket).
  [[nodiscard]] virtual std::uint16_t port() const = 0;
  /// Stops accepting (a Unix socket file is removed). Connections in progress finish.
  virtual void stop() = 0;
};

/// An io_context on threads of its own (one unless asked), for a server that does not live on
/// a daemon's loop (the signing listener, the http-01 responder used by `kmsd --once`, tests,
/// kms-lab). Stops and joins when destroyed.
class ServerThread {
 public:
  explicit ServerThread(std::size_t threads = 1);
  ~ServerThread();
  ServerThread(const ServerThread&) = delete;
  ServerThread& operator=(const ServerThread&) = delete;
  [[nodiscard]] boost::asio::io_context& io();
  /// Starts running io() on the thread (after the servers were created on it).
  void start();
  /// Runs `job` on the thread of io() (what touches a server listening there).
  void post(std::function<void()> job);
  /// Each thread has an io_context of its own: this picks them in turn (ServerOptions::spread).
  [[nodiscard]] std::function<boost::asio::io_context&()> spread();
  /// Stops io() and joins the thread (idempotent). Stop it before destroying the servers
  /// that live on it, and destroy those before this object.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// "text/plain" response with this status and body.
[[nodiscard]] ServerResponse textResponse(int status, std::string body);

}  // namespace kms::http
