// Crash safety proven by killing: kmsd is SIGKILLed right after every lifecycle step
// (failpoints, compiled into the test build only) and at random instants while it renews
// SHAKEN certificates from kms-lab; every restart must end with the certificate active and
// published, no key on the token the DB does not know, no recorded key left unused, and at
// most one extra order per renewal.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <atomic>
#include <chrono>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli.h"
#include "daemon_process.h"
#include "kmsd_toml.h"
#include "lab_process.h"
#include "pebble_server.h"
#include "softhsm_token.h"
#include "pki/x509.h"
#include "sandbox.h"

namespace kms {
namespace {

using namespace std::chrono_literals;
using test::CmdResult;
using test::DaemonProcess;
using test::kKmsctl;
using test::kKmsd;
using test::LabProcess;

class Crash : public ::testing::Test {
 protected:
  void SetUp() override {
    lab_ = std::make_unique<LabProcess>(sandbox_.file("lab"), std::vector<std::string>{"--slow-ms", "20"});
    std::string text = test::readFile(lab_->file("kmsd.toml"));
    auto at = text.find("[publisher]\n");
    ASSERT_NE(at, std::string::npos);
    text.insert(at + 12, "retain = \"3s\"\n");
    at = text.find("[daemon]\n");
    ASSERT_NE(at, std::string::npos);
    text.insert(at + 9, "retry_first = \"1s\"\nretry_max = \"2s\"\n");
    config_ = sandbox_.write("kmsd.toml", text);
    db_ = lab_->file("state/kmsd.db");
  }

  CmdResult run(const std::string& tool, const std::string& args, const std::string& env = "") {
    return test::runTool("SOFTHSM2_CONF=" + lab_->file("softhsm2.conf") + " " + env, tool, config_, args);
  }

  std::string sql(const std::string& query) { return test::sql(db_, query); }
  long count(const std::string& query) { return std::stol(sql(query)); }

  std::string activeSerial() {
    return sql(
        "SELECT serial FROM issued_certificates WHERE published_at IS NOT NULL "
        "ORDER BY not_before DESC, id DESC LIMIT 1");
  }

  /// As if time passed: the active certificate is due now, and no backoff holds it.
  void makeDue() { sql("UPDATE managed_certificates SET renew_at = 0, ari_next_check = NULL, next_attempt_at = NULL"); }

  /// Orders kms-lab's CA holds, over all accounts (its own state file, not kmsd's DB).
  std::size_t ordersAtTheCa() {
    auto state = nlohmann::json::parse(test::readFile(lab_->file("ca-state.json")), nullptr, false);
    EXPECT_TRUE(state.is_object()) << "ca-state.json";
    std::size_t n = 0;
    if (state.is_object()) {
      for (const auto& a : state.value("accounts", nlohmann::json::array())) {
        n += a.value("orders", nlohmann::json::array()).size();
      }
    }
    return n;
  }

