// The signing record against a real file: one JSON line per signature with what the issue
// asks for and nothing of the token, rotation past the size limit keeping N files, and the
// rate limiter's arithmetic (the clock passed in, no sleeping).
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sandbox.h"
#include "signing/signing_clients.h"
#include "signing/signing_record.h"

namespace kms::daemon {
namespace {

Signed aSignature(int i) {
  Signed s;
  s.identity = "eyJhbGciOiJFUzI1NiJ9.secret.token;info=<https://cr/x.pem>";
  s.cert = "main";
  s.serial = "7DF6A28F";
  s.attest = "A";
  s.orig = "12155551212";
  s.destCount = 2;
  s.origid = "de305d54-75b4-431b-adb2-eb6b9e5460" + std::to_string(10 + i);
  s.iat = 1'800'000'000 + i;
  return s;
}

std::vector<nlohmann::json> linesOf(const std::string& file) {
  std::vector<nlohmann::json> out;
  std::istringstream in(test::readFile(file));
  for (std::string line; std::getline(in, line);) {
    out.push_back(nlohmann::json::parse(line));
  }
  return out;
}

TEST(SigningRecord, OneLinePerSignatureWithoutTheToken) {
  test::Sandbox sandbox;
  const std::string path = sandbox.file("signing.jsonl");
  auto record = SigningRecord::open(path, 1 << 20, 3);
  ASSERT_TRUE(record.has_value()) << record.error().toString();
  (*record)->add(aSignature(0), "sbc-a", 1'800'000'000'123);
  Signed div = aSignature(1);
  div.type = pki::PassportType::div;
  div.attest.clear();
  div.origid.clear();
  (*record)->add(div, "sbc-b", 1'800'000'001'000);
  (*record)->flush();
  EXPECT_EQ((*record)->written(), 2U);
  const auto lines = linesOf(path);
  ASSERT_EQ(lines.size(), 2U);
  EXPECT_EQ(lines[0], nlohmann::json::parse(R"({"time":"2027-01-15T08:00:00Z","client":"sbc-a","cert":"main",
      "serial":"7DF6A28F","ppt":"shaken","attest":"A","orig":"12155551212","dest_count":2,"iat":1800000000,
      "origid":"de305d54-75b4-431b-adb2-eb6b9e546010"})"));
  EXPECT_EQ(lines[1]["ppt"], "div");
  EXPECT_FALSE(lines[1].contains("attest"));
  EXPECT_EQ(test::readFile(path).find("eyJ"), std::string::npos);
  record->reset();
  // Reopened, it appends.
  auto again = SigningRecord::open(path, 1 << 20, 3);
  ASSERT_TRUE(again.has_value());
  (*again)->add(aSignature(2), "sbc-a", 1'800'000'002'000);
  again->reset();  // writes what is queued before closing
  EXPECT_EQ(linesOf(path).size(), 3U);
}

TEST(SigningRecord, RotatesPastItsSizeKeepingTheNewestFiles) {
  test::Sandbox sandbox;
  const std::string path = sandbox.file("signing.jsonl");
  auto record = SigningRecord::open(path, 1000, 2);  // a line is ~230 bytes: 4 per file
  ASSERT_TRUE(record.has_value());
  for (int i = 0; i < 40; ++i) {
    (*record)->add(aSignature(i), "sbc-a", 1'800'000'000'000 + i);
    (*record)->flush();  // one line per write, so each rotation is at a line's boundary
  }
  record->reset();
  namespace fs = std::filesystem;
  EXPECT_TRUE(fs::exists(path));
  EXPECT_TRUE(fs::exists(path + ".1"));
  EXPECT_TRUE(fs::exists(path + ".2"));
  EXPECT_FALSE(fs::exists(path + ".3"));
  for (const std::string& f : {path, path + ".1", path + ".2"}) {
    EXPECT_LE(fs::file_size(f), 1000U) << f;
  }
  // The newest line is last in the live file; older ones in .1, then .2, in order.
  const auto live = linesOf(path);
  ASSERT_FALSE(live.empty());
  EXPECT_EQ(live.back()["iat"], 1'800'000'039);
  const auto older = linesOf(path + ".1");
  ASSERT_FALSE(older.empty());
  EXPECT_EQ(older.back()["iat"].get<int>() + 1, live.front()["iat"].get<int>());
}

TEST(SigningRecord, APathThatCannotBeWrittenIsNamed) {
  test::Sandbox sandbox;
  auto record = SigningRecord::open(sandbox.file("no/such/dir/signing.jsonl"), 1 << 20, 3);
  ASSERT_FALSE(record.has_value());
  EXPECT_NE(record.error().message.find(sandbox.file("no/such/dir/signing.jsonl")), std::string::npos);
  EXPECT_NE(record.error().message.find("No such file or directory"), std::string::npos);
}

TEST(SigningRateLimit, ABucketOfOneSecondRefilledAtTheRate) {
  RateLimit limit(5);
  const auto t0 = std::chrono::steady_clock::time_point{} + std::chrono::hours(1);
  int admitted = 0;
  for (int i = 0; i < 20; ++i) {
    admitted += limit.admit(t0) ? 1 : 0;
  }
  EXPECT_EQ(admitted, 5);  // the burst
  EXPECT_FALSE(limit.admit(t0 + std::chrono::milliseconds(100)));
  EXPECT_TRUE(limit.admit(t0 + std::chrono::milliseconds(200)));  // one more after 1/5 s
  EXPECT_FALSE(limit.admit(t0 + std::chrono::milliseconds(200)));
  admitted = 0;
  for (int i = 0; i < 20; ++i) {
    admitted += limit.admit(t0 + std::chrono::seconds(60)) ? 1 : 0;
  }
  EXPECT_EQ(admitted, 5) << "a long pause refills the bucket, never beyond one second's worth";
}

}  // namespace
}  // namespace kms::daemon
