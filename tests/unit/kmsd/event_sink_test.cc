// Log line formats, escaping of outside text, and the event catalogue (kmsd/EVENTS.md).
#include <gtest/gtest.h>


#include <fstream>
#include <filesystem>
#include <regex>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "events/event_sink.h"
#include "sandbox.h"

namespace kms::daemon {
namespace {

TEST(EventLog, TextLineHasTheIdFieldsAndTheMessage) {
  Logger log(config::LogFormat::text);
  EventRecord e{"KMS_CERT_ISSUED",
                storage::EventLevel::info,
                std::string("main"),
                "serial 0A issued",
                {{"serial", "0A"}, {"x5u", "https://cr.example.net/main/0A.pem"}}};
  EXPECT_EQ(log.format(e),
            "KMS_CERT_ISSUED cert=main serial=0A x5u=https://cr.example.net/main/0A.pem msg=\"serial 0A issued\"");
}

TEST(EventLog, JsonLineIsOneObject) {
  Logger log(config::LogFormat::json);
  EventRecord e{"KMS_RENEW_FAILED", storage::EventLevel::warning, std::nullopt, "CA down", {{"failures", "2"}}};
  auto j = nlohmann::json::parse(log.format(e));
  EXPECT_EQ(j["event"], "KMS_RENEW_FAILED");
  EXPECT_EQ(j["level"], "warning");
  EXPECT_EQ(j["message"], "CA down");
  EXPECT_EQ(j["failures"], "2");
  EXPECT_FALSE(j.contains("cert"));
  EXPECT_TRUE(j["time"].is_number_integer());
}

TEST(EventLog, OutsideTextCannotForgeLinesOrDriveTheTerminal) {
  Logger log(config::LogFormat::text);
  EventRecord e{"KMS_ISSUE_FAILED",
                storage::EventLevel::error,
                std::string("main"),
                "refused\n2026-01-01T00:00:00Z info KMS_CERT_ISSUED forged \x1b[2J",
                {}};
  const std::string line = log.format(e);
  EXPECT_EQ(line.find('\n'), std::string::npos);
  EXPECT_EQ(line.find('\x1b'), std::string::npos);
  // The lines joined with "; "; the escape's backslash quoted once more inside msg="...".
  EXPECT_NE(line.find("refused; 2026"), std::string::npos) << line;
  EXPECT_NE(line.find("\\\\x1b[2J"), std::string::npos) << line;
  EXPECT_EQ(sanitize(std::string(5000, 'a')).size(), 2048u + 3);
}

TEST(EventLog, AMultiLineErrorIsOneLineJoinedWithSemicolons) {
  EXPECT_EQ(sanitize("kmsd.toml:3:1: [hsm] colour: unknown key\r\nkmsd.toml:9:5: [acme] x: bad\n\n"),
            "kmsd.toml:3:1: [hsm] colour: unknown key; kmsd.toml:9:5: [acme] x: bad");
  EXPECT_EQ(sanitize("\nlead"), "lead");
  EXPECT_EQ(sanitize("tab\there"), "tab\\x09here");  // other control characters stay escaped
}

TEST(EventCatalogue, EveryIdInTheCodeIsListedAndEveryListedIdIsUsed) {
  const std::string src = KMS_SOURCE_DIR "/kmsd/src";
  std::set<std::string> used;
  std::regex id("\"(KMS_[A-Z_]+)\"");
  ASSERT_TRUE(std::filesystem::is_directory(src)) << src;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(src)) {
    const std::string name = entry.path().string();
    if (entry.is_regular_file() && (name.ends_with(".cc") || name.ends_with(".h"))) {
      std::string text = kms::test::readFile(name);
      for (std::sregex_iterator it(text.begin(), text.end(), id), end; it != end; ++it) {
        used.insert((*it)[1]);
      }
    }
  }
  ASSERT_GT(used.size(), 20u);
  const std::string catalogue = kms::test::readFile(KMS_SOURCE_DIR "/kmsd/EVENTS.md");
  std::set<std::string> listed;
  std::regex row("\\n\\| `(KMS_[A-Z_]+)` \\|");
  for (std::sregex_iterator it(catalogue.begin(), catalogue.end(), row), end; it != end; ++it) {
    listed.insert((*it)[1]);
  }
  for (const auto& u : used) {
    EXPECT_EQ(listed.count(u), 1u) << u << " is used in kmsd/src but not listed in kmsd/EVENTS.md";
  }
  for (const auto& l : listed) {
    EXPECT_EQ(used.count(l), 1u) << l << " is listed in kmsd/EVENTS.md but no code emits it";
  }
}

}  // namespace
}  // namespace kms::daemon