  /// The invariants after a restart that ran to completion.
  void expectConsistent(const std::string& when) {
    SCOPED_TRACE(when);
    CmdResult status = run(kKmsctl, "status --json");
    ASSERT_EQ(status.rc, 0) << status.output;
    auto j = nlohmann::json::parse(status.output.substr(status.output.find('{')));
    ASSERT_EQ(j["certificates"].size(), 1u) << status.output;
    const auto& c = j["certificates"][0];
    EXPECT_EQ(c["state"], "active") << status.output;
    ASSERT_TRUE(c.contains("x5u")) << status.output;
    // Published: the current pointer serves the active certificate.
    auto chain = pki::parsePemChain(test::readFile(lab_->file("www/main.pem")));
    ASSERT_TRUE(chain.has_value());
    EXPECT_EQ(chain->front().serialHex(), c["serial"].get<std::string>());
    // No key on the token the DB does not know, and no recorded key missing from the token.
    CmdResult keys = run(kKmsctl, "keys --json");
    ASSERT_EQ(keys.rc, 0) << keys.output;
    EXPECT_EQ(keys.output.find("\"unmanaged\""), std::string::npos) << keys.output;
    EXPECT_EQ(keys.output.find("\"on_token\": false"), std::string::npos) << keys.output;
    // No recorded certificate key left unused: each live one belongs to an open order or
    // to an unexpired certificate.
    EXPECT_EQ(count("SELECT count(*) FROM hsm_keys k WHERE k.destroyed_at IS NULL AND k.purpose = 'certificate' "
                    "AND NOT EXISTS (SELECT 1 FROM orders o WHERE o.key_uri = k.key_uri AND o.status = 'open') "
                    "AND NOT EXISTS (SELECT 1 FROM issued_certificates i WHERE i.key_uri = k.key_uri "
                    "AND i.not_after > strftime('%s','now'))"),
              0);
    EXPECT_EQ(count("SELECT count(*) FROM orders WHERE status = 'open'"), 0);
  }

