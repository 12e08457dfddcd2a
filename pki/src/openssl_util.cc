#include "openssl_util.h"

namespace kms::pki::ossl {

Error error(std::string what, std::string context) {
  std::string detail;
  const char* file = nullptr;
  int line = 0;
  unsigned long code = 0;
  unsigned long first = 0;
  while ((code = ERR_get_error_all(&file, &line, nullptr, nullptr, nullptr)) != 0) {
    if (first == 0) {
      first = code;
    }
    char buf[256];
    ERR_error_string_n(code, buf, sizeof buf);
    if (!detail.empty()) {
      detail += "; ";
    }
    detail += buf;
  }
  Error e{Errc::crypto, std::move(what), std::move(context), static_cast<std::int64_t>(first), {}, false, std::nullopt};
  if (!detail.empty()) {
    e.message += ": ";
    e.message += detail;
  }
  return e;
}

}  // namespace kms::pki::ossl
