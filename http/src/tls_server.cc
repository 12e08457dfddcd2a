// HTTPS for the server: the one translation unit that instantiates Asio's TLS stream and the
// Session over it (build time). The identity (certificate, key, client CA) is an SSL context
// swapped whole on reload; each connection keeps the context it was accepted with.
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <mutex>

#include <boost/asio/ssl.hpp>

#include "kms/c_ptr.h"
#include "kms/secret.h"
#include "session.h"

namespace kms::http {

namespace ssl = boost::asio::ssl;
using TlsStream = ssl::stream<detail::Tcp::socket>;

struct TlsIdentity::Impl {
  std::mutex mutex;
  std::shared_ptr<ssl::context> context;

  std::shared_ptr<ssl::context> current() {
    std::lock_guard lock(mutex);
    return context;
  }
};

namespace {

Error tlsError(const std::string& file, const std::string& what, const boost::system::error_code& ec) {
  Error e;
  e.code = Errc::config;
  e.message = "cannot use " + file + " (" + what + "): " + ec.message();
  e.context = file;
  return e;
}

/// Admits every client certificate in the handshake; the handler judges it by the verify
/// result (a reasoned 403 rather than a torn-down connection). A plain function: Asio's
/// callback objects live in the context and would dangle under a connection that outlives a
/// reload.
int admitAnyCertificate(int /*preverified*/, X509_STORE_CTX* /*store*/) {
  return 1;
}

Result<std::shared_ptr<ssl::context>> makeContext(const TlsIdentity::Files& files) {
  auto context = std::make_shared<ssl::context>(ssl::context::tls_server);
  boost::system::error_code ec;
  context->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                           ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 | ssl::context::single_dh_use,
                       ec);
  if (context->use_certificate_chain_file(files.certificate, ec); ec) {
    return fail(tlsError(files.certificate, "the certificate chain", ec));
  }
  auto key = readSecretFile(files.key);
  if (!key) {
    return fail(key.error());
  }
  context->use_private_key(boost::asio::buffer(key->view().data(), key->size()), ssl::context::pem, ec);
  key->clear();
  SSL_CTX* native = context->native_handle();
  if (ec && ERR_GET_REASON(static_cast<unsigned long>(ec.value())) != X509_R_KEY_VALUES_MISMATCH) {
    return fail(tlsError(files.key, "the private key", ec));
  }
  if (ec || SSL_CTX_check_private_key(native) != 1) {
    ERR_clear_error();
    return fail(Errc::config, "the key in " + files.key + " does not match the certificate in " + files.certificate,
                files.key);
  }
  if (files.clientCa) {
    if (context->load_verify_file(*files.clientCa, ec); ec) {
      return fail(tlsError(*files.clientCa, "the client CA", ec));
    }
    STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(files.clientCa->c_str());
    if (names == nullptr) {
      return fail(Errc::config, "cannot use " + *files.clientCa + " (the client CA): no certificate in it",
                  *files.clientCa);
    }
    SSL_CTX_set_client_CA_list(native, names);  // takes ownership: the CAs clients are asked for
    SSL_CTX_set_verify(native, SSL_VERIFY_PEER, &admitAnyCertificate);
    // Session resumption with client certificates needs a context id.
    static constexpr unsigned char kSessionContext[] = "kmsd-signing";
    SSL_CTX_set_session_id_context(native, kSessionContext, sizeof kSessionContext - 1);
  }
  return context;
}

/// The client's certificate after the handshake.
TlsPeer tlsPeerOf(SSL* ssl) {
  TlsPeer peer;
  X509* cert = SSL_get0_peer_certificate(ssl);
  if (cert == nullptr) {
    return peer;
  }
  peer.presented = true;
  const long result = SSL_get_verify_result(ssl);
  peer.verified = result == X509_V_OK;
  if (!peer.verified) {
    peer.verifyError = X509_verify_cert_error_string(result);
  }
  CPtr<BIO, BIO_free> bio(BIO_new(BIO_s_mem()));
  if (bio && X509_NAME_print_ex(bio.get(), X509_get_subject_name(cert), 0, XN_FLAG_RFC2253) >= 0) {
    char* data = nullptr;
    const long n = BIO_get_mem_data(bio.get(), &data);
    peer.subject.assign(data, static_cast<std::size_t>(n));
  }
  return peer;
}

}  // namespace

TlsIdentity::TlsIdentity(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
TlsIdentity::~TlsIdentity() = default;

Result<std::shared_ptr<TlsIdentity>> TlsIdentity::load(const Files& files) {
  auto context = makeContext(files);
  if (!context) {
    return fail(context.error());
  }
  auto impl = std::make_unique<Impl>();
  impl->context = std::move(*context);
  return std::shared_ptr<TlsIdentity>(new TlsIdentity(std::move(impl)));
}

Result<void> TlsIdentity::reload(const Files& files) {
  auto context = makeContext(files);
  if (!context) {
    return fail(context.error());
  }
  std::lock_guard lock(impl_->mutex);
  impl_->context = std::move(*context);
  return {};
}

Result<std::unique_ptr<Server>> Server::listenTls(boost::asio::io_context& io, const std::string& host,
                                                  std::uint16_t port, std::shared_ptr<TlsIdentity> identity,
                                                  Handler handler, const ServerOptions& options) {
  auto shared = std::make_shared<Handler>(std::move(handler));
  const ConnectionLimits limits = options.limits;
  auto starter = [identity = std::move(identity), shared, options](detail::Tcp::socket socket,
                                                                    std::unique_ptr<detail::Admission> admission) {
    auto context = identity->impl().current();
    auto session = std::make_shared<detail::Session<TlsStream>>(TlsStream(std::move(socket), *context), shared,
                                                                options, std::move(admission));
    session->hold(context);
    session->armFor(std::min(options.limits.headerTimeout, options.readTimeout));
    session->stream().async_handshake(ssl::stream_base::server, [session](boost::system::error_code ec) {
      session->disarm();
      if (ec) {
        session->abort();  // not TLS, a failed handshake or too slow
        return;
      }
      session->setTlsPeer(tlsPeerOf(session->stream().native_handle()));
      session->read();
    });
  };
  return detail::listenTcp(io, host, port, limits, std::move(starter), options.spread);
}

}  // namespace kms::http
