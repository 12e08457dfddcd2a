// Certificates per second against a local Pebble (PEBBLE_VA_NOSLEEP=1), sequential and
// concurrent, with real http-01 validation and with PEBBLE_VA_ALWAYS_VALID=1, beside
// lego issuing certificates one process after another against the same Pebble.
//   acme_issue [count=50] [lego_count_http01=5] [lego_count_always_valid=20] [workers=4]
#include <fcntl.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>

#include "acme/client.h"
#include "acme/http01_responder.h"
#include "acme/issuer.h"
#include "hsm/token.h"
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

long peakRssKb(int who) {
  rusage ru{};
  getrusage(who, &ru);
  return ru.ru_maxrss;
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
int spawnMeasured(const std::vector<std::string>& args, const std::vector<std::string>& extraEnv,
                  const std::string& logFile) {
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

class Bench {
 public:
  explicit Bench(bool alwaysValid) {
    // The responder binds first (port 0) and Pebble is told its port.
    responder_ = std::move(*acme::Http01Responder::start("127.0.0.1", 0));
    test::PebbleOptions o;
    o.alwaysValid = alwaysValid;
    o.noSleep = true;
    o.httpPort = responder_->port();
    pebble_ = std::make_unique<test::PebbleServer>(o);
    auto token = hsm::Token::open({test::SoftHsmToken::modulePath(), softhsm_.label(), softhsm_.pinFile(), 16});
    token_ = std::move(*token);
    auto key = token_->generateKey("account");
    accountKey_ = std::move(*token_->signer(key->uri));
    http::TransportOptions topts;
    topts.caBundle = pebble_->tlsCaFile();
    transport_ = std::move(*http::makeCurlTransport(topts));
    acme::ClientOptions copts;
    copts.directoryUrl = pebble_->directoryUrl();
    copts.pollFirstInterval = std::chrono::milliseconds(5);
    client_ = std::move(*acme::AcmeClient::create(*transport_, copts));
    accountUrl_ = client_->newAccount(*accountKey_, {})->url;
    solver_ = std::make_unique<acme::Http01Solver>(*responder_);
    anchors_ = *pki::parsePemChain(pebble_->issuingRootsPem());
  }

  bool issueOne(const std::string& name) {
    auto k0 = Clock::now();
    auto signer = token_->generateSigner(name);
    if (!signer) {
      return false;
    }
    keyNs_ += std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - k0).count();
    acme::IssueRequest r;
    r.identifiers = {{"dns", name}};
    r.challengeType = "http-01";
    r.csr.dnsNames = {name};
    r.certKey = signer->get();
    r.trustAnchors = anchors_;
    auto issued =
        acme::issueCertificate(*client_, acme::AccountRef{*accountKey_, accountUrl_}, r, {{"http-01", solver_.get()}});
    if (!issued) {
      std::fprintf(stderr, "%s: %s\n", name.c_str(), issued.error().toString().c_str());
    }
    return issued.has_value();
  }

  Row run(const std::string& label, const std::string& tag, int count, std::size_t threads) {
    double cpu0 = cpuSeconds(RUSAGE_SELF);
    double peb0 = processCpuSeconds(pebble_->pid());
    auto t0 = Clock::now();
    std::atomic<int> good{0};
    if (threads <= 1) {
      for (int i = 0; i < count; ++i) {
        good += issueOne(tag + "-" + std::to_string(i) + ".example.com") ? 1 : 0;
      }
    } else {
      boost::asio::thread_pool pool(threads);
      for (int i = 0; i < count; ++i) {
        boost::asio::post(pool, [&, i] { good += issueOne(tag + "-" + std::to_string(i) + ".example.com") ? 1 : 0; });
      }
      pool.join();
    }
    double wall = std::chrono::duration<double>(Clock::now() - t0).count();
    if (good != count) {
      std::fprintf(stderr, "%s: only %d of %d issued\n", label.c_str(), good.load(), count);
    }
    return Row{label,
               count,
               wall,
               cpuSeconds(RUSAGE_SELF) - cpu0,
               processCpuSeconds(pebble_->pid()) - peb0,
               peakRssKb(RUSAGE_SELF)};
  }

  Row lego(const std::string& label, int count) {
    double cpu0 = cpuSeconds(RUSAGE_CHILDREN);
    double peb0 = processCpuSeconds(pebble_->pid());
    // lego answers http-01 itself and cannot be handed a socket: it binds the port the
    // responder leaves (a benchmark run by hand, not a test).
    responder_.reset();
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
  test::SoftHsmToken softhsm_{"bench"};
  std::unique_ptr<test::PebbleServer> pebble_;
  std::unique_ptr<hsm::Token> token_;
  std::unique_ptr<hsm::KeySigner> accountKey_;
  std::unique_ptr<http::Transport> transport_;
  std::unique_ptr<acme::AcmeClient> client_;
  std::string accountUrl_;
  std::unique_ptr<acme::Http01Responder> responder_;
  std::unique_ptr<acme::Http01Solver> solver_;
  std::vector<pki::Certificate> anchors_;

 public:
  std::atomic<long long> keyNs_{0};
};

}  // namespace

int main(int argc, char** argv) {
  int count = argc > 1 ? std::atoi(argv[1]) : 50;
  int legoHttp = argc > 2 ? std::atoi(argv[2]) : 5;
  int legoAlways = argc > 3 ? std::atoi(argv[3]) : 20;
  std::size_t workers = argc > 4 ? static_cast<std::size_t>(std::atoi(argv[4])) : 4;
  for (bool alwaysValid : {false, true}) {
    const std::string mode = alwaysValid ? "always-valid" : "http-01";
    Bench bench(alwaysValid);
    bench.run(mode + " warm-up", "warm", 2, 1);
    bench.keyNs_ = 0;
    print(bench.run(mode + " sequential", "seq", count, 1));
    std::printf("  of which HSM key generation + lookup: %.1f ms/cert\n",
                static_cast<double>(bench.keyNs_) / 1e6 / count);
    print(bench.run(mode + " concurrent (" + std::to_string(workers) + " workers)", "con", count, workers));
    int legoCount = alwaysValid ? legoAlways : legoHttp;
    if (legoCount > 0) {
      print(bench.lego(mode, legoCount));
    }
  }
  return 0;
}
