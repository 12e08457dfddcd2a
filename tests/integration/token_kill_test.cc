// Kill campaign: `kmsd --check-config` SIGKILLed again and again during start-up and login,
// on a real SoftHSM2 token holding keys made through hsm::Token. SoftHSM2 rewrites
// token.object in place at every C_Login (ftruncate, then write); a kill in between empties
// it and the token is gone unless kmsd's guard restores it. After every 50 kills and at the
// end, an unkilled --check-config must pass and every key must still sign.
//
// Half of the kills come after a delay drawn uniformly from [0, 1.2 x the measured run time].
// Those almost never land in the few microseconds between the ftruncate and the write, so
// the other half are aimed: the test watches the token directory with inotify and kills a
// random 0-100 us after SoftHSM2 starts rewriting token.object. Lanes run in parallel, each
// with its own token. KMS_KILL_ITERATIONS (default 500), KMS_KILL_LANES (default 2) and
// KMS_KILL_SEED (default random; printed) tune it. No timing is asserted.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <mutex>
#include <random>
#include <sstream>
#include <thread>
#include <vector>

#include "kmsd_toml.h"
#include "cli.h"
#include "hsm/token.h"
#include "sandbox.h"
#include "softhsm_token.h"

extern char** environ;

namespace kms {
namespace {

using test::SoftHsmToken;
using SteadyClock = std::chrono::steady_clock;

constexpr int kCheckEvery = 50;
/// One kill in this many comes after damage the test made itself.
constexpr int kPlantEvery = 10;
constexpr auto kAimedSpread = std::chrono::microseconds(100);

/// SoftHSM2 reads SOFTHSM2_CONF at C_Initialize: in-process token checks of different lanes
/// take turns, each with its lane's configuration.
std::mutex& inProcessToken() {
  static std::mutex m;
  return m;
}

std::uint64_t envNumber(const char* name, std::uint64_t fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::strtoull(v, nullptr, 10) : fallback;
}

struct LaneStats {
  int runs = 0;
  int kills = 0;        ///< children that died of the SIGKILL (the others had already exited)
  int aimed = 0;        ///< kills aimed at the token.object rewrite
  int truncated = 0;    ///< kills that left token.object damaged (new damage, not left over)
  int restored = 0;     ///< KMS_TOKEN_RESTORED lines printed by the children
  int firstDamage = 0;  ///< the kill (1-based) that first damaged token.object; 0: none
  int planted = 0;      ///< damage the test made itself (token.object cut in half) before a kill
  std::vector<std::string> failures;
};

/// One token, its kmsd configuration and a kill loop over it.
class Lane {
 public:
  Lane() {
    for (const auto& entry : std::filesystem::directory_iterator(softhsm_.sandbox().file("tokens"))) {
      tokenDir_ = entry.path().string();
    }
    tokenObject_ = tokenDir_ + "/token.object";
    out_ = softhsm_.sandbox().file("kmsd.out");
    test::KmsdToml toml;
    toml.stateDir = softhsm_.sandbox().file("state");
    toml.pinFile = softhsm_.pinFile();
    toml.http01Listen.clear();
    toml.acmeExtra = "insecure_skip_chain_check = true\n";
    toml.webRoot = softhsm_.sandbox().file("www");
    toml.dns("web", {"cr.example.net"});
    config_ = softhsm_.sandbox().write("kmsd.toml", toml.text());
    for (char** e = environ; *e != nullptr; ++e) {
      if (std::string(*e).rfind("SOFTHSM2_CONF=", 0) != 0) {
        env_.emplace_back(*e);
      }
    }
    env_.push_back("SOFTHSM2_CONF=" + softhsm_.confPath());
    for (auto& e : env_) {
      envp_.push_back(e.data());
    }
    envp_.push_back(nullptr);
  }

  /// Generates `n` keys through hsm::Token and records them.
  void makeKeys(int n) {
    withToken([&](hsm::Token& token) {
      for (int i = 0; i < n; ++i) {
        auto key = token.generateKey("kill-" + std::to_string(i));
        ASSERT_TRUE(key.has_value()) << key.error().toString();
        keys_.push_back(*key);
      }
    });
    healthySize_ = std::filesystem::file_size(tokenObject_);
  }

  /// Runs --check-config to the end (it must pass); its duration.
  SteadyClock::duration timedRun(LaneStats& stats) {
    auto start = SteadyClock::now();
    runToEnd(stats, "timed run");
    return SteadyClock::now() - start;
  }

