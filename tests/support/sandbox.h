#pragma once
/// @file Test helpers: a temp directory removed in the destructor, small file helpers.

#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <vector>

namespace kms::test {

/// A fresh directory under $TMPDIR (or /tmp), removed with its content on destruction.
class Sandbox {
 public:
  Sandbox();
  ~Sandbox();
  Sandbox(const Sandbox&) = delete;
  Sandbox& operator=(const Sandbox&) = delete;

  [[nodiscard]] const std::string& path() const { return path_; }
  /// path() + "/" + name
  [[nodiscard]] std::string file(const std::string& name) const;
  /// Writes content to path()/name (mode 0600) and returns the full path.
  std::string write(const std::string& name, const std::string& content) const;

 private:
  std::string path_;
};

/// Reads a whole file; throws std::runtime_error if it cannot.
std::string readFile(const std::string& path);

/// The lines of `text`, without their '\n'.
std::vector<std::string> linesOf(const std::string& text);

/// Runs a shell command, returns its exit status; stdout+stderr captured into *output.
int runCommand(const std::string& command, std::string* output = nullptr);

/// A port on 127.0.0.1 free now, for a server the test starts and that binds it itself:
/// bound to 0 and released. `type`: SOCK_STREAM (TCP, the default) or SOCK_DGRAM (UDP).
std::uint16_t freePort(int type = SOCK_STREAM);

}  // namespace kms::test
