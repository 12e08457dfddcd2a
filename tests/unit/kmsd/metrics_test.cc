// The Prometheus text format as kmsd writes it, and the counters the event sink feeds.
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "metrics/exposition.h"
#include "metrics/metrics.h"
#include "sandbox.h"
#include "storage/db.h"
#include "storage/store.h"

namespace kms::daemon {
namespace {

TEST(Exposition, FamiliesSamplesAndEscaping) {
  Exposition x;
  x.family("kms_example_total", "counter", "a help text with a \\ and a\nnewline");
  x.sample("kms_example_total", {{"name", "a\"b\\c\nd"}, {"stage", "csr"}}, std::int64_t{3});
  x.sample("kms_example_total", {}, 1.5);
  x.sample("kms_example_total", {}, 1.0 / 0.0);
  EXPECT_EQ(x.text(),
            "# HELP kms_example_total a help text with a \\\\ and a\\nnewline\n"
            "# TYPE kms_example_total counter\n"
            "kms_example_total{name=\"a\\\"b\\\\c\\nd\",stage=\"csr\"} 3\n"
            "kms_example_total 1.5\n"
            "kms_example_total +Inf\n");
}

TEST(Exposition, IntegersStayExactPastADoublesPrecision) {
  Exposition x;
  x.sample("kms_big", {}, std::int64_t{9007199254740993});
  EXPECT_EQ(x.text(), "kms_big 9007199254740993\n");
}

class MetricsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto db = storage::Db::open(sandbox_.file("kmsd.db"));
    ASSERT_TRUE(db.has_value()) << db.error().toString();
    db_ = std::move(*db);
    store_ = storage::makeSqliteStore(*db_, [] { return kNow; });
    locked_ = std::make_unique<LockedStore>(*store_);
  }
  /// A certificate with a published, current certificate expiring at `notAfter`.
  void addActive(const std::string& name, std::int64_t notAfter) {
    ASSERT_TRUE(store_->upsertCertificate(name, storage::CertKind::shaken, "[]").has_value());
    storage::IssuedCert c;
    c.certName = name;
    c.serial = "0A" + name;
    c.notBefore = kNow - 100;
    c.notAfter = notAfter;
    c.chainPem = "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n";
    c.keyUri = "pkcs11:id=" + name;
    storage::HsmKey key;
    key.keyUri = c.keyUri;
    key.ckaIdHex = "0a";
    key.label = name;
    ASSERT_TRUE(store_->recordKey(key).has_value());
    auto id = store_->insertIssued(c);
    ASSERT_TRUE(id.has_value()) << id.error().toString();
    ASSERT_TRUE(store_->markPublished(*id, "https://cr.example/" + name + ".pem", kNow).has_value());
    ASSERT_TRUE(store_->setState(name, storage::CertState::active, std::nullopt).has_value());
    ASSERT_TRUE(store_->setRenewal(name, notAfter - 1000, std::nullopt).has_value());
  }
  std::string render(const Metrics& m) {
    auto text = m.render(*locked_, kNow);
    EXPECT_TRUE(text.has_value()) << text.error().toString();
    return text ? *text : std::string();
  }
  static bool has(const std::string& text, const std::string& line) {
    return text.find("\n" + line + "\n") != std::string::npos;
  }

  static constexpr std::int64_t kNow = 1'800'000'000;
  kms::test::Sandbox sandbox_;
  std::unique_ptr<storage::Db> db_;
  std::unique_ptr<storage::Store> store_;
  std::unique_ptr<LockedStore> locked_;
};

TEST_F(MetricsTest, EventsAndRenewalAttemptsAreCountedUnderKmsdsOwnLabelsOnly) {
  ASSERT_TRUE(store_->upsertCertificate("main", storage::CertKind::shaken, "[]").has_value());
  Metrics m;
  m.count({"KMS_CERT_ACTIVATED", storage::EventLevel::info, "main", "active", {}});
  m.count({"KMS_RENEW_FAILED", storage::EventLevel::warning, "main", "x", {{"step", "finalize"}}});
  m.count({"KMS_RENEW_FAILED", storage::EventLevel::warning, "main", "x", {{"step", "finalize"}}});
  // A step text that is not one of kmsd's words never becomes a label value.
  m.count({"KMS_ISSUE_FAILED", storage::EventLevel::error, "main", "x", {{"step", "Evil\"CA text\n"}}});
  m.count({"KMS_STARTED", storage::EventLevel::info, std::nullopt, "up", {}});
  m.count({"KMS_CERT_PUBLISHED", storage::EventLevel::info, "main", "published", {}});
  m.count({"KMS_PUBLICATION_CHECK_FAILED", storage::EventLevel::error, "main", "not served", {}});
  m.count({"KMS_PUBLICATION_CHECK_FAILED", storage::EventLevel::error, "main", "not served", {}});
  const std::string text = render(m);
  EXPECT_TRUE(has(text, R"(kms_publication_checks_total{name="main",result="success"} 1)")) << text;
  EXPECT_TRUE(has(text, R"(kms_publication_checks_total{name="main",result="failure"} 2)")) << text;
  EXPECT_TRUE(has(text, R"(kms_renewal_attempts_total{name="main",result="success",stage="activate"} 1)")) << text;
  EXPECT_TRUE(has(text, R"(kms_renewal_attempts_total{name="main",result="retry",stage="finalize"} 2)")) << text;
  EXPECT_TRUE(has(text, R"(kms_renewal_attempts_total{name="main",result="failed",stage="other"} 1)")) << text;
  EXPECT_TRUE(has(text, R"(kms_events_total{id="KMS_RENEW_FAILED"} 2)")) << text;
  EXPECT_TRUE(has(text, R"(kms_events_total{id="KMS_STARTED"} 1)")) << text;
  EXPECT_EQ(text.find("Evil"), std::string::npos) << text;
}

