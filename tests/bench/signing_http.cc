// tests/bench/signing_http: PASSporTs per second through kmsd's TCP signing API under wrk
// (see tests/bench/README.md).
//
//   signing_http [--seconds N] [--connections C]     (defaults 10 and 16)
//
// In one run: the token's bare C_Sign ceiling (1 thread, a SoftHSM2 token of the same
// module), then the Release kmsd against kms-lab with [signing] listen in clear text, over
// TLS, and in clear text with the signing record on; beside them Debian's `secsipidx
// -http-srv` signing with a key in a file (POST /v1/sign-csv). Each under `wrk -t2 -cC
// --latency` for N seconds: requests/s, p50, p99 and the count of non-200 answers.
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <netinet/in.h>
#include <sys/socket.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <algorithm>
#include <memory>
#include <stdexcept>
#include <regex>
#include <sstream>
#include <string>
#include <thread>

#include "bench_token.h"
#include "lab_process.h"
#include "sandbox.h"

using namespace std::chrono_literals;

namespace {

const std::string kKmsd = KMS_BINARY_DIR "/kmsd/kmsd";
constexpr const char* kToken = "bench-client-0123456789abcdefghijklmnopqrstuv";

/// Thrown out to main, so that every process started is stopped on the way.
[[noreturn]] void die(const std::string& what) {
  throw std::runtime_error(what);
}

std::string run(const std::string& command) {
  std::string out;
  if (kms::test::runCommand(command, &out) != 0) {
    die(command + "\n" + out);
  }
  return out;
}


/// A server process, stopped (SIGTERM, waited for) when it goes.
class Child {
 public:
  explicit Child(pid_t pid) : pid_(pid) {}
  ~Child() {
    ::kill(pid_, SIGTERM);
    ::waitpid(pid_, nullptr, 0);
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  [[nodiscard]] pid_t pid() const { return pid_; }

 private:
  pid_t pid_;
};

std::unique_ptr<Child> spawn(const std::vector<std::string>& argv, const std::string& log,
                             const std::string& softhsmConf = "") {
  const pid_t pid = ::fork();
  if (pid == 0) {
    if (!softhsmConf.empty()) {
      ::setenv("SOFTHSM2_CONF", softhsmConf.c_str(), 1);
    }
    if (std::freopen(log.c_str(), "w", stderr) == nullptr || std::freopen("/dev/null", "w", stdout) == nullptr) {
      ::_exit(126);
    }
    std::vector<char*> args;
    for (const auto& a : argv) {
      args.push_back(const_cast<char*>(a.c_str()));
    }
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  return std::make_unique<Child>(pid);
}

bool waitForLine(const std::string& log, const std::string& text, std::chrono::seconds limit) {
  for (auto end = std::chrono::steady_clock::now() + limit; std::chrono::steady_clock::now() < end;) {
    std::ifstream in(log);
    std::stringstream ss;
    ss << in.rdbuf();
    if (ss.str().find(text) != std::string::npos) {
      return true;
    }
    std::this_thread::sleep_for(100ms);
  }
  return false;
}

/// "812.00us", "1.25ms", "2.00s" in milliseconds.
double millis(const std::string& value, const std::string& unit) {
  const double v = std::stod(value);
  return unit == "us" ? v / 1000 : unit == "s" ? v * 1000 : v;
}

/// wrk's threads: 1 (WRK_THREADS to change): one load thread leaves more of two cores to the
/// server, as a remote SBC would.
int wrkThreads() {
  const char* n = std::getenv("WRK_THREADS");
  return n != nullptr ? std::max(1, std::atoi(n)) : 1;
}

/// CPU seconds (user + system) the process used so far, from /proc/PID/stat.
double cpuSeconds(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::istringstream fields(text.substr(text.rfind(')') + 2));
  std::string f;
  double ticks = 0;
  for (int i = 3; i <= 15 && fields >> f; ++i) {
    if (i == 14 || i == 15) {  // utime, stime
      ticks += std::stod(f);
    }
  }
  return ticks / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

struct WrkResult {
  double cpuMicros = 0;  ///< the server's CPU time per request
  double rps = 0;
  double p50 = 0;
  double p99 = 0;
  long non2xx = 0;
  long errors = 0;
};

WrkResult wrk(const std::string& url, const std::string& script, int seconds, int connections, pid_t server) {
  const double cpuBefore = cpuSeconds(server);
  const std::string out = run("wrk -t" + std::to_string(wrkThreads()) + " -c" + std::to_string(connections) + " -d" + std::to_string(seconds) +
                              "s --latency -s " + script + " " + url);
  WrkResult r;
  std::smatch m;
  if (std::regex_search(out, m, std::regex(R"(Requests/sec:\s+([0-9.]+))"))) {
    r.rps = std::stod(m[1]);
  }
  if (std::regex_search(out, m, std::regex(R"(\n\s+50%\s+([0-9.]+)(us|ms|s)\b)"))) {
    r.p50 = millis(m[1], m[2]);
  }
  if (std::regex_search(out, m, std::regex(R"(\n\s+99%\s+([0-9.]+)(us|ms|s)\b)"))) {
    r.p99 = millis(m[1], m[2]);
  }
  if (std::regex_search(out, m, std::regex(R"(Non-2xx or 3xx responses:\s+(\d+))"))) {
    r.non2xx = std::stol(m[1]);
  }
  if (std::regex_search(out, m, std::regex(R"(Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+))"))) {
    r.errors = std::stol(m[1]) + std::stol(m[2]) + std::stol(m[3]) + std::stol(m[4]);
  }
  if (r.rps == 0) {
    die("wrk said nothing usable:\n" + out);
  }
  if (std::regex_search(out, m, std::regex(R"((\d+) requests in ([0-9.]+)s)"))) {
    r.cpuMicros = 1e6 * (cpuSeconds(server) - cpuBefore) / std::stod(m[1]);
  }
  return r;
}

/// The bare C_SignInit + C_Sign rate on one session for `seconds`.
double bareCeiling(double seconds) {
  kms::bench::setUp();
  const auto b = kms::bench::openBareSession();
  if (!b.ok()) {
    die("bare session");
  }
  std::uint64_t n = 0;
  const auto start = std::chrono::steady_clock::now();
  const auto end = start + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < end) {
    for (int i = 0; i < 100; ++i) {
      if (!b.sign(++n)) {
        die("C_Sign");
      }
    }
  }
  const double rate =
      static_cast<double>(n) / std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  kms::bench::fx().fn->C_CloseSession(b.session);
  kms::bench::tearDown();
  return rate;
}

void row(const std::string& name, const WrkResult& r, double ceiling) {
  std::printf("%-40s %9.0f/s %6.0f %% %8.2f ms %8.2f ms %7.0f us %8ld %6ld\n", name.c_str(), r.rps,
              100 * r.rps / ceiling, r.p50, r.p99, r.cpuMicros, r.non2xx, r.errors);
}

}  // namespace

int bench(int argc, char** argv) {
  int seconds = 10;
  int connections = 16;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--seconds") {
      seconds = std::atoi(argv[i + 1]);
    } else if (flag == "--connections") {
      connections = std::atoi(argv[i + 1]);
    }
  }
  kms::test::Sandbox sandbox;
  const double ceiling = bareCeiling(3.0);

