// Certificates per second through kmsd's own path (`kmsd --once`, Release build) against a
// local Pebble (PEBBLE_VA_NOSLEEP=1), one order at a time and several, with real http-01
// validation and with PEBBLE_VA_ALWAYS_VALID=1, beside lego issuing certificates one
// process after another against the same Pebble.
//   acme_issue [count=50] [lego_count_http01=5] [lego_count_always_valid=20] [orders=4]
#include <fcntl.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "cli.h"
#include "kmsd_toml.h"
#include "pebble_server.h"
#include "softhsm_token.h"

extern char** environ;

namespace {

using namespace kms;
using Clock = std::chrono::steady_clock;

double cpuSeconds(int who) {
  rusage ru{};
  getrusage(who, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

double processCpuSeconds(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto close = stat.rfind(')');
  if (close == std::string::npos) {
    return 0;
  }
  std::istringstream rest(stat.substr(close + 2));
  std::string field;
  double ticks = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14 || i == 15) {
      ticks += std::stod(field);
    }
  }
  return ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
}

long childPeakKb = 0;

/// Runs argv (output to logFile) through posix_spawn and samples its VmHWM while it runs:
/// getrusage would report this process's own peak for any child it spawns.
/// `passFd`, when given, becomes the child's descriptor 3.
int spawnMeasured(const std::vector<std::string>& args, const std::vector<std::string>& extraEnv,
                  const std::string& logFile, int passFd = -1) {
  std::vector<char*> argv;
  for (const auto& a : args) {
    argv.push_back(const_cast<char*>(a.c_str()));
  }
  argv.push_back(nullptr);
  std::vector<std::string> envStore;
  for (char** e = environ; *e != nullptr; ++e) {
    envStore.emplace_back(*e);
  }
  envStore.insert(envStore.end(), extraEnv.begin(), extraEnv.end());
  std::vector<char*> envp;
  for (auto& e : envStore) {
    envp.push_back(e.data());
  }
  envp.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, logFile.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  if (passFd >= 0) {
    posix_spawn_file_actions_adddup2(&fa, passFd, 3);
  }
  pid_t pid = 0;
  int rc = posix_spawnp(&pid, argv[0], &fa, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) {
    return -1;
  }
  int status = 0;
  while (waitpid(pid, &status, WNOHANG) == 0) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind("VmHWM:", 0) == 0) {
        childPeakKb = std::max(childPeakKb, std::atol(line.c_str() + 6));
      }
    }
    usleep(5000);
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

struct Row {
  std::string what;
  int count;
  double wall;
  double cpu;
  double pebbleCpu;
  long rssKb;
};

void print(const Row& r) {
  std::printf(
      "%-42s %4d certs %8.2f s %9.1f ms/cert %8.1f certs/s  client CPU %6.2f ms/cert  pebble CPU %6.2f ms/cert  peak "
      "RSS %6ld KiB\n",
      r.what.c_str(), r.count, r.wall, 1000.0 * r.wall / r.count, r.count / r.wall, 1000.0 * r.cpu / r.count,
      1000.0 * r.pebbleCpu / r.count, r.rssKb);
  std::fflush(stdout);
}

/// The daemon's path: `kmsd --once` (the Release build beside this program) issues `count`
/// http-01 certificates through its lifecycle steps, `max_concurrent_orders` at a time, on
/// a SoftHSM2 token of its own and the http-01 socket it is handed (as systemd would).
class DaemonBench {
 public:
  DaemonBench(bool alwaysValid, int nonceRejectPercent) {
    test::PebbleOptions o;
    o.alwaysValid = alwaysValid;
    o.noSleep = true;
    o.nonceRejectPercent = nonceRejectPercent;
    o.httpPort = http01_->port();
    pebble_ = std::make_unique<test::PebbleServer>(o);
    roots_ = pebble_->writeIssuingRoots(softhsm_.sandbox().file("pebble-roots.pem"));
  }

  /// One `kmsd --once` over certificates tag-0 .. tag-(count-1); the certificates of the
  /// previous run leave the configuration (released, not revoked). `count` 0 repeats the
  /// previous run's configuration: nothing is due, which times kmsd's start and stop.
  Row run(const std::string& label, const std::string& tag, int count, int maxOrders) {
    if (count > 0) {
      writeConfig(tag, count, maxOrders);
    }
    const double cpu0 = cpuSeconds(RUSAGE_CHILDREN);
    const double peb0 = processCpuSeconds(pebble_->pid());
    childPeakKb = 0;
    const std::string log = softhsm_.sandbox().file("kmsd-" + tag + (count > 0 ? "" : "-again") + ".log");
    const auto t0 = Clock::now();
    // As PassedSocket::pass does it: LISTEN_PID must be kmsd's own pid, so a shell execs it.
    const int rc = spawnMeasured({"sh", "-c", "LISTEN_PID=$$; export LISTEN_PID; exec \"$0\" \"$@\"", test::kKmsd,
                                  "--config", config_, "--once"},
                                 {"SOFTHSM2_CONF=" + softhsm_.confPath(), "LISTEN_FDS=1", "LISTEN_FDNAMES=http01"}, log,
                                 http01_->fd());
    const double wall = std::chrono::duration<double>(Clock::now() - t0).count();
    if (rc != 0) {
      std::fprintf(stderr, "%s: kmsd --once exited %d:\n%s\n", label.c_str(), rc, test::readFile(log).c_str());
    }
    return Row{label, count > 0 ? count : lastCount_, wall, cpuSeconds(RUSAGE_CHILDREN) - cpu0,
               processCpuSeconds(pebble_->pid()) - peb0, childPeakKb};
  }

