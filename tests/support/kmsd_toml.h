#pragma once
// kmsd.toml for a test: the settings tests vary as fields, written out as TOML once, so a
// renamed or new setting changes here and not in every test that starts kmsd.

#include <string>
#include <utility>
#include <vector>

namespace kms::test {

struct KmsdToml {
  std::string stateDir;
  std::string controlSocket;  ///< empty: kmsd's default
  std::string daemonExtra;    ///< more [daemon] lines, each ending in '\n'
  std::string tokenLabel = "kms-test";
  std::string pinFile;
  std::string hsmExtra;
  std::string stiPaSection;  ///< the whole [sti_pa] section, when one is wanted
  std::string directoryUrl = "https://127.0.0.1:14000/dir";  ///< nothing listens there
  std::string caBundle;
  std::string trustAnchors;
  /// Never bound when kmsd is handed its socket (TEST-NET-1 is not local); empty: unset.
  std::string http01Listen = "192.0.2.1:80";
  std::string acmeExtra;
  std::string webRoot;
  std::string baseUrl = "https://cr.example.net/";
  std::string publicationCheck = "file";
  /// [[certificate]] tables: name and the TOML of the rest (identifiers = [...], ...).
  std::vector<std::pair<std::string, std::string>> certificates;

  /// Adds a certificate for DNS names ("identifiers = [\"dns:a\", …]" plus `extra` lines).
  KmsdToml& dns(const std::string& name, const std::vector<std::string>& names, const std::string& extra = "") {
    std::string ids;
    for (const std::string& n : names) {
      ids += (ids.empty() ? "\"dns:" : ", \"dns:") + n + "\"";
    }
    certificates.emplace_back(name, "identifiers = [" + ids + "]\n" + extra);
    return *this;
  }

  [[nodiscard]] std::string text() const {
    auto quoted = [](const char* key, const std::string& value) {
      return value.empty() ? std::string() : std::string(key) + " = \"" + value + "\"\n";
    };
    std::string t = "[daemon]\n" + quoted("state_dir", stateDir) + quoted("control_socket", controlSocket) +
                    daemonExtra + "[hsm]\n" + quoted("token_label", tokenLabel) + quoted("pin_file", pinFile) +
                    hsmExtra + stiPaSection + "[acme]\n" + quoted("directory_url", directoryUrl) + quoted("ca_bundle", caBundle) +
                    quoted("trust_anchors", trustAnchors) + quoted("http01_listen", http01Listen) + acmeExtra +
                    "[publisher]\n" + quoted("web_root", webRoot) + quoted("base_url", baseUrl) +
                    quoted("publication_check", publicationCheck);
    for (const auto& [name, rest] : certificates) {
      t.append("[[certificate]]\nname = \"").append(name).append("\"\n").append(rest);
    }
    return t;
  }
};

}  // namespace kms::test
