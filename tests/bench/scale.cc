// tests/bench/scale: kmsd at scale (see tests/bench/README.md).
//
//   scale [--certs N]      N managed certificates (default 100,000) as synthetic rows in the
//                          state DB (issued, published, active, renewal months away; keys
//                          shared among 100 real token keys): time from start to /readyz,
//                          until the start-up planning settled, RSS, CPU over 60 idle
//                          seconds, and `kmsctl status --json` time.
//   scale --storm N        N SHAKEN certificates (default 1,000) all due at once against
//                          kms-lab: time until all are active, the peak number of orders in
//                          flight (must stay at max_concurrent_orders), peak RSS, threads.
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "control/control_api.h"
#include "hsm/token.h"
#include "lab_process.h"
#include "sandbox.h"
#include "softhsm_token.h"
#include "storage/db.h"
#include "storage/store.h"
#include "synthetic_state.h"

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

const std::string kKmsd = KMS_BINARY_DIR "/kmsd/kmsd";
const std::string kKmsctl = KMS_BINARY_DIR "/kmsd/kmsctl";

double secondsSince(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

pid_t spawn(const std::string& softhsmConf, const std::string& config, const std::string& log) {
  pid_t pid = ::fork();
  if (pid == 0) {
    ::setenv("SOFTHSM2_CONF", softhsmConf.c_str(), 1);
    if (std::freopen(log.c_str(), "w", stderr) == nullptr) {
      ::_exit(126);
    }
    ::execl(kKmsd.c_str(), kKmsd.c_str(), "--config", config.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  return pid;
}

/// A /proc/PID/status field in kB (VmRSS, VmHWM) or a count (Threads).
long procStatus(pid_t pid, const std::string& field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field + ":", 0) == 0) {
      return std::stol(line.substr(field.size() + 1));
    }
  }
  return -1;
}

