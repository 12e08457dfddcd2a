#pragma once
/// @file The STI-CR web root sink: each certificate chain is written once under an
/// immutable name, then the certificate's current pointer is switched atomically
/// (temp file, fsync, rename, fsync of the directory), so a reader sees the old chain or
/// the new one, never a torn file.

#include <string>

#include "kms/error.h"

namespace kms::publisher {

/// Where a chain was published.
struct Published {
  std::string immutablePath;  ///< web_root/<name>/<serial>.pem
  std::string currentPath;    ///< web_root/<name>.pem
  std::string x5uUrl;         ///< base_url + "<name>/<serial>.pem"
};

class WebRoot {
 public:
  WebRoot(std::string webRoot, std::string baseUrl) : root_(std::move(webRoot)), baseUrl_(std::move(baseUrl)) {}

  /// Publishes chainPem for certificate `name` with serial `serialHex`. Creates the
  /// directories (0755) it needs; files are 0644, whatever the umask. web_root itself may
  /// be a symlink (the operator's choice); a symlink at web_root/<name> is refused, never
  /// written through (the directory is opened with O_NOFOLLOW and written via its fd). An existing immutable file with other content is an
  /// error (Errc::alreadyExists); with the same content it is kept. Errors name the path.
  [[nodiscard]] Result<Published> publish(const std::string& name, const std::string& serialHex,
                                          const std::string& chainPem) const;

  /// Where publish puts (or put) the chain of `name` with serial `serialHex`: paths and URL
  /// only, nothing is read or written.
  [[nodiscard]] Published where(const std::string& name, const std::string& serialHex) const;
  /// The first half of publish: the immutable file only (what the x5u URL serves). The
  /// current pointer still names the previous chain.
  [[nodiscard]] Result<Published> writeImmutable(const std::string& name, const std::string& serialHex,
                                                 const std::string& chainPem) const;
  /// The second half: web_root/<name>.pem switched atomically to chainPem.
  [[nodiscard]] Result<void> switchCurrent(const std::string& name, const std::string& chainPem) const;

  /// Removes web_root/<name>/<serial>.pem (a chain no verifier needs any more); a file
  /// already gone is fine. Errors name the path and errno.
  [[nodiscard]] Result<void> removeImmutable(const std::string& name, const std::string& serialHex) const;

 private:
  std::string root_;
  std::string baseUrl_;
};

}  // namespace kms::publisher
