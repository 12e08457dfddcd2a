#include "checks.h"

#include <arpa/inet.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>

#include "kms/fs.h"
#include "kms/secret.h"
#include "pki/x509.h"

namespace kms::config::detail {
namespace {

constexpr std::string_view kHttpsOnly = "must be https (http is accepted only for loopback hosts)";

bool isAlpha(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
bool isDigit(char c) {
  return c >= '0' && c <= '9';
}
bool isAlnum(char c) {
  return isAlpha(c) || isDigit(c);
}

/// 1..65535 written with digits only.
std::optional<std::uint16_t> parsePort(std::string_view text) {
  if (text.empty() || text.size() > 5) {
    return std::nullopt;
  }
  unsigned value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value < 1 || value > 65535) {
    return std::nullopt;
  }
  return static_cast<std::uint16_t>(value);
}

bool isIpv6(std::string_view host) {
  if (host.size() >= INET6_ADDRSTRLEN) {
    return false;
  }
  std::string copy(host);
  in6_addr addr{};
  return ::inet_pton(AF_INET6, copy.c_str(), &addr) == 1;
}

/// Host names and IPv4 literals: letters, digits, '-', '.', '_'.
bool isHostName(std::string_view host) {
  if (host.empty() || host.size() > 253) {
    return false;
  }
  for (char c : host) {
    if (!isAlnum(c) && c != '-' && c != '.' && c != '_') {
      return false;
    }
  }
  return true;
}

struct Authority {
  std::string host;  // without brackets
  std::optional<std::string_view> port;
};

/// Splits "host", "host:port", "[v6]" or "[v6]:port"; nullopt when malformed.
std::optional<Authority> splitAuthority(std::string_view text) {
  Authority out;
  std::string_view rest;
  if (!text.empty() && text.front() == '[') {
    std::size_t close = text.find(']');
    if (close == std::string_view::npos) {
      return std::nullopt;
    }
    std::string_view inside = text.substr(1, close - 1);
    if (!isIpv6(inside)) {
      return std::nullopt;
    }
    out.host = std::string(inside);
    rest = text.substr(close + 1);
    if (!rest.empty() && rest.front() != ':') {
      return std::nullopt;
    }
  } else {
    std::size_t colon = text.find(':');
    out.host = std::string(text.substr(0, colon));
    if (!isHostName(out.host)) {
      return std::nullopt;
    }
    rest = colon == std::string_view::npos ? std::string_view{} : text.substr(colon);
  }
  if (!rest.empty()) {
    out.port = rest.substr(1);
  }
  return out;
}

std::string describeErrno(int err) {
  return std::strerror(err);
}

}  // namespace

std::string quoted(std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "\"";
  for (char c : text) {
    auto byte = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (byte < 0x20 || byte == 0x7f) {
      out += "\\u00";
      out += kHex[byte >> 4];
      out += kHex[byte & 0x0f];
    } else {
      out += c;
    }
  }
  out += '"';
  return out;
}

std::string toLower(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') {
      c = static_cast<char>(c - 'A' + 'a');
    }
  }
  return out;
}

bool isLoopbackHost(std::string_view host) {
  if (toLower(host) == "localhost") {
    return true;
  }
  if (host.size() < INET6_ADDRSTRLEN) {
    std::string copy(host);
    in_addr v4{};
    if (::inet_pton(AF_INET, copy.c_str(), &v4) == 1) {
      // s_addr is in network order: its first byte is the first octet.
      return reinterpret_cast<const unsigned char*>(&v4.s_addr)[0] == 127;
    }
    in6_addr v6{};
    if (::inet_pton(AF_INET6, copy.c_str(), &v6) == 1) {
      return std::memcmp(&v6, &in6addr_loopback, sizeof v6) == 0;
    }
  }
  return false;
}

std::optional<std::string> checkUrl(std::string_view url) {
  const std::string invalid = "is not a valid URL (expected scheme://host[:port]/path)";
  for (char c : url) {
    auto byte = static_cast<unsigned char>(c);
    if (byte <= 0x20 || byte == 0x7f) {
      return invalid;
    }
  }
  std::size_t sep = url.find("://");
  if (sep == std::string_view::npos || sep == 0 || !isAlpha(url.front())) {
    return invalid;
  }
  std::string scheme = toLower(url.substr(0, sep));
  for (char c : scheme) {
    if (!isAlnum(c) && c != '+' && c != '-' && c != '.') {
      return invalid;
    }
  }
  std::string_view rest = url.substr(sep + 3);
  std::string_view authority = rest.substr(0, rest.find_first_of("/?#"));
  if (authority.find('@') != std::string_view::npos) {
    return std::string("must not contain user information");
  }
  std::optional<Authority> parts = splitAuthority(authority);
  if (!parts) {
    return invalid;
  }
  if (parts->port && !parsePort(*parts->port)) {
    return invalid;
  }
  if (scheme == "https" || (scheme == "http" && isLoopbackHost(parts->host))) {
    return std::nullopt;
  }
  return std::string(kHttpsOnly);
}