  Row lego(const std::string& label, int count) {
    double cpu0 = cpuSeconds(RUSAGE_CHILDREN);
    double peb0 = processCpuSeconds(pebble_->pid());
    // lego answers http-01 itself and cannot be handed a socket: it binds the port kmsd's
    // socket leaves (a benchmark run by hand, not a test).
    http01_.reset();
    auto t0 = Clock::now();
    for (int i = 0; i < count; ++i) {
      std::string dir = pebble_->sandbox().file("lego-" + label + std::to_string(i));
      std::vector<std::string> args{"lego",
                                    "--accept-tos",
                                    "--email",
                                    "bench@example.net",
                                    "--server",
                                    pebble_->directoryUrl(),
                                    "--http",
                                    "--http.port",
                                    "127.0.0.1:" + std::to_string(pebble_->httpPort()),
                                    "--domains",
                                    "lego-" + std::to_string(i) + "." + label + ".example.com",
                                    "--path",
                                    dir,
                                    "run"};
      int legoRc = spawnMeasured(args, {"LEGO_CA_CERTIFICATES=" + pebble_->tlsCaFile()}, dir + ".log");
      if (std::getenv("KMS_BENCH_VERBOSE") != nullptr) {
        std::fprintf(stderr, "%s\n", test::readFile(dir + ".log").c_str());
      }
      if (legoRc != 0) {
        std::fprintf(stderr, "lego run %d failed:\n%s\n", i, test::readFile(dir + ".log").c_str());
      }
    }
    double wall = std::chrono::duration<double>(Clock::now() - t0).count();
    return Row{"lego (" + label + ", sequential processes)", count,      wall, cpuSeconds(RUSAGE_CHILDREN) - cpu0,
               processCpuSeconds(pebble_->pid()) - peb0,     childPeakKb};
  }


 private:
  void writeConfig(const std::string& tag, int count, int maxOrders) {
    const test::Sandbox& sb = softhsm_.sandbox();
    test::KmsdToml toml;
    toml.stateDir = sb.file("state");
    toml.controlSocket = sb.file("kmsd.sock");
    toml.daemonExtra = "max_concurrent_orders = " + std::to_string(maxOrders) + "\n";
    toml.tokenLabel = softhsm_.label();
    toml.pinFile = softhsm_.pinFile();
    toml.directoryUrl = pebble_->directoryUrl();
    toml.caBundle = pebble_->tlsCaFile();
    toml.trustAnchors = roots_;
    toml.webRoot = sb.file("www");
    for (int i = 0; i < count; ++i) {
      const std::string name = tag + "-" + std::to_string(i);
      toml.dns(name, {name + ".example.com"});
    }
    config_ = sb.write("kmsd.toml", toml.text());
    lastCount_ = count;
  }

  test::SoftHsmToken softhsm_{"bench-kmsd"};
  /// kmsd's http-01 socket; Pebble validates on its port.
  std::unique_ptr<test::PassedSocket> http01_ = std::make_unique<test::PassedSocket>();
  std::unique_ptr<test::PebbleServer> pebble_;
  std::string roots_;
  std::string config_;
  int lastCount_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  int count = argc > 1 ? std::atoi(argv[1]) : 50;
  int legoHttp = argc > 2 ? std::atoi(argv[2]) : 5;
  int legoAlways = argc > 3 ? std::atoi(argv[3]) : 20;
  int orders = argc > 4 ? std::atoi(argv[4]) : 4;
  for (bool alwaysValid : {false, true}) {
    const std::string mode = alwaysValid ? "always-valid" : "http-01";
    DaemonBench daemon(alwaysValid, 0);
    daemon.run(mode + " warm-up", "warm", 2, 1);
    print(daemon.run(mode + " nothing due", "warm", 0, 1));
    print(daemon.run(mode + " sequential (1 order)", "seq", count, 1));
    print(daemon.run(mode + " concurrent (" + std::to_string(orders) + " orders)", "con", count, orders));
    if (int legoCount = alwaysValid ? legoAlways : legoHttp; legoCount > 0) {
      print(daemon.lego(mode, legoCount));
    }
  }
  // 30 % of nonces rejected (badNonce, retried by the client), 10 certificates.
  DaemonBench daemon(true, 30);
  daemon.run("warm-up", "warm", 1, 1);
  print(daemon.run("always-valid, 30 % bad nonces (" + std::to_string(orders) + " orders)", "nonce", 10, orders));
  return 0;
}
