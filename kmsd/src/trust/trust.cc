#include "trust/trust.h"

#include <algorithm>
#include <map>
#include <unordered_set>

#include <nlohmann/json.hpp>

#include "common/time_format.h"

namespace kms::daemon {
namespace {

using storage::EventLevel;
using storage::TrustDocument;
using storage::TrustKind;

/// How far a CRL's thisUpdate may lie ahead of this host's clock.
constexpr std::int64_t kClockSkew = 300;

std::string text(const std::vector<std::uint8_t>& body) {
  return {body.begin(), body.end()};
}

/// The leaf's PEM block and the rest of the chain (the issuers), split at the first END line.
std::pair<std::string_view, std::string_view> splitLeaf(std::string_view chainPem) {
  constexpr std::string_view kEnd = "-----END CERTIFICATE-----";
  auto end = chainPem.find(kEnd);
  if (end == std::string_view::npos) {
    return {chainPem, {}};
  }
  end += kEnd.size();
  return {chainPem.substr(0, end), chainPem.substr(end)};
}

bool sameRoots(const std::vector<pki::Certificate>& a, const std::vector<pki::Certificate>& b) {
  // A handful of roots: every one of each list is in the other (DER equality).
  auto within = [](const std::vector<pki::Certificate>& x, const std::vector<pki::Certificate>& y) {
    return std::all_of(x.begin(), x.end(), [&y](const pki::Certificate& c) {
      return std::any_of(y.begin(), y.end(), [&c](const pki::Certificate& d) { return c.der() == d.der(); });
    });
  };
  return a.size() == b.size() && within(a, b) && within(b, a);
}

}  // namespace

void TrustKeeper::load() {
  auto docs = s_.store().with([](storage::Store& st) { return readKeptTrust(st); });
  if (!docs) {
    storeWriteFailed(events_, std::nullopt, "read the kept CA list and CRL", docs.error());
    return;
  }
  std::lock_guard<std::mutex> lock(mutex_);
  if (docs->caList) {
    auto list = sti_pa::readKeptCaList(text(docs->caList->body));
    if (!list) {
      events_.emit({"KMS_CA_LIST_REJECTED",
                    EventLevel::error,
                    std::nullopt,
                    "the CA list kept in the state DB does not read back: " + list.error().message,
                    {}});
    } else {
      state_.setCaListRoots(list->roots);
      caList_ = std::move(*list);
      compareAnchors();
    }
  }
  if (docs->crl) {
    auto crl = pki::Crl::fromDer(docs->crl->body);
    if (!crl) {
      events_.emit({"KMS_CRL_REJECTED",
                    EventLevel::error,
                    std::nullopt,
                    "the CRL kept in the state DB does not read back: " + crl.error().message,
                    {}});
    } else {
      crl_ = std::move(*crl);
    }
  }
}

void TrustKeeper::compareAnchors() {
  if (!state_.anchorsConfigured() || !caList_) {
    return;
  }
  std::string missing;
  for (const auto& anchor : state_.anchors()) {
    const bool listed = std::any_of(caList_->roots.begin(), caList_->roots.end(),
                                    [&](const pki::Certificate& r) { return r.der() == anchor.der(); });
    if (!listed) {
      missing += (missing.empty() ? "" : "; ") + anchor.subject();
    }
  }
  if (!missing.empty()) {
    events_.emit({"KMS_TRUST_ANCHORS_DIFFER",
                  EventLevel::warning,
                  std::nullopt,
                  "[acme] trust_anchors holds root(s) the STI-PA CA list (sequence " +
                      std::to_string(caList_->sequence) + ") does not approve: " + missing +
                      "; issued chains are checked against [acme] trust_anchors, also in the trust refresh",
                  {{"sequence", std::to_string(caList_->sequence)}}});
  }
}

std::vector<std::string> TrustKeeper::refresh() {
  const std::int64_t now = unixSeconds(clock_.now());
  if (s_.stiPa() != nullptr) {
    refreshCaList(now);
    if (s_.crlSigner()) {
      refreshCrl(now);
    }
    std::lock_guard<std::mutex> lock(mutex_);
    lastRefresh_ = now;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (caList_ && caList_->exp <= now) {
      events_.emit({"KMS_TRUST_STALE",
                    EventLevel::warning,
                    std::nullopt,
                    "the kept STI-PA CA list (sequence " + std::to_string(caList_->sequence) + ") expired at " +
                        isoTime(caList_->exp) + " and no newer one was accepted; its roots stay in use",
                    {{"document", "ca_list"}}});
    }
    if (crl_ && crl_->nextUpdate().value_or(0) <= now) {
      events_.emit({"KMS_TRUST_STALE",
                    EventLevel::warning,
                    std::nullopt,
                    "the kept STI-PA CRL was due for an update at " + isoTime(crl_->nextUpdate().value_or(0)) +
                        " and no newer one was accepted; its entries stay in force",
                    {{"document", "crl"}}});
    }
  }
  return checkActive(now);
}

void TrustKeeper::fetchFailed(const char* what, const Error& e) {
  events_.emit({"KMS_TRUST_FETCH_FAILED",
                EventLevel::warning,
                std::nullopt,
                std::string("could not read the STI-PA ") + what + ", the kept one stays: " + e.toString(),
                {{"document", what}}});
}

void TrustKeeper::rejected(const char* eventId, const char* what, const std::string& reason, const std::string& kept) {
  events_.emit({eventId,
                EventLevel::error,
                std::nullopt,
                std::string("STI-PA ") + what + " refused (" + reason + "); " + kept,
                {{"reason", reason}}});
}

void TrustKeeper::refreshCaList(std::int64_t now) {
  auto got = s_.stiPa()->caList();
  std::lock_guard<std::mutex> lock(mutex_);
  const std::string kept = caList_ ? "the kept list (sequence " + std::to_string(caList_->sequence) + ") stays"
                                   : "no CA list is kept yet";
  if (!got) {
    const Error& e = got.error();
    caListError_ = e.toString();
    // An answer that arrived but does not verify is refused; one that did not arrive failed.
    const bool content = e.native == 0 && (e.code == Errc::protocol || e.code == Errc::crypto);
    if (content) {
      rejected("KMS_CA_LIST_REJECTED", "CA list", e.message, kept);
    } else {
      fetchFailed("CA list", e);
    }
    return;
  }
  std::optional<std::string> refusal;
  if (caList_ && got->sequence < caList_->sequence) {
    refusal = "sequence " + std::to_string(got->sequence) + " is lower than the kept list's " +
              std::to_string(caList_->sequence);
  } else if (caList_ && got->sequence == caList_->sequence && !sameRoots(got->roots, caList_->roots)) {
    refusal = "sequence " + std::to_string(got->sequence) + " is unchanged but its roots differ";
  }
  if (refusal) {
    caListError_ = *refusal;
    rejected("KMS_CA_LIST_REJECTED", "CA list", *refusal, kept);
    return;
  }
  TrustDocument doc;
  doc.kind = TrustKind::caList;
  doc.body.assign(got->jws.begin(), got->jws.end());
  doc.sequence = got->sequence;
  doc.nextUpdate = got->exp;
  doc.fetchedAt = now;
  if (auto w = s_.store().with([&](storage::Store& st) { return st.saveTrust(doc); }); !w) {
    caListError_ = w.error().toString();
    storeWriteFailed(events_, std::nullopt, "keep the STI-PA CA list", w.error());
    return;
  }
  caListError_.reset();
  const bool changed = !caList_ || caList_->sequence != got->sequence;
  const std::string was = caList_ ? " (was " + std::to_string(caList_->sequence) + ")" : "";
  state_.setCaListRoots(got->roots);
  caList_ = std::move(*got);
  if (changed) {
    compareAnchors();
    events_.emit({"KMS_CA_LIST_UPDATED",
                  EventLevel::info,
                  std::nullopt,
                  "STI-PA CA list sequence " + std::to_string(caList_->sequence) + was + " with " +
                      std::to_string(caList_->roots.size()) + " root(s) kept" +
                      (state_.anchorsConfigured() ? "; [acme] trust_anchors still overrides it for issued chains" : ""),
                  {{"sequence", std::to_string(caList_->sequence)}, {"expires", isoTime(caList_->exp)}}});
  }
}

std::optional<std::string> TrustKeeper::crlRefusal(const Result<pki::Crl>& crl, std::int64_t now) const {
  if (!crl) {
    return "it does not parse: " + crl.error().message;
  }
  if (auto v = crl->verifySignedBy(*s_.crlSigner()); !v) {
    return v.error().message;
  }
  if (!crl->nextUpdate()) {
    return "it has no nextUpdate";
  }
  if (*crl->nextUpdate() <= now) {
    return "it is stale: nextUpdate " + isoTime(*crl->nextUpdate()) + " has passed";
  }
  if (crl->thisUpdate() > now + kClockSkew) {
    return "its thisUpdate " + isoTime(crl->thisUpdate()) + " lies in the future";
  }
  if (crl_ && crl->thisUpdate() < crl_->thisUpdate()) {
    return "it is older than the kept CRL (thisUpdate " + isoTime(crl->thisUpdate()) + " before " +
           isoTime(crl_->thisUpdate()) + ")";
  }
  return std::nullopt;
}

void TrustKeeper::refreshCrl(std::int64_t now) {
  auto der = s_.stiPa()->crl();
  std::lock_guard<std::mutex> lock(mutex_);
  const std::string kept = crl_ ? "the kept CRL (thisUpdate " + isoTime(crl_->thisUpdate()) + ") stays"
                                : "no CRL is kept yet";
  if (!der) {
    crlError_ = der.error().toString();
    fetchFailed("CRL", der.error());
    return;
  }
  auto crl = pki::Crl::fromDer(*der);
  if (auto refusal = crlRefusal(crl, now)) {
    crlError_ = *refusal;
    rejected("KMS_CRL_REJECTED", "CRL", *refusal, kept);
    return;
  }
  TrustDocument doc;
  doc.kind = TrustKind::crl;
  doc.body = crl->der();
  doc.thisUpdate = crl->thisUpdate();
  doc.nextUpdate = crl->nextUpdate();
  doc.fetchedAt = now;
  if (auto w = s_.store().with([&](storage::Store& st) { return st.saveTrust(doc); }); !w) {
    crlError_ = w.error().toString();
    storeWriteFailed(events_, std::nullopt, "keep the STI-PA CRL", w.error());
    return;
  }
  crlError_.reset();
  // A CRL is re-issued often with the same entries: only a change in them is news.
  auto same = [](const std::vector<pki::CrlEntry>& a, const std::vector<pki::CrlEntry>& b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](const auto& x, const auto& y) {
             return x.serialHex == y.serialHex && x.issuer == y.issuer;
           });
  };
  const bool changed = !crl_ || !same(crl_->entries(), crl->entries());
  crl_ = std::move(*crl);
  if (changed) {
    events_.emit({"KMS_CRL_UPDATED",
                  EventLevel::info,
                  std::nullopt,
                  "STI-PA CRL of " + isoTime(crl_->thisUpdate()) + " with " + std::to_string(crl_->entries().size()) +
                      " entr" + (crl_->entries().size() == 1 ? "y" : "ies") + " kept, next update " +
                      isoTime(*crl_->nextUpdate()),
                  {{"this_update", isoTime(crl_->thisUpdate())}, {"next_update", isoTime(*crl_->nextUpdate())}}});
  }
}

