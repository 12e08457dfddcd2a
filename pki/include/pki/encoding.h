#pragma once
/// @file Byte encodings and digests: base64 (standard, padded), base64url (unpadded),
/// upper-case hex, SHA-256 and the "SHA256 AA:BB:..." fingerprint form.

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kms/error.h"

namespace kms::pki {

using Bytes = std::vector<std::uint8_t>;
using ByteView = std::span<const std::uint8_t>;
using Digest = std::array<std::uint8_t, 32>;

/// View of a string's bytes.
[[nodiscard]] inline ByteView asBytes(std::string_view s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

/// RFC 4648 §5 base64url without padding.
[[nodiscard]] std::string base64UrlEncode(ByteView data);
/// Decodes base64url; padding is rejected, as are characters outside the alphabet.
[[nodiscard]] Result<Bytes> base64UrlDecode(std::string_view text);
/// RFC 4648 §4 standard base64 with '=' padding.
[[nodiscard]] std::string base64Encode(ByteView data);
/// Decodes standard base64; padding is required when the length needs it.
[[nodiscard]] Result<Bytes> base64Decode(std::string_view text);

/// Upper-case hex, optionally with a separator between bytes ("AB:CD").
[[nodiscard]] std::string hexEncode(ByteView data, std::string_view separator = "");
/// Decodes hex (either case, no separators).
[[nodiscard]] Result<Bytes> hexDecode(std::string_view text);

/// SHA-256 of data.
[[nodiscard]] Digest sha256(ByteView data);
/// HMAC-SHA256 of data under key (RFC 2104): the ACME external account binding, kmsd's
/// webhook signature. Errc::crypto when OpenSSL fails.
[[nodiscard]] Result<Digest> hmacSha256(ByteView key, ByteView data);

/// "SHA256 " + upper-case hex pairs joined by ':' of sha256(data) — the SPC token
/// fingerprint form (docs/protocols.md).
[[nodiscard]] std::string sha256Fingerprint(ByteView data);

}  // namespace kms::pki