  test::Sandbox sandbox_;
  std::unique_ptr<LabProcess> lab_;
  std::string config_;
  std::string db_;
};

TEST_F(Crash, KilledRightAfterEveryStepResumes) {
  CmdResult first = run(kKmsd, "--once");
  ASSERT_EQ(first.rc, 0) << first.output;
  expectConsistent("first issuance");
  // After each step's record, and between the CA's answer and its record (order_sent,
  // challenge_sent, finalize_sent, chain_written: the CA acted, kmsd has not recorded it).
  const std::vector<std::string> points{"key_recorded",   "key_generated",      "token_obtained", "order_sent",
                                        "order_created",  "challenge_sent",     "challenge_answered",
                                        "finalize_sent",  "finalized",          "downloaded",     "recorded",
                                        "chain_written",  "published",          "activated"};
  for (const std::string& point : points) {
    SCOPED_TRACE(point);
    makeDue();
    const long ordersBefore = count("SELECT count(*) FROM orders");
    const std::size_t caOrdersBefore = ordersAtTheCa();
    const std::string serialBefore = activeSerial();
    CmdResult killed = run(kKmsd, "--once", "KMSD_FAILPOINT=" + point);
    EXPECT_EQ(killed.rc, 128 + SIGKILL) << "the failpoint was not reached: " << killed.output;
    CmdResult resumed = run(kKmsd, "--once");
    // After a kill past activation the renewal is complete; before, the restart finishes it.
    EXPECT_EQ(resumed.rc, 0) << resumed.output;
    expectConsistent("after " + point);
    EXPECT_NE(activeSerial(), serialBefore);
    EXPECT_LE(count("SELECT count(*) FROM orders") - ordersBefore, 1) << "more than one order for one renewal";
    // What the CA saw, not what kmsd recorded: one order for the renewal, and at most one
    // more when the kill came after the CA created it and before kmsd recorded it.
    const std::size_t caOrders = ordersAtTheCa() - caOrdersBefore;
    EXPECT_GE(caOrders, 1u);
    EXPECT_LE(caOrders, point == "order_sent" ? 2u : 1u) << "orders at the CA for one renewal";
  }
  // The last step: an old key destroyed once [publisher] retain (3 s) has passed since its
  // certificate was replaced; kmsd's housekeeping at start does it. One more renewal first,
  // so that a replaced certificate's key is certainly still there.
  SCOPED_TRACE("old_key_destroyed");
  makeDue();
  CmdResult renewed = run(kKmsd, "--once");
  ASSERT_EQ(renewed.rc, 0) << renewed.output;
  ASSERT_GE(count("SELECT count(*) FROM hsm_keys WHERE destroyed_at IS NULL"), 3);  // account, active, replaced
  // As if [publisher] retain (3 s) had passed since the replacement was published.
  sql("UPDATE issued_certificates SET published_at = published_at - 60 WHERE published_at IS NOT NULL");
  const long liveBefore = count("SELECT count(*) FROM hsm_keys WHERE destroyed_at IS NULL");
  CmdResult killed = run(kKmsd, "--once", "KMSD_FAILPOINT=old_key_destroyed");
  EXPECT_EQ(killed.rc, 128 + SIGKILL) << "the failpoint was not reached: " << killed.output;
  CmdResult resumed = run(kKmsd, "--once");
  EXPECT_EQ(resumed.rc, 0) << resumed.output;
  expectConsistent("after old_key_destroyed");
  EXPECT_LT(count("SELECT count(*) FROM hsm_keys WHERE destroyed_at IS NULL"), liveBefore);
}

TEST_F(Crash, KilledAfterTheCaRegisteredTheAccountBeforeItWasSaved) {
  // The CA knows the account, the DB has its key but no account row: the restart finds the
  // account by its key (onlyReturnExisting) and saves it, registering nothing new.
  CmdResult killed = run(kKmsd, "--once", "KMSD_FAILPOINT=account_registered");
  ASSERT_EQ(killed.rc, 128 + SIGKILL) << killed.output;
  EXPECT_EQ(count("SELECT count(*) FROM acme_accounts"), 0);
  EXPECT_EQ(count("SELECT count(*) FROM hsm_keys WHERE purpose = 'account'"), 1);
  CmdResult resumed = run(kKmsd, "--once");
  ASSERT_EQ(resumed.rc, 0) << resumed.output;
  expectConsistent("after the account kill");
  EXPECT_EQ(count("SELECT count(*) FROM acme_accounts"), 1);
  EXPECT_EQ(count("SELECT count(*) FROM hsm_keys WHERE purpose = 'account'"), 1);
  EXPECT_EQ(resumed.output.find("KMS_ACCOUNT_REGISTERED"), std::string::npos) << resumed.output;
}

TEST_F(Crash, AnOrderTheCaInvalidatedWhileKmsdWasDownIsGivenUpAndReplaced) {
  // The CA expects another fingerprint in the token, so the challenge kmsd answers fails at
  // once; kmsd is killed before it records the answer. The CA's order is invalid.
  std::string out;
  ASSERT_TRUE(lab_->labSwitch("/lab/hostile", R"({"fingerprint":"jwk-thumbprint"})", &out)) << out;
  CmdResult killed = run(kKmsd, "--once", "KMSD_FAILPOINT=challenge_sent");
  ASSERT_EQ(killed.rc, 128 + SIGKILL) << "the failpoint was not reached: " << killed.output;
  ASSERT_EQ(ordersAtTheCa(), 1u);
  ASSERT_EQ(count("SELECT count(*) FROM orders WHERE status = 'open'"), 1);
  const std::string firstKey = sql("SELECT key_uri FROM orders WHERE status = 'open'");

  // Back to the CA's usual check. The restart reads the recorded order at the CA, finds it
  // invalid and gives it up (key destroyed), naming the challenge's failure.
  ASSERT_TRUE(lab_->labSwitch("/lab/hostile", R"({"fingerprint":"spki"})", &out)) << out;
  CmdResult resumed = run(kKmsd, "--once");
  EXPECT_NE(resumed.rc, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("atc.fingerprint does not match the account key"), std::string::npos)
      << resumed.output;
  EXPECT_EQ(count("SELECT count(*) FROM orders WHERE status = 'open'"), 0);
  EXPECT_EQ(count("SELECT count(*) FROM hsm_keys WHERE key_uri = '" + firstKey + "' AND destroyed_at IS NOT NULL"), 1);
  EXPECT_EQ(ordersAtTheCa(), 1u);  // nothing new while the invalid order was read

  // The next attempt is a new order, which the CA validates.
  ASSERT_TRUE(test::backoffPassed(db_));
  CmdResult replaced = run(kKmsd, "--once");
  ASSERT_EQ(replaced.rc, 0) << replaced.output;
  expectConsistent("after the invalid order");
  EXPECT_EQ(ordersAtTheCa(), 2u);
  EXPECT_NE(sql("SELECT key_uri FROM issued_certificates"), firstKey);
}

TEST_F(Crash, AnOrderTheCaNoLongerKnowsIsGivenUpAndReplaced) {
  // Killed with an order recorded; kms-lab restarted on the same port keeps its accounts but
  // not their orders (as a CA that purged an expired order): the order URL answers 404.
  CmdResult killed = run(kKmsd, "--once", "KMSD_FAILPOINT=order_created");
  ASSERT_EQ(killed.rc, 128 + SIGKILL) << "the failpoint was not reached: " << killed.output;
  const std::string firstKey = sql("SELECT key_uri FROM orders WHERE status = 'open'");
  ASSERT_FALSE(firstKey.empty());
  lab_.reset();
  lab_ = std::make_unique<LabProcess>(sandbox_.file("lab"), std::vector<std::string>{"--slow-ms", "20"});

  // Not retried for ever: given up at once, its key destroyed; the next attempt orders anew.
  CmdResult resumed = run(kKmsd, "--once");
  EXPECT_NE(resumed.rc, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("the CA no longer knows this order (404)"), std::string::npos) << resumed.output;
  EXPECT_EQ(count("SELECT count(*) FROM orders WHERE status = 'open'"), 0);
  EXPECT_EQ(count("SELECT count(*) FROM hsm_keys WHERE key_uri = '" + firstKey + "' AND destroyed_at IS NOT NULL"), 1);
  ASSERT_TRUE(test::backoffPassed(db_));
  CmdResult replaced = run(kKmsd, "--once");
  ASSERT_EQ(replaced.rc, 0) << replaced.output;
  expectConsistent("after the forgotten order");
}

/// One `kmsd --once` run that reports each step it reaches on a pipe (KMSD_PROGRESS_FD).
class ProgressRun {
 public:
  ProgressRun(const std::string& softhsmConf, const std::string& config) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) {
      throw std::runtime_error(std::string("pipe: ") + std::strerror(errno));
    }
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(fds[1], 3);  // dup2 clears FD_CLOEXEC on 3
      ::setenv("KMSD_PROGRESS_FD", "3", 1);
      ::setenv("SOFTHSM2_CONF", softhsmConf.c_str(), 1);
      int devnull = ::open("/dev/null", O_WRONLY);
      ::dup2(devnull, 1);
      ::dup2(devnull, 2);
      ::execl(kKmsd.c_str(), kKmsd.c_str(), "--config", config.c_str(), "--once", static_cast<char*>(nullptr));
      ::_exit(127);
    }
    ::close(fds[1]);
    fd_ = fds[0];
  }
  ~ProgressRun() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      reap();
    }
    ::close(fd_);
  }
  ProgressRun(const ProgressRun&) = delete;
  ProgressRun& operator=(const ProgressRun&) = delete;

  /// The next step reported, or "" once kmsd has exited (or after two minutes of silence).
  std::string next() {
    while (true) {
      if (auto nl = buffer_.find('\n'); nl != std::string::npos) {
        std::string line = buffer_.substr(0, nl);
        buffer_.erase(0, nl + 1);
        steps_.push_back(line);
        return line;
      }
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 120000) != 1) {
        return "";
      }
      char chunk[256];
      const ssize_t n = ::read(fd_, chunk, sizeof chunk);
      if (n <= 0) {
        return "";
      }
      buffer_.append(chunk, static_cast<std::size_t>(n));
    }
  }
  /// SIGKILLs kmsd and reaps it; true when the kill found it still running.
  bool kill() {
    ::kill(pid_, SIGKILL);
    return reap();
  }
  /// Every step reported, up to the end (call after kill()).
  const std::vector<std::string>& steps() {
    while (!next().empty()) {
    }
    return steps_;
  }

 private:
  bool reap() {
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
  }

  pid_t pid_ = -1;
  int fd_ = -1;
  std::string buffer_;
  std::vector<std::string> steps_;
};

