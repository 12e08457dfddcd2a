#include "recorded_server.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <stdexcept>

namespace kms::test {

RecordedServer::RecordedServer(const std::string& routesJson) {
  std::string routes = sandbox_.write("routes.json", routesJson);
  violationsFile_ = sandbox_.file("violations.txt");
  int fds[2];
  if (::pipe(fds) != 0) {
    throw std::runtime_error("pipe failed");
  }
  pid_ = ::fork();
  if (pid_ < 0) {
    throw std::runtime_error("fork failed");
  }
  if (pid_ == 0) {
    ::dup2(fds[1], STDOUT_FILENO);
    ::close(fds[0]);
    ::close(fds[1]);
    const char* script = KMS_TEST_SUPPORT_DIR "/recorded_server.py";
    ::execl("/usr/bin/python3", "python3", script, routes.c_str(), violationsFile_.c_str(),
            static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::close(fds[1]);
  // The first line is the port; read it with a bounded wait.
  std::string line;
  char c = 0;
  fd_set set;
  for (int waited = 0; waited < 100 && line.find('\n') == std::string::npos;) {
    FD_ZERO(&set);
    FD_SET(fds[0], &set);
    timeval tv{0, 100000};
    int ready = ::select(fds[0] + 1, &set, nullptr, nullptr, &tv);
    if (ready <= 0) {
      ++waited;
      continue;
    }
    if (::read(fds[0], &c, 1) != 1) {
      break;
    }
    line += c;
  }
  ::close(fds[0]);
  port_ = std::atoi(line.c_str());
  if (port_ <= 0) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
    throw std::runtime_error(
        "recorded_server.py did not start (are /usr/bin/python3 and python3-cryptography installed?)");
  }
}

RecordedServer::~RecordedServer() {
  if (pid_ > 0) {
    ::kill(pid_, SIGTERM);
    ::waitpid(pid_, nullptr, 0);
  }
}

std::string RecordedServer::url(const std::string& path) const {
  return "http://127.0.0.1:" + std::to_string(port_) + path;
}

std::vector<std::string> RecordedServer::violations() const {
  // The script writes each line before it answers, so whatever a finished request broke
  // is here. No file: nothing was broken.
  std::vector<std::string> lines;
  std::ifstream in(violationsFile_);
  for (std::string line; std::getline(in, line);) {
    lines.push_back(line);
  }
  return lines;
}

}  // namespace kms::test