  void run(int iterations, SteadyClock::duration runTime, std::uint64_t seed, LaneStats& stats) {
    std::mt19937_64 rng(seed);
    auto maxDelay = runTime * 6 / 5;
    std::uniform_int_distribution<std::int64_t> uniform(
        0, std::chrono::duration_cast<std::chrono::microseconds>(maxDelay).count());
    std::uniform_int_distribution<std::int64_t> spread(0, kAimedSpread.count());
    for (int i = 0; i < iterations; ++i) {
      bool aimed = i % 2 == 1;
      std::chrono::microseconds delay(aimed ? spread(rng) : uniform(rng));
      if (i % kPlantEvery == kPlantEvery / 2 && !damaged()) {
        // What a kill in SoftHSM2's rewrite leaves, made sure of whatever the machine's speed:
        // the next runs (killed or not) must restore it.
        std::filesystem::resize_file(tokenObject_, healthySize_ / 2);
        ++stats.planted;
        ++stats.truncated;
      }
      int before = stats.truncated;
      killOnce(aimed, delay, runTime, stats);
      if (stats.truncated > before && stats.firstDamage == 0) {
        stats.firstDamage = i + 1;
      }
      if ((i + 1) % kCheckEvery == 0 || i + 1 == iterations) {
        check(stats, "after " + std::to_string(i + 1) + " kills");
        if (!stats.failures.empty()) {
          return;  // the token is lost; every further run fails the same way
        }
      }
    }
  }

 private:
  template <class F>
  void withToken(F&& body) {
    std::lock_guard<std::mutex> lock(inProcessToken());
    ::setenv("SOFTHSM2_CONF", softhsm_.confPath().c_str(), 1);
    auto token = hsm::Token::open({SoftHsmToken::modulePath(), "kms-test", softhsm_.pinFile(), 1});
    ASSERT_TRUE(token.has_value()) << token.error().toString();
    body(**token);
  }

  pid_t spawn() {
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, out_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    std::string config = config_;
    std::vector<char*> argv{const_cast<char*>(test::kKmsd.c_str()), const_cast<char*>("--config"), config.data(),
                            const_cast<char*>("--check-config"), nullptr};
    pid_t pid = -1;
    int rc = ::posix_spawn(&pid, test::kKmsd.c_str(), &actions, nullptr, argv.data(), envp_.data());
    posix_spawn_file_actions_destroy(&actions);
    return rc == 0 ? pid : -1;
  }

  /// Counts the restorations the child reported (even a killed one may have printed it).
  int restoredLines() {
    std::string out = test::readFile(out_);
    int n = 0;
    for (std::size_t p = out.find("KMS_TOKEN_RESTORED"); p != std::string::npos;
         p = out.find("KMS_TOKEN_RESTORED", p + 1)) {
      ++n;
    }
    return n;
  }

  /// Waits for SoftHSM2 to start rewriting token.object (an IN_MODIFY on it), at most until
  /// the deadline or the child's exit.
  static bool awaitRewrite(int inotifyFd, pid_t pid, SteadyClock::time_point deadline) {
    alignas(inotify_event) char buf[4096];
    while (SteadyClock::now() < deadline) {
      pollfd p{inotifyFd, POLLIN, 0};
      if (::poll(&p, 1, 20) > 0) {
        ssize_t n = ::read(inotifyFd, buf, sizeof buf);
        for (ssize_t off = 0; off < n;) {
          auto* ev = reinterpret_cast<inotify_event*>(buf + off);
          if (ev->len > 0 && std::string(ev->name) == "token.object") {
            return true;
          }
          off += static_cast<ssize_t>(sizeof(inotify_event) + ev->len);
        }
      } else {
        siginfo_t info{};
        if (::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) != 0 || info.si_pid != 0) {
          return false;  // exited without logging in
        }
      }
    }
    return false;
  }

  void killOnce(bool aimed, std::chrono::microseconds delay, SteadyClock::duration runTime, LaneStats& stats) {
    int inotifyFd = -1;
    if (aimed) {
      inotifyFd = ::inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
      ::inotify_add_watch(inotifyFd, tokenDir_.c_str(), IN_MODIFY);
    }
    bool damagedBefore = damaged();
    auto start = SteadyClock::now();
    pid_t pid = spawn();
    if (pid < 0) {
      stats.failures.push_back("posix_spawn failed");
      return;
    }
    ++stats.runs;
    if (aimed) {
      bool seen = awaitRewrite(inotifyFd, pid, start + runTime * 3 + std::chrono::seconds(2));
      ::close(inotifyFd);
      auto until = SteadyClock::now() + delay;
      while (seen && SteadyClock::now() < until) {
      }
      stats.aimed += seen ? 1 : 0;
    } else {
      std::this_thread::sleep_until(start + delay);
    }
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    stats.kills += WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL ? 1 : 0;
    int restored = restoredLines();
    stats.restored += restored;
    // A new truncation: damaged now, and healthy before or restored by this run.
    stats.truncated += damaged() && (!damagedBefore || restored > 0) ? 1 : 0;
  }

  bool damaged() const {
    std::error_code ec;
    auto size = std::filesystem::file_size(tokenObject_, ec);
    return ec || size != healthySize_;
  }