TEST_F(Crash, RandomKillsDuringThreeRenewals) {
  // Kills land mid-work on any machine: each run is killed after a random one of the steps it
  // reports, a random share of the time its last step took later (the clock of the machine
  // itself), and a renewal is kept due in every run. A kill counts when kmsd was still
  // running and had not yet activated a certificate.
  CmdResult first = run(kKmsd, "--once");
  ASSERT_EQ(first.rc, 0) << first.output;
  const std::uint64_t seed = std::random_device{}();
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> stepsBeforeKill(1, 10);
  std::uniform_real_distribution<double> share(0.0, 1.0);
  SCOPED_TRACE("seed " + std::to_string(seed));
  int kills = 0;
  int runs = 0;
  for (; kills < 100 && runs < 400; ++runs) {
    if (count("SELECT count(*) FROM orders WHERE status = 'open'") == 0) {
      makeDue();
    }
    ProgressRun kmsd(lab_->file("softhsm2.conf"), config_);
    const int target = stepsBeforeKill(rng);
    auto last = std::chrono::steady_clock::now();
    auto gap = std::chrono::steady_clock::duration::zero();
    bool finished = false;
    for (int seen = 0; seen < target && !finished;) {
      std::string step = kmsd.next();
      auto at = std::chrono::steady_clock::now();
      gap = at - last;
      last = at;
      finished = step.empty();
      seen += finished ? 0 : 1;
    }
    if (!finished) {
      std::this_thread::sleep_for(std::chrono::duration_cast<std::chrono::microseconds>(gap * share(rng)));
    }
    const bool running = kmsd.kill();
    const auto& steps = kmsd.steps();
    const bool activated = std::find(steps.begin(), steps.end(), "activated") != steps.end();
    kills += running && !activated ? 1 : 0;
    if (runs % 25 == 24) {  // every so often, a restart that runs to completion checks the invariants
      CmdResult finish = run(kKmsd, "--once");
      ASSERT_EQ(finish.rc, 0) << finish.output;
      expectConsistent("after run " + std::to_string(runs));
    }
  }
  CmdResult finish = run(kKmsd, "--once");
  ASSERT_EQ(finish.rc, 0) << finish.output;
  expectConsistent("at the end");
  const long renewals = count("SELECT count(*) FROM issued_certificates") - 1;
  EXPECT_GE(kills, 100) << "in " << runs << " runs";
  EXPECT_GE(renewals, 3);
  std::printf("random kills: %d mid-work kills in %d runs, %ld renewals, seed %llu\n", kills, runs, renewals,
              static_cast<unsigned long long>(seed));
}

