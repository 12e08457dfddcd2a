#include <gtest/gtest.h>

#include <sys/resource.h>
#include <sys/stat.h>

#include <csignal>
#include <filesystem>
#include <map>

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

/// Every path under dir with its content (files) or "/" (directories), for before/after checks.
std::map<std::string, std::string> tree(const std::string& dir) {
  std::map<std::string, std::string> out;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    out[e.path().string()] = e.is_directory() ? "/" : test::readFile(e.path().string());
  }
  return out;
}

TEST(PublisherWebRoot, HostileNamesAreRefusedByNameAndWriteNothingAnywhere) {
  test::Sandbox sb;
  std::filesystem::create_directories(sb.file("www/main"));
  std::filesystem::create_directories(sb.file("etc"));
  sb.write("etc/passwd", "root:x:0:0\n");
  WebRoot root(sb.file("www"), "https://cr.example.net/");
  const auto before = tree(sb.path());
  for (const std::string bad : {"../etc", "..", ".", "a/b", "/tmp/x", "", "main/../../etc"}) {
    for (const bool asSerial : {false, true}) {
      const std::string name = asSerial ? "main" : bad;
      const std::string serial = asSerial ? bad : "01";
      auto published = root.publish(name, serial, "EVIL\n");
      ASSERT_FALSE(published.has_value()) << name << " " << serial;
      EXPECT_EQ(published.error().code, Errc::invalidArgument);
      EXPECT_EQ(published.error().message, "certificate name and serial must be plain file names");
      EXPECT_EQ(published.error().context, bad);  // the operator sees which value was refused
      auto removed = root.removeImmutable(name, serial);
      ASSERT_FALSE(removed.has_value());
      EXPECT_EQ(removed.error().context, bad);
    }
    auto switched = root.switchCurrent(bad, "EVIL\n");
    ASSERT_FALSE(switched.has_value());
    EXPECT_EQ(switched.error().message, "certificate name must be a plain file name");
    EXPECT_EQ(switched.error().context, bad);
  }
  // Nothing was written, renamed or removed, inside the web root or next to it.
  EXPECT_EQ(tree(sb.path()), before);
}

TEST(PublisherWebRoot, UnwritableRootIsAnIoErrorNamingIt) {
  test::Sandbox sb;
  std::string file = sb.write("not-a-dir", "x");
  WebRoot broken(file, "https://cr.example.net/");
  auto r = broken.publish("main", "01", "A");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, Errc::io);
  EXPECT_NE(r.error().toString().find(file), std::string::npos) << r.error().toString();
}

TEST(PublisherWebRoot, ASymlinkedCertificateDirectoryIsNotFollowed) {
  test::Sandbox sb;
  WebRoot root(sb.file("www"), "https://cr.example.net/");
  ASSERT_TRUE(root.publish("main", "01", "A").has_value());
  // Someone replaces www/other with a link to a directory outside the web root.
  std::filesystem::create_directories(sb.file("outside"));
  std::filesystem::create_directory_symlink(sb.file("outside"), sb.file("www/other"));
  auto r = root.publish("other", "02", "B");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().toString(),
            sb.file("www/other") + ": is a symbolic link, not a directory: refusing to write through it");
  EXPECT_TRUE(std::filesystem::is_empty(sb.file("outside")));
  EXPECT_FALSE(std::filesystem::exists(sb.file("www/other.pem")));
  EXPECT_FALSE(root.removeImmutable("other", "02").has_value());
}

TEST(PublisherWebRoot, ModesDoNotDependOnTheUmask) {
  test::Sandbox sb;
  WebRoot root(sb.file("www"), "https://cr.example.net/");
  const mode_t old = ::umask(077);
  auto r = root.publish("main", "01", "A");
  ::umask(old);
  ASSERT_TRUE(r.has_value()) << r.error().toString();
  auto mode = [](const std::string& p) {
    struct stat st {};
    ::stat(p.c_str(), &st);
    return st.st_mode & 07777;
  };
  EXPECT_EQ(mode(sb.file("www")), 0755U);
  EXPECT_EQ(mode(sb.file("www/main")), 0755U);
  EXPECT_EQ(mode(sb.file("www/main/01.pem")), 0644U);
  EXPECT_EQ(mode(sb.file("www/main.pem")), 0644U);
}

TEST(PublisherWebRoot, AWriteThatFailsLeavesNothingHalfWritten) {
  test::Sandbox sb;
  WebRoot root(sb.file("www"), "https://cr.example.net/");
  ASSERT_TRUE(root.publish("main", "01", "A").has_value());
  // A file size limit makes write(2) fail half way, as a full disk does (EFBIG here).
  const std::string big(64 * 1024, 'B');
  struct rlimit old {};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old), 0);
  struct rlimit small = old;
  small.rlim_cur = 1024;
  auto oldHandler = ::signal(SIGXFSZ, SIG_IGN);
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
  auto immutable = root.writeImmutable("main", "02", big);
  auto current = root.switchCurrent("main", big);
  ::setrlimit(RLIMIT_FSIZE, &old);
  ::signal(SIGXFSZ, oldHandler);

  ASSERT_FALSE(immutable.has_value());
  EXPECT_EQ(immutable.error().code, Errc::io);
  const std::string text = immutable.error().toString();
  EXPECT_NE(text.find("cannot write"), std::string::npos) << text;
  EXPECT_NE(text.find("File too large"), std::string::npos) << text;      // errno, in words
  EXPECT_NE(text.find(sb.file("www/main/.02.pem.tmp-")), std::string::npos) << text;  // the path
  ASSERT_FALSE(current.has_value());
  EXPECT_NE(current.error().toString().find(sb.file("www/.main.pem.tmp-")), std::string::npos);
  // Nothing half-written is served: no 02, the current chain is still the old one, and no
  // temp file is left behind.
  EXPECT_FALSE(std::filesystem::exists(sb.file("www/main/02.pem")));
  EXPECT_EQ(test::readFile(sb.file("www/main.pem")), "A");
  for (const auto& dir : {sb.file("www"), sb.file("www/main")}) {
    for (const auto& e : std::filesystem::directory_iterator(dir)) {
      EXPECT_EQ(e.path().filename().string().find(".tmp-"), std::string::npos) << e.path();
    }
  }
}

}  // namespace
}  // namespace kms::publisher
