#pragma once
/// @file Certificates made with the openssl command line in a sandbox, for tests of TLS
/// listeners and clients: CAs, leaves with one extension, their keys (mode 0600, as the
/// secret-file rules want). Never made with the code under test.

#include <sys/stat.h>

#include <string>

#include <gtest/gtest.h>

#include "sandbox.h"

namespace kms::test {

class OpensslPki {
 public:
  explicit OpensslPki(const Sandbox& sandbox) : sandbox_(sandbox) {}

  /// NAME.pem and NAME.key: a P-256 CA for `subject` ("/CN=Test CA").
  void makeCa(const std::string& name, const std::string& subject) const {
    run("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj '" + subject +
        "' -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign -keyout " + key(name) +
        " -out " + pem(name));
    ::chmod(key(name).c_str(), 0600);
  }
  /// NAME.pem and NAME.key issued by the CA `ca`, with one extension in openssl's
  /// configuration syntax ("subjectAltName=IP:127.0.0.1", "extendedKeyUsage=clientAuth").
  void makeLeaf(const std::string& name, const std::string& subject, const std::string& ca, int serial,
                const std::string& extension) const {
    const std::string ext = sandbox_.write(name + ".ext", extension + "\n");
    run("openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj '" + subject + "' -keyout " +
        key(name) + " -out " + sandbox_.file(name + ".csr"));
    run("openssl x509 -req -in " + sandbox_.file(name + ".csr") + " -CA " + pem(ca) + " -CAkey " + key(ca) +
        " -set_serial " + std::to_string(serial) + " -days 1 -extfile " + ext + " -out " + pem(name));
    ::chmod(key(name).c_str(), 0600);
  }
  [[nodiscard]] std::string key(const std::string& name) const { return sandbox_.file(name + ".key"); }
  [[nodiscard]] std::string pem(const std::string& name) const { return sandbox_.file(name + ".pem"); }

  /// Runs `command` (its output in the failure), for the test's own openssl and curl calls.
  static void run(const std::string& command, std::string* out = nullptr) {
    std::string text;
    ASSERT_EQ(runCommand(command, &text), 0) << command << "\n" << text;
    if (out != nullptr) {
      *out = text;
    }
  }

 private:
  const Sandbox& sandbox_;
};

}  // namespace kms::test