/// The token's own directory (directories.tokendir of `softhsmConf`, then its one token).
std::string tokenDirectory(const std::string& softhsmConf) {
  const std::string conf = test::readFile(softhsmConf);
  const std::string key = "directories.tokendir = ";
  const auto at = conf.find(key);
  if (at == std::string::npos) {
    return "";
  }
  const std::string root = conf.substr(at + key.size(), conf.find('\n', at) - at - key.size());
  for (const auto& entry : std::filesystem::directory_iterator(root)) {
    if (entry.is_directory()) {
      return entry.path().string();
    }
  }
  return "";
}

/// Waits (at most two minutes) until a new key object appears in the directory watched
/// through `inotifyFd`: SoftHSM2 creates `<uuid>.object` for the key and then writes it.
/// Its file name, or "" when none appeared.
std::string newKeyObjectCreated(int inotifyFd) {
  alignas(inotify_event) char buffer[4096];
  for (;;) {
    pollfd p{inotifyFd, POLLIN, 0};
    if (::poll(&p, 1, 120000) != 1) {
      return "";
    }
    const ssize_t n = ::read(inotifyFd, buffer, sizeof buffer);
    for (ssize_t off = 0; off < n;) {
      const auto* ev = reinterpret_cast<const inotify_event*>(buffer + off);
      std::string name = ev->len > 0 ? std::string(ev->name) : "";
      if (name.size() > 7 && name.ends_with(".object") && name != "token.object") {
        return name;
      }
      off += static_cast<ssize_t>(sizeof(inotify_event) + ev->len);
    }
  }
}