TrustKeeper::IssuerVerdict TrustKeeper::judgeIssuers(const std::string& issuersPem, const std::string& leafPem,
                                                      const std::unordered_set<std::string>& crlSerials,
                                                      const std::vector<pki::Certificate>& anchors,
                                                      std::int64_t now) const {
  IssuerVerdict verdict;
  auto issuers = pki::parsePemChain(issuersPem);
  std::vector<pki::Certificate> path;
  if (issuers) {
    path = *issuers;
    for (const auto& i : *issuers) {
      if (crl_ && crlSerials.count(i.serialHex()) != 0 && crl_->find(i.issuer(), i.serialHex())) {
        verdict.revoked = "the STI-PA CRL lists its issuer " + i.subject() + " (serial " + i.serialHex() + ")";
      }
    }
  } else if (auto leaf = pki::Certificate::fromPem(leafPem)) {
    path = {*leaf};  // issued by a root directly
  }
  // The same anchors issuance checks a chain against ([acme] trust_anchors when set, else
  // the kept CA list): a chain issuance accepts is never distrusted by this check.
  if (!anchors.empty() && !path.empty()) {
    if (auto ok = pki::verifyChain(path, anchors, fromUnix(now)); !ok) {
      verdict.untrusted = ok.error().message;
      const std::string top = path.back().issuer();
      verdict.rootApproved = std::any_of(anchors.begin(), anchors.end(), [&](const pki::Certificate& a) {
        return a.subject() == top || a.subject() == path.back().subject();
      });
    }
  }
  return verdict;
}

