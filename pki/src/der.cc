#include "der.h"

namespace kms::pki::der {

void writeTlv(Bytes& out, std::uint8_t tag, ByteView content) {
  out.push_back(tag);
  std::size_t len = content.size();
  if (len < 0x80) {
    out.push_back(static_cast<std::uint8_t>(len));
  } else {
    std::uint8_t buf[sizeof(std::size_t)];
    int n = 0;
    while (len > 0) {
      buf[n++] = static_cast<std::uint8_t>(len & 0xFF);
      len >>= 8;
    }
    out.push_back(static_cast<std::uint8_t>(0x80 | n));
    while (n > 0) {
      out.push_back(buf[--n]);
    }
  }
  out.insert(out.end(), content.begin(), content.end());
}

Bytes integerContent(std::uint64_t value) {
  Bytes out;
  do {
    out.insert(out.begin(), static_cast<std::uint8_t>(value & 0xFF));
    value >>= 8;
  } while (value > 0);
  if ((out.front() & 0x80) != 0) {
    out.insert(out.begin(), 0x00);
  }
  return out;
}

std::optional<Tlv> Reader::next() {
  if (data_.size() - pos_ < 2) {
    return std::nullopt;
  }
  std::uint8_t tag = data_[pos_++];
  if ((tag & 0x1F) == 0x1F) {
    return std::nullopt;  // multi-byte tags never occur in what we parse
  }
  std::size_t len = data_[pos_++];
  if ((len & 0x80) != 0) {
    std::size_t n = len & 0x7F;
    if (n == 0 || n > 4 || data_.size() - pos_ < n) {
      return std::nullopt;  // indefinite or absurd lengths
    }
    len = 0;
    for (std::size_t i = 0; i < n; ++i) {
      len = (len << 8) | data_[pos_++];
    }
    if (len < 0x80 || (n > 1 && (len >> (8 * (n - 1))) == 0)) {
      return std::nullopt;  // non-minimal length encoding
    }
  }
  if (data_.size() - pos_ < len) {
    return std::nullopt;
  }
  Tlv tlv{tag, data_.subspan(pos_, len)};
  pos_ += len;
  return tlv;
}

}  // namespace kms::pki::der