  kms::test::LabProcess lab(sandbox.file("lab"));
  run("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=127.0.0.1 -addext "
      "subjectAltName=IP:127.0.0.1 -keyout " +
      sandbox.file("tls.key") + " -out " + sandbox.file("tls.pem"));
  ::chmod(sandbox.file("tls.key").c_str(), 0600);
  ::chmod(sandbox.write("client.token", std::string(kToken) + "\n").c_str(), 0600);
  const std::string body = R"({"signingRequest":{"attest":"A","dest":{"tn":["12155551213"]},"orig":{"tn":"12155551212"}}})";
  const std::string script = sandbox.write(
      "kmsd.lua", "wrk.method = \"POST\"\nwrk.body = '" + body +
                      "'\nwrk.headers[\"Content-Type\"] = \"application/json\"\nwrk.headers[\"Authorization\"] = "
                      "\"Bearer " + kToken + "\"\n");

  struct Variant {
    std::string name;
    bool tls;
    bool record;
  };
  const std::vector<Variant> variants{{"kmsd, clear text", false, false},
                                      {"kmsd, TLS", true, false},
                                      {"kmsd, clear text, signing record on", false, true}};
  std::vector<std::pair<std::string, WrkResult>> results;
  const std::string base = kms::test::readFile(lab.file("kmsd.toml"));
  for (const Variant& v : variants) {
    const std::uint16_t port = kms::test::freePort();
    std::string config = base + "\n[signing]\nthreads = 2\nlisten = \"127.0.0.1:" + std::to_string(port) + "\"\n";
    if (v.tls) {
      config += "tls_certificate = \"" + sandbox.file("tls.pem") + "\"\ntls_key = \"" + sandbox.file("tls.key") + "\"\n";
    }
    if (v.record) {
      config += "record = \"" + sandbox.file("signing.jsonl") + "\"\n";
    }
    config += "\n[[signing.client]]\nname = \"bench\"\ntoken_file = \"" + sandbox.file("client.token") +
              "\"\ncertificates = [\"main\"]\n";
    const std::string configFile = sandbox.write("kmsd.toml", config);
    const std::string log = sandbox.file("kmsd-" + std::to_string(results.size()) + ".log");
    const auto kmsd = spawn({kKmsd, "--config", configFile}, log, lab.file("softhsm2.conf"));
    if (!waitForLine(log, "KMS_STARTED", 60s)) {
      die("kmsd did not start:\n" + kms::test::readFile(log));
    }
    const std::string url = std::string(v.tls ? "https" : "http") + "://127.0.0.1:" + std::to_string(port) +
                            "/stir/v1/signing";
    // Ready when it signs (the first start obtains the certificate first).
    const std::string probe =
        "curl -sfk -o /dev/null -H 'Authorization: Bearer " + std::string(kToken) + "' --data '" + body + "' " + url;
    bool signs = false;
    for (auto end = std::chrono::steady_clock::now() + 120s; !signs && std::chrono::steady_clock::now() < end;) {
      signs = kms::test::runCommand(probe, nullptr) == 0;
      std::this_thread::sleep_for(signs ? 0ms : 200ms);
    }
    if (!signs) {
      die("kmsd does not sign:\n" + kms::test::readFile(log));
    }
    results.emplace_back(v.name, wrk(url, script, seconds, connections, kmsd->pid()));
  }