std::optional<std::string> TrustKeeper::leafRevoked(const storage::IssuedCert& cert, const std::string& leafPem,
                                                    const std::unordered_set<std::string>& crlSerials) const {
  if (crlSerials.count(cert.serial) == 0) {
    return std::nullopt;
  }
  auto leaf = pki::Certificate::fromPem(leafPem);
  if (!leaf) {
    return std::nullopt;
  }
  auto hit = crl_->find(leaf->issuer(), cert.serial);
  if (!hit) {
    return std::nullopt;
  }
  return "the STI-PA CRL lists serial " + cert.serial + " (reason " + std::to_string(hit->reason) + ", revoked " +
         isoTime(hit->revokedAt) + ")";
}

bool TrustKeeper::recordRevoked(const storage::IssuedCert& cert, const std::string& why, std::int64_t now) {
  auto marked = s_.store().with([&](storage::Store& st) { return st.markRevoked(cert.id, now); });
  if (!marked) {
    storeWriteFailed(events_, cert.certName, "record a revocation found in the CRL", marked.error());
    return false;
  }
  events_.emit({"KMS_CERT_REVOKED", EventLevel::error, cert.certName,
                why + ": issuing a new certificate with a new key at once", {{"serial", cert.serial}, {"source", "crl"}}});
  return true;
}

