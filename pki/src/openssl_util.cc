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
  Error e{Errc::crypto, std::move(what), std::move(context), static_cast<std::int64_t>(first), {}, Disposition::retry,
          std::nullopt};
  if (!detail.empty()) {
    e.message += ": ";
    e.message += detail;
  }
  return e;
}

std::string nameText(const X509_NAME* name) {
  Bio bio(BIO_new(BIO_s_mem()));
  if (!bio || X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) < 0) {
    return {};
  }
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(len));
}

}  // namespace kms::pki::ossl
