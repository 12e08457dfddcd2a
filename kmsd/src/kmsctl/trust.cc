// kmsctl trust [--refresh] [--json]
#include <chrono>
#include <ostream>

#include <nlohmann/json.hpp>

#include "daemon/config_check.h"
#include "events/event_sink.h"
#include "kmsctl/client.h"
#include "kmsctl/commands.h"
#include "trust/trust.h"

namespace kms::daemon {
namespace {

/// The text form of a trust report.
void printTrust(const nlohmann::json& t, std::ostream& out) {
  auto str = [](const nlohmann::json& j, const char* key) {
    auto it = j.find(key);
    return it != j.end() && it->is_string() && !it->get<std::string>().empty() ? sanitize(it->get<std::string>())
                                                                              : std::string("-");
  };
  auto age = [](const nlohmann::json& j) {
    std::int64_t s = j.value("age_seconds", std::int64_t{0});
    return s < 120 ? std::to_string(s) + " s" : s < 7200 ? std::to_string(s / 60) + " min" : std::to_string(s / 3600) + " h";
  };
  if (t.contains("anchors")) {
    out << "issued chains verify to: "
        << (t.value("anchors", "") == "ca_list" ? "the STI-PA CA list" : "[acme] trust_anchors (overrides the CA list)")
        << '\n';
  }
  const auto& list = t["ca_list"];
  if (list.is_object()) {
    out << "CA list: sequence " << list.value("sequence", std::int64_t{0}) << ", fetched " << str(list, "fetched_at")
        << " (" << age(list) << " ago), " << (list.value("expired", false) ? "EXPIRED " : "expires ")
        << str(list, "expires") << '\n';
    for (const auto& r : list["roots"]) {
      out << "  root " << str(r, "subject") << "  not after " << str(r, "not_after") << "  sha256 " << str(r, "sha256")
          << '\n';
    }
  } else {
    out << "CA list: none kept yet\n";
  }
  const auto& crl = t["crl"];
  if (crl.is_object()) {
    out << "CRL: issuer " << str(crl, "issuer") << ", thisUpdate " << str(crl, "this_update") << ", nextUpdate "
        << str(crl, "next_update") << (crl.value("stale", false) ? " (STALE)" : "") << ", "
        << crl.value("entries", std::size_t{0}) << " entries, fetched " << str(crl, "fetched_at") << " (" << age(crl)
        << " ago)\n";
  } else if (t.contains("crl_checked") && !t.value("crl_checked", false)) {
    out << "CRL: not read ([sti_pa] crl_signer is not set)\n";
  } else {
    out << "CRL: none kept yet\n";
  }
  if (t.contains("daemon")) {
    const auto& d = t["daemon"];
    out << "last refresh: " << str(d, "last_refresh") << '\n';
    if (str(d, "ca_list_error") != "-") {
      out << "  CA list problem: " << str(d, "ca_list_error") << '\n';
    }
    if (str(d, "crl_error") != "-") {
      out << "  CRL problem: " << str(d, "crl_error") << '\n';
    }
  }
}

}  // namespace

int ctlTrust(Target& target, bool refresh, bool json, std::ostream& out, std::ostream& err) {
  const std::string socket = target.socket();
  int status = 0;
  auto r = ask(socket, refresh ? "POST" : "GET", refresh ? "/v1/trust/refresh" : "/v1/trust", "", err, &status);
  if (!r) {
    if (refresh) {
      err << "kmsctl: kmsd is not running (no answer on " << socket << "); a refresh needs the daemon\n";
      return kExitCheckFailed;
    }
    return showTrust(target, json, out, err);
  }
  if (status != 200 || !r->is_object()) {
    err << "kmsctl: kmsd answered HTTP " << status << ": " << sanitize(str(*r, "detail", "")) << '\n';
    return kExitRuntime;
  }
  if (json) {
    out << r->dump(2) << '\n';
  } else {
    printTrust(*r, out);
    if (refresh && r->contains("affected") && !(*r)["affected"].empty()) {
      out << "renewing at once:";
      for (const auto& n : (*r)["affected"]) {
        out << ' ' << sanitize(n.get<std::string>());
      }
      out << '\n';
    }
  }
  return kExitOk;
}

int showTrust(Target& target, bool json, std::ostream& out, std::ostream& err) {
  auto db = openStateForReading(target, err);
  if (!db) {
    return kExitCheckFailed;
  }
  const config::Config* cfg = &target.config();
  nlohmann::json report = trustReport(KeptTrust{}, 0);
  if (*db) {
    auto store = storage::makeSqliteStore(**db);
    auto kept = readKeptTrust(*store);
    if (!kept) {
      err << "kmsctl: " << kept.error().toString() << '\n';
      return kExitRuntime;
    }
    const std::int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                                 std::chrono::system_clock::now().time_since_epoch())
                                 .count();
    report = trustReport(*kept, now);
  }
  report["crl_checked"] = cfg->stiPa && cfg->stiPa->crlSigner;
  report["anchors"] = cfg->acme.trustAnchors ? "[acme] trust_anchors" : "ca_list";
  if (json) {
    out << report.dump(2) << '\n';
  } else {
    out << "kmsd is not running; read from the state DB\n";
    printTrust(report, out);
  }
  return kExitOk;
}

}  // namespace kms::daemon
