#include <gtest/gtest.h>

#include <sys/stat.h>

#include <filesystem>

#include "publisher/web_root.h"
#include "sandbox.h"

namespace kms::publisher {
namespace {

TEST(PublisherWebRoot, WritesImmutableFileAndSwitchesCurrent) {
  test::Sandbox sb;
  WebRoot root(sb.file("www"), "https://cr.example.net/");
  auto first = root.publish("main", "0A1B", "CHAIN-1\n");
  ASSERT_TRUE(first.has_value()) << first.error().toString();
  EXPECT_EQ(first->x5uUrl, "https://cr.example.net/main/0A1B.pem");
  EXPECT_EQ(first->immutablePath, sb.file("www/main/0A1B.pem"));
  EXPECT_EQ(test::readFile(sb.file("www/main.pem")), "CHAIN-1\n");

  auto second = root.publish("main", "0C2D", "CHAIN-2\n");
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(test::readFile(sb.file("www/main.pem")), "CHAIN-2\n");
  EXPECT_EQ(test::readFile(sb.file("www/main/0A1B.pem")), "CHAIN-1\n");  // the previous one stays
  struct stat st {};
  ASSERT_EQ(::stat(sb.file("www/main.pem").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644U);
  // No temp files left behind.
  for (const auto& entry : std::filesystem::directory_iterator(sb.file("www"))) {
    EXPECT_EQ(entry.path().filename().string().find(".tmp-"), std::string::npos) << entry.path();
  }
}

TEST(PublisherWebRoot, ImmutableFileFirstCurrentPointerOnlyWhenSwitched) {
  test::Sandbox sb;
  WebRoot root(sb.file("www"), "https://cr.example.net/");
  ASSERT_TRUE(root.publish("main", "0A1B", "CHAIN-1\n").has_value());
  auto next = root.writeImmutable("main", "0C2D", "CHAIN-2\n");
  ASSERT_TRUE(next.has_value()) << next.error().toString();
  EXPECT_EQ(next->x5uUrl, "https://cr.example.net/main/0C2D.pem");
  EXPECT_EQ(test::readFile(sb.file("www/main/0C2D.pem")), "CHAIN-2\n");
  EXPECT_EQ(test::readFile(sb.file("www/main.pem")), "CHAIN-1\n");  // verifiers still get the old one
  ASSERT_TRUE(root.switchCurrent("main", "CHAIN-2\n").has_value());
  EXPECT_EQ(test::readFile(sb.file("www/main.pem")), "CHAIN-2\n");
  EXPECT_FALSE(root.switchCurrent("../main", "X").has_value());
}

TEST(PublisherWebRoot, RepublishingTheSameChainIsIdempotentButAnotherIsRefused) {
  test::Sandbox sb;
  WebRoot root(sb.file("www"), "https://cr.example.net/");
  ASSERT_TRUE(root.publish("main", "01", "A").has_value());
  EXPECT_TRUE(root.publish("main", "01", "A").has_value());
  auto clash = root.publish("main", "01", "B");
  ASSERT_FALSE(clash.has_value());
  EXPECT_EQ(clash.error().toString(),
            sb.file("www/main/01.pem") + ": an immutable chain file with other content exists");
  EXPECT_EQ(test::readFile(sb.file("www/main.pem")), "A");
}

TEST(PublisherWebRoot, BadNamesAndUnwritableRoot) {
  test::Sandbox sb;
  WebRoot root(sb.file("www"), "https://cr.example.net/");
  EXPECT_FALSE(root.publish("../etc", "01", "A").has_value());
  EXPECT_FALSE(root.publish("main", "a/b", "A").has_value());
  std::string file = sb.write("not-a-dir", "x");
  WebRoot broken(file, "https://cr.example.net/");
  auto r = broken.publish("main", "01", "A");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, Errc::io);
  EXPECT_NE(r.error().toString().find(file), std::string::npos) << r.error().toString();
}

}  // namespace
}  // namespace kms::publisher
