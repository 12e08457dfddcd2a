#include "lab_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <stdexcept>
#include <thread>

#include "sandbox.h"

namespace kms::test {

std::string LabProcess::binary() {
  const char* env = std::getenv("KMS_LAB_BINARY");
  return env != nullptr ? env : KMS_BINARY_DIR "/tests/lab/kms-lab";
}

LabProcess::LabProcess(std::string dir, std::vector<std::string> extraArgs) : dir_(std::move(dir)) {
  log_ = dir_ + ".kms-lab.log";
  // No --port: the first start picks a free port, later starts in the same dir reuse it.
  std::vector<std::string> args{binary(), "--dir", dir_};
  args.insert(args.end(), extraArgs.begin(), extraArgs.end());
  // Emptied here, before the child starts: a restart must not read the last run's line.
  ::close(::open(log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600));
  pid_ = ::fork();
  if (pid_ < 0) {
    throw std::runtime_error("fork failed");
  }
  if (pid_ == 0) {
    int fd = ::open(log_.c_str(), O_WRONLY | O_APPEND, 0600);
    if (fd >= 0) {
      ::dup2(fd, STDOUT_FILENO);
      ::dup2(fd, STDERR_FILENO);
      ::close(fd);
    }
    std::vector<char*> argv;
    for (auto& a : args) {
      argv.push_back(a.data());
    }
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  const std::string marker = "kms-lab listening on ";
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < deadline) {
    std::string out;
    try {
      out = readFile(log_);
    } catch (const std::exception&) {
    }
    auto at = out.find(marker);
    if (at != std::string::npos) {
      auto end = out.find('\n', at);
      if (end != std::string::npos) {
        baseUrl_ = out.substr(at + marker.size(), end - at - marker.size());
        return;
      }
    }
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      throw std::runtime_error("kms-lab exited early:\n" + out);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  stop();
  throw std::runtime_error("kms-lab did not become ready within 20 s");
}

LabProcess::~LabProcess() {
  stop();
}

std::string LabProcess::log() const { return readFile(log_); }

bool LabProcess::labSwitch(const std::string& path, const std::string& json, std::string* out) const {
  std::string output;
  const int rc = runCommand("curl -sS --fail --cacert '" + file("tls-ca.pem") +
                                "' -H 'Content-Type: application/json' -d '" + json + "' '" + baseUrl_ + path + "'",
                            &output);
  if (out != nullptr) {
    *out = output;
  }
  return rc == 0;
}

void LabProcess::stop() {
  if (pid_ <= 0) {
    return;
  }
  ::kill(pid_, SIGTERM);
  for (int i = 0; i < 300; ++i) {
    if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
      pid_ = -1;
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

}  // namespace kms::test
