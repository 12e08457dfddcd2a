#pragma once
/// @file Runs the real kms-lab binary (local STI-PA + STI-CA) for a test: started with
/// fork/exec on 127.0.0.1, ready when it prints its "listening" line, stopped by PID.

#include <sys/types.h>

#include <string>
#include <vector>

namespace kms::test {

class LabProcess {
 public:
  /// kms-lab --dir dir extraArgs... (a free port on first start, the same one after); throws std::runtime_error (with its output)
  /// when it does not print "kms-lab listening on https://127.0.0.1:<port>" within 20 s.
  LabProcess(std::string dir, std::vector<std::string> extraArgs = {});
  ~LabProcess();
  LabProcess(const LabProcess&) = delete;
  LabProcess& operator=(const LabProcess&) = delete;

  [[nodiscard]] const std::string& dir() const { return dir_; }
  /// https://127.0.0.1:<port>
  [[nodiscard]] const std::string& baseUrl() const { return baseUrl_; }
  /// dir + "/" + name
  [[nodiscard]] std::string file(const std::string& name) const { return dir_ + "/" + name; }
  /// POSTs a lab switch (`path` as "/lab/...", a JSON body) with curl over the lab's TLS;
  /// false (with curl's output in `out`) unless it answered 2xx.
  bool labSwitch(const std::string& path, const std::string& json, std::string* out = nullptr) const;
  /// What kms-lab printed so far (stdout and stderr).
  [[nodiscard]] std::string log() const;
  void stop();

  static std::string binary();

 private:
  std::string dir_;
  std::string baseUrl_;
  std::string log_;
  pid_t pid_ = -1;
};

}  // namespace kms::test
