#pragma once
// Managed certificates as synthetic rows in a real state DB, for the benchmarks at scale
// (scale, metrics_scrape): each issued, published and active, its renewal about 60 days
// away, the keys shared among a few key rows.
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "storage/store.h"

namespace kms::bench {

/// "c<i>", the name of the i-th synthetic certificate (appended, not `"c" + ...`: GCC 12's
/// -Wrestrict misfires on the latter at -O2).
inline std::string certName(long i) {
  std::string name = "c";
  name += std::to_string(i);
  return name;
}

/// Writes `keyUris` as key rows and `count` certificates "c0", "c1", ... (dns:cN.example.net)
/// using them in turn, in one transaction; `now` is the time the rows are written at.
inline Result<void> writeSyntheticCertificates(storage::Store& store, const std::vector<std::string>& keyUris,
                                               long count, std::int64_t now) {
  return store.transact([&]() -> Result<void> {
    for (std::size_t i = 0; i < keyUris.size(); ++i) {
      char hex[40];
      (void)std::snprintf(hex, sizeof hex, "%04zx", i);
      if (auto k = store.recordKey({0, keyUris[i], hex, "bench", storage::KeyPurpose::certificate, now, {}}); !k) {
        return fail(k.error());
      }
    }
    for (long i = 0; i < count; ++i) {
      const std::string name = certName(i);
      auto c = store.upsertCertificate(name, storage::CertKind::acme, "[\"dns:" + name + ".example.net\"]");
      if (!c) {
        return fail(c.error());
      }
      storage::IssuedCert ic;
      ic.certName = name;
      ic.serial = "5E" + std::to_string(i);
      ic.notBefore = now - 86400;
      ic.notAfter = now + 89L * 86400;
      ic.chainPem = "-----BEGIN CERTIFICATE-----\nsynthetic\n-----END CERTIFICATE-----\n";
      ic.keyUri = keyUris[static_cast<std::size_t>(i) % keyUris.size()];
      ic.x5uUrl = "https://cr.example.net/" + name + "/" + ic.serial + ".pem";
      ic.publishedAt = now - 86000;
      if (auto id = store.insertIssued(ic); !id) {
        return fail(id.error());
      }
      if (auto s = store.setState(name, storage::CertState::active, std::nullopt); !s) {
        return s;
      }
      if (auto s = store.setRenewal(name, now + 60L * 86400 + i % 86400, std::nullopt); !s) {
        return s;
      }
    }
    return ok();
  });
}

}  // namespace kms::bench
