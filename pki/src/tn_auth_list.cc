#include "pki/tn_auth_list.h"

#include "der.h"

namespace kms::pki {
namespace {

constexpr std::uint8_t kSequence = 0x30;
constexpr std::uint8_t kIa5String = 0x16;
constexpr std::uint8_t kInteger = 0x02;
constexpr std::uint8_t kTagSpc = 0xA0;
constexpr std::uint8_t kTagRange = 0xA1;
constexpr std::uint8_t kTagOne = 0xA2;

bool isTelephoneNumber(std::string_view tn) {
  if (tn.empty() || tn.size() > 15) {
    return false;
  }
  for (char c : tn) {
    if (!((c >= '0' && c <= '9') || c == '#' || c == '*')) {
      return false;
    }
  }
  return true;
}

bool isIa5(std::string_view s) {
  for (char c : s) {
    if (static_cast<unsigned char>(c) > 0x7F) {
      return false;
    }
  }
  return true;
}

Result<std::string> readIa5(der::Reader& reader, const char* what) {
  auto tlv = reader.next();
  if (!tlv || tlv->tag != kIa5String) {
    return fail(Errc::invalidArgument, std::string("TNAuthList: expected IA5String for ") + what);
  }
  std::string value(reinterpret_cast<const char*>(tlv->content.data()), tlv->content.size());
  if (!isIa5(value)) {
    return fail(Errc::invalidArgument, std::string("TNAuthList: ") + what + " is not IA5");
  }
  return value;
}

Result<std::uint64_t> readCount(der::Reader& reader) {
  auto tlv = reader.next();
  if (!tlv || tlv->tag != kInteger || tlv->content.empty() || tlv->content.size() > 9) {
    return fail(Errc::invalidArgument, "TNAuthList: expected INTEGER range count");
  }
  ByteView c = tlv->content;
  if ((c[0] & 0x80) != 0) {
    return fail(Errc::invalidArgument, "TNAuthList: negative range count");
  }
  if (c.size() > 1 && c[0] == 0 && (c[1] & 0x80) == 0) {
    return fail(Errc::invalidArgument, "TNAuthList: non-minimal INTEGER");
  }
  if (c.size() == 9 && c[0] != 0) {
    return fail(Errc::invalidArgument, "TNAuthList: range count too large");
  }
  std::uint64_t v = 0;
  for (std::uint8_t b : c) {
    v = (v << 8) | b;
  }
  return v;
}

Result<void> checkEntry(const TnEntry& e) {
  switch (e.kind) {
    case TnEntry::Kind::spc:
      if (e.value.empty() || !isIa5(e.value)) {
        return fail(Errc::invalidArgument, "TNAuthList: SPC must be a non-empty IA5String");
      }
      return ok();
    case TnEntry::Kind::one:
      if (!isTelephoneNumber(e.value)) {
        return fail(Errc::invalidArgument,
                    "TNAuthList: telephone number must be 1 to 15 characters of 0-9 # *: '" + e.value + "'");
      }
      return ok();
    case TnEntry::Kind::range:
      if (!isTelephoneNumber(e.value)) {
        return fail(Errc::invalidArgument,
                    "TNAuthList: range start must be 1 to 15 characters of 0-9 # *: '" + e.value + "'");
      }
      if (e.count < 2) {
        return fail(Errc::invalidArgument, "TNAuthList: range count must be at least 2");
      }
      return ok();
  }
  return fail(Errc::internal, "TNAuthList: unknown entry kind");
}

}  // namespace

bool isValidSpc(std::string_view code) {
  if (code.empty()) {
    return false;
  }
  for (char c : code) {
    if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z'))) {
      return false;
    }
  }
  return true;
}

