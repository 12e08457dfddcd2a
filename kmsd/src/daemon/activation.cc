#include "daemon/activation.h"

#include <sys/socket.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>

namespace kms::daemon {

Result<ActivatedSockets> takeActivatedSockets() {
  char** names = nullptr;
  const int count = sd_listen_fds_with_names(1, &names);
  if (count < 0) {
    return fail(Errc::config, std::string("cannot read the passed sockets: ") + std::strerror(-count),
                "socket activation (LISTEN_FDS)");
  }
  ActivatedSockets out;
  std::optional<Error> problem;
  auto refuse = [&problem](std::string what) {
    Error e;
    e.code = Errc::config;
    e.message = std::move(what);
    e.context = "socket activation (LISTEN_FDNAMES)";
    problem = std::move(e);
  };
  for (int i = 0; i < count; ++i) {
    const int fd = SD_LISTEN_FDS_START + i;
    const std::string name = names != nullptr && names[i] != nullptr ? names[i] : "";
    if (problem) {
      ::close(fd);
    } else if (name != "http01") {
      refuse("a socket named '" + name + "' was passed; kmsd takes only one, named 'http01' (FileDescriptorName=)");
      ::close(fd);
    } else if (sd_is_socket_inet(fd, AF_UNSPEC, SOCK_STREAM, 1, 0) <= 0) {
      refuse("the socket named 'http01' is not a listening TCP socket");
      ::close(fd);
    } else if (out.http01) {
      refuse("two sockets named 'http01' were passed");
      ::close(fd);
    } else {
      out.http01 = fd;
    }
  }
  if (names != nullptr) {
    for (int i = 0; i < count; ++i) {
      std::free(names[i]);
    }
    std::free(names);
  }
  if (problem) {
    if (out.http01) {
      ::close(*out.http01);
    }
    return fail(*problem);
  }
  return out;
}

}  // namespace kms::daemon
