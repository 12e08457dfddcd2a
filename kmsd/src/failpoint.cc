#include "failpoint.h"

#ifdef KMS_FAILPOINTS
#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

namespace kms::daemon {

void failpoint(const char* name) {
  const char* want = std::getenv("KMSD_FAILPOINT");
  if (want != nullptr && std::strcmp(want, name) == 0) {
    ::kill(::getpid(), SIGKILL);
  }
}

}  // namespace kms::daemon
#endif