void TrustKeeper::reportDistrusted(const storage::IssuedCert& cert, const std::string& why) {
  const std::string against = state_.anchorsConfigured() || !caList_
                                  ? std::string("[acme] trust_anchors")
                                  : "the STI-PA CA list (sequence " + std::to_string(caList_->sequence) + ")";
  events_.emit({"KMS_ROOT_DISTRUSTED", EventLevel::error, cert.certName,
                "the chain of serial " + cert.serial + " no longer verifies to " + against + ": " + why +
                    "; renewing at once with a new key",
                {{"serial", cert.serial}}});
}

std::vector<std::string> TrustKeeper::checkActive(std::int64_t now) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!caList_ && !crl_) {
    return {};
  }
  auto active = s_.store().with([now](storage::Store& st) { return st.listLatestValid(now, std::nullopt); });
  if (!active) {
    storeWriteFailed(events_, std::nullopt, "list the active certificates for the trust check", active.error());
    return {};
  }
  std::unordered_set<std::string> crlSerials;
  if (crl_) {
    for (const auto& e : crl_->entries()) {
      crlSerials.insert(e.serialHex);
    }
  }
  // Certificates from one CA share their issuers: each distinct rest-of-chain is judged once.
  std::map<std::string, IssuerVerdict, std::less<>> verdicts;
  std::vector<std::string> affected;
  std::map<std::int64_t, bool> distrusted;
  const std::vector<pki::Certificate> anchors = state_.anchors();
  for (const auto& cert : *active) {
    auto [leafPem, issuersPem] = splitLeaf(cert.chainPem);
    auto v = verdicts.find(issuersPem);
    if (v == verdicts.end()) {
      v = verdicts.emplace(std::string(issuersPem), judgeIssuers(std::string(issuersPem), std::string(leafPem),
                                                                crlSerials, anchors, now))
              .first;
    }
    std::optional<std::string> revoked = leafRevoked(cert, std::string(leafPem), crlSerials);
    if (!revoked) {
      revoked = v->second.revoked;
    }
    if (revoked) {
      if (recordRevoked(cert, *revoked, now)) {
        affected.push_back(cert.certName);
      }
      continue;
    }
    if (v->second.untrusted) {
      distrusted.emplace(cert.id, v->second.rootApproved);
      if (!state_.distrusted(cert.id)) {  // not reported by an earlier refresh
        reportDistrusted(cert, *v->second.untrusted);
        affected.push_back(cert.certName);
      }
    }
  }
  state_.setDistrusted(std::move(distrusted));
  return affected;
}

