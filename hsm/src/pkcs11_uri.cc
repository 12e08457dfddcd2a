#include "hsm/pkcs11_uri.h"

#include <algorithm>

namespace kms::hsm {
namespace {

constexpr std::string_view kScheme = "pkcs11:";

bool isUnreserved(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
         c == '_' || c == '~';
}

// RFC 7512 pk11-res-avail plus the extra characters allowed in path or query values.
bool allowedInValue(char c, bool query) {
  if (isUnreserved(c)) {
    return true;
  }
  switch (c) {
    case ':':
    case '[':
    case ']':
    case '@':
    case '!':
    case '$':
    case '\'':
    case '(':
    case ')':
    case '*':
    case '+':
    case ',':
    case '=':
      return true;
    case '&':
      return !query;  // '&' separates query attributes
    case '/':
    case '?':
    case '|':
      return query;  // pk11-qchar
    default:
      return false;
  }
}

bool allowedInName(char c) {
  return isUnreserved(c);
}

Result<std::string> percentDecode(std::string_view in, bool query, std::string_view attr) {
  std::string out;
  out.reserve(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '%') {
      auto hex = [](char h) -> int {
        if (h >= '0' && h <= '9') {
          return h - '0';
        }
        if (h >= 'a' && h <= 'f') {
          return h - 'a' + 10;
        }
        if (h >= 'A' && h <= 'F') {
          return h - 'A' + 10;
        }
        return -1;
      };
      if (i + 2 >= in.size()) {
        return fail(Errc::invalidArgument, "pkcs11 URI: truncated percent escape in '" + std::string(attr) + "'");
      }
      int hi = hex(in[i + 1]);
      int lo = hex(in[i + 2]);
      if (hi < 0 || lo < 0) {
        return fail(Errc::invalidArgument, "pkcs11 URI: malformed percent escape in '" + std::string(attr) + "'");
      }
      out += static_cast<char>((hi << 4) | lo);
      i += 2;
    } else if (allowedInValue(c, query)) {
      out += c;
    } else {
      return fail(Errc::invalidArgument, std::string("pkcs11 URI: character '") + c + "' must be percent-encoded in '" +
                                             std::string(attr) + "'");
    }
  }
  return out;
}

std::string percentEncode(std::string_view value, bool query, bool all) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (char c : value) {
    if (!all && allowedInValue(c, query) && c != '=') {
      out += c;
    } else {
      auto b = static_cast<unsigned char>(c);
      out += '%';
      out += kHex[b >> 4];
      out += kHex[b & 15];
    }
  }
  return out;
}

Result<std::vector<std::pair<std::string, std::string>>> parseAttrs(std::string_view text, char sep, bool query) {
  std::vector<std::pair<std::string, std::string>> out;
  if (text.empty()) {
    return out;
  }
  std::size_t start = 0;
  while (start <= text.size()) {
    std::size_t end = text.find(sep, start);
    if (end == std::string_view::npos) {
      end = text.size();
    }
    std::string_view item = text.substr(start, end - start);
    std::size_t eq = item.find('=');
    if (eq == std::string_view::npos || eq == 0) {
      return fail(Errc::invalidArgument, "pkcs11 URI: attribute without name=value: '" + std::string(item) + "'");
    }
    std::string name(item.substr(0, eq));
    if (!std::all_of(name.begin(), name.end(), allowedInName)) {
      return fail(Errc::invalidArgument, "pkcs11 URI: invalid attribute name '" + name + "'");
    }
    for (const auto& kv : out) {
      if (kv.first == name) {
        return fail(Errc::invalidArgument, "pkcs11 URI: attribute '" + name + "' appears twice");
      }
    }
    auto value = percentDecode(item.substr(eq + 1), query, name);
    if (!value) {
      return fail(value.error());
    }
    out.emplace_back(std::move(name), std::move(*value));
    start = end + 1;
  }
  return out;
}

std::optional<std::string> find(const std::vector<std::pair<std::string, std::string>>& attrs, std::string_view name) {
  for (const auto& kv : attrs) {
    if (kv.first == name) {
      return kv.second;
    }
  }
  return std::nullopt;
}

void set(std::vector<std::pair<std::string, std::string>>& attrs, std::string name, std::string value) {
  for (auto& kv : attrs) {
    if (kv.first == name) {
      kv.second = std::move(value);
      return;
    }
  }
  attrs.emplace_back(std::move(name), std::move(value));
}

}  // namespace

Result<Pkcs11Uri> Pkcs11Uri::parse(std::string_view text) {
  if (text.size() < kScheme.size() || text.substr(0, kScheme.size()) != kScheme) {
    return fail(Errc::invalidArgument, "not a pkcs11: URI");
  }
  std::string_view rest = text.substr(kScheme.size());
  std::size_t q = rest.find('?');
  std::string_view pathPart = rest.substr(0, q);
  std::string_view queryPart = q == std::string_view::npos ? std::string_view{} : rest.substr(q + 1);
  auto path = parseAttrs(pathPart, ';', false);
  if (!path) {
    return fail(path.error());
  }
  auto query = parseAttrs(queryPart, '&', true);
  if (!query) {
    return fail(query.error());
  }
  Pkcs11Uri uri;
  uri.path_ = std::move(*path);
  uri.query_ = std::move(*query);
  return uri;
}

Pkcs11Uri Pkcs11Uri::forKey(std::string token, std::string object, const pki::Bytes& id, std::string type) {
  Pkcs11Uri uri;
  uri.setPath("token", std::move(token));
  uri.setPath("object", std::move(object));
  uri.setPath("id", std::string(id.begin(), id.end()));
  uri.setPath("type", std::move(type));
  return uri;
}

std::string Pkcs11Uri::toString() const {
  std::string out(kScheme);
  for (std::size_t i = 0; i < path_.size(); ++i) {
    if (i > 0) {
      out += ';';
    }
    out += path_[i].first;
    out += '=';
    out += percentEncode(path_[i].second, false, path_[i].first == "id");
  }
  for (std::size_t i = 0; i < query_.size(); ++i) {
    out += i == 0 ? '?' : '&';
    out += query_[i].first;
    out += '=';
    out += percentEncode(query_[i].second, true, false);
  }
  return out;
}

std::optional<std::string> Pkcs11Uri::path(std::string_view name) const {
  return find(path_, name);
}
std::optional<std::string> Pkcs11Uri::query(std::string_view name) const {
  return find(query_, name);
}

pki::Bytes Pkcs11Uri::id() const {
  auto v = path("id");
  return v ? pki::Bytes(v->begin(), v->end()) : pki::Bytes{};
}

void Pkcs11Uri::setPath(std::string name, std::string value) {
  set(path_, std::move(name), std::move(value));
}
void Pkcs11Uri::setQuery(std::string name, std::string value) {
  set(query_, std::move(name), std::move(value));
}

}  // namespace kms::hsm
