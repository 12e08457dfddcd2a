// Rotation without a failed call: four keep-alive connections sign PASSporTs in a loop
// through kmsd's ATIS-1000082 route while kms-lab's 60-second certificates are renewed three
// times. Every request must succeed, and every token must verify (OpenSSL's EVP here, not
// kmsd's code) against the chain its x5u served when it was first named, the leaf valid at
// the token's iat.
#include <gtest/gtest.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "daemon_process.h"
#include "http/transport.h"
#include "lab_process.h"
#include "pki/ec_key.h"
#include "pki/encoding.h"
#include "pki/jose.h"
#include "pki/passport.h"
#include "sandbox.h"

namespace kms {
namespace {

using namespace std::chrono_literals;

/// A certificate as a verifier fetched it: its public key and validity.
struct Leaf {
  EVP_PKEY* key = nullptr;
  std::int64_t notBefore = 0;
  std::int64_t notAfter = 0;
};

/// The leaf of a PEM chain, read with OpenSSL alone.
Leaf leafOf(const std::string& pem) {
  Leaf out;
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  if (cert == nullptr) {
    return out;
  }
  out.key = X509_get_pubkey(cert);
  std::tm tm{};
  ASN1_TIME_to_tm(X509_get0_notBefore(cert), &tm);
  out.notBefore = timegm(&tm);
  ASN1_TIME_to_tm(X509_get0_notAfter(cert), &tm);
  out.notAfter = timegm(&tm);
  X509_free(cert);
  return out;
}

/// ES256 over `input` with `key`; `raw` is r||s.
bool verifies(EVP_PKEY* key, const std::string& input, const pki::Bytes& raw) {
  auto der = pki::rawSignatureToDer(raw);
  if (!der) {
    return false;
  }
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  const bool ok = EVP_DigestVerifyInit(ctx, nullptr, EVP_sha256(), nullptr, key) == 1 &&
                  EVP_DigestVerify(ctx, der->data(), der->size(), reinterpret_cast<const unsigned char*>(input.data()),
                                   input.size()) == 1;
  EVP_MD_CTX_free(ctx);
  return ok;
}

TEST(SigningRotation, FourConnectionsSignThroughThreeRenewalsWithoutAFailedRequest) {
  test::Sandbox sandbox;
  test::LabProcess lab(sandbox.file("lab"), {"--cert-lifetime", "60"});
  test::DaemonProcess kmsd(lab.file("softhsm2.conf"), lab.file("kmsd.toml"), sandbox.file("kmsd.log"));
  ASSERT_TRUE(kmsd.waitFor("KMS_RENEWAL_PLANNED cert=main")) << kmsd.log();

  // The verifier's fetch of an x5u, once per URL (each certificate's URL is immutable).
  http::TransportOptions tls;
  tls.caBundle = lab.file("tls-ca.pem");
  auto fetcher = http::makeCurlTransport(tls);
  ASSERT_TRUE(fetcher.has_value());
  std::mutex leavesMutex;
  std::map<std::string, Leaf> leaves;
  auto leafFor = [&](const std::string& x5u) -> Leaf {
    std::lock_guard<std::mutex> lock(leavesMutex);
    auto it = leaves.find(x5u);
    if (it == leaves.end()) {
      http::HttpRequest get;
      get.method = "GET";
      get.url = x5u;
      auto answer = (*fetcher)->send(get);
      it = leaves.emplace(x5u, answer && answer->status == 200 ? leafOf(answer->body) : Leaf{}).first;
    }
    return it->second;
  };

  std::atomic<bool> stop{false};
  std::atomic<int> signedCount{0};
  std::mutex problemsMutex;
  std::vector<std::string> problems;
  auto problem = [&](std::string what) {
    std::lock_guard<std::mutex> lock(problemsMutex);
    if (problems.size() < 20) {
      problems.push_back(std::move(what));
    }
  };
  auto client = [&] {
    http::TransportOptions unix;
    unix.unixSocket = lab.file("kmsd.sock");
    auto transport = http::makeCurlTransport(unix);  // one keep-alive connection per client
    if (!transport) {
      problem("no transport");
      return;
    }
    while (!stop) {
      http::HttpRequest post;
      post.method = "POST";
      post.url = "http://kmsd/stir/v1/signing";
      post.headers.emplace_back("Content-Type", "application/json");
      post.body = R"({"signingRequest":{"attest":"A","dest":{"tn":["12355551212"]},"orig":{"tn":"12155551212"}}})";
      auto answer = (*transport)->send(post);
      if (!answer || answer->status != 200) {
        problem(answer ? "HTTP " + std::to_string(answer->status) + ": " + answer->body : answer.error().toString());
        continue;
      }
      const auto identity = nlohmann::json::parse(answer->body)["signingResponse"].value("identity", "");
      auto header = pki::parseIdentityHeader(identity);
      auto jws = header ? pki::parseCompactJws(header->jws) : Result<pki::ParsedJws>(fail(Errc::invalidArgument, "x"));
      if (!jws) {
        problem("unparsable identity: " + identity);
        continue;
      }
      const Leaf leaf = leafFor(header->info);
      const auto iat = nlohmann::json::parse(jws->payload).value("iat", std::int64_t{0});
      if (leaf.key == nullptr) {
        problem("x5u did not serve a certificate: " + header->info);
      } else if (!verifies(leaf.key, jws->signingInput, jws->signature)) {
        problem("does not verify against " + header->info);
      } else if (iat < leaf.notBefore || iat >= leaf.notAfter) {
        problem("signed at " + std::to_string(iat) + " with a certificate not valid then: " + header->info);
      } else {
        ++signedCount;
      }
    }
  };
  std::vector<std::thread> clients;
  clients.reserve(4);
  for (int i = 0; i < 4; ++i) {
    clients.emplace_back(client);
  }
  // Three renewals: four distinct x5u URLs seen by the clients.
  const auto end = std::chrono::steady_clock::now() + 240s;
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(leavesMutex);
      if (leaves.size() >= 4) {
        break;
      }
    }
    if (std::chrono::steady_clock::now() > end) {
      break;
    }
    std::this_thread::sleep_for(200ms);
  }
  stop = true;
  for (auto& t : clients) {
    t.join();
  }
  EXPECT_TRUE(problems.empty()) << problems.size() << " problem(s), first: "
                                << (problems.empty() ? std::string() : problems.front());
  std::lock_guard<std::mutex> lock(leavesMutex);
  EXPECT_GE(leaves.size(), 4U) << kmsd.log();
  EXPECT_GT(signedCount.load(), 100);
  std::cerr << "signed " << signedCount.load() << " tokens with " << leaves.size() << " certificates\n";
  for (auto& [url, leaf] : leaves) {
    EVP_PKEY_free(leaf.key);
  }
  EXPECT_EQ(kmsd.stop(), 0) << kmsd.log();
}

}  // namespace
}  // namespace kms