nlohmann::json TrustKeeper::status() const {
  std::lock_guard<std::mutex> lock(mutex_);
  nlohmann::json j = nlohmann::json::object();
  j["last_refresh"] = lastRefresh_ ? isoTime(*lastRefresh_) : "";
  j["ca_list_error"] = caListError_.value_or("");
  j["crl_error"] = crlError_.value_or("");
  j["distrusted"] = state_.distrustedCount();
  return j;
}

Result<KeptTrust> readKeptTrust(storage::Store& store) {
  KeptTrust kept;
  auto list = store.getTrust(TrustKind::caList);
  if (!list) {
    return fail(list.error());
  }
  kept.caList = std::move(*list);
  auto crl = store.getTrust(TrustKind::crl);
  if (!crl) {
    return fail(crl.error());
  }
  kept.crl = std::move(*crl);
  return kept;
}

nlohmann::json trustReport(const KeptTrust& kept, std::int64_t now) {
  const auto& caList = kept.caList;
  const auto& crl = kept.crl;
  nlohmann::json j = nlohmann::json::object();
  j["ca_list"] = nullptr;
  j["crl"] = nullptr;
  if (caList) {
    auto list = sti_pa::readKeptCaList(text(caList->body));
    nlohmann::json l{{"sequence", caList->sequence.value_or(0)},
                     {"fetched_at", isoTime(caList->fetchedAt)},
                     {"age_seconds", now - caList->fetchedAt},
                     {"expires", isoTime(caList->nextUpdate.value_or(0))},
                     {"expired", caList->nextUpdate.value_or(0) <= now}};
    nlohmann::json roots = nlohmann::json::array();
    if (list) {
      for (const auto& r : list->roots) {
        roots.push_back({{"subject", r.subject()},
                         {"not_after", isoTime(unixSeconds(r.notAfter()))},
                         {"sha256", pki::sha256Fingerprint(r.der()).substr(7)}});
      }
    } else {
      l["error"] = list.error().message;
    }
    l["roots"] = roots;
    j["ca_list"] = l;
  }
  if (crl) {
    auto parsed = pki::Crl::fromDer(crl->body);
    nlohmann::json c{{"fetched_at", isoTime(crl->fetchedAt)},
                     {"age_seconds", now - crl->fetchedAt},
                     {"this_update", isoTime(crl->thisUpdate.value_or(0))},
                     {"next_update", isoTime(crl->nextUpdate.value_or(0))},
                     {"stale", crl->nextUpdate.value_or(0) <= now}};
    if (parsed) {
      c["issuer"] = parsed->issuer();
      c["entries"] = parsed->entries().size();
    } else {
      c["error"] = parsed.error().message;
    }
    j["crl"] = c;
  }
  return j;
}

}  // namespace kms::daemon
