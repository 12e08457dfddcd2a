#pragma once
// The TCP signing API ([signing] listen): POST /stir/v1/signing for the [[signing.client]]
// entries, over TLS when tls_certificate is set. It runs on threads of its own (the [signing]
// threads), which read, authenticate and sign each request themselves: a signature waits for
// nothing of the engine's, and for no hand-over between threads.

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "config/config.h"
#include "http/server.h"
#include "kms/error.h"
#include "signing/signing_clients.h"
#include "signing/signing_service.h"

namespace kms::daemon {

class SigningListener {
 public:
  /// Listens on `config.listen` with the TLS files and clients it names. Errc::config or
  /// Errc::io naming the file or address.
  [[nodiscard]] static Result<std::unique_ptr<SigningListener>> open(const config::SigningConfig& config,
                                                                     SigningService& service,
                                                                     const http::ConnectionLimits& limits);
  ~SigningListener();  ///< stops its threads, then the listener
  SigningListener(const SigningListener&) = delete;
  SigningListener& operator=(const SigningListener&) = delete;

  /// Reads the TLS files and the clients' tokens again (SIGHUP). Both are read before either
  /// is swapped in: on an error nothing changes and the error names the file.
  [[nodiscard]] Result<void> reload(const config::SigningConfig& config);
  /// Accepts no more connections (kmsd stopping); those open finish.
  void stopAccepting();

  [[nodiscard]] std::uint16_t port() const;
  [[nodiscard]] bool tls() const { return identity_ != nullptr; }
  [[nodiscard]] std::size_t clients() const;

 private:
  SigningListener(SigningService& service, std::size_t threads);
  void handle(const http::ServerRequest& request, const http::Reply& reply);
  [[nodiscard]] static std::optional<http::TlsIdentity::Files> tlsFiles(const config::SigningConfig& config);

  SigningService& service_;
  std::shared_ptr<http::TlsIdentity> identity_;
  std::atomic<std::shared_ptr<const SigningClients>> clients_;
  http::ServerThread threads_;
  std::unique_ptr<http::Server> server_;
};

}  // namespace kms::daemon
