#include "pki/crl.h"

#include <ctime>

#include "openssl_util.h"

namespace kms::pki {
namespace {

using CrlPtr = CPtr<X509_CRL, &X509_CRL_free>;

std::int64_t unixOf(const ASN1_TIME* t) {
  struct tm tm {};
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) {
    return 0;
  }
  return static_cast<std::int64_t>(timegm(&tm));
}

/// The directoryName of a certificateIssuer entry extension, if the entry has one.
std::optional<std::string> entryIssuer(X509_REVOKED* rev) {
  int crit = 0;
  auto* names = static_cast<GENERAL_NAMES*>(X509_REVOKED_get_ext_d2i(rev, NID_certificate_issuer, &crit, nullptr));
  if (names == nullptr) {
    return std::nullopt;
  }
  std::optional<std::string> out;
  for (int i = 0; i < sk_GENERAL_NAME_num(names) && !out; ++i) {
    const GENERAL_NAME* gn = sk_GENERAL_NAME_value(names, i);
    if (gn->type == GEN_DIRNAME) {
      out = ossl::nameText(gn->d.directoryName);
    }
  }
  GENERAL_NAMES_free(names);
  return out;
}

std::string serialText(const ASN1_INTEGER* serial) {
  ossl::Bn bn(ASN1_INTEGER_to_BN(serial, nullptr));
  if (!bn) {
    return {};
  }
  Bytes raw(static_cast<std::size_t>(BN_num_bytes(bn.get())));
  BN_bn2bin(bn.get(), raw.data());
  if (raw.empty()) {
    raw.push_back(0);
  }
  return hexEncode(raw);
}

}  // namespace

Result<Crl> Crl::fromDer(ByteView der) {
  const unsigned char* p = der.data();
  CrlPtr crl(d2i_X509_CRL(nullptr, &p, static_cast<long>(der.size())));
  if (!crl) {
    ERR_clear_error();
    return fail(Errc::invalidArgument, "not a DER CRL");
  }
  if (p != der.data() + der.size()) {
    return fail(Errc::invalidArgument, "trailing bytes after the CRL");
  }
  Crl out;
  out.der_.assign(der.begin(), der.end());
  out.issuer_ = ossl::nameText(X509_CRL_get_issuer(crl.get()));
  out.thisUpdate_ = unixOf(X509_CRL_get0_lastUpdate(crl.get()));
  if (const ASN1_TIME* next = X509_CRL_get0_nextUpdate(crl.get()); next != nullptr) {
    out.nextUpdate_ = unixOf(next);
  }
  // RFC 5280 §5.3.3: a certificateIssuer extension names the issuer of its entry and of
  // the entries after it; before the first one, the CRL issuer is meant.
  std::string current = out.issuer_;
  STACK_OF(X509_REVOKED)* revoked = X509_CRL_get_REVOKED(crl.get());
  for (int i = 0; i < sk_X509_REVOKED_num(revoked); ++i) {
    X509_REVOKED* rev = sk_X509_REVOKED_value(revoked, i);
    if (auto named = entryIssuer(rev)) {
      current = *named;
    }
    CrlEntry e;
    e.serialHex = serialText(X509_REVOKED_get0_serialNumber(rev));
    e.issuer = current;
    e.revokedAt = unixOf(X509_REVOKED_get0_revocationDate(rev));
    int crit = 0;
    auto* reason = static_cast<ASN1_ENUMERATED*>(X509_REVOKED_get_ext_d2i(rev, NID_crl_reason, &crit, nullptr));
    if (reason != nullptr) {
      e.reason = static_cast<int>(ASN1_ENUMERATED_get(reason));
      ASN1_ENUMERATED_free(reason);
    }
    out.index_.emplace(e.issuer + "\n" + e.serialHex, out.entries_.size());
    out.entries_.push_back(std::move(e));
  }
  ERR_clear_error();
  out.crl_ = std::shared_ptr<void>(crl.release(), [](void* q) { X509_CRL_free(static_cast<X509_CRL*>(q)); });
  return out;
}

Result<void> Crl::verifySignedBy(const Certificate& signer) const {
  auto* x = static_cast<X509*>(signer.native());
  auto* crl = static_cast<X509_CRL*>(crl_.get());
  if (X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_subject_name(x)) != 0) {
    return fail(Errc::crypto, "the CRL issuer '" + issuer_ + "' is not the configured CRL signer '" +
                                  signer.subject() + "'");
  }
  EVP_PKEY* key = X509_get0_pubkey(x);
  if (key == nullptr || X509_CRL_verify(crl, key) != 1) {
    ERR_clear_error();
    return fail(Errc::crypto, "the CRL signature does not verify with the key of '" + signer.subject() + "'");
  }
  return ok();
}

std::optional<CrlEntry> Crl::find(const std::string& issuer, const std::string& serialHex) const {
  auto it = index_.find(issuer + "\n" + serialHex);
  if (it == index_.end()) {
    return std::nullopt;
  }
  return entries_[it->second];
}

}  // namespace kms::pki
