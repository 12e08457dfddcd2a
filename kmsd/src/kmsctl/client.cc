#include "kmsctl/client.h"

#include <cstdlib>
#include <fstream>
#include <limits>
#include <ostream>
#include <string_view>

#include <nlohmann/json.hpp>

#include "control/control_api.h"
#include "events/event_sink.h"
#include "pki/json_limits.h"

namespace kms::daemon {

std::optional<std::string> quickControlSocket(const std::string& path) {
  if (const char* env = std::getenv("KMSD_DAEMON_CONTROL_SOCKET"); env != nullptr && *env == '/') {
    return std::string(env);
  }
  std::ifstream in(path);
  std::string line;
  bool inDaemon = false;
  while (std::getline(in, line)) {
    auto first = line.find_first_not_of(" \t");
    if (first == std::string::npos || line[first] == '#') {
      continue;
    }
    std::string_view l(line);
    l.remove_prefix(first);
    if (l.front() == '[') {
      if (inDaemon) {
        return std::nullopt;  // [daemon] without control_socket: the default applies
      }
      inDaemon = l.rfind("[daemon]", 0) == 0;
      continue;
    }
    if (inDaemon && l.rfind("control_socket", 0) == 0) {
      auto open = l.find('"');
      auto close = open == std::string_view::npos ? open : l.find('"', open + 1);
      if (close == std::string_view::npos ||
          l.substr(open + 1, close - open - 1).find('\\') != std::string_view::npos) {
        return std::nullopt;
      }
      return std::string(l.substr(open + 1, close - open - 1));
    }
  }
  return std::nullopt;
}

std::optional<nlohmann::json> ask(const config::Config& cfg, const std::string& method, const std::string& target,
                                  const std::string& body, std::ostream& err, int* status) {
  auto r = controlRequest(cfg.daemon.controlSocket, method, target, body);
  if (!r) {
    if (r.error().code == Errc::timeout) {  // running but not answering: say so
      err << "kmsctl: " << sanitize(r.error().toString()) << '\n';
    }
    return std::nullopt;
  }
  if (status != nullptr) {
    *status = r->status;
  }
  // The daemon's own answer: deep nesting is still refused, size is not (100,000 certificates).
  const bool shallow = pki::checkJsonLimits(r->body, pki::kMaxJsonDepth, std::numeric_limits<std::size_t>::max())
                           .has_value();
  auto j = shallow ? nlohmann::json::parse(r->body, nullptr, false)
                   : nlohmann::json(nlohmann::json::value_t::discarded);
  if (j.is_discarded()) {
    err << "kmsctl: the daemon answered HTTP " << r->status << " with a body that is not JSON\n";
    return nlohmann::json::object();
  }
  return j;
}

std::string str(const nlohmann::json& j, const char* key, const char* dflt) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() && !it->get<std::string>().empty() ? it->get<std::string>()
                                                                             : std::string(dflt);
}

}  // namespace kms::daemon