  // secsipidx with its key in a file, under the same load.
  run("openssl ecparam -name prime256v1 -genkey -noout -out " + sandbox.file("secsipidx.key"));
  const std::uint16_t port = kms::test::freePort();
  auto secsipidx = spawn({"/usr/bin/secsipidx", "-http-srv", "127.0.0.1:" + std::to_string(port), "-fprvkey",
                                 sandbox.file("secsipidx.key")},
                                sandbox.file("secsipidx.log"));
  const std::string csv = sandbox.write(
      "secsipidx.lua", "wrk.method = \"POST\"\nwrk.body = "
                       "'12155551212,12155551213,A,de305d54-75b4-431b-adb2-eb6b9e546014,https://127.0.0.1/cert.pem'\n");
  const std::string url = "http://127.0.0.1:" + std::to_string(port) + "/v1/sign-csv";
  for (int i = 0; i < 50 && kms::test::runCommand("curl -sf -o /dev/null --data x " + url, nullptr) != 0; ++i) {
    std::this_thread::sleep_for(100ms);
  }
  results.emplace_back("secsipidx -http-srv, key in a file", wrk(url, csv, seconds, connections, secsipidx->pid()));
  secsipidx.reset();

  std::printf("bare C_Sign ceiling, 1 thread: %.0f/s (%.0f us each); wrk -t%d -c%d, %d s each\n", ceiling, 1e6 / ceiling,
              wrkThreads(), connections, seconds);
  std::printf("%-40s %11s %8s %11s %11s %10s %8s %6s\n", "", "requests", "ceiling", "p50", "p99", "CPU/req",
              "non-200", "errors");
  for (const auto& [name, r] : results) {
    row(name, r, ceiling);
  }
  return 0;
}

int main(int argc, char** argv) {
  try {
    return bench(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "signing_http: %s\n", e.what());
    return 1;
  }
}
