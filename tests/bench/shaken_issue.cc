// One full SHAKEN issuance against kms-lab, repeated: STI-PA token, ACME order with
// tkauth-01, CSR and JWS signed in SoftHSM2, chain and profile checks. Reports the median
// and how the time splits between STI-PA requests, ACME requests and the HSM.
//   shaken_issue [runs=20]     (kms-lab from the build tree, or $KMS_LAB_BINARY)
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <numeric>
#include <vector>

#include "acme/client.h"
#include "acme/issuer.h"
#include "acme/tkauth.h"
#include "config/config.h"
#include "hsm/token.h"
#include "kms/secret.h"
#include "lab_process.h"
#include "pki/encoding.h"
#include "pki/shaken_profile.h"
#include "pki/tn_auth_list.h"
#include "sandbox.h"
#include "sti_pa/client.h"

namespace {

using namespace kms;
using Clock = std::chrono::steady_clock;

std::atomic<long long> gStiPaNs{0};
std::atomic<long long> gAcmeNs{0};
std::atomic<long long> gHsmNs{0};

long long since(Clock::time_point t0) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count();
}

/// Times every request, attributed to the STI-PA or the ACME server by URL.
class TimedTransport : public http::Transport {
 public:
  TimedTransport(http::Transport& inner, std::string stiPaPrefix) : inner_(inner), prefix_(std::move(stiPaPrefix)) {}
  Result<http::HttpResponse> send(const http::HttpRequest& r) override {
    auto t0 = Clock::now();
    auto out = inner_.send(r);
    (r.url.rfind(prefix_, 0) == 0 ? gStiPaNs : gAcmeNs) += since(t0);
    return out;
  }

 private:
  http::Transport& inner_;
  std::string prefix_;
};

/// Times every signature made in the HSM.
class TimedSigner : public pki::Signer {
 public:
  explicit TimedSigner(pki::Signer& inner) : inner_(inner) {}
  Result<pki::RawSignature> signDigest(const pki::Digest& d) override {
    auto t0 = Clock::now();
    auto out = inner_.signDigest(d);
    gHsmNs += since(t0);
    return out;
  }
  const pki::EcPublicKey& publicKey() const override { return inner_.publicKey(); }

 private:
  pki::Signer& inner_;
};

std::string readText(const std::string& path) {
  return test::readFile(path);
}

double ms(long long ns) {
  return static_cast<double>(ns) / 1e6;
}

}  // namespace

