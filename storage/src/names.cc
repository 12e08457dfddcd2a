// Text forms of the enumerations, exactly as stored in the schema's CHECK lists.

#include <array>
#include <utility>

#include "storage/store.h"

namespace kms::storage {

namespace {

constexpr std::array<std::pair<CertState, const char*>, 11> kStates{{
    {CertState::planned, "planned"},
    {CertState::keyReady, "key_ready"},
    {CertState::tokenReady, "token_ready"},
    {CertState::orderPending, "order_pending"},
    {CertState::authorized, "authorized"},
    {CertState::finalizing, "finalizing"},
    {CertState::issued, "issued"},
    {CertState::published, "published"},
    {CertState::active, "active"},
    {CertState::renewalDue, "renewal_due"},
    {CertState::failed, "failed"},
}};

}  // namespace

const char* toString(CertState state) noexcept {
  for (const auto& [value, name] : kStates) {
    if (value == state) {
      return name;
    }
  }
  return "unknown";
}

Result<CertState> parseCertState(std::string_view text) {
  for (const auto& [value, name] : kStates) {
    if (text == name) {
      return value;
    }
  }
  return fail(Errc::invalidArgument, "unknown certificate state '" + std::string(text) + "'");
}

const char* toString(CertKind kind) noexcept {
  switch (kind) {
    case CertKind::shaken:
      return "shaken";
    case CertKind::acme:
      return "acme";
  }
  return "unknown";
}

const char* toString(OrderStatus status) noexcept {
  switch (status) {
    case OrderStatus::open:
      return "open";
    case OrderStatus::done:
      return "done";
    case OrderStatus::abandoned:
      return "abandoned";
  }
  return "unknown";
}

const char* toString(KeyPurpose purpose) noexcept {
  switch (purpose) {
    case KeyPurpose::account:
      return "account";
    case KeyPurpose::certificate:
      return "certificate";
  }
  return "unknown";
}

const char* toString(TrustKind kind) noexcept {
  switch (kind) {
    case TrustKind::caList:
      return "ca_list";
    case TrustKind::crl:
      return "crl";
  }
  return "unknown";
}

const char* toString(EventLevel level) noexcept {
  switch (level) {
    case EventLevel::debug:
      return "debug";
    case EventLevel::info:
      return "info";
    case EventLevel::warning:
      return "warning";
    case EventLevel::error:
      return "error";
  }
  return "unknown";
}

}  // namespace kms::storage
