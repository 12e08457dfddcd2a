#include "pki/encoding.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

namespace kms::pki {
namespace {

constexpr char kStd[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
constexpr char kUrl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

std::string encode(ByteView data, const char* alphabet, bool pad) {
  std::string out;
  out.reserve((data.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 3 <= data.size(); i += 3) {
    std::uint32_t v = (std::uint32_t{data[i]} << 16) | (std::uint32_t{data[i + 1]} << 8) | data[i + 2];
    out += alphabet[(v >> 18) & 63];
    out += alphabet[(v >> 12) & 63];
    out += alphabet[(v >> 6) & 63];
    out += alphabet[v & 63];
  }
  std::size_t rest = data.size() - i;
  if (rest == 1) {
    std::uint32_t v = std::uint32_t{data[i]} << 16;
    out += alphabet[(v >> 18) & 63];
    out += alphabet[(v >> 12) & 63];
    if (pad) {
      out += "==";
    }
  } else if (rest == 2) {
    std::uint32_t v = (std::uint32_t{data[i]} << 16) | (std::uint32_t{data[i + 1]} << 8);
    out += alphabet[(v >> 18) & 63];
    out += alphabet[(v >> 12) & 63];
    out += alphabet[(v >> 6) & 63];
    if (pad) {
      out += '=';
    }
  }
  return out;
}

int sextet(char c, bool url) {
  if (c >= 'A' && c <= 'Z') {
    return c - 'A';
  }
  if (c >= 'a' && c <= 'z') {
    return c - 'a' + 26;
  }
  if (c >= '0' && c <= '9') {
    return c - '0' + 52;
  }
  if (url) {
    return c == '-' ? 62 : (c == '_' ? 63 : -1);
  }
  return c == '+' ? 62 : (c == '/' ? 63 : -1);
}

Result<Bytes> decode(std::string_view text, bool url) {
  const char* what = url ? "base64url" : "base64";
  std::size_t len = text.size();
  if (!url) {
    if (len % 4 != 0) {
      return fail(Errc::invalidArgument, std::string("invalid ") + what + ": length is not a multiple of 4");
    }
    std::size_t padCount = 0;
    while (padCount < 2 && len > 0 && text[len - 1] == '=') {
      --len;
      ++padCount;
    }
  }
  if (len % 4 == 1) {
    return fail(Errc::invalidArgument, std::string("invalid ") + what + ": truncated input");
  }
  Bytes out;
  out.reserve(len * 3 / 4);
  std::uint32_t acc = 0;
  int bits = 0;
  for (std::size_t i = 0; i < len; ++i) {
    int v = sextet(text[i], url);
    if (v < 0) {
      return fail(Errc::invalidArgument,
                  std::string("invalid ") + what + ": unexpected character at offset " + std::to_string(i));
    }
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<std::uint8_t>((acc >> bits) & 0xFF));
    }
  }
  // Non-canonical encodings leave set bits in the discarded tail.
  if (bits > 0 && (acc & ((1U << bits) - 1)) != 0) {
    return fail(Errc::invalidArgument, std::string("invalid ") + what + ": non-canonical trailing bits");
  }
  return out;
}

}  // namespace

std::string base64UrlEncode(ByteView data) {
  return encode(data, kUrl, false);
}
Result<Bytes> base64UrlDecode(std::string_view text) {
  return decode(text, true);
}
std::string base64Encode(ByteView data) {
  return encode(data, kStd, true);
}
Result<Bytes> base64Decode(std::string_view text) {
  return decode(text, false);
}

std::string hexEncode(ByteView data, std::string_view separator) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(data.size() * (2 + separator.size()));
  for (std::size_t i = 0; i < data.size(); ++i) {
    if (i > 0) {
      out += separator;
    }
    out += kHex[data[i] >> 4];
    out += kHex[data[i] & 15];
  }
  return out;
}

Result<Bytes> hexDecode(std::string_view text) {
  if (text.size() % 2 != 0) {
    return fail(Errc::invalidArgument, "invalid hex: odd length");
  }
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') {
      return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
      return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
      return c - 'A' + 10;
    }
    return -1;
  };
  Bytes out(text.size() / 2);
  for (std::size_t i = 0; i < out.size(); ++i) {
    int hi = nibble(text[2 * i]);
    int lo = nibble(text[2 * i + 1]);
    if (hi < 0 || lo < 0) {
      return fail(Errc::invalidArgument, "invalid hex: unexpected character at offset " + std::to_string(2 * i));
    }
    out[i] = static_cast<std::uint8_t>((hi << 4) | lo);
  }
  return out;
}

Digest sha256(ByteView data) {
  Digest d{};
  // SHA256() cannot fail for in-memory input with the default provider loaded.
  ::SHA256(data.data(), data.size(), d.data());
  return d;
}

Result<Digest> hmacSha256(ByteView key, ByteView data) {
  Digest mac{};
  unsigned int length = 0;
  if (::HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), data.data(), data.size(), mac.data(), &length) ==
          nullptr ||
      length != mac.size()) {
    return fail(Errc::crypto, "HMAC-SHA256 failed");
  }
  return mac;
}

std::string sha256Fingerprint(ByteView data) {
  Digest d = sha256(data);
  return "SHA256 " + hexEncode(d, ":");
}

}  // namespace kms::pki
