#pragma once
/// @file One mail sent through libcurl's SMTP client (kmsd's alert channel).

#include <atomic>
#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "kms/error.h"

namespace kms::http {

/// Where and how a mail goes.
struct SmtpOptions {
  std::string url;  ///< smtp://host[:port] or smtps://host[:port]
  /// STARTTLS on smtp://: required (CURLUSESSL_ALL), opportunistic (CURLUSESSL_TRY) or off.
  enum class StartTls { required, opportunistic, off } startTls = StartTls::required;
  std::optional<std::string> username;
  std::optional<std::string> password;  ///< read from its secret file just before the send
  std::optional<std::string> caBundle;  ///< PEM roots the server's certificate must chain to (instead of the system's)
  std::chrono::milliseconds timeout{10000};
  /// Set to abort a send in progress (a stopping daemon); checked about every second.
  const std::atomic<bool>* cancelled = nullptr;
};

/// One message: envelope and the RFC 5322 text (CRLF line ends, headers included).
struct Mail {
  std::string from;
  std::vector<std::string> to;
  std::string text;
};

/// Sends `mail`. Errors name the server (the URL) and what it answered: "RCPT failed: 550"
/// (a refused recipient), "STARTTLS not supported.", a TLS or login failure, a timeout. The
/// password never appears in an error.
[[nodiscard]] Result<void> sendMail(const SmtpOptions& options, const Mail& mail);

}  // namespace kms::http
