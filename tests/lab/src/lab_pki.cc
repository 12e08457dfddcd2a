#include "lab_pki.h"

#include <chrono>
#include <filesystem>
#include <functional>
#include <vector>

#include "cert_builder.h"
#include "util.h"

namespace kms::lab {

namespace {

using std::chrono::hours;
using Clock = std::chrono::system_clock;

constexpr auto kCaValidity = hours(24 * 365 * 10);
constexpr auto kLeafValidity = hours(24 * 365 * 5);
constexpr auto kBackdate = hours(1);

struct Blueprint {
  std::string file;  ///< base name under D/pki
  std::unique_ptr<KeyedCert> LabPki::*member;
  std::vector<std::pair<std::string, std::string>> subject;
  std::unique_ptr<KeyedCert> LabPki::*issuer;  ///< nullptr: self-signed
  std::vector<ConfExtension> extensions;
  std::chrono::hours validity;
};

std::vector<ConfExtension> caExtensions(bool intermediate) {
  return {{"basicConstraints", intermediate ? "critical,CA:TRUE,pathlen:0" : "critical,CA:TRUE"},
          {"keyUsage", "critical,keyCertSign,cRLSign"}};
}

/// In dependency order (issuers first).
std::vector<Blueprint> blueprints() {
  return {
      {"tls-ca",
       &LabPki::tlsCa,
       {{"C", "US"}, {"O", "kms-lab"}, {"CN", "kms-lab TLS CA"}},
       nullptr,
       caExtensions(false),
       kCaValidity},
      {"tls",
       &LabPki::tls,
       {{"C", "US"}, {"O", "kms-lab"}, {"CN", "localhost"}},
       &LabPki::tlsCa,
       {{"basicConstraints", "critical,CA:FALSE"},
        {"keyUsage", "critical,digitalSignature"},
        {"extendedKeyUsage", "serverAuth"},
        {"subjectAltName", "IP:127.0.0.1,DNS:localhost"}},
       kLeafValidity},
      {"sti-pa-root",
       &LabPki::stiPaRoot,
       {{"C", "US"}, {"O", "kms-lab STI-PA"}, {"CN", "kms-lab STI-PA Root"}},
       nullptr,
       caExtensions(false),
       kCaValidity},
      {"sti-pa-signer",
       &LabPki::stiPaSigner,
       {{"C", "US"}, {"O", "kms-lab STI-PA"}, {"CN", "kms-lab STI-PA Token Signer"}},
       &LabPki::stiPaRoot,
       {{"basicConstraints", "critical,CA:FALSE"}, {"keyUsage", "critical,digitalSignature"}},
       kLeafValidity},
      {"sti-pa-crl",
       &LabPki::stiPaCrl,
       {{"C", "US"}, {"O", "kms-lab STI-PA"}, {"CN", "kms-lab STI-PA CRL"}},
       &LabPki::stiPaRoot,
       {{"basicConstraints", "critical,CA:FALSE"}, {"keyUsage", "critical,cRLSign"}},
       kLeafValidity},
      {"sti-ca-root",
       &LabPki::stiCaRoot,
       {{"C", "US"}, {"O", "kms-lab STI-CA"}, {"CN", "kms-lab SHAKEN Root CA"}},
       nullptr,
       caExtensions(false),
       kCaValidity},
      {"sti-ca-intermediate",
       &LabPki::stiCaIntermediate,
       {{"C", "US"}, {"O", "kms-lab STI-CA"}, {"CN", "kms-lab SHAKEN Intermediate CA"}},
       &LabPki::stiCaRoot,
       caExtensions(true),
       kCaValidity},
      // Same subject as the real intermediate, other key: a verifier builds the path with it
      // and the leaf signature fails.
      {"sti-ca-decoy-intermediate",
       &LabPki::decoyIntermediate,
       {{"C", "US"}, {"O", "kms-lab STI-CA"}, {"CN", "kms-lab SHAKEN Intermediate CA"}},
       &LabPki::stiCaRoot,
       caExtensions(true),
       kCaValidity},
  };
}

Result<std::unique_ptr<KeyedCert>> load(const std::string& certFile, const std::string& keyFile) {
  auto certPem = readFile(certFile);
  auto keyPem = readFile(keyFile);
  if (!certPem || !keyPem) {
    return fail(Errc::notFound, "missing", certFile);
  }
  auto cert = pki::Certificate::fromPem(*certPem);
  if (!cert) {
    return fail(cert.error());
  }
  auto key = pki::SoftwareKey::fromPem(*keyPem);
  if (!key) {
    return fail(key.error());
  }
  return std::make_unique<KeyedCert>(KeyedCert{*cert, std::move(*key), certFile});
}

Result<std::unique_ptr<KeyedCert>> create(const Blueprint& bp, LabPki& pki, const std::string& certFile,
                                          const std::string& keyFile) {
  auto key = pki::SoftwareKey::generate();
  if (!key) {
    return fail(key.error());
  }
  KeyedCert* issuer = bp.issuer != nullptr ? (pki.*bp.issuer).get() : nullptr;
  auto now = Clock::now();
  CertSpec spec{bp.subject,
                (*key)->publicKey(),
                issuer != nullptr ? &issuer->cert : nullptr,
                issuer != nullptr ? issuer->key.get() : key->get(),
                now - kBackdate,
                now + bp.validity,
                bp.extensions,
                {},
                true};
  auto cert = buildCertificate(spec);
  if (!cert) {
    return fail(cert.error());
  }
  auto keyPem = (*key)->privateKeyPem();
  if (!keyPem) {
    return fail(keyPem.error());
  }
  if (auto w = writeFileAtomic(keyFile, *keyPem, 0600); !w) {
    return fail(w.error());
  }
  if (auto w = writeFileAtomic(certFile, cert->pem()); !w) {
    return fail(w.error());
  }
  return std::make_unique<KeyedCert>(KeyedCert{*cert, std::move(*key), certFile});
}

}  // namespace

Result<std::unique_ptr<LabPki>> LabPki::loadOrCreate(const std::string& dir) {
  std::string pkiDir = dir + "/pki";
  std::error_code ec;
  std::filesystem::create_directories(pkiDir, ec);
  if (ec) {
    return fail(Errc::io, "cannot create directory: " + ec.message(), pkiDir);
  }
  std::filesystem::permissions(pkiDir, std::filesystem::perms::owner_all, ec);

  auto all = blueprints();
  bool complete = true;
  for (const auto& bp : all) {
    complete = complete && std::filesystem::exists(pkiDir + "/" + bp.file + ".pem", ec) &&
               std::filesystem::exists(pkiDir + "/" + bp.file + ".key", ec);
  }
  auto out = std::make_unique<LabPki>();
  for (const auto& bp : all) {
    std::string certFile = pkiDir + "/" + bp.file + ".pem";
    std::string keyFile = pkiDir + "/" + bp.file + ".key";
    auto kc = complete ? load(certFile, keyFile) : create(bp, *out, certFile, keyFile);
    if (!kc) {
      return fail(kc.error());
    }
    (*out).*bp.member = std::move(*kc);
  }
  struct PublicCopy {
    const char* name;
    const KeyedCert& from;
  };
  for (const PublicCopy& copy : {PublicCopy{"tls-ca.pem", *out->tlsCa}, PublicCopy{"sti-pa-root.pem", *out->stiPaRoot},
                                 PublicCopy{"sti-pa-crl.pem", *out->stiPaCrl},
                                 PublicCopy{"sti-ca-root.pem", *out->stiCaRoot}}) {
    if (auto w = writeFileAtomic(dir + "/" + copy.name, copy.from.cert.pem()); !w) {
      return fail(w.error());
    }
  }
  return out;
}

Result<void> LabPki::rotateStiCa(const std::string& dir, int generation) {
  const std::string pkiDir = dir + "/pki";
  for (auto bp : blueprints()) {
    if (bp.file != "sti-ca-root" && bp.file != "sti-ca-intermediate") {
      continue;  // issuers first: the new root is in place before the intermediate is made
    }
    for (auto& [field, value] : bp.subject) {
      if (field == "CN") {
        value += " G" + std::to_string(generation);
      }
    }
    auto kc = create(bp, *this, pkiDir + "/" + bp.file + ".pem", pkiDir + "/" + bp.file + ".key");
    if (!kc) {
      return fail(kc.error());
    }
    this->*bp.member = std::move(*kc);
  }
  return writeFileAtomic(dir + "/sti-ca-root.pem", stiCaRoot->cert.pem());
}

}  // namespace kms::lab
