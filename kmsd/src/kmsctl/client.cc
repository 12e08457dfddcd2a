#include "kmsctl/client.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <ostream>

#include <nlohmann/json.hpp>

#include "control/control_api.h"
#include "events/event_sink.h"
#include "pki/json_limits.h"
#include "services/state_reader.h"

namespace kms::daemon {

Target::Target(std::string configPath, std::string socket, std::ostream& err)
    : configPath_(std::move(configPath)), socket_(std::move(socket)), err_(err) {}

const config::Config& Target::config() {
  if (!read_ && configPath_.empty()) {
    read_.emplace();  // --socket without a configuration: the defaults
  }
  if (!read_) {
    read_ = config::readConfigFile(configPath_, config::environmentSnapshot(), config::FileChecks::off);
    if (!read_->errors.empty()) {
      const std::size_t n = read_->errors.size();
      err_ << "kmsctl: warning: " << configPath_ << " has " << n << (n == 1 ? " error" : " errors")
           << " (a running kmsd keeps the configuration it last loaded; kmsctl goes on with what it can read):\n";
      for (const auto& e : read_->errors) {
        err_ << "  " << sanitize(e.toString()) << '\n';
      }
    }
  }
  return read_->config;
}

bool Target::valid() {
  (void)config();
  return read_->errors.empty();
}

std::string Target::socket() {
  return socket_.empty() ? config().daemon.controlSocket : socket_;
}

std::optional<std::string> Target::quickSocket() const {
  if (!socket_.empty()) {
    return socket_;
  }
  if (const char* env = std::getenv("KMSD_DAEMON_CONTROL_SOCKET"); env != nullptr && *env == '/') {
    return std::string(env);
  }
  std::ifstream in(configPath_);
  return config::scanDaemonSetting(in, "control_socket");
}

std::optional<std::unique_ptr<storage::Db>> openStateForReading(Target& target, std::ostream& err) {
  const config::Config& cfg = target.config();
  if (cfg.daemon.stateDir.empty()) {
    err << "kmsctl: kmsd is not running (no answer on " << target.socket() << "), and "
        << (target.configPath().empty() ? std::string("without a configuration (--config) kmsctl does not know where "
                                                      "its state is")
                                        : target.configPath() + " gives no [daemon] state_dir to read its state from")
        << '\n';
    return std::nullopt;
  }
  const std::string path = dbPath(cfg);
  struct stat st {};
  int problem = ::stat(path.c_str(), &st) == 0 ? (::access(path.c_str(), R_OK | W_OK) == 0 ? 0 : errno) : errno;
  if (problem == ENOENT) {
    return std::unique_ptr<storage::Db>();
  }
  if (problem == EACCES || problem == EPERM) {
    err << "kmsctl: kmsd is not running (no answer on " << target.socket() << "), and reading its state in "
        << cfg.daemon.stateDir << " needs root or kmsd's user: " << std::strerror(problem) << '\n';
    return std::nullopt;
  }
  auto db = openExistingDb(cfg);
  if (!db) {
    err << "kmsctl: " << sanitize(db.error().toString()) << '\n';
    return std::nullopt;
  }
  return std::move(*db);
}

void checkSocketAccess(const std::string& socket, std::ostream& err) {
  struct stat st {};
  if (::stat(socket.c_str(), &st) == 0 && ::access(socket.c_str(), W_OK) != 0 && errno == EACCES) {
    err << "kmsctl: kmsd's control socket " << socket
        << " admits root, kmsd's user and the members of its group (uid " << ::getuid() << " is none of them)\n";
    throw SocketRefused{};
  }
}

std::optional<nlohmann::json> ask(const std::string& socket, const std::string& method, const std::string& target,
                                  const std::string& body, std::ostream& err, int* status) {
  auto r = controlRequest(socket, method, target, body);
  if (!r && r.error().code == Errc::network) {
    checkSocketAccess(socket, err);
  }
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
