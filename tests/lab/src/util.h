#pragma once
/// @file Small helpers shared by the lab services: randomness, time, files, JOSE.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "kms/error.h"
#include "pki/encoding.h"
#include "pki/signer.h"

namespace kms::lab {

using SystemTime = std::chrono::system_clock::time_point;

/// n random bytes from OpenSSL's DRBG.
[[nodiscard]] pki::Bytes randomBytes(std::size_t n);
/// base64url of n random bytes (ACME tokens, ids, passwords).
[[nodiscard]] std::string randomToken(std::size_t n = 16);
/// A random (version 4) UUID, lower-case.
[[nodiscard]] std::string uuid4();

/// Seconds since the epoch.
[[nodiscard]] std::int64_t unixNow();
/// "2025-01-02T03:04:05Z"
[[nodiscard]] std::string rfc3339(SystemTime t);

/// Whole file, or nullopt when it cannot be read.
[[nodiscard]] std::optional<std::string> readFile(const std::string& path);
/// Writes through a temporary file and rename(2); mode applied before the rename.
[[nodiscard]] Result<void> writeFileAtomic(const std::string& path, std::string_view content, unsigned mode = 0644);

/// Compact JWS, ES256: b64u(header).b64u(payload).b64u(r||s).
/// headerJson and payloadJson are signed exactly as given.
[[nodiscard]] Result<std::string> signCompactEs256(pki::Signer& key, const std::string& headerJson,
                                                   const std::string& payloadJson);

/// Decodes a TNAuthList identifier/tkvalue in either base64 form (padded standard or
/// unpadded base64url), returning the raw bytes; nullopt when it is neither.
[[nodiscard]] std::optional<pki::Bytes> decodeEitherBase64(std::string_view value);

/// Case-insensitive ASCII equality.
[[nodiscard]] bool iequals(std::string_view a, std::string_view b);

}  // namespace kms::lab
