#include "acme/issuer.h"


#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <set>

#include "acme/jws.h"
#include "kms/process.h"
#include "kms/text.h"
#include "pki/encoding.h"
#include "pki/tn_auth_list.h"

namespace kms::acme {
namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

Error stepError(Errc code, std::string message, std::string context) {
  Error e;
  e.code = code;
  e.message = std::move(message);
  e.context = std::move(context);
  return e;
}

Result<void> verifyIdentifiers(const pki::Certificate& leaf, const std::vector<Identifier>& identifiers) {
  std::set<std::string> wantDns;
  for (const Identifier& id : identifiers) {
    if (id.type == "dns") {
      wantDns.insert(lower(id.value));
    } else if (id.type == "TNAuthList") {
      auto want = pki::TnAuthList::fromIdentifierValue(id.value);
      auto wantDer = want ? want->toDer() : Result<pki::Bytes>(fail(want.error()));
      auto got = leaf.tnAuthListDer();
      if (!wantDer || !got || *got != *wantDer) {
        return fail(stepError(Errc::protocol, "check tnauthlist: the certificate's TNAuthList differs from the order's",
                              leaf.subject()));
      }
    } else {
      return fail(
          stepError(Errc::unsupported, "check identifiers: unknown identifier type '" + id.type + "'", leaf.subject()));
    }
  }
  if (!wantDns.empty()) {
    std::set<std::string> got;
    for (const std::string& n : leaf.dnsNames()) {
      got.insert(lower(n));
    }
    if (got != wantDns) {
      std::string list;
      for (const auto& n : got) {
        list += (list.empty() ? "" : ",") + n;
      }
      return fail(stepError(
          Errc::protocol, "check identifiers: the certificate names [" + list + "] differ from the order's identifiers",
          leaf.subject()));
    }
  }
  return ok();
}

}  // namespace

std::string dns01TxtValue(const std::string& keyAuthorization) {
  return pki::base64UrlEncode(pki::sha256(pki::asBytes(keyAuthorization)));
}

Result<std::string> Http01Solver::present(const Authorization& /*authz*/, const Challenge& challenge,
                                          const std::string& keyAuthorization) {
  responder_.put(challenge.token, keyAuthorization);
  return std::string("{}");
}

void Http01Solver::cleanup(const Authorization& /*authz*/, const Challenge& challenge,
                           const std::string& /*keyAuthorization*/) {
  responder_.remove(challenge.token);
}

std::vector<std::string> Dns01Hook::environment(const Authorization& authz, const Challenge& challenge,
                                                      const std::string& keyAuthorization) {
  return {"KMS_DOMAIN=" + authz.identifier.value, "KMS_RECORD=_acme-challenge." + authz.identifier.value,
          "KMS_VALIDATION=" + dns01TxtValue(keyAuthorization), "KMS_TOKEN=" + challenge.token};
}

Result<std::unique_ptr<ChildProcess>> Dns01Hook::start(const char* action, const Authorization& authz,
                                                             const Challenge& challenge,
                                                             const std::string& keyAuthorization) const {
  auto child = ChildProcess::spawn({hook_, action}, environment(authz, challenge, keyAuthorization));
  if (!child) {
    Error e = child.error();
    e.message = "cannot run the dns-01 hook: " + e.message;
    return fail(e);
  }
  return child;
}

namespace {

bool isDnsName(const std::string& v) {
  if (v.empty() || v.size() > 253) {
    return false;
  }
  std::size_t label = 0;
  for (char c : v) {
    if (c == '.') {
      if (label == 0) {
        return false;
      }
      label = 0;
      continue;
    }
    if (!(std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '-') || ++label > 63) {
      return false;
    }
  }
  return label > 0;
}

bool isBase64ish(const std::string& v, bool padding) {
  return !v.empty() && v.size() <= 4096 && std::all_of(v.begin(), v.end(), [padding](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '-' || c == '_' ||
           (padding && (c == '+' || c == '/' || c == '='));
  });
}

}  // namespace