TEST_F(MetricsTest, RequestsAreCountedByActionAndStatusAndTimedInCumulativeBuckets) {
  Metrics m;
  m.observeRequest("acme", "newOrder", 201, 0.02);
  m.observeRequest("acme", "newOrder", 201, 0.3);
  m.observeRequest("acme", "finalize", 0, 40.0);  // no answer, slower than the last bound
  m.observeRequest("sti_pa", "not a constant!", 500, 0.001);
  const std::string text = render(m);
  EXPECT_TRUE(has(text, R"(kms_acme_requests_total{action="newOrder",status="201"} 2)")) << text;
  EXPECT_TRUE(has(text, R"(kms_acme_requests_total{action="finalize",status="error"} 1)")) << text;
  EXPECT_TRUE(has(text, R"(kms_sti_pa_requests_total{action="other",status="500"} 1)")) << text;
  EXPECT_TRUE(has(text, R"(kms_acme_request_duration_seconds_bucket{le="0.01"} 0)")) << text;
  EXPECT_TRUE(has(text, R"(kms_acme_request_duration_seconds_bucket{le="0.025"} 1)")) << text;
  EXPECT_TRUE(has(text, R"(kms_acme_request_duration_seconds_bucket{le="0.5"} 2)")) << text;
  EXPECT_TRUE(has(text, R"(kms_acme_request_duration_seconds_bucket{le="30"} 2)")) << text;
  EXPECT_TRUE(has(text, R"(kms_acme_request_duration_seconds_bucket{le="+Inf"} 3)")) << text;
  EXPECT_TRUE(has(text, "kms_acme_request_duration_seconds_count 3")) << text;
  EXPECT_TRUE(has(text, "kms_acme_request_duration_seconds_sum 40.32")) << text;
  EXPECT_TRUE(has(text, R"(kms_sti_pa_request_duration_seconds_bucket{le="0.005"} 1)")) << text;
}

TEST_F(MetricsTest, PerCertificateSeriesUpToTheLimitAndAggregatesForAll) {
  addActive("alpha", kNow + 5000);
  addActive("beta", kNow + 3000);
  addActive("gamma", kNow + 9000);
  ASSERT_TRUE(store_->upsertCertificate("delta", storage::CertKind::shaken, "[]").has_value());
  Metrics m;
  // Counted per name for the certificates shown; gamma's and delta's summed without a name.
  for (const char* name : {"alpha", "gamma", "delta", "gamma"}) {
    m.count({"KMS_RENEW_FAILED", storage::EventLevel::warning, std::string(name), "x", {{"step", "fetch_token"}}});
  }
  m.count({"KMS_PUBLICATION_CHECK_FAILED", storage::EventLevel::error, std::string("delta"), "x", {}});
  auto rendered = m.render(*locked_, kNow, 2);
  ASSERT_TRUE(rendered.has_value()) << rendered.error().toString();
  const std::string& text = *rendered;
  EXPECT_TRUE(has(text, R"(kms_certificate_expiration_timestamp_seconds{name="alpha"} 1800005000)")) << text;
  EXPECT_TRUE(has(text, R"(kms_certificate_expiration_timestamp_seconds{name="beta"} 1800003000)")) << text;
  EXPECT_TRUE(has(text, R"(kms_certificate_renewal_timestamp_seconds{name="alpha"} 1800004000)")) << text;
  EXPECT_TRUE(has(text, R"(kms_certificate_not_before_timestamp_seconds{name="alpha"} 1799999900)")) << text;
  EXPECT_TRUE(has(text, R"(kms_certificate_last_success_timestamp_seconds{name="alpha"} 1800000000)")) << text;
  EXPECT_TRUE(has(text, R"(kms_certificate_ready_status{name="alpha",condition="True"} 1)")) << text;
  EXPECT_TRUE(has(text, R"(kms_certificate_ready_status{name="alpha",condition="False"} 0)")) << text;
  // Past the limit: gamma and delta only in the aggregates.
  EXPECT_EQ(text.find(R"({name="gamma"})"), std::string::npos) << text;
  EXPECT_EQ(text.find(R"(name="delta")"), std::string::npos) << text;
  EXPECT_TRUE(has(text, "kms_certificate_per_certificate_series_omitted 2")) << text;
  EXPECT_TRUE(has(text, R"(kms_certificates{state="active"} 3)")) << text;
  EXPECT_TRUE(has(text, R"(kms_certificates{state="planned"} 1)")) << text;
  EXPECT_TRUE(has(text, "kms_certificates_ready 3")) << text;
  EXPECT_TRUE(has(text, R"(kms_certificate_soonest_expiration_timestamp_seconds{name="beta"} 1800003000)")) << text;
  EXPECT_TRUE(has(text, "kms_orders_in_flight 0")) << text;
  EXPECT_TRUE(has(text, R"(kms_renewal_attempts_total{name="alpha",result="retry",stage="fetch_token"} 1)")) << text;
  EXPECT_TRUE(has(text, R"(kms_renewal_attempts_total{result="retry",stage="fetch_token"} 3)")) << text;
  EXPECT_TRUE(has(text, R"(kms_publication_checks_total{result="failure"} 1)")) << text;
}

}  // namespace
}  // namespace kms::daemon
