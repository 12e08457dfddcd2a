#pragma once
/// @file The HTTP client seam of the ACME and STI-PA clients: one request in, one response
/// out, over HTTPS with the system trust plus an optional extra CA bundle (libcurl).

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "kms/error.h"

namespace kms::http {

/// One HTTP request.
struct HttpRequest {
  std::string method = "GET";  ///< GET, HEAD, POST, or any other (sent with the body when there is one)
  std::string url;
  std::vector<std::pair<std::string, std::string>> headers;  ///< e.g. {"Content-Type", "application/jose+json"}
  std::string body;
  /// What the request is for ("newOrder", "spc_token"): a constant of the client's, the
  /// action label of kmsd's request metrics; null when unnamed.
  const char* what = nullptr;
};

/// One HTTP response. Header names are lower-cased; repeated headers (Link) keep every value.
struct HttpResponse {
  long status = 0;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;

  /// First value of a header (name compared case-insensitively), if present.
  [[nodiscard]] std::optional<std::string> header(std::string_view name) const;
  /// Every value of a header, in order.
  [[nodiscard]] std::vector<std::string> headerValues(std::string_view name) const;
};

/// How the transport connects.
struct TransportOptions {
  std::optional<std::string> caBundle;  ///< extra PEM trust (Pebble, kms-lab)
  std::chrono::milliseconds connectTimeout{10000};
  std::chrono::milliseconds requestTimeout{30000};  ///< whole request
  std::size_t maxBodyBytes = 1 << 20;               ///< larger bodies fail (Errc::protocol)
  std::string userAgent = "shaken-kms";
  /// Connect to this Unix socket instead of the URL's host (kmsctl to kmsd's control API);
  /// the URL still gives the path and the Host header.
  std::optional<std::string> unixSocket;
};

/// Sends requests. Implementations are thread-safe: many threads may call send() at once.
class Transport {
 public:
  virtual ~Transport() = default;
  /// Performs the request. Connection failures and timeouts are Errc::network /
  /// Errc::timeout and name the URL; a body over maxBodyBytes is Errc::protocol. Any
  /// HTTP status is a successful send.
  [[nodiscard]] virtual Result<HttpResponse> send(const HttpRequest& request) = 0;
  /// Makes every send in progress, and every later one, fail within about a second with
  /// Errc::cancelled (a stopping daemon does not wait out a 30 s request). Not undone.
  virtual void cancel() {}
};

/// libcurl transport: keep-alive connections shared between threads (curl share
/// interface), TLS verified against the system store plus options.caBundle.
[[nodiscard]] Result<std::unique_ptr<Transport>> makeCurlTransport(const TransportOptions& options);

}  // namespace kms::http
