// The STATUS= line systemd shows for kmsd, from a summary of the state DB.
#include <gtest/gtest.h>

#include "daemon/service_notify.h"

namespace kms::daemon {
namespace {

TEST(ServiceStatus, OneLineWithTheSoonestRenewalAndTheLastError) {
  const std::int64_t now = 1'800'000'000;
  storage::ServiceSummary s;
  EXPECT_EQ(serviceStatusLine(s, now), "0 certificates active; no renewal planned; last error none");
  s.active = 1;
  s.nextRenewal.emplace("main", now + 41 * 86400 + 5);
  EXPECT_EQ(serviceStatusLine(s, now), "1 certificate active; next renewal main in 41d; last error none");
  s.active = 3;
  s.nextRenewal->second = now + 5 * 3600;
  s.lastError.emplace("web", "https://ca.example/acme/order/1: 503 Service Unavailable\nsecond line");
  EXPECT_EQ(serviceStatusLine(s, now), "3 certificates active; next renewal main in 5h; last error web: "
                                       "https://ca.example/acme/order/1: 503 Service Unavailable");
  s.nextRenewal->second = now + 90;
  s.lastError->second = std::string(300, 'x');
  const std::string line = serviceStatusLine(s, now);
  EXPECT_NE(line.find("next renewal main in 90s;"), std::string::npos) << line;
  EXPECT_LT(line.size(), 200U) << "a long error is cut";
  s.nextRenewal->second = now - 10;
  EXPECT_NE(serviceStatusLine(s, now).find("next renewal main due now;"), std::string::npos);
}

}  // namespace
}  // namespace kms::daemon