TEST_F(Crash, KilledWhileTheTokenWritesANewKey) {
  // Each run is killed 0-100 us after SoftHSM2 created the file of a new key (the account
  // key in the first run, a certificate key in the others), while it writes it or just
  // after. Every other run, the file is then cut in half, as a kill in the middle of the
  // write leaves it whatever the machine's speed. The restart must finish the renewal with
  // no key the DB does not know and a usable token.
  const std::string dir = tokenDirectory(lab_->file("softhsm2.conf"));
  ASSERT_FALSE(dir.empty());
  const std::uint64_t seed = std::random_device{}();
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> micros(0, 100);
  SCOPED_TRACE("seed " + std::to_string(seed));
  int killedWhileWriting = 0;
  for (int i = 0; i < 8; ++i) {
    SCOPED_TRACE("run " + std::to_string(i));
    if (i > 0) {
      makeDue();  // the first run has no state DB yet
    }
    const int watch = ::inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
    ASSERT_GE(watch, 0);
    ASSERT_GE(::inotify_add_watch(watch, dir.c_str(), IN_CREATE), 0);
    {
      ProgressRun kmsd(lab_->file("softhsm2.conf"), config_);
      const std::string created = newKeyObjectCreated(watch);
      std::this_thread::sleep_for(std::chrono::microseconds(micros(rng)));
      const bool running = kmsd.kill();
      ASSERT_FALSE(created.empty());
      killedWhileWriting += running ? 1 : 0;
      if (i % 2 == 1) {
        const std::string file = (std::filesystem::path(dir) / created).string();
        ASSERT_EQ(::truncate(file.c_str(), static_cast<off_t>(std::filesystem::file_size(file) / 2)), 0);
      }
    }
    ::close(watch);
    CmdResult finish = run(kKmsd, "--once");
    ASSERT_EQ(finish.rc, 0) << finish.output;
    expectConsistent("after kill " + std::to_string(i));
  }
  // A kill after the file appeared finds kmsd running: it records and orders after that.
  EXPECT_EQ(killedWhileWriting, 8);
  std::printf("token-write kills: %d, 4 of them followed by the key file cut in half (seed %llu)\n",
              killedWhileWriting, static_cast<unsigned long long>(seed));
}