int main(int argc, char** argv) {
  int runs = argc > 1 ? std::atoi(argv[1]) : 20;
  test::Sandbox sb;
  test::LabProcess lab(sb.file("lab"));
  ::setenv("SOFTHSM2_CONF", lab.file("softhsm2.conf").c_str(), 1);
  auto cfg = config::loadConfigFile(lab.file("kmsd.toml"), {});
  if (!cfg) {
    std::fprintf(stderr, "%s", config::formatErrors(cfg.error()).c_str());
    return 1;
  }
  auto token = hsm::Token::open({cfg->hsm.module, cfg->hsm.tokenLabel, cfg->hsm.pinFile, 4});
  if (!token) {
    std::fprintf(stderr, "%s\n", token.error().toString().c_str());
    return 1;
  }
  http::TransportOptions topts;
  topts.caBundle = cfg->acme.caBundle;
  auto curl = http::makeCurlTransport(topts);
  TimedTransport transport(**curl, cfg->stiPa->url.substr(0, cfg->stiPa->url.find("/api")));
  auto client = acme::AcmeClient::create(transport, {cfg->acme.directoryUrl});
  if (!client) {
    std::fprintf(stderr, "%s\n", client.error().toString().c_str());
    return 1;
  }
  auto accountHsm = (*token)->generateSigner("bench-account");
  TimedSigner accountKey(**accountHsm);
  auto hmac = readSecretFile(*cfg->acme.eabHmacFile);
  acme::ExternalAccountBinding eab{*cfg->acme.eabKid, SecretBytes(*pki::base64UrlDecode(hmac->view()))};
  auto account = (*client)->newAccount(accountKey, {}, &eab);
  if (!account) {
    std::fprintf(stderr, "%s\n", account.error().toString().c_str());
    return 1;
  }
  sti_pa::StiPaOptions so;
  so.url = cfg->stiPa->url;
  so.userId = cfg->stiPa->userId;
  so.passwordFile = cfg->stiPa->passwordFile;
  so.trustAnchors = *pki::parsePemChain(readText(*cfg->stiPa->trustAnchor));
  auto stiPa = sti_pa::StiPaClient::create(transport, so);
  // tkauth-01 answered with tokens from the STI-PA client (kmsd's adapter does the same).
  struct Tokens : acme::SpcTokenSource {
    sti_pa::StiPaClient& client;
    pki::EcPublicKey key;
    Tokens(sti_pa::StiPaClient& c, pki::EcPublicKey k) : client(c), key(std::move(k)) {}
    Result<std::string> spcToken(const std::string& spc) override {
      auto t = client.spcToken(spc, key);
      if (!t) {
        return fail(t.error());
      }
      client.markUsed(t->jti);
      return t->jwt;
    }
  } tokens(*stiPa, accountKey.publicKey());
  acme::TkauthSolver tkauth(tokens);
  auto anchors = *pki::parsePemChain(readText(lab.file("sti-ca-root.pem")));
  std::string identifier = pki::base64Encode(*pki::TnAuthList::forSpc("1234").toDer());

  std::vector<double> totals;
  long long stiPa0 = 0;
  long long acme0 = 0;
  long long hsm0 = 0;
  for (int i = 0; i <= runs; ++i) {  // run 0 warms up (login, x5u fetch, TLS)
    gStiPaNs = 0;
    gAcmeNs = 0;
    gHsmNs = 0;
    auto t0 = Clock::now();
    auto kg0 = Clock::now();
    auto certHsm = (*token)->generateSigner("bench-" + std::to_string(i));
    gHsmNs += since(kg0);
    TimedSigner certKey(**certHsm);
    acme::IssueRequest r;
    r.identifiers = {{"TNAuthList", identifier}};
    r.challengeType = "tkauth-01";
    r.csr = *pki::CsrRequest::shaken("1234", "Example Telecom");
    r.certKey = &certKey;
    r.trustAnchors = anchors;
    r.extraCheck = [](const std::vector<pki::Certificate>& c) { return pki::checkShakenProfile(c.front(), "1234"); };
    auto issued =
        acme::issueCertificate(**client, acme::AccountRef{accountKey, account->url}, r, {{"tkauth-01", &tkauth}});
    long long total = since(t0);
    if (!issued) {
      std::fprintf(stderr, "run %d: %s\n", i, issued.error().toString().c_str());
      return 1;
    }
    if (i > 0) {
      totals.push_back(ms(total));
      stiPa0 += gStiPaNs;
      acme0 += gAcmeNs;
      hsm0 += gHsmNs;
    }
  }
  std::sort(totals.begin(), totals.end());
  double median = totals[totals.size() / 2];
  std::printf("SHAKEN issuance against kms-lab, %d runs: median %.1f ms (min %.1f, max %.1f)\n", runs, median,
              totals.front(), totals.back());
  std::printf(
      "mean split per issuance: STI-PA requests %.1f ms, ACME requests %.1f ms, HSM (key generation + "
      "signatures) %.1f ms, rest (JSON, checks, CSR) %.1f ms\n",
      ms(stiPa0) / runs, ms(acme0) / runs, ms(hsm0) / runs,
      (std::accumulate(totals.begin(), totals.end(), 0.0) - ms(stiPa0 + acme0 + hsm0)) / runs);
  std::printf("STI-PA: %d login(s), %d token request(s) for %d issuances (one fresh token per order)\n",
              stiPa->logins(), stiPa->tokenRequests(), runs + 1);
  return 0;
}