  /// An unkilled --check-config; false (and a failure recorded) unless it passes.
  bool runToEnd(LaneStats& stats, const std::string& when) {
    pid_t pid = spawn();
    int status = 0;
    if (pid < 0 || ::waitpid(pid, &status, 0) != pid) {
      stats.failures.push_back(when + ": cannot run kmsd");
      return false;
    }
    stats.restored += restoredLines();
    std::string out = test::readFile(out_);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || out.find("ok\n") == std::string::npos) {
      stats.failures.push_back(when + ": kmsd --check-config failed: " + out);
      return false;
    }
    return true;
  }

  /// An unkilled --check-config passes, and every key signs with the token found by label.
  void check(LaneStats& stats, const std::string& when) {
    if (!runToEnd(stats, when)) {
      return;
    }
    withToken([&](hsm::Token& token) {
      for (const auto& key : keys_) {
        auto signer = token.signer(key.uri);
        if (!signer) {
          stats.failures.push_back(when + ": " + signer.error().toString());
          continue;
        }
        auto sig = (*signer)->signMessage(pki::asBytes(when));
        if (!sig || !*key.publicKey.verifyEs256(pki::asBytes(when), *sig)) {
          stats.failures.push_back(when + ": key " + key.label + " no longer signs");
        }
      }
    });
  }

  SoftHsmToken softhsm_{"kms-test"};
  std::string tokenDir_;
  std::string tokenObject_;
  std::string config_;
  std::string out_;
  std::vector<std::string> env_;
  std::vector<char*> envp_;
  std::vector<hsm::KeyInfo> keys_;
  std::uintmax_t healthySize_ = 0;
};

TEST(TokenKill, TokenAndKeysSurviveSigkillDuringStartupAndLogin) {
  auto iterations = static_cast<int>(envNumber("KMS_KILL_ITERATIONS", 500));
  auto laneCount = static_cast<int>(std::clamp<std::uint64_t>(envNumber("KMS_KILL_LANES", 2), 1, 8));
  std::uint64_t seed = envNumber("KMS_KILL_SEED", std::random_device{}());
  std::cout << "kill campaign: seed " << seed << " (KMS_KILL_SEED=" << seed << " repeats the delays), " << iterations
            << " kills over " << laneCount << " lanes\n";

  std::vector<std::unique_ptr<Lane>> lanes;
  std::vector<LaneStats> stats(static_cast<std::size_t>(laneCount));
  for (int i = 0; i < laneCount; ++i) {
    lanes.push_back(std::make_unique<Lane>());
    lanes.back()->makeKeys(3);
  }
  std::vector<SteadyClock::duration> times;
  times.reserve(3);
  for (int i = 0; i < 3; ++i) {
    times.push_back(lanes.front()->timedRun(stats.front()));
  }
  std::sort(times.begin(), times.end());
  SteadyClock::duration runTime = times[1];
  ASSERT_TRUE(stats.front().failures.empty()) << stats.front().failures.front();
  std::cout << "kmsd --check-config runs in " << std::chrono::duration_cast<std::chrono::milliseconds>(runTime).count()
            << " ms\n";

  auto start = SteadyClock::now();
  std::vector<std::thread> threads;
  for (int i = 0; i < laneCount; ++i) {
    int share = iterations / laneCount + (i < iterations % laneCount ? 1 : 0);
    threads.emplace_back([&, i, share] {
      lanes[static_cast<std::size_t>(i)]->run(share, runTime, seed + static_cast<std::uint64_t>(i),
                                              stats[static_cast<std::size_t>(i)]);
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  LaneStats total;
  for (const auto& s : stats) {
    std::cout << "  lane: " << s.runs << " runs, " << s.kills << " SIGKILLed, " << s.aimed << " aimed, damaged "
              << s.truncated << " (first at kill " << s.firstDamage << "), restored " << s.restored << "\n";
    total.runs += s.runs;
    total.kills += s.kills;
    total.aimed += s.aimed;
    total.truncated += s.truncated;
    total.restored += s.restored;
    total.planted += s.planted;
    total.failures.insert(total.failures.end(), s.failures.begin(), s.failures.end());
  }
  std::cout << "kill campaign: " << total.runs << " runs, " << total.kills << " SIGKILLed (" << total.aimed
            << " aimed at the token.object rewrite), token.object damaged after " << total.truncated
            << ", KMS_TOKEN_RESTORED " << total.restored << " times, "
            << std::chrono::duration_cast<std::chrono::seconds>(SteadyClock::now() - start).count() << " s\n";
  for (const auto& f : total.failures) {
    ADD_FAILURE() << f;
  }
  // The campaign damaged the token (at least the planted damage, whatever the kills did) and
  // every damage was restored: each planted one needs a restoration before the next.
  EXPECT_GT(total.planted, 0);
  EXPECT_GE(total.truncated, total.planted);
  EXPECT_GE(total.restored, total.planted);
}

}  // namespace
}  // namespace kms