tl::expected<HostPort, std::string> parseHostPort(std::string_view text) {
  std::optional<Authority> parts = splitAuthority(text);
  if (!parts || !parts->port) {
    return tl::unexpected(std::string("must be host:port (e.g. 127.0.0.1:9464 or [::1]:9464)"));
  }
  std::optional<std::uint16_t> port = parsePort(*parts->port);
  if (!port) {
    return tl::unexpected(std::string("port must be a number in 1..65535"));
  }
  return HostPort{parts->host, *port};
}

tl::expected<std::chrono::seconds, std::string> parseDuration(std::string_view text) {
  const std::string bad = R"(must be a duration such as "90s", "30m", "24h" or "7d")";
  if (text.size() < 2 || text.size() > 10) {
    return tl::unexpected(bad);
  }
  std::string_view digits = text.substr(0, text.size() - 1);
  std::int64_t count = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), count);
  if (ec != std::errc() || end != digits.data() + digits.size() || !isDigit(digits.front())) {
    return tl::unexpected(bad);
  }
  std::int64_t unit = 0;
  switch (text.back()) {
    case 's':
      unit = 1;
      break;
    case 'm':
      unit = 60;
      break;
    case 'h':
      unit = 3600;
      break;
    case 'd':
      unit = 86400;
      break;
    default:
      return tl::unexpected(bad);
  }
  if (count == 0) {
    return tl::unexpected(std::string("must be greater than zero"));
  }
  // At most 9 digits times 86400 fits easily in 64 bits.
  return std::chrono::seconds(count * unit);
}

std::string formatDuration(std::chrono::seconds value) {
  std::int64_t s = value.count();
  if (s > 0 && s % 86400 == 0) {
    return std::to_string(s / 86400) + "d";
  }
  if (s > 0 && s % 3600 == 0) {
    return std::to_string(s / 3600) + "h";
  }
  if (s > 0 && s % 60 == 0) {
    return std::to_string(s / 60) + "m";
  }
  return std::to_string(s) + "s";
}

bool isValidCertificateName(std::string_view name) {
  if (name.empty() || name.size() > 64) {
    return false;
  }
  for (char c : name) {
    if (!isAlnum(c) && c != '.' && c != '_' && c != '-') {
      return false;
    }
  }
  return true;
}

bool isValidSpc(std::string_view spc) {
  if (spc.empty()) {
    return false;
  }
  for (char c : spc) {
    if (!isDigit(c) && !(c >= 'A' && c <= 'Z')) {
      return false;
    }
  }
  return true;
}

bool isValidDnsName(std::string_view name) {
  if (name.starts_with("*.")) {
    name.remove_prefix(2);
  }
  if (name.empty() || name.size() > 253) {
    return false;
  }
  std::size_t start = 0;
  while (start <= name.size()) {
    std::size_t dot = name.find('.', start);
    std::string_view label = name.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') {
      return false;
    }
    for (char c : label) {
      if (!isAlnum(c) && c != '-') {
        return false;
      }
    }
    if (dot == std::string_view::npos) {
      break;
    }
    start = dot + 1;
  }
  return true;
}

namespace {

/// stat + regular file + access(mode); `denied` words the access failure.
std::optional<std::string> checkFileAccess(const std::string& path, int mode, const std::string& denied) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    int err = errno;
    return "cannot access " + quoted(path) + ": " + describeErrno(err);
  }
  if (!S_ISREG(st.st_mode)) {
    return quoted(path) + " is not a regular file";
  }
  if (::access(path.c_str(), mode) != 0) {
    int err = errno;
    return denied + ": " + describeErrno(err);
  }
  return std::nullopt;
}

}  // namespace

std::optional<std::string> checkReadableFile(const std::string& path) {
  return checkFileAccess(path, R_OK, "cannot read " + quoted(path));
}

std::optional<std::string> checkSecretFile(const std::string& path) {
  Result<SecretBytes> secret = readSecretFile(path);
  if (!secret.has_value()) {
    return secret.error().toString();
  }
  return std::nullopt;  // the SecretBytes wipes itself here
}

std::optional<std::string> checkExecutableFile(const std::string& path) {
  if (auto problem = checkFileAccess(path, X_OK, quoted(path) + " is not executable")) {
    return problem;
  }
  return checkOwnership(path);  // what kmsd runs
}

std::optional<std::string> checkOwnership(const std::string& path) {
  return kms::checkOwnership(path);
}

std::optional<std::string> checkPemFile(const std::string& path) {
  auto certs = pki::readPemFile(path);  // no certificate at all is an error there too
  if (!certs.has_value()) {
    return certs.error().code == Errc::io ? "cannot read " + quoted(path)
                                           : quoted(path) + " does not hold PEM certificates: " + certs.error().message;
  }
  return std::nullopt;
}

}  // namespace kms::config::detail