/// A TCP relay on 127.0.0.1 that accepts connections at once but holds them until opened,
/// then relays each request to `to` and the answer back: the CA's validation waits while
/// kmsd is dead and restarting, instead of racing the restart.
class GatedRelay {
 public:
  explicit GatedRelay(std::uint16_t to) : to_(to) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd_, 16) != 0) {
      throw std::runtime_error(std::string("relay: ") + std::strerror(errno));
    }
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { loop(); });
  }
  ~GatedRelay() {
    stop_ = true;
    thread_.join();
    ::close(fd_);
  }
  [[nodiscard]] std::uint16_t port() const { return port_; }
  void open() { open_ = true; }
  [[nodiscard]] int held() const { return held_.load(); }
  [[nodiscard]] int relayed() const { return relayed_.load(); }

 private:
  void loop() {
    std::vector<int> waiting;
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) == 1) {
        int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (c >= 0) {
          waiting.push_back(c);
          ++held_;
        }
      }
      if (open_) {
        for (int c : waiting) {
          relay(c);
        }
        waiting.clear();
      }
    }
    for (int c : waiting) {
      ::close(c);
    }
  }
  /// One request (the CA sends it whole, with Connection: close) and its answer.
  void relay(int client) {
    std::string request;
    char buf[4096];
    while (request.find("\r\n\r\n") == std::string::npos) {
      pollfd p{client, POLLIN, 0};
      if (::poll(&p, 1, 5000) != 1) {
        break;
      }
      ssize_t n = ::read(client, buf, sizeof buf);
      if (n <= 0) {
        break;
      }
      request.append(buf, static_cast<std::size_t>(n));
    }
    int server = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(to_);
    if (::connect(server, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
        ::write(server, request.data(), request.size()) == static_cast<ssize_t>(request.size())) {
      for (;;) {
        pollfd p{server, POLLIN, 0};
        if (::poll(&p, 1, 5000) != 1) {
          break;
        }
        ssize_t n = ::read(server, buf, sizeof buf);
        if (n <= 0 || ::write(client, buf, static_cast<std::size_t>(n)) != n) {
          break;
        }
      }
      ++relayed_;
    }
    ::close(server);
    ::close(client);
  }

  std::uint16_t to_;
  std::uint16_t port_ = 0;
  int fd_ = -1;
  std::atomic<bool> open_{false};
  std::atomic<bool> stop_{false};
  std::atomic<int> held_{0};
  std::atomic<int> relayed_{0};
  std::thread thread_;
};


TEST(CrashHttp01, KilledRightAfterAnsweringTheNextStartServesTheAnswerAgain) {
  // Pebble validates through the relay, which holds its requests until kmsd has been killed
  // right after answering and started again: only an answer served again can pass.
  test::SoftHsmToken softhsm("kms-test");
  const test::PassedSocket kmsdSocket;  // kmsd's http-01 socket, passed to every run
  GatedRelay relay(kmsdSocket.port());
  test::PebbleOptions options;
  options.httpPort = relay.port();
  test::PebbleServer pebble(options);
  const auto& sb = softhsm.sandbox();
  const std::string roots = pebble.writeIssuingRoots(sb.file("pebble-roots.pem"));
  test::KmsdToml toml;
  toml.stateDir = sb.file("state");
  toml.controlSocket = sb.file("kmsd.sock");
  toml.pinFile = softhsm.pinFile();
  toml.directoryUrl = pebble.directoryUrl();
  toml.caBundle = pebble.tlsCaFile();
  toml.trustAnchors = roots;
  toml.webRoot = sb.file("www");
  toml.dns("web", {"web.example.com"});
  const std::string config = sb.write("kmsd.toml", toml.text());
  const std::string env = "SOFTHSM2_CONF=" + softhsm.confPath();
  CmdResult killed =
      test::runTool(env + " KMSD_FAILPOINT=challenge_answered", kmsdSocket.pass(kKmsd), config, "--once");
  ASSERT_EQ(killed.rc, 128 + SIGKILL) << killed.output;

  DaemonProcess kmsd(softhsm.confPath(), config, sb.file("kmsd.log"), &kmsdSocket);
  ASSERT_TRUE(kmsd.waitFor("KMS_CHALLENGE_RESUMED cert=web")) << kmsd.log();
  EXPECT_GT(relay.held(), 0);  // the CA tried while kmsd was down or starting
  relay.open();
  ASSERT_TRUE(kmsd.waitFor("KMS_CERT_ACTIVATED cert=web")) << kmsd.log();
  const std::string log = kmsd.log();
  EXPECT_EQ(log.find("KMS_ORDER_CREATED"), std::string::npos) << log;  // the first order went through
  EXPECT_EQ(log.find("KMS_RENEW_FAILED"), std::string::npos) << log;
  EXPECT_GT(relay.relayed(), 0);
  EXPECT_EQ(kmsd.stop(), 0) << kmsd.log();
}

}  // namespace
}  // namespace kms
