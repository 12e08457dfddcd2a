#pragma once
/// @file Pure checks of single values (URLs, host:port, durations, names, files).
///
/// Each returns the text of what is wrong, worded to follow "[section] key: ".

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include <tl/expected.hpp>

#include "config/config.h"

namespace kms::config::detail {

/// `scheme://host[:port][/path...]`, https, or http for a loopback host only.
[[nodiscard]] std::optional<std::string> checkUrl(std::string_view url);

/// True for localhost, 127.0.0.0/8 and ::1 (IPv6 given without brackets).
[[nodiscard]] bool isLoopbackHost(std::string_view host);

/// `host:port` or `[v6]:port`, port 1..65535.
[[nodiscard]] tl::expected<HostPort, std::string> parseHostPort(std::string_view text);

/// "90s", "30m", "24h", "7d"; greater than zero.
[[nodiscard]] tl::expected<std::chrono::seconds, std::string> parseDuration(std::string_view text);

/// The shortest exact spelling parseDuration accepts: 86400s -> "1d", 5400s -> "90m".
[[nodiscard]] std::string formatDuration(std::chrono::seconds value);

/// [A-Za-z0-9._-]{1,64}
[[nodiscard]] bool isValidCertificateName(std::string_view name);

/// [0-9A-Z]+
[[nodiscard]] bool isValidSpc(std::string_view spc);

/// A DNS name of LDH labels (1..63 each, 253 in all), optionally starting with "*.".
[[nodiscard]] bool isValidDnsName(std::string_view name);

/// An existing regular file this process can read.
[[nodiscard]] std::optional<std::string> checkReadableFile(const std::string& path);

/// A secret file kms::readSecretFile accepts; its content is wiped at once.
[[nodiscard]] std::optional<std::string> checkSecretFile(const std::string& path);

/// An existing regular file this process can execute, owned as kms::checkOwnership says.
[[nodiscard]] std::optional<std::string> checkExecutableFile(const std::string& path);

/// kms::checkOwnership (who may change the file, and every directory on its way).
[[nodiscard]] std::optional<std::string> checkOwnership(const std::string& path);
/// The file holds at least one PEM certificate and every one parses.
[[nodiscard]] std::optional<std::string> checkPemFile(const std::string& path);

/// `"text"` with TOML basic-string escapes for '"', '\\' and control characters.
[[nodiscard]] std::string quoted(std::string_view text);

/// ASCII lower case.
[[nodiscard]] std::string toLower(std::string_view text);

}  // namespace kms::config::detail
