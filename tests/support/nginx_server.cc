#include "nginx_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <stdexcept>
#include <thread>

#include "cli.h"
#include "sandbox.h"

namespace kms::test {
namespace {

/// True when an HTTP request to the port gets an answer within a second: the socket itself
/// listens from the start, so a connection alone says nothing about nginx.
bool answers(std::uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  bool ok = false;
  static constexpr char kRequest[] = "HEAD / HTTP/1.0\r\n\r\n";
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      ::write(fd, kRequest, sizeof kRequest - 1) == static_cast<ssize_t>(sizeof kRequest - 1)) {
    pollfd p{fd, POLLIN, 0};
    char c = 0;
    ok = ::poll(&p, 1, 1000) == 1 && ::read(fd, &c, 1) == 1;
  }
  ::close(fd);
  return ok;
}

}  // namespace

std::string NginxServer::binary() {
  const char* env = std::getenv("KMS_NGINX_BINARY");
  return env != nullptr ? env : "/usr/sbin/nginx";
}

NginxServer::NginxServer(std::string dir, const std::string& root, const std::string& include) : dir_(std::move(dir)) {
  ::mkdir(dir_.c_str(), 0700);
  ::mkdir((dir_ + "/tmp").c_str(), 0700);
  // The test binds the port and nginx inherits the socket (its NGINX variable, the way it
  // hands sockets to a new binary), so no port is picked, released and bound again.
  const PassedSocket listener;  // ours closes when the constructor returns; nginx keeps its copy
  port_ = listener.port();
  std::string conf = "daemon off;\nmaster_process on;\nworker_processes 1;\npid " + dir_ + "/nginx.pid;\nerror_log " +
                     dir_ + "/error.log info;\n";
  if (::geteuid() == 0) {
    conf += "user root;\n";  // workers would otherwise drop to nobody, who cannot read the sandbox
  }
  conf += "events { worker_connections 64; }\nhttp {\n  access_log " + dir_ + "/access.log;\n";
  for (const char* t : {"client_body", "proxy", "fastcgi", "uwsgi", "scgi"}) {
    conf += std::string("  ") + t + "_temp_path " + dir_ + "/tmp/" + t + ";\n";
  }
  conf += "  server {\n    listen 127.0.0.1:" + std::to_string(port_) + ";\n    root " + root + ";\n    include " +
          include + ";\n  }\n}\n";
  const std::string confPath = dir_ + "/nginx.conf";
  std::ofstream(confPath, std::ios::trunc) << conf;
  pid_ = ::fork();
  if (pid_ < 0) {
    throw std::runtime_error("fork failed");
  }
  if (pid_ == 0) {
    ::setenv("NGINX", (std::to_string(listener.fd()) + ";").c_str(), 1);
    const std::string bin = binary();
    const std::string early = dir_ + "/error.log";
    ::execl(bin.c_str(), bin.c_str(), "-p", dir_.c_str(), "-e", early.c_str(), "-c", confPath.c_str(),
            static_cast<char*>(nullptr));
    ::_exit(127);
  }
  for (auto end = std::chrono::steady_clock::now() + std::chrono::seconds(10); std::chrono::steady_clock::now() < end;) {
    if (answers(port_)) {
      return;
    }
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  std::string log = errorLog();
  stop();
  throw std::runtime_error("nginx did not start: " + log);
}

NginxServer::~NginxServer() { stop(); }

std::string NginxServer::baseUrl() const { return "http://127.0.0.1:" + std::to_string(port_) + "/"; }

std::string NginxServer::errorLog() const {
  try {
    return readFile(dir_ + "/error.log");
  } catch (const std::exception&) {
    return "(no error log)";
  }
}

void NginxServer::stop() {
  if (pid_ > 0) {
    ::kill(pid_, SIGQUIT);  // graceful: the master stops its worker and exits
    int status = 0;
    for (int i = 0; i < 100 && ::waitpid(pid_, &status, WNOHANG) == 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (::waitpid(pid_, &status, WNOHANG) == 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status, 0);
    }
    pid_ = -1;
  }
}

}  // namespace kms::test
