#include "pki/passport.h"

#include <openssl/rand.h>

#include <array>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "pki/encoding.h"
#include "kms/text.h"
#include "pki/jose.h"

namespace kms::pki {
namespace {

using nlohmann::json;

constexpr std::size_t kMaxTnDigits = 15;  // E.164

bool isHex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

Result<void> claimError(std::string what) {
  return fail(Errc::invalidArgument, std::move(what));
}

/// Canonical JSON text (nlohmann's objects keep their members sorted; dump() adds no white
/// space and leaves UTF-8 as it is).
std::string canonical(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::strict);
}

/// Removes folding white space (CR, LF, and the blanks around them) and trims.
std::string unfold(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (std::size_t i = 0; i < value.size(); ++i) {
    const char c = value[i];
    if (c == '\r' || c == '\n') {
      while (!out.empty() && (out.back() == ' ' || out.back() == '\t')) {
        out.pop_back();
      }
      while (i + 1 < value.size() && (value[i + 1] == ' ' || value[i + 1] == '\t')) {
        ++i;
      }
      continue;
    }
    out += c;
  }
  const auto first = out.find_first_not_of(" \t");
  const auto last = out.find_last_not_of(" \t");
  return first == std::string::npos ? std::string() : out.substr(first, last - first + 1);
}


}  // namespace

Result<std::string> canonicalTn(std::string_view text, std::string_view field) {
  std::string digits;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c >= '0' && c <= '9') {
      digits += c;
    } else if ((c == '+' && i == 0) || c == '-' || c == '.' || c == '(' || c == ')' || c == ' ') {
      continue;  // RFC 8224 §8.3: a leading '+' and visual separators
    } else {
      return fail(Errc::invalidArgument, std::string(field) + ": not a telephone number: '" + std::string(text) +
                                             "' (digits, a leading '+' and - . ( ) or spaces only)");
    }
  }
  if (digits.empty() || digits.size() > kMaxTnDigits) {
    return fail(Errc::invalidArgument, std::string(field) + ": a telephone number has 1 to 15 digits, got " +
                                           std::to_string(digits.size()));
  }
  return digits;
}

bool isUuid(std::string_view text) {
  if (text.size() != 36) {
    return false;
  }
  for (std::size_t i = 0; i < text.size(); ++i) {
    const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? text[i] != '-' : !isHex(text[i])) {
      return false;
    }
  }
  return true;
}

std::string randomUuid() {
  std::array<unsigned char, 16> b{};
  if (RAND_bytes(b.data(), static_cast<int>(b.size())) != 1) {
    // OpenSSL's CSPRNG does not fail once seeded; a UUID must still never repeat.
    throw std::runtime_error("RAND_bytes failed");
  }
  b[6] = static_cast<unsigned char>((b[6] & 0x0F) | 0x40);  // version 4
  b[8] = static_cast<unsigned char>((b[8] & 0x3F) | 0x80);  // RFC 4122 variant
  static constexpr char kHex[] = "0123456789abcdef";
  std::string text;
  text.reserve(36);
  for (std::size_t i = 0; i < b.size(); ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) {
      text += '-';
    }
    text += kHex[b[i] >> 4];
    text += kHex[b[i] & 0x0F];
  }
  return text;
}

const char* toString(PassportType type) noexcept {
  return type == PassportType::div ? "div" : "shaken";
}