Result<Bytes> TnAuthList::toDer() const {
  if (entries_.empty()) {
    return fail(Errc::invalidArgument, "TNAuthList: the list is empty");
  }
  Bytes body;
  for (const TnEntry& e : entries_) {
    if (auto r = checkEntry(e); !r) {
      return fail(r.error());
    }
    Bytes inner;
    switch (e.kind) {
      case TnEntry::Kind::spc:
        der::writeTlv(inner, kIa5String, asBytes(e.value));
        der::writeTlv(body, kTagSpc, inner);
        break;
      case TnEntry::Kind::one:
        der::writeTlv(inner, kIa5String, asBytes(e.value));
        der::writeTlv(body, kTagOne, inner);
        break;
      case TnEntry::Kind::range: {
        Bytes seq;
        der::writeTlv(seq, kIa5String, asBytes(e.value));
        der::writeTlv(seq, kInteger, der::integerContent(e.count));
        der::writeTlv(inner, kSequence, seq);
        der::writeTlv(body, kTagRange, inner);
        break;
      }
    }
  }
  Bytes out;
  der::writeTlv(out, kSequence, body);
  return out;
}

Result<TnAuthList> TnAuthList::fromDer(ByteView data) {
  der::Reader top(data);
  auto seq = top.next();
  if (!seq || seq->tag != kSequence) {
    return fail(Errc::invalidArgument, "TNAuthList: not a DER SEQUENCE");
  }
  if (!top.atEnd()) {
    return fail(Errc::invalidArgument, "TNAuthList: trailing bytes after the SEQUENCE");
  }
  std::vector<TnEntry> entries;
  der::Reader items(seq->content);
  while (!items.atEnd()) {
    auto item = items.next();
    if (!item) {
      return fail(Errc::invalidArgument, "TNAuthList: malformed entry");
    }
    der::Reader inner(item->content);
    TnEntry entry;
    if (item->tag == kTagSpc || item->tag == kTagOne) {
      auto v = readIa5(inner, item->tag == kTagSpc ? "SPC" : "telephone number");
      if (!v) {
        return fail(v.error());
      }
      entry.kind = item->tag == kTagSpc ? TnEntry::Kind::spc : TnEntry::Kind::one;
      entry.value = std::move(*v);
    } else if (item->tag == kTagRange) {
      auto rs = inner.next();
      if (!rs || rs->tag != kSequence) {
        return fail(Errc::invalidArgument, "TNAuthList: range is not a SEQUENCE");
      }
      der::Reader range(rs->content);
      auto start = readIa5(range, "range start");
      if (!start) {
        return fail(start.error());
      }
      auto count = readCount(range);
      if (!count) {
        return fail(count.error());
      }
      // The type is extensible ("..."), but no extension is defined; accepting unknown
      // elements would break the byte-identical round trip the CSR relies on.
      if (!range.atEnd()) {
        return fail(Errc::invalidArgument, "TNAuthList: unexpected element after the range count");
      }
      entry = TnEntry::range(std::move(*start), *count);
    } else {
      return fail(Errc::invalidArgument, "TNAuthList: unknown entry tag");
    }
    if (!inner.atEnd()) {
      return fail(Errc::invalidArgument, "TNAuthList: trailing bytes inside an entry");
    }
    if (auto r = checkEntry(entry); !r) {
      return fail(r.error());
    }
    entries.push_back(std::move(entry));
  }
  if (entries.empty()) {
    return fail(Errc::invalidArgument, "TNAuthList: the list is empty");
  }
  return TnAuthList(std::move(entries));
}

Result<TnAuthList> TnAuthList::fromIdentifierValue(std::string_view value) {
  bool standard = value.find_first_of("+/=") != std::string_view::npos || value.size() % 4 == 0;
  auto der = standard ? base64Decode(value) : base64UrlDecode(value);
  if (!der && standard) {
    der = base64UrlDecode(value);
  }
  if (!der) {
    return fail(Errc::invalidArgument, "TNAuthList identifier is neither base64url nor base64");
  }
  return fromDer(*der);
}

std::optional<std::string> TnAuthList::singleSpc() const {
  if (entries_.size() == 1 && entries_[0].kind == TnEntry::Kind::spc) {
    return entries_[0].value;
  }
  return std::nullopt;
}

}  // namespace kms::pki
