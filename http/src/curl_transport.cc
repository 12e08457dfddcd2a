// libcurl implementation of http::Transport.
//
// Thread safety and connection reuse: libcurl documents a shared connection cache
// (CURL_LOCK_DATA_CONNECT) as unsafe between concurrent threads (curl KNOWN_BUGS, "A shared
// connection cache is not thread-safe", curl issues #4915 and #9404, still open for 7.88). So the
// share object holds only the DNS cache and TLS sessions, with one mutex per lock class, and
// keep-alive connections live in the easy handles: send() borrows a handle from a small pool and
// returns it afterwards, so connections are reused across calls and across threads, while a
// handle (and its connections) is only ever used by one thread at a time.

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <mutex>
#include <optional>
#include <sstream>
#include <string_view>
#include <vector>

#include <curl/curl.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "http/transport.h"
#include "kms/c_ptr.h"
#include "kms/text.h"

namespace kms::http {

namespace {

using Easy = CPtr<CURL, &curl_easy_cleanup>;
using Share = CPtr<CURLSH, &curl_share_cleanup>;
using HeaderList = CPtr<curl_slist, &curl_slist_free_all>;
using X509Ptr = CPtr<X509, &X509_free>;
using Bio = CPtr<BIO, &BIO_free_all>;

/// Idle easy handles kept for reuse; more are created under load and freed on return.
constexpr std::size_t kMaxIdleHandles = 16;

// ---------------------------------------------------------------------------------------------
// Error mapping.

struct CurlCodeName {
  CURLcode code;
  const char* name;
};

#define KMS_CURLE(code) \
  CurlCodeName {        \
    code, #code         \
  }
constexpr std::array kCurlCodeNames{
    KMS_CURLE(CURLE_OK),
    KMS_CURLE(CURLE_UNSUPPORTED_PROTOCOL),
    KMS_CURLE(CURLE_FAILED_INIT),
    KMS_CURLE(CURLE_URL_MALFORMAT),
    KMS_CURLE(CURLE_NOT_BUILT_IN),
    KMS_CURLE(CURLE_COULDNT_RESOLVE_PROXY),
    KMS_CURLE(CURLE_COULDNT_RESOLVE_HOST),
    KMS_CURLE(CURLE_COULDNT_CONNECT),
    KMS_CURLE(CURLE_WEIRD_SERVER_REPLY),
    KMS_CURLE(CURLE_HTTP2),
    KMS_CURLE(CURLE_PARTIAL_FILE),
    KMS_CURLE(CURLE_HTTP_RETURNED_ERROR),
    KMS_CURLE(CURLE_WRITE_ERROR),
    KMS_CURLE(CURLE_READ_ERROR),
    KMS_CURLE(CURLE_OUT_OF_MEMORY),
    KMS_CURLE(CURLE_OPERATION_TIMEDOUT),
    KMS_CURLE(CURLE_SSL_CONNECT_ERROR),
    KMS_CURLE(CURLE_ABORTED_BY_CALLBACK),
    KMS_CURLE(CURLE_BAD_FUNCTION_ARGUMENT),
    KMS_CURLE(CURLE_TOO_MANY_REDIRECTS),
    KMS_CURLE(CURLE_UNKNOWN_OPTION),
    KMS_CURLE(CURLE_GOT_NOTHING),
    KMS_CURLE(CURLE_SSL_ENGINE_NOTFOUND),
    KMS_CURLE(CURLE_SEND_ERROR),
    KMS_CURLE(CURLE_RECV_ERROR),
    KMS_CURLE(CURLE_SSL_CERTPROBLEM),
    KMS_CURLE(CURLE_SSL_CIPHER),
    KMS_CURLE(CURLE_PEER_FAILED_VERIFICATION),
    KMS_CURLE(CURLE_BAD_CONTENT_ENCODING),
    KMS_CURLE(CURLE_FILESIZE_EXCEEDED),
    KMS_CURLE(CURLE_SSL_CACERT_BADFILE),
    KMS_CURLE(CURLE_SSL_SHUTDOWN_FAILED),
    KMS_CURLE(CURLE_AGAIN),
    KMS_CURLE(CURLE_SSL_CRL_BADFILE),
    KMS_CURLE(CURLE_SSL_ISSUER_ERROR),
    KMS_CURLE(CURLE_SSL_PINNEDPUBKEYNOTMATCH),
    KMS_CURLE(CURLE_SSL_INVALIDCERTSTATUS),
    KMS_CURLE(CURLE_HTTP2_STREAM),
    KMS_CURLE(CURLE_PROXY),
    KMS_CURLE(CURLE_SSL_CLIENTCERT),
};
#undef KMS_CURLE

/// "CURLE_COULDNT_CONNECT", or "CURLE_<number>" for codes not in the table.
std::string curlCodeName(CURLcode code) {
  for (const auto& entry : kCurlCodeNames) {
    if (entry.code == code) {
      return entry.name;
    }
  }
  return "CURLE_" + std::to_string(static_cast<int>(code));
}

/// An Error carrying a curl code; fields set by name so new Error members need no change here.
Error makeCurlError(Errc code, std::string message, std::string context, CURLcode native) {
  Error error;
  error.code = code;
  error.message = std::move(message);
  error.context = std::move(context);
  error.native = static_cast<std::int64_t>(native);
  error.nativeName = curlCodeName(native);
  return error;
}

Errc classify(CURLcode code) {
  switch (code) {
    case CURLE_OPERATION_TIMEDOUT:
      return Errc::timeout;
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_AGAIN:
    case CURLE_PROXY:
      return Errc::network;
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_BAD_CONTENT_ENCODING:
    case CURLE_FILESIZE_EXCEEDED:
    case CURLE_TOO_MANY_REDIRECTS:
      return Errc::protocol;
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
      return Errc::invalidArgument;
    case CURLE_OUT_OF_MEMORY:
    case CURLE_FAILED_INIT:
    case CURLE_BAD_FUNCTION_ARGUMENT:
    case CURLE_UNKNOWN_OPTION:
    case CURLE_NOT_BUILT_IN:
      return Errc::internal;
    default:
      // Certificate verification failures (CURLE_PEER_FAILED_VERIFICATION, bad CA file, pinned
      // key, issuer) and anything unknown: the peer is reachable but wrong.
      return Errc::network;
  }
}

Error curlError(CURLcode code, const std::string& method, const std::string& url, const char* errorBuffer) {
  const Errc c = classify(code);
  std::string detail = (errorBuffer != nullptr && errorBuffer[0] != '\0') ? errorBuffer : curl_easy_strerror(code);
  return makeCurlError(c, method + " failed: " + detail, url, code);
}

Error setupError(CURLcode code, const char* what, const std::string& url) {
  return makeCurlError(Errc::internal, std::string("cannot set ") + what + ": " + curl_easy_strerror(code), url, code);
}

// ---------------------------------------------------------------------------------------------
// Extra trust: PEM certificates added to the store of each SSL_CTX curl creates.

Result<std::string> loadPem(const std::string& bundle) {
  if (bundle.find("-----BEGIN") != std::string::npos) {
    return bundle;  // PEM text given inline
  }
  std::ifstream in(bundle, std::ios::binary);
  if (!in) {
    return fail(Errc::config, std::string("cannot read CA bundle: ") + std::strerror(errno), bundle);
  }
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

Result<std::vector<X509Ptr>> parseCertificates(const std::string& bundle) {
  auto pem = loadPem(bundle);
  if (!pem.has_value()) {
    return fail(pem.error());
  }
  const std::string& text = pem.value();
  const bool isInline = bundle.find("-----BEGIN") != std::string::npos;
  const std::string where = isInline ? std::string("caBundle") : bundle;
  Bio bio(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
  if (!bio) {
    return fail(Errc::internal, "BIO_new_mem_buf failed", where);
  }
  std::vector<X509Ptr> certs;
  ERR_clear_error();
  while (X509* cert = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
    certs.emplace_back(cert);
  }
  // The loop ends with PEM_R_NO_START_LINE at the end of the data; anything else is a bad PEM.
  unsigned long last = ERR_peek_last_error();
  bool cleanEnd = last == 0 || (ERR_GET_LIB(last) == ERR_LIB_PEM && ERR_GET_REASON(last) == PEM_R_NO_START_LINE);
  ERR_clear_error();
  if (!cleanEnd) {
    return fail(Errc::config, "CA bundle holds a malformed PEM certificate", where);
  }
  if (certs.empty()) {
    return fail(Errc::config, "CA bundle holds no PEM certificate", where);
  }
  return certs;
}

/// CURLOPT_SSL_CTX_FUNCTION: adds the extra certificates to curl's default store.
CURLcode addExtraTrust(CURL* /*easy*/, void* sslCtx, void* userData) {
  const auto* certs = static_cast<const std::vector<X509Ptr>*>(userData);
  X509_STORE* store = SSL_CTX_get_cert_store(static_cast<SSL_CTX*>(sslCtx));
  if (store == nullptr) {
    return CURLE_SSL_CERTPROBLEM;
  }
  for (const auto& cert : *certs) {
    if (X509_STORE_add_cert(store, cert.get()) != 1) {
      ERR_clear_error();
      return CURLE_SSL_CERTPROBLEM;
    }
  }
  return CURLE_OK;
}

/// curl_easy_setopt that remembers the first failure, so a block of options reads linearly.
struct OptionSetter {
  CURL* easy = nullptr;
  const std::string& url;
  std::optional<Error> error;

  template <class Value>
  void set(CURLoption option, Value value, const char* what) {
    if (error.has_value()) {
      return;
    }
    if (CURLcode rc = curl_easy_setopt(easy, option, value); rc != CURLE_OK) {
      error = setupError(rc, what, url);
    }
  }
};

// ---------------------------------------------------------------------------------------------
// Per-transfer callbacks.

struct Transfer {
  HttpResponse response;
  std::size_t maxBodyBytes = 0;
  bool bodyTooLarge = false;
};

std::size_t onBody(char* data, std::size_t size, std::size_t count, void* userData) {
  auto* transfer = static_cast<Transfer*>(userData);
  std::size_t n = size * count;
  if (transfer->response.body.size() + n > transfer->maxBodyBytes) {
    transfer->bodyTooLarge = true;
    return 0;  // anything but n aborts the transfer with CURLE_WRITE_ERROR
  }
  transfer->response.body.append(data, n);
  return n;
}

std::string_view trim(std::string_view s) {
  const char* ws = " \t\r\n";
  std::size_t first = s.find_first_not_of(ws);
  if (first == std::string_view::npos) {
    return {};
  }
  return s.substr(first, s.find_last_not_of(ws) - first + 1);
}

std::size_t onHeader(char* data, std::size_t size, std::size_t count, void* userData) {
  auto* transfer = static_cast<Transfer*>(userData);
  std::size_t n = size * count;
  std::string_view line(data, n);
  auto& headers = transfer->response.headers;
  if (line.starts_with("HTTP/")) {
    headers.clear();  // a new response starts (after 100 Continue): keep only the final one
    return n;
  }
  if (!line.empty() && (line.front() == ' ' || line.front() == '\t')) {
    std::string_view more = trim(line);  // obsolete line folding: continue the previous value
    if (!headers.empty() && !more.empty()) {
      headers.back().second.append(" ").append(more);
    }
    return n;
  }
  std::size_t colon = line.find(':');
  if (colon == std::string_view::npos || colon == 0) {
    return n;  // blank line ending the header block, or garbage we ignore
  }
  std::string name(line.substr(0, colon));
  std::transform(name.begin(), name.end(), name.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  headers.emplace_back(std::move(name), std::string(trim(line.substr(colon + 1))));
  return n;
}

bool hasLineBreak(std::string_view s) {
  return s.find_first_of("\r\n") != std::string_view::npos;
}

// ---------------------------------------------------------------------------------------------

class CurlTransport final : public Transport {
 public:
  CurlTransport(TransportOptions options, std::vector<X509Ptr> extraTrust)
      : options_(std::move(options)), extraTrust_(std::move(extraTrust)) {}

  CurlTransport(const CurlTransport&) = delete;
  CurlTransport& operator=(const CurlTransport&) = delete;

  ~CurlTransport() override = default;

  Result<void> init() {
    share_.reset(curl_share_init());
    if (!share_) {
      return fail(Errc::internal, "curl_share_init failed");
    }
    for (curl_lock_data data : {CURL_LOCK_DATA_DNS, CURL_LOCK_DATA_SSL_SESSION}) {
      if (CURLSHcode rc = curl_share_setopt(share_.get(), CURLSHOPT_SHARE, data); rc != CURLSHE_OK) {
        return fail(Errc::internal,
                    std::string("curl_share_setopt(CURLSHOPT_SHARE) failed: ") + curl_share_strerror(rc));
      }
    }
    CURLSHcode rc = curl_share_setopt(share_.get(), CURLSHOPT_USERDATA, this);
    if (rc == CURLSHE_OK) {
      rc = curl_share_setopt(share_.get(), CURLSHOPT_LOCKFUNC, &CurlTransport::lockShare);
    }
    if (rc == CURLSHE_OK) {
      rc = curl_share_setopt(share_.get(), CURLSHOPT_UNLOCKFUNC, &CurlTransport::unlockShare);
    }
    if (rc != CURLSHE_OK) {
      return fail(Errc::internal, std::string("curl_share_setopt(lock callbacks) failed: ") + curl_share_strerror(rc));
    }
    return ok();
  }

  Result<HttpResponse> send(const HttpRequest& request) override {
    if (cancelled_.load()) {
      return fail(cancelledError(request));
    }
    auto easy = acquire();
    if (!easy.has_value()) {
      return fail(easy.error());
    }
    auto response = perform(easy->get(), request);
    release(std::move(easy.value()));
    return response;
  }

  void cancel() override { cancelled_.store(true); }

 private:
  static Error cancelledError(const HttpRequest& request) {
    return makeCurlError(Errc::cancelled, request.method + " " + request.url + " cancelled: stopping", request.url,
                         CURLE_ABORTED_BY_CALLBACK);
  }

  /// libcurl calls this about once a second, also while waiting for the peer.
  static int onProgress(void* userData, curl_off_t /*dlTotal*/, curl_off_t /*dlNow*/, curl_off_t /*ulTotal*/,
                        curl_off_t /*ulNow*/) {
    return static_cast<const CurlTransport*>(userData)->cancelled_.load() ? 1 : 0;
  }

  static void lockShare(CURL* /*easy*/, curl_lock_data data, curl_lock_access /*access*/, void* userData) {
    static_cast<CurlTransport*>(userData)->shareMutex(data).lock();
  }

  static void unlockShare(CURL* /*easy*/, curl_lock_data data, void* userData) {
    static_cast<CurlTransport*>(userData)->shareMutex(data).unlock();
  }

  std::mutex& shareMutex(curl_lock_data data) {
    auto index = static_cast<std::size_t>(data);
    return shareMutexes_[index < shareMutexes_.size() ? index : 0];
  }

  Result<Easy> acquire() {
    {
      std::lock_guard lock(poolMutex_);
      if (!idle_.empty()) {
        Easy easy = std::move(idle_.back());
        idle_.pop_back();
        return easy;
      }
    }
    Easy easy(curl_easy_init());
    if (!easy) {
      return fail(Errc::internal, "curl_easy_init failed");
    }
    return easy;
  }

  void release(Easy easy) {
    std::lock_guard lock(poolMutex_);
    if (idle_.size() < kMaxIdleHandles) {
      idle_.push_back(std::move(easy));
    }
  }

  /// Sets every option of one transfer on a reset handle (curl_easy_reset keeps the handle's
  /// live connections and its share).
  Result<void> configure(CURL* easy, const HttpRequest& request, Transfer& transfer, curl_slist* headers,
                         char* errorBuffer) const {
    OptionSetter opt{easy, request.url, std::nullopt};
    const bool head = request.method == "HEAD";
    opt.set(CURLOPT_ERRORBUFFER, errorBuffer, "CURLOPT_ERRORBUFFER");
    opt.set(CURLOPT_SHARE, share_.get(), "CURLOPT_SHARE");
    opt.set(CURLOPT_URL, request.url.c_str(), "CURLOPT_URL");
    opt.set(CURLOPT_PROTOCOLS_STR, "http,https", "CURLOPT_PROTOCOLS_STR");
    opt.set(CURLOPT_NOSIGNAL, 1L, "CURLOPT_NOSIGNAL");
    opt.set(CURLOPT_NOPROXY, "*", "CURLOPT_NOPROXY");
    opt.set(CURLOPT_FOLLOWLOCATION, 0L, "CURLOPT_FOLLOWLOCATION");
    opt.set(CURLOPT_HTTP_VERSION, static_cast<long>(CURL_HTTP_VERSION_1_1), "CURLOPT_HTTP_VERSION");
    opt.set(CURLOPT_TCP_KEEPALIVE, 1L, "CURLOPT_TCP_KEEPALIVE");
    opt.set(CURLOPT_SSL_VERIFYPEER, 1L, "CURLOPT_SSL_VERIFYPEER");
    opt.set(CURLOPT_SSL_VERIFYHOST, 2L, "CURLOPT_SSL_VERIFYHOST");
    opt.set(CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(options_.connectTimeout.count()), "CURLOPT_CONNECTTIMEOUT_MS");
    opt.set(CURLOPT_TIMEOUT_MS, static_cast<long>(options_.requestTimeout.count()), "CURLOPT_TIMEOUT_MS");
    opt.set(CURLOPT_USERAGENT, options_.userAgent.c_str(), "CURLOPT_USERAGENT");
    opt.set(CURLOPT_HTTPHEADER, headers, "CURLOPT_HTTPHEADER");
    opt.set(CURLOPT_WRITEFUNCTION, &onBody, "CURLOPT_WRITEFUNCTION");
    opt.set(CURLOPT_WRITEDATA, &transfer, "CURLOPT_WRITEDATA");
    opt.set(CURLOPT_HEADERFUNCTION, &onHeader, "CURLOPT_HEADERFUNCTION");
    opt.set(CURLOPT_HEADERDATA, &transfer, "CURLOPT_HEADERDATA");
    opt.set(CURLOPT_NOPROGRESS, 0L, "CURLOPT_NOPROGRESS");
    opt.set(CURLOPT_XFERINFOFUNCTION, &onProgress, "CURLOPT_XFERINFOFUNCTION");
    opt.set(CURLOPT_XFERINFODATA, this, "CURLOPT_XFERINFODATA");
    if (!head) {
      // Fails early on a Content-Length over the cap; onBody catches the rest (chunked).
      opt.set(CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(options_.maxBodyBytes), "CURLOPT_MAXFILESIZE_LARGE");
    }
    if (!extraTrust_.empty()) {
      opt.set(CURLOPT_SSL_CTX_FUNCTION, &addExtraTrust, "CURLOPT_SSL_CTX_FUNCTION");
      opt.set(CURLOPT_SSL_CTX_DATA, &extraTrust_, "CURLOPT_SSL_CTX_DATA");
    }
    if (options_.unixSocket) {
      opt.set(CURLOPT_UNIX_SOCKET_PATH, options_.unixSocket->c_str(), "CURLOPT_UNIX_SOCKET_PATH");
    }
    if (head) {
      opt.set(CURLOPT_NOBODY, 1L, "CURLOPT_NOBODY");
    } else if (request.method != "GET" && request.method != "POST") {
      opt.set(CURLOPT_CUSTOMREQUEST, request.method.c_str(), "CURLOPT_CUSTOMREQUEST");
      if (!request.body.empty()) {
        opt.set(CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(request.body.size()),
                "CURLOPT_POSTFIELDSIZE_LARGE");
        opt.set(CURLOPT_POSTFIELDS, request.body.data(), "CURLOPT_POSTFIELDS");
      }
    } else if (request.method == "POST") {
      opt.set(CURLOPT_POST, 1L, "CURLOPT_POST");
      opt.set(CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(request.body.size()), "CURLOPT_POSTFIELDSIZE_LARGE");
      opt.set(CURLOPT_POSTFIELDS, request.body.data(), "CURLOPT_POSTFIELDS");
    } else {
      opt.set(CURLOPT_HTTPGET, 1L, "CURLOPT_HTTPGET");
    }
    if (opt.error.has_value()) {
      return fail(std::move(*opt.error));
    }
    return ok();
  }

  Result<HeaderList> buildHeaders(const HttpRequest& request) const {
    HeaderList list;
    auto append = [&list](const std::string& line) {
      curl_slist* grown = curl_slist_append(list.get(), line.c_str());
      if (grown == nullptr) {
        return false;
      }
      (void)list.release();  // curl_slist_append returned the same head (or a new one for an empty list)
      list.reset(grown);
      return true;
    };
    for (const auto& [name, value] : request.headers) {
      if (name.empty() || hasLineBreak(name) || hasLineBreak(value) || name.find(':') != std::string::npos) {
        return fail(Errc::invalidArgument, "malformed request header \"" + name + "\"", request.url);
      }
      // "Name;" is curl's syntax for a header sent with an empty value.
      std::string line = name;
      line += value.empty() ? ";" : ": ";
      line += value;
      if (!append(line)) {
        return fail(Errc::internal, "curl_slist_append failed", request.url);
      }
    }
    // No "Expect: 100-continue" round trip for POST bodies.
    if (!append("Expect:")) {
      return fail(Errc::internal, "curl_slist_append failed", request.url);
    }
    return list;
  }

  Result<HttpResponse> perform(CURL* easy, const HttpRequest& request) const {
    const std::string& method = request.method;
    // A method is an upper-case token (GET, POST, DELETE, ...): nothing else reaches the wire.
    if (method.empty() || method.size() > 16 ||
        !std::all_of(method.begin(), method.end(), [](char c) { return c >= 'A' && c <= 'Z'; })) {
      return fail(Errc::invalidArgument, "unsupported HTTP method \"" + method + "\"", request.url);
    }
    if (request.url.empty()) {
      return fail(Errc::invalidArgument, "empty URL");
    }
    auto headers = buildHeaders(request);
    if (!headers.has_value()) {
      return fail(headers.error());
    }
    curl_easy_reset(easy);
    Transfer transfer;
    transfer.maxBodyBytes = options_.maxBodyBytes;
    std::array<char, CURL_ERROR_SIZE> errorBuffer{};
    if (auto configured = configure(easy, request, transfer, headers->get(), errorBuffer.data());
        !configured.has_value()) {
      return fail(configured.error());
    }
    CURLcode rc = curl_easy_perform(easy);
    // The request's header list and the stack buffers die with this call: unhook them.
    (void)curl_easy_setopt(easy, CURLOPT_HTTPHEADER, static_cast<curl_slist*>(nullptr));
    (void)curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, static_cast<char*>(nullptr));
    if (transfer.bodyTooLarge || rc == CURLE_FILESIZE_EXCEEDED) {
      return fail(makeCurlError(Errc::protocol,
                                "response body exceeds the limit of " + std::to_string(options_.maxBodyBytes) +
                                    " bytes (" + method + " " + request.url + ")",
                                request.url, rc));
    }
    if (rc == CURLE_ABORTED_BY_CALLBACK && cancelled_.load()) {
      return fail(cancelledError(request));
    }
    if (rc != CURLE_OK) {
      return fail(curlError(rc, method, request.url, errorBuffer.data()));
    }
    long status = 0;
    if (CURLcode info = curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status); info != CURLE_OK) {
      return fail(curlError(info, method, request.url, nullptr));
    }
    transfer.response.status = status;
    return std::move(transfer.response);
  }

  const TransportOptions options_;
  const std::vector<X509Ptr> extraTrust_;
  // Declared before share_: curl_share_cleanup may still take these locks.
  std::array<std::mutex, CURL_LOCK_DATA_LAST> shareMutexes_;
  std::atomic<bool> cancelled_{false};
  Share share_;
  // Declared after share_ so idle handles are freed first.
  std::mutex poolMutex_;
  std::vector<Easy> idle_;
};

Result<void> initCurlOnce() {
  static std::once_flag once;
  static CURLcode result = CURLE_OK;
  std::call_once(once, [] { result = curl_global_init(CURL_GLOBAL_DEFAULT); });
  if (result != CURLE_OK) {
    return fail(makeCurlError(Errc::internal, std::string("curl_global_init failed: ") + curl_easy_strerror(result),
                              "libcurl", result));
  }
  return ok();
}

bool curlUsesOpenSsl() {
  const curl_version_info_data* info = curl_version_info(CURLVERSION_NOW);
  return info != nullptr && info->ssl_version != nullptr && std::string_view(info->ssl_version).starts_with("OpenSSL");
}

}  // namespace

std::optional<std::string> HttpResponse::header(std::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (equalsIgnoreCase(key, name)) {
      return value;
    }
  }
  return std::nullopt;
}

std::vector<std::string> HttpResponse::headerValues(std::string_view name) const {
  std::vector<std::string> values;
  for (const auto& [key, value] : headers) {
    if (equalsIgnoreCase(key, name)) {
      values.push_back(value);
    }
  }
  return values;
}

Result<std::unique_ptr<Transport>> makeCurlTransport(const TransportOptions& options) {
  if (auto init = initCurlOnce(); !init.has_value()) {
    return fail(init.error());
  }
  if (options.maxBodyBytes == 0) {
    return fail(Errc::invalidArgument, "maxBodyBytes must be greater than zero", "transport");
  }
  if (options.connectTimeout.count() <= 0 || options.requestTimeout.count() <= 0) {
    return fail(Errc::invalidArgument, "timeouts must be greater than zero", "transport");
  }
  std::vector<X509Ptr> extraTrust;
  if (options.caBundle.has_value()) {
    if (!curlUsesOpenSsl()) {
      return fail(Errc::unsupported, "caBundle needs libcurl built with OpenSSL", "transport");
    }
    auto certs = parseCertificates(*options.caBundle);
    if (!certs.has_value()) {
      return fail(certs.error());
    }
    extraTrust = std::move(certs.value());
  }
  auto transport = std::make_unique<CurlTransport>(options, std::move(extraTrust));
  if (auto init = transport->init(); !init.has_value()) {
    return fail(init.error());
  }
  return std::unique_ptr<Transport>(std::move(transport));
}

}  // namespace kms::http