Result<void> checkClaims(const PassportClaims& c) {
  auto tnOk = [](const std::string& tn, const std::string& field) -> Result<void> {
    auto canon = canonicalTn(tn, field);
    if (!canon) {
      return fail(canon.error());
    }
    if (*canon != tn) {
      return claimError(field + ": not in canonical form: '" + tn + "'");
    }
    return ok();
  };
  if (auto r = tnOk(c.orig, "orig.tn"); !r) {
    return r;
  }
  if (c.dest.empty()) {
    return claimError("dest.tn: at least one telephone number is needed");
  }
  for (std::size_t i = 0; i < c.dest.size(); ++i) {
    if (auto r = tnOk(c.dest[i], "dest.tn[" + std::to_string(i) + "]"); !r) {
      return r;
    }
  }
  if (c.iat <= 0) {
    return claimError("iat: must be a time in seconds since the epoch");
  }
  if (c.type == PassportType::shaken) {
    if (c.attest != "A" && c.attest != "B" && c.attest != "C") {
      return claimError("attest: must be A, B or C, got '" + c.attest + "'");
    }
    if (!isUuid(c.origid)) {
      return claimError("origid: must be a UUID, got '" + c.origid + "'");
    }
    if (!c.div.empty()) {
      return claimError("div: only a div PASSporT carries it");
    }
    if (c.rcd && c.rcd->name.empty()) {
      return claimError("rcd.nam: the display name must not be empty");
    }
    if (c.rcd && c.rcd->reason && c.rcd->reason->empty()) {
      return claimError("crn: the call reason must not be empty");
    }
    return ok();
  }
  if (!c.attest.empty() || !c.origid.empty() || c.rcd) {
    return claimError("a div PASSporT carries no attest, origid or rcd");
  }
  return tnOk(c.div, "div.tn");
}

std::string passportHeaderJson(PassportType type, std::string_view x5u) {
  return canonical(json{{"alg", "ES256"}, {"ppt", toString(type)}, {"typ", "passport"}, {"x5u", std::string(x5u)}});
}

std::string passportPayloadJson(const PassportClaims& c) {
  json p{{"dest", {{"tn", c.dest}}}, {"iat", c.iat}, {"orig", {{"tn", c.orig}}}};
  if (c.type == PassportType::div) {
    p["div"] = {{"tn", c.div}};
  } else {
    p["attest"] = c.attest;
    p["origid"] = c.origid;
    if (c.rcd) {
      p["rcd"] = {{"nam", c.rcd->name}};
      if (c.rcd->reason) {
        p["crn"] = *c.rcd->reason;
      }
    }
  }
  return canonical(p);
}

Result<std::string> signPassport(const PassportClaims& claims, std::string_view x5u, Signer& signer) {
  if (auto checked = checkClaims(claims); !checked) {
    return fail(checked.error());
  }
  std::string input;
  try {
    input = jwsSigningInput(passportHeaderJson(claims.type, x5u), passportPayloadJson(claims));
  } catch (const json::exception& e) {  // text that is not UTF-8 (an rcd name)
    return fail(Errc::invalidArgument, std::string("claims are not valid UTF-8: ") + e.what());
  }
  auto sig = signer.signMessage(asBytes(input));
  if (!sig) {
    return fail(sig.error());
  }
  return input + "." + base64UrlEncode(*sig);
}

std::string identityHeader(std::string_view jws, std::string_view x5u, PassportType type) {
  return std::string(jws) + ";info=<" + std::string(x5u) + ">;alg=ES256;ppt=" + toString(type);
}

Result<IdentityHeader> parseIdentityHeader(std::string_view value) {
  const std::string text = unfold(value);
  std::string_view rest(text);
  IdentityHeader out;
  const auto semi = rest.find(';');
  out.jws = std::string(trimBlanks(rest.substr(0, semi)));
  if (out.jws.empty()) {
    return fail(Errc::invalidArgument, "Identity: no token before the parameters");
  }
  rest = semi == std::string_view::npos ? std::string_view() : rest.substr(semi + 1);
  while (!rest.empty()) {
    const auto next = rest.find(';');
    const std::string_view param = trimBlanks(rest.substr(0, next));
    rest = next == std::string_view::npos ? std::string_view() : rest.substr(next + 1);
    const auto eq = param.find('=');
    if (eq == std::string_view::npos) {
      continue;  // a parameter without a value: nothing kmsd reads
    }
    const std::string_view name = trimBlanks(param.substr(0, eq));
    std::string_view val = trimBlanks(param.substr(eq + 1));
    if (name == "info") {
      if (val.size() < 2 || val.front() != '<' || val.back() != '>') {
        return fail(Errc::invalidArgument, "Identity: info must be a URI in angle brackets");
      }
      out.info = std::string(val.substr(1, val.size() - 2));
    } else if (name == "alg") {
      out.alg = std::string(val);
    } else if (name == "ppt") {
      out.ppt = std::string(val);
    }
  }
  return out;
}

}  // namespace kms::pki