/// utime + stime of PID in seconds.
double cpuSeconds(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::istringstream rest(text.substr(text.rfind(')') + 2));
  std::string field;
  unsigned long long utime = 0;
  unsigned long long stime = 0;
  for (int i = 3; i <= 15; ++i) {
    rest >> field;
    if (i == 14) {
      utime = std::stoull(field);
    } else if (i == 15) {
      stime = std::stoull(field);
    }
  }
  return static_cast<double>(utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

std::optional<nlohmann::json> status(const std::string& socket) {
  auto r = kms::daemon::controlRequest(socket, "GET", "/v1/status");
  if (!r || r->status != 200) {
    return std::nullopt;
  }
  return nlohmann::json::parse(r->body, nullptr, false);
}

void stop(pid_t pid) {
  ::kill(pid, SIGTERM);
  ::waitpid(pid, nullptr, 0);
}

int scale(long count) {
  kms::test::SoftHsmToken softhsm("kms-bench");
  const auto& sb = softhsm.sandbox();
  const std::string stateDir = sb.file("state");
  const std::string socket = sb.file("kmsd.sock");
  std::cout << "scale: " << count << " certificates\n";

  // 100 real keys on the token; the synthetic certificates share them.
  std::vector<std::string> keyUris;
  {
    auto token = kms::hsm::Token::open({kms::test::SoftHsmToken::modulePath(), softhsm.label(), softhsm.pinFile(), 4});
    if (!token) {
      std::cerr << token.error().toString() << '\n';
      return 1;
    }
    for (int i = 0; i < 100; ++i) {
      auto k = (*token)->generateKey("bench-" + std::to_string(i));
      if (!k) {
        std::cerr << k.error().toString() << '\n';
        return 1;
      }
      keyUris.push_back(k->uri.toString());
    }
  }
  std::ostringstream toml;
  toml << "[daemon]\nstate_dir = \"" << stateDir << "\"\ncontrol_socket = \"" << socket << "\"\n"
       << "[hsm]\ntoken_label = \"kms-bench\"\npin_file = \"" << softhsm.pinFile() << "\"\n"
       << "module = \"" << kms::test::SoftHsmToken::modulePath() << "\"\n"
       << "[acme]\ndirectory_url = \"https://127.0.0.1:1/directory\"\ndns01_hook = \"/bin/true\"\n"
       << "insecure_skip_chain_check = true\n"
       << "[publisher]\nweb_root = \"" << sb.file("www") << "\"\nbase_url = \"https://cr.example.net/\"\npublication_check = \"file\"\n";
  for (long i = 0; i < count; ++i) {
    toml << "[[certificate]]\nname = \"c" << i << "\"\nidentifiers = [\"dns:c" << i
         << ".example.net\"]\nchallenge = \"dns-01\"\n";
  }
  const std::string config = sb.write("kmsd.toml", toml.str());

  auto t0 = Clock::now();
  {
    ::mkdir(stateDir.c_str(), 0700);
    auto db = kms::storage::Db::open(stateDir + "/kmsd.db", {});
    if (!db) {
      std::cerr << db.error().toString() << '\n';
      return 1;
    }
    auto store = kms::storage::makeSqliteStore(**db);
    auto r = kms::bench::writeSyntheticCertificates(*store, keyUris, count, std::time(nullptr));
    if (!r) {
      std::cerr << r.error().toString() << '\n';
      return 1;
    }
  }
  std::printf("  synthetic rows written in %.1f s\n", secondsSince(t0));

  const auto start = Clock::now();
  pid_t pid = spawn(softhsm.confPath(), config, sb.file("kmsd.log"));
  double ready = -1;
  while (secondsSince(start) < 120) {
    auto r = kms::daemon::controlRequest(socket, "GET", "/readyz");
    if (r && r->status == 200) {
      ready = secondsSince(start);
      break;
    }
    std::this_thread::sleep_for(5ms);
  }
  if (ready < 0) {
    std::cerr << "kmsd never became ready; log: " << sb.file("kmsd.log") << '\n';
    stop(pid);
    return 1;
  }
  // Settled: the start-up planning of every certificate is done when CPU stops moving.
  double last = cpuSeconds(pid);
  double settled = 0;
  for (;;) {
    std::this_thread::sleep_for(500ms);
    double cpu = cpuSeconds(pid);
    if (cpu - last < 0.01) {
      settled = secondsSince(start) - 0.5;
      break;
    }
    last = cpu;
  }
  const long rss = procStatus(pid, "VmRSS");
  const long hwm = procStatus(pid, "VmHWM");
  const double cpu0 = cpuSeconds(pid);
  std::this_thread::sleep_for(60s);
  const double idleCpu = (cpuSeconds(pid) - cpu0) / 60.0 * 100.0;

  auto d0 = Clock::now();
  auto direct = kms::daemon::controlRequest(socket, "GET", "/v1/status");
  const double directTime = secondsSince(d0);
  const std::size_t bytes = direct ? direct->body.size() : 0;
  std::string out;
  auto s0 = Clock::now();
  int rc = kms::test::runCommand("SOFTHSM2_CONF=" + softhsm.confPath() + " " + kKmsctl + " --config " + config +
                                     " status --json > " + sb.file("status.json"),
                                 &out);
  const double statusTime = secondsSince(s0);
  std::ifstream sj(sb.file("status.json"));
  auto j = nlohmann::json::parse(sj, nullptr, false);
  const std::size_t listed = j.is_discarded() ? 0 : j["certificates"].size();
  stop(pid);

  std::printf("  ready (/readyz 200) after %.2f s; start-up planning settled after %.1f s\n", ready, settled);
  std::printf("  RSS %.1f MiB (peak %.1f MiB)\n", static_cast<double>(rss) / 1024, static_cast<double>(hwm) / 1024);
  std::printf("  idle CPU over 60 s: %.3f %%\n", idleCpu);
  std::printf(
      "  kmsctl status --json: %.2f s, rc %d, %zu certificates listed (GET /v1/status alone: %.2f s, %zu bytes)\n",
      statusTime, rc, listed, directTime, bytes);
  return 0;
}

int storm(long count) {
  kms::test::Sandbox sb;
  kms::test::LabProcess lab(sb.file("lab"), {"--cert-lifetime", "86400"});
  std::string text;
  {
    std::ifstream in(lab.file("kmsd.toml"));
    text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  std::ostringstream extra;
  for (long i = 1; i < count; ++i) {
    extra << "[[certificate]]\nname = \"storm" << i << "\"\nspc = \"1234\"\nsubject_o = \"Storm\"\n";
  }
  const std::string config = sb.write("kmsd.toml", text + "\n" + extra.str());
  const std::string socket = lab.file("kmsd.sock");
  std::cout << "storm: " << count << " SHAKEN certificates due at once against kms-lab\n";
  const auto start = Clock::now();
  pid_t pid = spawn(lab.file("softhsm2.conf"), config, sb.file("kmsd.log"));
  long peakOrders = 0;
  long bound = 0;
  long peakThreads = 0;
  long activeCount = 0;
  while (secondsSince(start) < 1800) {
    if (auto s = status(socket); s && !s->is_discarded()) {
      peakOrders = std::max<long>(peakOrders, (*s)["daemon"]["open_orders"].get<long>());
      bound = (*s)["daemon"]["max_concurrent_orders"].get<long>();
      activeCount = 0;
      for (const auto& c : (*s)["certificates"]) {
        activeCount += c["state"] == "active" ? 1 : 0;
      }
      if (activeCount == count) {
        break;
      }
    }
    peakThreads = std::max(peakThreads, procStatus(pid, "Threads"));
    std::this_thread::sleep_for(200ms);
  }
  const double elapsed = secondsSince(start);
  const long hwm = procStatus(pid, "VmHWM");
  const double cpu = cpuSeconds(pid);
  std::string labPid;
  kms::test::runCommand("pgrep -f 'kms-lab --dir " + lab.dir() + "' | head -1", &labPid);
  const double labCpu = labPid.empty() ? -1 : cpuSeconds(static_cast<pid_t>(std::stol(labPid)));
  stop(pid);
  std::printf("  %ld of %ld active after %.1f s (%.1f certificates/s), CPU: kmsd %.1f s, kms-lab %.1f s\n", activeCount,
              count, elapsed, static_cast<double>(activeCount) / elapsed, cpu, labCpu);
  std::printf("  peak orders in flight %ld (max_concurrent_orders %ld)\n", peakOrders, bound);
  std::printf("  peak RSS %.1f MiB, peak threads %ld\n", static_cast<double>(hwm) / 1024, peakThreads);
  return activeCount == count && peakOrders <= bound ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  long certs = 100000;
  long stormCount = 0;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--certs" && i + 1 < argc) {
      certs = std::stol(argv[++i]);
    } else if (a == "--storm") {
      stormCount = i + 1 < argc ? std::stol(argv[++i]) : 1000;
    } else {
      std::cerr << "usage: scale [--certs N] | --storm N\n";
      return 2;
    }
  }
  return stormCount > 0 ? storm(stormCount) : scale(certs);
}
