// Invalid configurations: every kind of error, with its exact `file:line:col: [section] key:`
// text. Positions refer to the line map of kMinimal in config_fixture.h.

#include <string>
#include <string_view>

#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include "config/config.h"
#include "config_fixture.h"

namespace kms::config::test {
namespace {

/// kMinimal with one piece of text replaced.
std::string patched(std::string_view from, std::string_view to) {
  std::string text = kMinimal;
  const std::size_t at = text.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  if (at != std::string::npos) {
    text.replace(at, from.size(), to);
  }
  return text;
}

/// kMinimal + kStiPa + `certificates`; the first line of `certificates` is line 20.
std::string withCertificates(std::string_view certificates) {
  return std::string(kMinimal) + kStiPa + std::string(certificates);
}

class ConfigErrors : public ConfigFixture {};

TEST_F(ConfigErrors, UnknownKeysAndSections) {
  EXPECT_EQ(errors(std::string(kMinimal) + "colour = \"blue\"\n\n[bogus]\nx = 1\n"),
            (Lines{"kmsd.toml:15:1: [publisher] colour: unknown key", "kmsd.toml:17:1: [bogus] unknown section"}));
  EXPECT_EQ(errors("top = 1\n" + std::string(kMinimal)), (Lines{"kmsd.toml:1:1: top: unknown key"}));
  EXPECT_EQ(errors(withCertificates("\n[[certificate]]\nname = \"x\"\nspc = \"1\"\n"
                                    "subject_o = \"O\"\nsubjectC = \"US\"\n")),
            (Lines{"kmsd.toml:25:1: [certificate.x] subjectC: unknown key"}));
}

TEST_F(ConfigErrors, WrongTypes) {
  const std::string_view stateDir = "state_dir = \"/var/lib/kmsd\"";
  EXPECT_EQ(errors(patched(stateDir, "state_dir = 1")),
            (Lines{"kmsd.toml:2:13: [daemon] state_dir: expected a string, got integer"}));
  EXPECT_EQ(errors(patched(stateDir, "state_dir = [\"/a\"]")),
            (Lines{"kmsd.toml:2:13: [daemon] state_dir: expected a string, got array"}));
  EXPECT_EQ(errors(patched(stateDir, "state_dir = true")),
            (Lines{"kmsd.toml:2:13: [daemon] state_dir: expected a string, got boolean"}));
  EXPECT_EQ(errors(patched(stateDir, "state_dir = 1.5")),
            (Lines{"kmsd.toml:2:13: [daemon] state_dir: expected a string, got float"}));
  EXPECT_EQ(errors(patched(stateDir, "state_dir = 1979-05-27")),
            (Lines{"kmsd.toml:2:13: [daemon] state_dir: expected a string, got date"}));
  EXPECT_EQ(errors(patched(stateDir, "state_dir = { a = 1 }")),
            (Lines{"kmsd.toml:2:13: [daemon] state_dir: expected a string, got table"}));
  EXPECT_EQ(errors(patched("token_label = \"kms\"", "token_label = \"kms\"\nsession_pool = \"4\"")),
            (Lines{"kmsd.toml:7:16: [hsm] session_pool: expected an integer, got string"}));

  const std::string_view url = "directory_url = \"https://ca.example/dir\"";
  const std::string withContact = std::string(url) + "\ncontact = [\"mailto:a@example.net\", 3]";
  EXPECT_EQ(errors(patched(url, withContact)),
            (Lines{"kmsd.toml:11:36: [acme] contact[1]: expected a string, got integer"}));
  EXPECT_EQ(errors(patched(url, std::string(url) + "\ncontact = \"mailto:a@example.net\"")),
            (Lines{"kmsd.toml:11:11: [acme] contact: expected an array of strings, got string"}));
  EXPECT_EQ(errors(withCertificates("\n[[certificate]]\nname = \"x\"\nidentifiers = [\"dns:a.b\"]\n"
                                    "renew_before_fraction = \"half\"\n")),
            (Lines{"kmsd.toml:24:25: [certificate.x] renew_before_fraction: expected a number, "
                   "got string"}));
}

TEST_F(ConfigErrors, WrongSectionTypes) {
  EXPECT_EQ(errors(patched("[daemon]\nstate_dir = \"/var/lib/kmsd\"\n", "daemon = 5\n")),
            (Lines{"kmsd.toml:1:10: [daemon] expected a table, got integer"}));
  EXPECT_EQ(errors(std::string(kMinimal) + "\n[certificate]\nname = \"x\"\n"),
            (Lines{"kmsd.toml:16:1: [certificate] expected an array of tables ([[certificate]]), "
                   "got table"}));
  EXPECT_EQ(errors("certificate = [1]\n" + std::string(kMinimal)),
            (Lines{"kmsd.toml:1:16: [certificate[0]] expected a table, got integer"}));
}

TEST_F(ConfigErrors, MissingRequiredKeys) {
  EXPECT_EQ(errors(patched("token_label = \"kms\"\n", "")),
            (Lines{"kmsd.toml:4:1: [hsm] token_label: missing required key"}));
  EXPECT_EQ(errors(patched("web_root = \"/var/www/cr\"\nbase_url = \"https://cr.example.net/\"\n", "")),
            (Lines{"kmsd.toml:12:1: [publisher] web_root: missing required key",
                   "kmsd.toml:12:1: [publisher] base_url: missing required key"}));
  // Missing tables point at 1:1.
  EXPECT_EQ(errors("", {{"KMSD_HSM_MODULE", dir() + "/libpkcs11.so"}}),
            (Lines{"kmsd.toml:1:1: [daemon] state_dir: missing required key",
                   "kmsd.toml:1:1: [hsm] token_label: missing required key",
                   "kmsd.toml:1:1: [hsm] pin_file: missing required key",
                   "kmsd.toml:1:1: [acme] directory_url: missing required key",
                   "kmsd.toml:1:1: [publisher] web_root: missing required key",
                   "kmsd.toml:1:1: [publisher] base_url: missing required key"}));
}

TEST_F(ConfigErrors, UrlsMustBeHttpsExceptOnLoopback) {
  const std::string_view url = "\"https://ca.example/dir\"";
  auto urlError = [&](const std::string& value) {
    Lines lines = errors(patched(url, "\"" + value + "\""));
    return lines.size() == 1 ? lines[0] : "unexpected: " + std::to_string(lines.size());
  };
  const std::string prefix = "kmsd.toml:10:17: [acme] directory_url: ";
  const std::string httpsOnly = "must be https (http is accepted only for loopback hosts)";
  const std::string invalid = "is not a valid URL (expected scheme://host[:port]/path)";
  EXPECT_EQ(urlError("http://ca.example/dir"), prefix + httpsOnly);
  EXPECT_EQ(urlError("http://127.0.0.1.example.com/"), prefix + httpsOnly);
  EXPECT_EQ(urlError("http://[::2]/"), prefix + httpsOnly);
  EXPECT_EQ(urlError("http://128.0.0.1/"), prefix + httpsOnly);
  EXPECT_EQ(urlError("ftp://ca.example/"), prefix + httpsOnly);
  EXPECT_EQ(urlError("ca.example/dir"), prefix + invalid);
  EXPECT_EQ(urlError("https:///dir"), prefix + invalid);
  EXPECT_EQ(urlError("https://ca.example:0/"), prefix + invalid);
  EXPECT_EQ(urlError("https://ca.example:99999/"), prefix + invalid);
  EXPECT_EQ(urlError("https://ca example/"), prefix + invalid);
  EXPECT_EQ(urlError("https://[::1/"), prefix + invalid);
  EXPECT_EQ(urlError("https://user:pw@ca.example/"), prefix + "must not contain user information");

  EXPECT_EQ(errors(patched("\"https://cr.example.net/\"", "\"https://cr.example.net/x\"")),
            (Lines{"kmsd.toml:14:12: [publisher] base_url: must end with \"/\""}));
}

TEST_F(ConfigErrors, EabNeedsBothKeys) {
  const std::string_view url = "directory_url = \"https://ca.example/dir\"";
  EXPECT_EQ(errors(patched(url, std::string(url) + "\neab_kid = \"kid-1\"")),
            (Lines{"kmsd.toml:11:11: [acme] eab_kid: needs eab_hmac_file too (external account "
                   "binding uses both)"}));
  EXPECT_EQ(errors(patched(url, std::string(url) + "\neab_hmac_file = \"@DIR@/eab.key\"")),
            (Lines{"kmsd.toml:11:17: [acme] eab_hmac_file: needs eab_kid too (external account "
                   "binding uses both)"}));
  EXPECT_EQ(errors(patched(url, std::string(url) + "\neab_kid = \"kid-1\"\neab_hmac_file = \"@DIR@/none.key\"")),
            (Lines{"kmsd.toml:12:17: [acme] eab_hmac_file: @DIR@/none.key: cannot read secret "
                   "file: No such file or directory"}));
  const Config both =
      loadOk(patched(url, std::string(url) + "\neab_kid = \"kid-1\"\neab_hmac_file = \"@DIR@/eab.key\""));
  EXPECT_EQ(both.acme.eabKid, "kid-1");
}

TEST_F(ConfigErrors, SpcAndIdentifiersAreExclusive) {
  EXPECT_EQ(errors(withCertificates("\n[[certificate]]\nname = \"x\"\nspc = \"1234\"\n"
                                    "subject_o = \"O\"\nidentifiers = [\"dns:a.example\"]\n")),
            (Lines{"kmsd.toml:25:15: [certificate.x] identifiers: cannot be combined with spc "
                   "(use exactly one of them)"}));
  EXPECT_EQ(errors(withCertificates("\n[[certificate]]\nname = \"x\"\n")),
            (Lines{"kmsd.toml:21:1: [certificate.x] needs exactly one of spc or identifiers"}));
  EXPECT_EQ(errors(withCertificates("\n[[certificate]]\nname = \"x\"\nspc = \"1234\"\n"
                                    "challenge = \"http-01\"\nsubject_o = \"O\"\n")),
            (Lines{"kmsd.toml:24:13: [certificate.x] challenge: must be \"tkauth-01\" with spc"}));
  EXPECT_EQ(errors(withCertificates("\n[[certificate]]\nname = \"x\"\n"
                                    "identifiers = [\"dns:a.example\"]\n"
                                    "challenge = \"tkauth-01\"\n")),
            (Lines{"kmsd.toml:24:13: [certificate.x] challenge: must be \"http-01\" or \"dns-01\" "
                   "with identifiers"}));
  EXPECT_EQ(errors(withCertificates("\n[[certificate]]\nname = \"x\"\nspc = \"1234\"\n")),
            (Lines{"kmsd.toml:21:1: [certificate.x] subject_o: missing required key (needed with "
                   "spc)"}));
  EXPECT_EQ(errors(withCertificates("\n[[certificate]]\nname = \"x\"\nspc = \"12ab\"\n"
                                    "subject_o = \"O\"\nsubject_c = \"us\"\n"
                                    "renew_before_fraction = 1.0\n")),
            (Lines{"kmsd.toml:23:7: [certificate.x] spc: must be digits and upper-case letters "
                   "(A-Z, 0-9)",
                   "kmsd.toml:25:13: [certificate.x] subject_c: must be two upper-case letters "
                   "(ISO 3166 code, e.g. \"US\")",
                   "kmsd.toml:26:25: [certificate.x] renew_before_fraction: must be greater than "
                   "0 and less than 1"}));
}

TEST_F(ConfigErrors, IdentifierValues) {
  auto identifiers = [&](const std::string& list, const std::string& extra = "") {
    return errors(withCertificates("\n[[certificate]]\nname = \"x\"\nidentifiers = " + list + "\n" + extra));
  };
  EXPECT_EQ(identifiers("[]"), (Lines{"kmsd.toml:23:15: [certificate.x] identifiers: must not be empty"}));
  EXPECT_EQ(identifiers("[\"a.example\"]"),
            (Lines{"kmsd.toml:23:16: [certificate.x] identifiers[0]: must be \"dns:NAME\""}));
  EXPECT_EQ(identifiers("[\"dns:a.example\", \"dns:bad_name\"]"),
            (Lines{"kmsd.toml:23:33: [certificate.x] identifiers[1]: \"bad_name\" is not a valid "
                   "DNS name"}));
  EXPECT_EQ(identifiers("[\"dns:*.example.net\"]"),
            (Lines{"kmsd.toml:23:16: [certificate.x] identifiers[0]: a wildcard name needs "
                   "challenge \"dns-01\""}));
  EXPECT_EQ(identifiers("[\"dns:a.example\", \"dns:A.example\"]"),
            (Lines{"kmsd.toml:23:33: [certificate.x] identifiers[1]: duplicate identifier "
                   "\"dns:A.example\""}));
}

TEST_F(ConfigErrors, SpcNeedsStiPaSection) {
  EXPECT_EQ(errors(std::string(kMinimal) + "\n[[certificate]]\nname = \"main\"\nspc = \"1234\"\n"
                                           "subject_o = \"O\"\n"),
            (Lines{"kmsd.toml:18:7: [sti_pa] section is required because certificate.main uses "
                   "spc"}));
}

TEST_F(ConfigErrors, CertificateNamesAreUniqueAndValid) {
  EXPECT_EQ(errors(withCertificates(R"(
[[certificate]]
name = "main"
identifiers = ["dns:a.example"]

[[certificate]]
name = "main"
identifiers = ["dns:b.example"]

[[certificate]]
name = "bad name"
identifiers = ["dns:c.example"]

[[certificate]]
identifiers = ["dns:d.example"]
)")),
            (Lines{"kmsd.toml:26:8: [certificate.main] name: duplicate certificate name (first "
                   "defined at kmsd.toml:22:8)",
                   "kmsd.toml:30:8: [certificate[2]] name: must be 1..64 characters from A-Z a-z "
                   "0-9 . _ -",
                   "kmsd.toml:33:1: [certificate[3]] name: missing required key"}));
}

TEST_F(ConfigErrors, AllowedHostsAreHostsNotUrls) {
  auto lines = errors(std::string(kMinimal) + kStiPa + "allowed_hosts = [\"ok.example\", \"https://x.example/\"]\n");
  ASSERT_EQ(lines.size(), 1U);
  EXPECT_NE(lines[0].find("[sti_pa] allowed_hosts[1]: must be \"host\" or \"host:port\", without scheme or path"),
            std::string::npos)
      << lines[0];
}

TEST_F(ConfigErrors, CertificateNamesStartingWithADotAreRefused) {
  for (const char* name : {".hidden", "..", "."}) {
    auto lines = errors(withCertificates(std::string("\n[[certificate]]\nname = \"") + name +
                                         "\"\nidentifiers = [\"dns:a.example\"]\n"));
    ASSERT_EQ(lines.size(), 1U) << name;
    EXPECT_NE(lines[0].find("name: must not start with '.'"), std::string::npos) << lines[0];
  }
}

TEST_F(ConfigErrors, SecretFilesOthersCouldReadOrSwapAreRefused) {
  // A PIN readable by the group: refused, with the fix.
  const std::string open = sandbox_.write("open.pin", "1234\n");
  ASSERT_EQ(::chmod(open.c_str(), 0640), 0);
  EXPECT_EQ(errors(patched("@DIR@/hsm.pin", "@DIR@/open.pin")),
            (Lines{"kmsd.toml:7:12: [hsm] pin_file: @DIR@/open.pin: secret file is accessible to group or others "
                   "(mode 0640); run chmod 600 @DIR@/open.pin"}));
  // A symbolic link (someone could point it elsewhere) is not followed.
  ASSERT_EQ(::symlink((dir() + "/hsm.pin").c_str(), (dir() + "/link.pin").c_str()), 0);
  EXPECT_EQ(errors(patched("@DIR@/hsm.pin", "@DIR@/link.pin")),
            (Lines{"kmsd.toml:7:12: [hsm] pin_file: @DIR@/link.pin: secret file is a symbolic link (not followed); "
                   "point the setting at the file itself"}));
  // Another user's file: refused (root can hand a file to another uid; others cannot).
  if (::geteuid() == 0) {
    const std::string foreign = sandbox_.write("foreign.pin", "1234\n");
    ASSERT_EQ(::chown(foreign.c_str(), 65534, 65534), 0);
    EXPECT_EQ(errors(patched("@DIR@/hsm.pin", "@DIR@/foreign.pin")),
              (Lines{"kmsd.toml:7:12: [hsm] pin_file: @DIR@/foreign.pin: secret file is owned by uid 65534, not by "
                     "uid 0 that reads it; chown it to that user"}));
  }
}

TEST_F(ConfigErrors, FilesThatDecideWhatRunsOrWhomToTrustFollowTheOwnershipRule) {
  const std::string_view url = "directory_url = \"https://ca.example/dir\"";
  auto acme = [&](const std::string& line) { return errors(patched(url, std::string(url) + "\n" + line)); };
  // A hook anyone may rewrite (mode 0777): refused, with the fix.
  const std::string openHook = sandbox_.write("open-hook.sh", "#!/bin/sh\nexit 0\n");
  ASSERT_EQ(::chmod(openHook.c_str(), 0777), 0);
  EXPECT_EQ(acme("dns01_hook = \"@DIR@/open-hook.sh\""),
            (Lines{"kmsd.toml:11:14: [acme] dns01_hook: '@DIR@/open-hook.sh' is writable by group or others (mode "
                   "0777); run chmod go-w @DIR@/open-hook.sh"}));
  // A trust anchor the group may write (mode 0666).
  const std::string openPem = sandbox_.write("open.pem", kms::test::kTestRootPem);
  ASSERT_EQ(::chmod(openPem.c_str(), 0666), 0);
  EXPECT_EQ(acme("trust_anchors = \"@DIR@/open.pem\""),
            (Lines{"kmsd.toml:11:17: [acme] trust_anchors: '@DIR@/open.pem' is writable by group or others (mode "
                   "0666); run chmod go-w @DIR@/open.pem"}));
  // A hook in a directory anyone may write, not sticky: they could replace it.
  ASSERT_EQ(::mkdir((dir() + "/open").c_str(), 0700), 0);
  ASSERT_EQ(::chmod((dir() + "/open").c_str(), 0777), 0);
  const std::string hidden = sandbox_.write("open/hook.sh", "#!/bin/sh\nexit 0\n");
  ASSERT_EQ(::chmod(hidden.c_str(), 0700), 0);
  EXPECT_EQ(acme("dns01_hook = \"@DIR@/open/hook.sh\""),
            (Lines{"kmsd.toml:11:14: [acme] dns01_hook: directory '@DIR@/open' is writable by others (mode 0777) "
                   "and not root's and sticky, so anyone could replace what it holds; run chmod o-w @DIR@/open"}));
  if (::geteuid() == 0) {
    // Root's and sticky (as /tmp): accepted.
    ASSERT_EQ(::chmod((dir() + "/open").c_str(), 01777), 0);
    EXPECT_TRUE(load(patched(url, std::string(url) + "\ndns01_hook = \"@DIR@/open/hook.sh\"")).has_value());
    // Another user's file: they could change it.
    const std::string foreign = sandbox_.write("foreign.pem", kms::test::kTestRootPem);
    ASSERT_EQ(::chown(foreign.c_str(), 65534, 65534), 0);
    EXPECT_EQ(acme("ca_bundle = \"@DIR@/foreign.pem\""),
              (Lines{"kmsd.toml:11:13: [acme] ca_bundle: '@DIR@/foreign.pem' is owned by uid 65534, neither kmsd's "
                     "user (uid 0) nor root, who could change it; chown it"}));
  }
}

TEST_F(ConfigErrors, PemFilesMustHoldCertificatesThatParse) {
  const std::string_view url = "directory_url = \"https://ca.example/dir\"";
  sandbox_.write("garbage.pem", "this is no certificate\n");
  sandbox_.write("broken.pem", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
  for (const char* file : {"garbage.pem", "broken.pem"}) {
    Lines lines = errors(patched(url, std::string(url) + "\ntrust_anchors = \"@DIR@/" + file + "\""));
    ASSERT_EQ(lines.size(), 1U) << file;
    EXPECT_EQ(lines[0].rfind("kmsd.toml:11:17: [acme] trust_anchors: ", 0), 0U) << lines[0];
    const bool named = lines[0].find("\"@DIR@/" + std::string(file) + "\" holds no PEM certificate") != std::string::npos ||
                       lines[0].find("\"@DIR@/" + std::string(file) + "\" does not hold PEM certificates: ") !=
                           std::string::npos;
    EXPECT_TRUE(named) << lines[0];
  }
  EXPECT_TRUE(load(patched(url, std::string(url) + "\ntrust_anchors = \"@DIR@/sti-ca-roots.pem\"")).has_value());
}

TEST_F(ConfigErrors, ASecretFileThatIsAFifoIsRefusedWithoutBlocking) {
  ASSERT_EQ(::mkfifo((dir() + "/fifo.pin").c_str(), 0600), 0);
  EXPECT_EQ(errors(patched("@DIR@/hsm.pin", "@DIR@/fifo.pin")),
            (Lines{"kmsd.toml:7:12: [hsm] pin_file: @DIR@/fifo.pin: secret file is not a regular file"}));
}

TEST_F(ConfigErrors, AdminGroupMustExistAndTheEventLogBoundsAreRanged) {
  const std::string_view dir = "state_dir = \"/var/lib/kmsd\"";
  auto daemon = [&](const std::string& line) {
    Lines lines = errors(patched(dir, std::string(dir) + "\n" + line));
    return lines.size() == 1 ? lines[0] : "unexpected: " + std::to_string(lines.size());
  };
  EXPECT_EQ(daemon("control_admin_group = \"no-such-group-kms\""),
            "kmsd.toml:3:23: [daemon] control_admin_group: no group named no-such-group-kms on this system");
  EXPECT_EQ(daemon("events_keep = \"10m\""), "kmsd.toml:3:15: [daemon] events_keep: must be between 1h and 10 years");
  EXPECT_EQ(daemon("events_max = 10"), "kmsd.toml:3:14: [daemon] events_max: must be between 100 and 100000000, got 10");
  auto ok = load(patched(dir, std::string(dir) + "\ncontrol_admin_group = \"root\"\nevents_keep = \"7d\"\nevents_max = 500"));
  ASSERT_TRUE(ok.has_value()) << formatErrors(ok.error());
  EXPECT_EQ(ok->daemon.controlAdminGroup, std::optional<std::string>("root"));
  EXPECT_EQ(ok->daemon.eventsKeep, std::chrono::hours(24 * 7));
  EXPECT_EQ(ok->daemon.eventsMax, 500);
}

TEST_F(ConfigErrors, UnreadableFiles) {
  EXPECT_EQ(errors(patched("@DIR@/hsm.pin", "@DIR@/missing.pin")),
            (Lines{"kmsd.toml:7:12: [hsm] pin_file: @DIR@/missing.pin: cannot read secret file: "
                   "No such file or directory"}));
  EXPECT_EQ(errors(patched("@DIR@/hsm.pin", "@DIR@/empty.pin")),
            (Lines{"kmsd.toml:7:12: [hsm] pin_file: @DIR@/empty.pin: secret file is empty"}));
  EXPECT_EQ(errors(patched("@DIR@/hsm.pin", "@DIR@")),
            (Lines{"kmsd.toml:7:12: [hsm] pin_file: @DIR@: secret file is not a regular file"}));
  EXPECT_EQ(errors(patched("@DIR@/hsm.pin", "")), (Lines{"kmsd.toml:7:12: [hsm] pin_file: must not be empty"}));
  EXPECT_EQ(errors(patched("@DIR@/libpkcs11.so", "@DIR@/nope.so")),
            (Lines{"kmsd.toml:5:10: [hsm] module: cannot access \"@DIR@/nope.so\": No such file "
                   "or directory"}));
  const std::string_view url = "directory_url = \"https://ca.example/dir\"";
  EXPECT_EQ(errors(patched(url, std::string(url) + "\ndns01_hook = \"@DIR@/hsm.pin\"")),
            (Lines{"kmsd.toml:11:14: [acme] dns01_hook: \"@DIR@/hsm.pin\" is not executable: "
                   "Permission denied"}));
  EXPECT_EQ(errors(patched(url, std::string(url) + "\nca_bundle = \"@DIR@\"")),
            (Lines{"kmsd.toml:11:13: [acme] ca_bundle: \"@DIR@\" is not a regular file"}));
}

TEST_F(ConfigErrors, ValueRanges) {
  auto one = [&](std::string_view from, std::string_view to) {
    Lines lines = errors(patched(from, to));
    return lines.size() == 1 ? lines[0] : "unexpected: " + std::to_string(lines.size());
  };
  const std::string_view stateDir = "state_dir = \"/var/lib/kmsd\"";
  EXPECT_EQ(one(stateDir, "state_dir = \"var/lib/kmsd\""),
            "kmsd.toml:2:13: [daemon] state_dir: must be an absolute path");
  EXPECT_EQ(one(stateDir, std::string(stateDir) + "\nlog_format = \"xml\""),
            "kmsd.toml:3:14: [daemon] log_format: must be \"text\" or \"json\"");
  EXPECT_EQ(one(stateDir, std::string(stateDir) + "\nmetrics_listen = \"127.0.0.1\""),
            "kmsd.toml:3:18: [daemon] metrics_listen: must be host:port (e.g. 127.0.0.1:9464 or [::1]:9464)");
  EXPECT_EQ(one(stateDir, std::string(stateDir) + "\ncontrol_socket = \"/" + std::string(107, 's') + "\""),
            "kmsd.toml:3:18: [daemon] control_socket: must be at most 107 bytes (the AF_UNIX "
            "path limit)");
  EXPECT_EQ(one("\"kms\"", "\"" + std::string(33, 'k') + "\""),
            "kmsd.toml:6:15: [hsm] token_label: must be at most 32 bytes (the PKCS#11 token "
            "label size), got 33");
  EXPECT_EQ(one("\"kms\"", "\"\""), "kmsd.toml:6:15: [hsm] token_label: must not be empty");
  EXPECT_EQ(one("token_label = \"kms\"", "token_label = \"kms\"\nsession_pool = 65"),
            "kmsd.toml:7:16: [hsm] session_pool: must be between 1 and 64, got 65");
  EXPECT_EQ(one("token_label = \"kms\"", "token_label = \"kms\"\nsession_pool = 0"),
            "kmsd.toml:7:16: [hsm] session_pool: must be between 1 and 64, got 0");
  EXPECT_EQ(errors(std::string(kMinimal) + "\n[signing]\nthreads = 0\n"),
            (Lines{"kmsd.toml:17:11: [signing] threads: must be between 1 and 64, got 0"}));
  EXPECT_EQ(loadOk(std::string(kMinimal) + "\n[signing]\nthreads = 8\n").signing.threads, 8);
  EXPECT_EQ(loadOk(kMinimal, {{"KMSD_SIGNING_THREADS", "3"}}).signing.threads, 3);
  EXPECT_EQ(loadOk(kMinimal).signing.threads, 2);
  const std::string badDuration =
      "kmsd.toml:15:10: [publisher] retain: must be a duration such as \"90s\", \"30m\", "
      "\"24h\" or \"7d\"";
  for (const char* retain : {"1w", "h", "-1h", "1.5h", " 1h", "99999999999s"}) {
    EXPECT_EQ(errors(std::string(kMinimal) + "retain = \"" + retain + "\"\n"), (Lines{badDuration})) << retain;
  }
  EXPECT_EQ(errors(std::string(kMinimal) + "retain = \"0s\"\n"),
            (Lines{"kmsd.toml:15:10: [publisher] retain: must be greater than zero"}));
  const std::string_view url = "directory_url = \"https://ca.example/dir\"";
  EXPECT_EQ(one(url, std::string(url) + "\ncontact = [\"noc@example.net\"]"),
            "kmsd.toml:11:12: [acme] contact[0]: must be \"mailto:ADDRESS\"");
  EXPECT_EQ(one(url, std::string(url) + "\nhttp01_listen = \"[::1]\""),
            "kmsd.toml:11:17: [acme] http01_listen: must be host:port (e.g. 127.0.0.1:9464 or "
            "[::1]:9464)");
  EXPECT_EQ(one(url, std::string(url) + "\neab_kid = \"\"\neab_hmac_file = \"@DIR@/eab.key\""),
            "kmsd.toml:11:11: [acme] eab_kid: must not be empty");
  EXPECT_EQ(one(stateDir, "state_dir = \"/var/\\u0000lib\""),
            "kmsd.toml:2:13: [daemon] state_dir: must not contain NUL characters");
}

TEST_F(ConfigErrors, AllErrorsAreReportedTogetherInFileOrder) {
  const std::string text = R"([daemon]
state_dir = "relative"
log_format = 3

[hsm]
module = "@DIR@/libpkcs11.so"
pin_file = "@DIR@/missing.pin"
session_pool = 100

[acme]
directory_url = "http://ca.example/dir"
eab_kid = "k"
surprise = true

[publisher]
web_root = "/var/www/cr"
base_url = "https://cr.example.net"

[[certificate]]
name = "main"
spc = "1234"
)";
  EXPECT_EQ(errors(text, {{"KMSD_HSM_TOKEN_LABEL", ""}, {"KMSD_ACME_NOPE", "1"}}),
            (Lines{
                "kmsd.toml:2:13: [daemon] state_dir: must be an absolute path",
                "kmsd.toml:3:14: [daemon] log_format: expected a string, got integer",
                "kmsd.toml:7:12: [hsm] pin_file: @DIR@/missing.pin: cannot read secret file: No "
                "such file or directory",
                "kmsd.toml:8:16: [hsm] session_pool: must be between 1 and 64, got 100",
                "kmsd.toml:11:17: [acme] directory_url: must be https (http is accepted only "
                "for loopback hosts)",
                "kmsd.toml:12:11: [acme] eab_kid: needs eab_hmac_file too (external account "
                "binding uses both)",
                "kmsd.toml:13:1: [acme] surprise: unknown key",
                "kmsd.toml:17:12: [publisher] base_url: must end with \"/\"",
                "kmsd.toml:19:1: [certificate.main] subject_o: missing required key (needed with "
                "spc)",
                "kmsd.toml:21:7: [sti_pa] section is required because certificate.main uses spc",
                "env KMSD_ACME_NOPE: [acme] nope: unknown key",
                "env KMSD_HSM_TOKEN_LABEL: [hsm] token_label: must not be empty",
            }));
}

TEST_F(ConfigErrors, EnvironmentOverrideErrorsNameTheVariable) {
  EXPECT_EQ(errors(kMinimal, {{"KMSD_ACME_DIRECTORY_URL", "http://ca.example/"}}),
            (Lines{"env KMSD_ACME_DIRECTORY_URL: [acme] directory_url: must be https (http is "
                   "accepted only for loopback hosts)"}));
  EXPECT_EQ(errors(kMinimal, {{"KMSD_HSM_SESSION_POOL", "many"}}),
            (Lines{"env KMSD_HSM_SESSION_POOL: [hsm] session_pool: expected an integer, got "
                   "\"many\""}));
  EXPECT_EQ(errors(kMinimal, {{"KMSD_HSM_SESSION_POOL", "99"}}),
            (Lines{"env KMSD_HSM_SESSION_POOL: [hsm] session_pool: must be between 1 and 64, "
                   "got 99"}));
  EXPECT_EQ(errors(kMinimal, {{"KMSD_ACME_CONTACT", "mailto:a@example.net,noc@example.net"}}),
            (Lines{"env KMSD_ACME_CONTACT: [acme] contact[1]: must be \"mailto:ADDRESS\""}));
  EXPECT_EQ(errors(kMinimal, {{"KMSD_HSM_PIN_FILE", dir() + "/missing.pin"}}),
            (Lines{"env KMSD_HSM_PIN_FILE: [hsm] pin_file: @DIR@/missing.pin: cannot read secret "
                   "file: No such file or directory"}));
  EXPECT_EQ(errors(kMinimal, {{"KMSD_STI_PA_URL", "https://sti-pa.example/"}}),
            (Lines{"kmsd.toml:1:1: [sti_pa] user_id: missing required key",
                   "kmsd.toml:1:1: [sti_pa] password_file: missing required key"}));
  EXPECT_EQ(errors(kMinimal, {{"KMSD_ACME_directory_url", "https://x.example/"}}),
            (Lines{"env KMSD_ACME_directory_url: [acme] directory_url: unknown key"}));
}

TEST_F(ConfigErrors, SyntaxErrorUsesTheParserPosition) {
  EXPECT_EQ(errors("[daemon]\nstate_dir = = 1\n"),
            (Lines{"kmsd.toml:2:13: [toml] Error while parsing value: could not determine value "
                   "type"}));
  const Lines duplicate = errors(std::string(kMinimal) + "web_root = \"/x\"\n");
  ASSERT_EQ(duplicate.size(), 1U);
  EXPECT_TRUE(duplicate[0].starts_with("kmsd.toml:15:")) << duplicate[0];
  EXPECT_NE(duplicate[0].find("[toml] "), std::string::npos) << duplicate[0];
}

TEST_F(ConfigErrors, NoSecretInAnyError) {
  const Lines lines = errors(patched("token_label = \"kms\"", "token_label = 1"), {{"KMSD_ACME_EAB_KID", "k"}});
  for (const std::string& line : lines) {
    EXPECT_EQ(line.find(kPin), std::string::npos) << line;
  }
}

TEST(ConfigRobustness, OddInputsNeverCrash) {
  const std::string deep = std::string(5000, '[') + std::string(5000, ']');
  const std::vector<std::string> inputs = {
      "",
      std::string("\0\0\0", 3),
      "\xff\xfe\xfd",
      "a = " + deep,
      "[[certificate]]\n[[certificate]]\nname = 1\n[[certificate]]\nspc = []\n",
      "certificate = [[], {}, 1, \"x\"]\n",
      "[hsm]\nsession_pool = 9223372036854775807\n[daemon]\nstate_dir = \"\"\n",
      "[acme]\ndirectory_url = \"https://[\"\ncontact = [[1]]\n",
      "[certificate.x]\n",
      "daemon.state_dir.x = 1\n",
      "[publisher]\nretain = \"9999999999d\"\n",
  };
  for (const std::string& input : inputs) {
    auto loaded = loadConfigString(input, "fuzz.toml", {{"KMSD_ACME_CONTACT", ",,,"}, {"KMSD_HSM_SESSION_POOL", ""}});
    EXPECT_FALSE(loaded.has_value());
    if (!loaded.has_value()) {
      EXPECT_FALSE(loaded.error().empty());
    }
  }
}

}  // namespace
}  // namespace kms::config::test
