#pragma once
// Minimal DER reader/writer for the few hand-encoded structures (TNAuthList). Definite
// lengths only, single-byte tags only: everything TNAuthList needs.

#include <cstdint>
#include <optional>
#include <string_view>

#include "pki/encoding.h"

namespace kms::pki::der {

/// Appends tag, length and content.
void writeTlv(Bytes& out, std::uint8_t tag, ByteView content);
/// Positive INTEGER content octets (minimal, with a leading 0x00 when the top bit is set).
Bytes integerContent(std::uint64_t value);

/// One parsed TLV.
struct Tlv {
  std::uint8_t tag = 0;
  ByteView content;
};

/// Sequential reader over a DER buffer.
class Reader {
 public:
  explicit Reader(ByteView data) : data_(data) {}
  /// Next TLV, or nullopt on malformed input (non-minimal length, overflow, high tags).
  std::optional<Tlv> next();
  [[nodiscard]] bool atEnd() const { return pos_ == data_.size(); }

 private:
  ByteView data_;
  std::size_t pos_ = 0;
};

}  // namespace kms::pki::der
