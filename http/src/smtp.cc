#include "http/smtp.h"

#include <algorithm>
#include <memory>

#include <curl/curl.h>

namespace kms::http {
namespace {

struct Reader {
  const std::string* text = nullptr;
  std::size_t offset = 0;
};

std::size_t onRead(char* buffer, std::size_t size, std::size_t count, void* userData) {
  auto* reader = static_cast<Reader*>(userData);
  const std::size_t n = std::min(size * count, reader->text->size() - reader->offset);
  std::copy_n(reader->text->data() + reader->offset, n, buffer);
  reader->offset += n;
  return n;
}

int onProgress(void* userData, curl_off_t /*dlTotal*/, curl_off_t /*dlNow*/, curl_off_t /*ulTotal*/,
               curl_off_t /*ulNow*/) {
  const auto* cancelled = static_cast<const std::atomic<bool>*>(userData);
  return cancelled != nullptr && cancelled->load() ? 1 : 0;
}

struct EasyDeleter {
  void operator()(CURL* easy) const { curl_easy_cleanup(easy); }
};
struct ListDeleter {
  void operator()(curl_slist* list) const { curl_slist_free_all(list); }
};

}  // namespace

Result<void> sendMail(const SmtpOptions& options, const Mail& mail) {
  std::unique_ptr<CURL, EasyDeleter> easy(curl_easy_init());
  if (!easy) {
    return fail(Errc::internal, "curl_easy_init failed", options.url);
  }
  std::unique_ptr<curl_slist, ListDeleter> rcpt;
  for (const std::string& to : mail.to) {
    curl_slist* next = curl_slist_append(rcpt.get(), ("<" + to + ">").c_str());
    if (next == nullptr) {
      return fail(Errc::internal, "out of memory", options.url);
    }
    (void)rcpt.release();
    rcpt.reset(next);
  }
  const std::string from = "<" + mail.from + ">";
  Reader reader{&mail.text, 0};
  char errorBuffer[CURL_ERROR_SIZE] = {};
  CURL* e = easy.get();
  CURLcode set = CURLE_OK;
  auto opt = [&](CURLoption option, auto value) {
    if (set == CURLE_OK) {
      set = curl_easy_setopt(e, option, value);
    }
  };
  opt(CURLOPT_ERRORBUFFER, errorBuffer);
  opt(CURLOPT_URL, options.url.c_str());
  opt(CURLOPT_PROTOCOLS_STR, "smtp,smtps");
  opt(CURLOPT_NOSIGNAL, 1L);
  opt(CURLOPT_NOPROXY, "*");
  opt(CURLOPT_MAIL_FROM, from.c_str());
  opt(CURLOPT_MAIL_RCPT, rcpt.get());
  opt(CURLOPT_READFUNCTION, &onRead);
  opt(CURLOPT_READDATA, &reader);
  opt(CURLOPT_UPLOAD, 1L);
  opt(CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(mail.text.size()));
  opt(CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(options.timeout.count()));
  opt(CURLOPT_TIMEOUT_MS, static_cast<long>(options.timeout.count()));
  opt(CURLOPT_SSL_VERIFYPEER, 1L);
  opt(CURLOPT_SSL_VERIFYHOST, 2L);
  opt(CURLOPT_NOPROGRESS, 0L);
  opt(CURLOPT_XFERINFOFUNCTION, &onProgress);
  opt(CURLOPT_XFERINFODATA, options.cancelled);
  const bool implicitTls = options.url.rfind("smtps://", 0) == 0;
  if (!implicitTls) {
    long mode = CURLUSESSL_ALL;
    if (options.startTls == SmtpOptions::StartTls::opportunistic) {
      mode = CURLUSESSL_TRY;
    } else if (options.startTls == SmtpOptions::StartTls::off) {
      mode = CURLUSESSL_NONE;
    }
    opt(CURLOPT_USE_SSL, mode);
  }
  if (options.caBundle) {
    opt(CURLOPT_CAINFO, options.caBundle->c_str());
  }
  if (options.username && options.password) {
    opt(CURLOPT_USERNAME, options.username->c_str());
    opt(CURLOPT_PASSWORD, options.password->c_str());
  }
  if (set != CURLE_OK) {
    return fail(Errc::internal, std::string("cannot set up the SMTP transfer: ") + curl_easy_strerror(set),
                options.url);
  }
  const CURLcode rc = curl_easy_perform(e);
  // The password's copy inside the handle goes with the handle; clear the option first.
  curl_easy_setopt(e, CURLOPT_PASSWORD, "");
  if (rc == CURLE_OK) {
    return {};
  }
  std::string detail = errorBuffer[0] != '\0' ? std::string(errorBuffer) : std::string(curl_easy_strerror(rc));
  long code = 0;
  curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
  if (code != 0 && detail.find(std::to_string(code)) == std::string::npos) {
    detail += " (server answered " + std::to_string(code) + ")";
  }
  Errc errc = Errc::network;
  if (rc == CURLE_OPERATION_TIMEDOUT) {
    errc = Errc::timeout;
  } else if (rc == CURLE_ABORTED_BY_CALLBACK) {
    errc = Errc::cancelled;
  } else if (rc == CURLE_SEND_ERROR && code >= 500) {
    errc = Errc::protocol;  // refused by the server: retrying the same mail will not help soon
  }
  return fail(errc, "SMTP " + options.url + ": " + detail, options.url);
}

}  // namespace kms::http