Result<void> checkAuthorization(const Authorization& authz, const Challenge& challenge,
                                const std::vector<Identifier>& asked) {
  auto refuse = [&](const std::string& what) {
    Error e{Errc::protocol, "the CA's authorization " + what, authz.url, 0, {}, Disposition::permanent, std::nullopt};
    return fail(e);
  };
  const Identifier& id = authz.identifier;
  if (id.type == "dns") {
    if (!isDnsName(id.value)) {
      return refuse("names a malformed DNS identifier '" + escapeControl(id.value, 128) + "'");
    }
    const std::string wanted = authz.wildcard ? "*." + id.value : id.value;
    bool found = std::any_of(asked.begin(), asked.end(), [&](const Identifier& a) {
      return a.type == "dns" && equalsIgnoreCase(a.value, wanted);
    });
    if (!found) {
      return refuse("is for '" + wanted + "', which the order did not ask for");
    }
  } else if (id.type == "TNAuthList") {
    if (!isBase64ish(id.value, true)) {
      return refuse("names a malformed TNAuthList identifier");
    }
    bool found = std::any_of(asked.begin(), asked.end(), [](const Identifier& a) { return a.type == "TNAuthList"; });
    if (!found) {
      return refuse("is for a TNAuthList, which the order did not ask for");
    }
  } else {
    return refuse("has an identifier of type '" + escapeControl(id.type, 128) + "', which the order did not ask for");
  }
  if (!isBase64ish(challenge.token, false) && !(challenge.type == "tkauth-01" && challenge.token.empty())) {
    return refuse("carries a challenge token that is not base64url");
  }
  return ok();
}

Result<void> checkIssuedChain(const std::vector<pki::Certificate>& chain, const IssueRequest& request,
                              pki::SystemTime now) {
  if (chain.empty()) {
    return fail(Errc::protocol, "check chain: the CA returned no certificate");
  }
  const pki::Certificate& leaf = chain.front();
  if (request.certKey == nullptr || !leaf.hasPublicKey(request.certKey->publicKey())) {
    return fail(stepError(Errc::crypto, "check key: the certificate's public key is not the HSM key", leaf.subject()));
  }
  if (auto r = verifyIdentifiers(leaf, request.identifiers); !r) {
    return r;
  }
  if (leaf.notAfter() <= now) {
    return fail(stepError(Errc::protocol, "check validity: the certificate has already expired", leaf.subject()));
  }
  if (!request.trustAnchors.empty()) {
    if (auto r = pki::verifyChain(chain, request.trustAnchors, now); !r) {
      Error e = r.error();
      e.message = "check chain: " + e.message;
      e.context = leaf.subject();
      return fail(e);
    }
  }
  if (request.extraCheck) {
    return request.extraCheck(chain);
  }
  return ok();
}

Result<IssuedChain> downloadCheckedChain(AcmeClient& client, const AccountRef& account, const IssueRequest& request,
                                         const Order& order) {
  if (order.status != "valid" || !order.certificate) {
    return fail(stepError(Errc::protocol, "order ended " + order.status, order.url));
  }
  // Try the alternate chains when the default one does not verify.
  auto chain = client.downloadCertificate(account, *order.certificate);
  if (!chain) {
    return fail(chain.error());
  }
  auto now = std::chrono::system_clock::now();
  std::vector<std::pair<std::string, std::string>> candidates{{chain->pem, ""}};
  for (const std::string& alt : chain->alternates) {
    candidates.emplace_back("", alt);
  }
  std::optional<Error> firstError;
  for (std::size_t i = 0; i < candidates.size(); ++i) {
    std::string pem = candidates[i].first;
    if (pem.empty()) {
      auto alt = client.downloadCertificate(account, candidates[i].second);
      if (!alt) {
        continue;
      }
      pem = alt->pem;
    }
    auto parsed = pki::parsePemChain(pem);
    if (!parsed) {
      Error e = parsed.error();
      e.code = Errc::protocol;
      e.message = "check chain: " + e.message;
      e.context = *order.certificate;
      firstError = firstError.value_or(e);
      continue;
    }
    auto checked = checkIssuedChain(*parsed, request, now);
    if (checked) {
      return IssuedChain{pem, std::move(*parsed), order.url, i > 0};
    }
    firstError = firstError.value_or(checked.error());
  }
  // What the CA issued fails its checks: downloading it again gives the same.
  return fail(permanent(*firstError));
}

}  // namespace kms::acme
