#include "config/config.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <exception>
#include <fstream>
#include <sstream>

#include "loader.h"

extern char** environ;  // NOLINT: POSIX, not declared by <unistd.h> without _GNU_SOURCE

namespace kms::config {
namespace {

/// A bound against a wrong file (a log, a disk image), not against real configurations: one
/// [[certificate]] table is ~100 bytes, and a daemon may manage 100,000 of them.
constexpr off_t kMaxConfigSize = off_t{64} * 1024 * 1024;

tl::unexpected<ConfigErrors> single(std::string file, std::string what) {
  return tl::unexpected(ConfigErrors{ConfigError{std::move(file), 0, 0, "", "", std::move(what)}});
}

}  // namespace

std::string HostPort::toString() const {
  if (host.find(':') != std::string::npos) {
    return "[" + host + "]:" + std::to_string(port);
  }
  return host + ":" + std::to_string(port);
}

const char* toString(LogFormat value) noexcept {
  return value == LogFormat::json ? "json" : "text";
}

const char* toString(Fingerprint value) noexcept {
  return value == Fingerprint::jwkThumbprint ? "jwk-thumbprint" : "spki";
}

const char* toString(PublicationCheck value) noexcept {
  return value == PublicationCheck::file ? "file" : "fetch";
}

const char* toString(StartTls value) noexcept {
  switch (value) {
    case StartTls::required:
      return "required";
    case StartTls::opportunistic:
      return "opportunistic";
    case StartTls::off:
      return "off";
  }
  return "unknown";
}

const char* toString(Challenge value) noexcept {
  switch (value) {
    case Challenge::tkauth01:
      return "tkauth-01";
    case Challenge::http01:
      return "http-01";
    case Challenge::dns01:
      return "dns-01";
  }
  return "unknown";
}

std::string ConfigError::toString() const {
  std::string out = file;
  if (line > 0) {
    out += ':' + std::to_string(line) + ':' + std::to_string(column);
  }
  out += ": ";
  if (!section.empty()) {
    out += '[' + section + "] ";
  }
  if (!key.empty()) {
    out += key + ": ";
  }
  out += what;
  return out;
}

std::string formatErrors(const ConfigErrors& errors) {
  std::string out;
  for (const ConfigError& error : errors) {
    out += error.toString();
    out += '\n';
  }
  return out;
}

Environment environmentSnapshot() {
  Environment env;
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    std::string_view text(*entry);
    if (!text.starts_with("KMSD_")) {
      continue;
    }
    std::size_t equals = text.find('=');
    if (equals == std::string_view::npos) {
      continue;
    }
    env.emplace(std::string(text.substr(0, equals)), std::string(text.substr(equals + 1)));
  }
  return env;
}

namespace {

/// The file's text, or the one error naming it.
tl::expected<std::string, ConfigErrors> readText(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    int err = errno;
    return single(path, std::string("cannot read config file: ") + std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    return single(path, "cannot read config file: not a regular file");
  }
  if (st.st_size > kMaxConfigSize) {
    return single(path, "cannot read config file: larger than 64 MiB");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    int err = errno;
    return single(path, std::string("cannot read config file: ") + std::strerror(err));
  }
  std::ostringstream content;
  content << in.rdbuf();
  if (in.bad()) {
    return single(path, "cannot read config file: read error");
  }
  return content.str();
}

/// The parsed document, or its syntax error at the parser's position.
tl::expected<toml::table, ConfigErrors> parse(const std::string& text, const std::string& sourceName) {
  try {
    return toml::parse(text, std::string_view(sourceName));
  } catch (const toml::parse_error& error) {
    const toml::source_position begin = error.source().begin;
    return tl::unexpected(ConfigErrors{ConfigError{sourceName, static_cast<int>(begin.line),
                                                   static_cast<int>(begin.column), "toml", "",
                                                   std::string(error.description())}});
  }
}

/// What readConfigFile takes from a file that does not parse: [daemon] state_dir and
/// control_socket as scanned from `text`, with the overrides applied.
Config daemonSettingsOnly(const std::string& text, const std::string& sourceName, const Environment& env) {
  toml::table daemon;
  for (const char* key : {"state_dir", "control_socket"}) {
    std::istringstream in(text);
    if (auto value = scanDaemonSetting(in, key)) {
      daemon.insert(key, *value);
    }
  }
  toml::table root;
  root.insert("daemon", std::move(daemon));
  detail::Loader loader(sourceName, FileChecks::off);
  return loader.read(root, env).config;  // its errors are those of the missing sections
}

}  // namespace

tl::expected<Config, ConfigErrors> loadConfigString(const std::string& text, const std::string& sourceName,
                                                    const Environment& env) {
  try {
    auto root = parse(text, sourceName);
    if (!root) {
      return tl::unexpected(std::move(root.error()));
    }
    detail::Loader loader(sourceName);
    return loader.load(*root, env);
  } catch (const std::exception& error) {
    return single(sourceName, std::string("internal error while loading: ") + error.what());
  } catch (...) {
    return single(sourceName, "internal error while loading");
  }
}

tl::expected<Config, ConfigErrors> loadConfigFile(const std::string& path, const Environment& env) {
  try {
    auto text = readText(path);
    if (!text) {
      return tl::unexpected(std::move(text.error()));
    }
    return loadConfigString(*text, path, env);
  } catch (const std::exception& error) {
    return single(path, std::string("internal error while loading: ") + error.what());
  }
}

ConfigRead readConfigFile(const std::string& path, const Environment& env, FileChecks files) {
  try {
    auto text = readText(path);
    if (!text) {
      return ConfigRead{daemonSettingsOnly("", path, env), std::move(text.error())};
    }
    auto root = parse(*text, path);
    if (!root) {
      return ConfigRead{daemonSettingsOnly(*text, path, env), std::move(root.error())};
    }
    detail::Loader loader(path, files);
    return loader.read(*root, env);
  } catch (const std::exception& error) {
    return ConfigRead{Config{}, single(path, std::string("internal error while loading: ") + error.what()).value()};
  }
}

std::optional<std::string> scanDaemonSetting(std::istream& in, std::string_view key) {
  std::string line;
  bool inDaemon = false;
  while (std::getline(in, line)) {
    auto first = line.find_first_not_of(" \t");
    if (first == std::string::npos || line[first] == '#') {
      continue;
    }
    std::string_view l(line);
    l.remove_prefix(first);
    if (l.front() == '[') {
      if (inDaemon) {
        return std::nullopt;  // [daemon] is one table: the key is not set
      }
      inDaemon = l.starts_with("[daemon]");
      continue;
    }
    if (!inDaemon || !l.starts_with(key)) {
      continue;
    }
    l.remove_prefix(key.size());
    auto equals = l.find_first_not_of(" \t");
    if (equals == std::string_view::npos || l[equals] != '=') {
      continue;  // another key with this prefix (state_dir_x)
    }
    auto open = l.find('"', equals);
    auto close = open == std::string_view::npos ? open : l.find('"', open + 1);
    if (close == std::string_view::npos || l.substr(open + 1, close - open - 1).find('\\') != std::string_view::npos) {
      return std::nullopt;
    }
    return std::string(l.substr(open + 1, close - open - 1));
  }
  return std::nullopt;
}

}  // namespace kms::config
