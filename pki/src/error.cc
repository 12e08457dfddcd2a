#include "kms/error.h"

namespace kms {

const char* errcName(Errc code) noexcept {
  switch (code) {
    case Errc::invalidArgument:
      return "invalid-argument";
    case Errc::notFound:
      return "not-found";
    case Errc::alreadyExists:
      return "already-exists";
    case Errc::io:
      return "io";
    case Errc::crypto:
      return "crypto";
    case Errc::hsm:
      return "hsm";
    case Errc::storage:
      return "storage";
    case Errc::config:
      return "config";
    case Errc::protocol:
      return "protocol";
    case Errc::network:
      return "network";
    case Errc::timeout:
      return "timeout";
    case Errc::unauthorized:
      return "unauthorized";
    case Errc::unsupported:
      return "unsupported";
    case Errc::cancelled:
      return "cancelled";
    case Errc::internal:
      return "internal";
  }
  return "unknown";
}

const char* toString(Disposition d) noexcept {
  switch (d) {
    case Disposition::retry:
      return "retry";
    case Disposition::permanent:
      return "permanent";
    case Disposition::caPause:
      return "ca-pause";
  }
  return "unknown";
}

std::string Error::toString() const {
  std::string out;
  if (!context.empty()) {
    out += context;
    out += ": ";
  }
  out += message;
  if (!nativeName.empty()) {
    out += " (";
    out += nativeName;
    out += ')';
  }
  return out;
}

}  // namespace kms
