#include "pebble_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

#include <curl/curl.h>
#include <nlohmann/json.hpp>

namespace kms::test {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr const char* kPebbleBinary = "/usr/bin/pebble";
constexpr const char* kChallTestSrvBinary = "/usr/bin/pebble-challtestsrv";
constexpr const char* kCertificateMarker = "-----BEGIN CERTIFICATE-----";
constexpr const char* kPortClashMarker = "address already in use";
constexpr auto kReadyTimeout = std::chrono::seconds(10);
constexpr auto kStopGrace = std::chrono::seconds(3);
constexpr auto kPollInterval = milliseconds(25);
constexpr auto kProbeTimeout = milliseconds(1000);
constexpr int kStartAttempts = 3;
constexpr std::size_t kLogTailLines = 25;

// id 0x4b4d, recursion desired, one question: probe.test. IN A
constexpr std::array<unsigned char, 28> kProbeQuery = {0x4b, 0x4d, 0x01, 0x00, 0, 1,   0,   0,   0,   0, 0, 0, 5, 'p',
                                                       'r',  'o',  'b',  'e',  4, 't', 'e', 's', 't', 0, 0, 1, 0, 1};

std::string loopback(uint16_t port) {
  return "127.0.0.1:" + std::to_string(port);
}

sockaddr_in loopbackAddress(uint16_t port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return addr;
}

bool isProxyVariable(std::string_view name) {
  for (std::string_view proxy : {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}) {
    if (name.size() == proxy.size() && std::equal(name.begin(), name.end(), proxy.begin(), [](char a, char b) {
          return std::tolower(static_cast<unsigned char>(a)) == b;
        })) {
      return true;
    }
  }
  return false;
}

/// This process's environment without PEBBLE_* and proxy variables, plus the knobs.
std::vector<std::string> childEnvironment(const PebbleOptions& options) {
  std::vector<std::string> env;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    std::string_view var(*entry);
    std::string_view name = var.substr(0, var.find('='));
    if (!name.starts_with("PEBBLE_") && !isProxyVariable(name)) {
      env.emplace_back(var);
    }
  }
  env.push_back("PEBBLE_WFE_NONCEREJECT=" + std::to_string(options.nonceRejectPercent));
  env.push_back("PEBBLE_AUTHZREUSE=" + std::to_string(options.authzReusePercent));
  if (options.noSleep) {
    env.emplace_back("PEBBLE_VA_NOSLEEP=1");
  }
  if (options.alwaysValid) {
    env.emplace_back("PEBBLE_VA_ALWAYS_VALID=1");
  }
  if (options.alternateRoots > 0) {
    env.push_back("PEBBLE_ALTERNATE_ROOTS=" + std::to_string(options.alternateRoots));
  }
  return env;
}

std::vector<char*> cStrings(const std::vector<std::string>& strings) {
  std::vector<char*> out;
  out.reserve(strings.size() + 1);
  for (const std::string& s : strings) {
    out.push_back(const_cast<char*>(s.c_str()));
  }
  out.push_back(nullptr);
  return out;
}

/// fork/exec of args[0] (an absolute path) with stdin from /dev/null and stdout+stderr
/// appended to logPath. The child gets SIGKILL if the forking thread dies first.
pid_t spawn(const std::vector<std::string>& args, const std::vector<std::string>& env, const std::string& logPath) {
  std::vector<char*> argv = cStrings(args);
  std::vector<char*> envp = cStrings(env);
  int logFd = ::open(logPath.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  int nullFd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (logFd < 0 || nullFd < 0) {
    int err = errno;
    ::close(logFd);
    ::close(nullFd);
    throw std::runtime_error("cannot open " + logPath + " or /dev/null: " + std::strerror(err));
  }
  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid == 0) {
    // Child: async-signal-safe calls only.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) {
      ::_exit(127);
    }
    sigset_t none;
    ::sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    if (::dup2(nullFd, STDIN_FILENO) < 0 || ::dup2(logFd, STDOUT_FILENO) < 0 || ::dup2(logFd, STDERR_FILENO) < 0) {
      ::_exit(127);
    }
    ::close_range(3, ~0U, 0);
    ::execve(argv[0], argv.data(), envp.data());
    constexpr std::string_view kExecFailed = "kms test fixture: execve failed\n";
    [[maybe_unused]] ssize_t written = ::write(STDERR_FILENO, kExecFailed.data(), kExecFailed.size());
    ::_exit(127);
  }
  int forkErrno = errno;
  ::close(logFd);
  ::close(nullFd);
  if (pid < 0) {
    throw std::runtime_error(std::string("fork failed: ") + std::strerror(forkErrno));
  }
  return pid;
}

/// Reaps `pid` if it has exited (then sets it to -1); true when it is gone.
bool reapIfExited(pid_t& pid) {
  if (pid <= 0) {
    return true;
  }
  int status = 0;
  pid_t rc = ::waitpid(pid, &status, WNOHANG);
  if (rc == pid || (rc < 0 && errno == ECHILD)) {
    pid = -1;
    return true;
  }
  return false;
}

/// True when `pid` was running and has exited (it is reaped and set to -1).
bool exitedNow(pid_t& pid) {
  return pid > 0 && reapIfExited(pid);
}

/// SIGTERM, bounded wait, SIGKILL, reap. Sets pid to -1.
void terminate(pid_t& pid) {
  if (pid <= 0) {
    return;
  }
  ::kill(pid, SIGTERM);
  const auto deadline = Clock::now() + kStopGrace;
  while (!reapIfExited(pid)) {
    if (Clock::now() >= deadline) {
      ::kill(pid, SIGKILL);
      int status = 0;
      while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
      pid = -1;
      return;
    }
    std::this_thread::sleep_for(milliseconds(5));
  }
}

/// True when a DNS server on 127.0.0.1:port answers an A query with 127.0.0.1.
bool dnsAnswersLoopback(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return false;
  }
  timeval timeout{0, 200000};  // 200 ms
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  sockaddr_in addr = loopbackAddress(port);
  std::array<unsigned char, 512> reply{};
  ssize_t n = -1;
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0 &&
      ::send(fd, kProbeQuery.data(), kProbeQuery.size(), 0) == static_cast<ssize_t>(kProbeQuery.size())) {
    n = ::recv(fd, reply.data(), reply.size(), 0);
  }
  ::close(fd);
  if (n < static_cast<ssize_t>(kProbeQuery.size())) {
    return false;
  }
  const auto size = static_cast<std::size_t>(n);
  const bool isAnswer = reply[0] == kProbeQuery[0] && reply[1] == kProbeQuery[1] && (reply[2] & 0x80) != 0;
  const bool noError = (reply[3] & 0x0f) == 0;
  const bool hasAnswer = reply[6] != 0 || reply[7] != 0;
  if (!isAnswer || !noError || !hasAnswer) {
    return false;
  }
  // First answer record after the echoed question: name, type, class, ttl, rdlength, rdata.
  std::size_t pos = kProbeQuery.size();
  while (pos < size && reply[pos] != 0 && (reply[pos] & 0xc0) == 0) {
    pos += 1 + reply[pos];
  }
  pos += (pos < size && reply[pos] != 0) ? 2 : 1;  // compression pointer or root label
  constexpr std::array<unsigned char, 4> kLoopback = {127, 0, 0, 1};
  if (pos + 14 > size || reply[pos] != 0 || reply[pos + 1] != 1 || reply[pos + 8] != 0 || reply[pos + 9] != 4) {
    return false;
  }
  return std::equal(kLoopback.begin(), kLoopback.end(), reply.begin() + static_cast<std::ptrdiff_t>(pos + 10));
}

/// True when the TCP server on 127.0.0.1:port speaks HTTP. The probe is a DNS query over
/// TCP followed by an empty line: an HTTP server rejects the line at once (400) and a DNS
/// server answers the query, so neither keeps the probe waiting for more bytes.
bool answersHttp(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return false;
  }
  timeval timeout{0, 500000};  // 500 ms
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
  sockaddr_in addr = loopbackAddress(port);
  std::string probe = {'\0', static_cast<char>(kProbeQuery.size())};  // DNS over TCP: 2-byte length first
  probe.append(kProbeQuery.begin(), kProbeQuery.end());
  probe += "\r\n\r\n";
  constexpr std::string_view kHttp = "HTTP/";
  std::array<char, kHttp.size()> reply{};
  ssize_t n = -1;
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0 &&
      ::send(fd, probe.data(), probe.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(probe.size())) {
    n = ::recv(fd, reply.data(), reply.size(), MSG_WAITALL);
  }
  ::close(fd);
  return n == static_cast<ssize_t>(reply.size()) && std::string_view(reply.data(), reply.size()) == kHttp;
}

/// True once `pid` runs `binary`: until its exec the child still holds this process's sockets.
bool runs(pid_t pid, const char* binary) {
  std::error_code ec;
  return std::filesystem::equivalent("/proc/" + std::to_string(pid) + "/exe", binary, ec);
}

/// Inodes of the sockets among `pid`'s file descriptors (links "socket:[inode]").
std::set<unsigned long> socketInodes(pid_t pid) {
  constexpr std::string_view kPrefix = "socket:[";
  std::set<unsigned long> inodes;
  std::error_code ec;
  const std::filesystem::directory_iterator end;
  for (std::filesystem::directory_iterator it("/proc/" + std::to_string(pid) + "/fd", ec); !ec && it != end;
       it.increment(ec)) {
    std::error_code linkError;  // the descriptor may be closed meanwhile
    const std::string target = std::filesystem::read_symlink(it->path(), linkError).string();
    unsigned long inode = 0;
    if (!linkError && target.starts_with(kPrefix) && target.ends_with(']') &&
        std::from_chars(target.data() + kPrefix.size(), target.data() + target.size() - 1, inode).ec == std::errc{}) {
      inodes.insert(inode);
    }
  }
  return inodes;
}

/// Ports of the sockets in `inodes` bound to 127.0.0.1 in the kernel's `table` (/proc/net/tcp
/// or /proc/net/udp) in state `wanted`, hex as the kernel prints it.
std::vector<uint16_t> loopbackPorts(const char* table, std::string_view wanted, const std::set<unsigned long>& inodes) {
  std::vector<uint16_t> ports;
  std::ifstream in(table);
  std::string line;
  std::getline(in, line);  // column titles
  while (std::getline(in, line)) {
    // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ...
    std::istringstream fields(line);
    std::string slot, local, remote, state, queues, timers, retransmits, owner, probes;
    unsigned long inode = 0;
    if (!(fields >> slot >> local >> remote >> state >> queues >> timers >> retransmits >> owner >> probes >> inode) ||
        state != wanted || !inodes.contains(inode)) {
      continue;
    }
    // local_address is ADDR:PORT in hex, the address as stored (network order), the port in host order.
    const std::size_t colon = local.find(':');
    uint32_t address = 0;
    uint16_t port = 0;
    if (colon != std::string::npos &&
        std::from_chars(local.data(), local.data() + colon, address, 16).ec == std::errc{} &&
        std::from_chars(local.data() + colon + 1, local.data() + local.size(), port, 16).ec == std::errc{} &&
        address == htonl(INADDR_LOOPBACK)) {
      ports.push_back(port);
    }
  }
  return ports;
}

std::string describe(const LoopbackListeners& listeners) {
  std::string out = "tcp";
  for (uint16_t port : listeners.tcp) {
    out += " " + std::to_string(port);
  }
  out += ", udp";
  for (uint16_t port : listeners.udp) {
    out += " " + std::to_string(port);
  }
  return out;
}

std::string logTail(const std::string& path) {
  std::string content;
  try {
    content = readFile(path);
  } catch (const std::runtime_error&) {
    return "(no log at " + path + ")\n";
  }
  // Walk back over kLogTailLines line ends, not counting the one ending the file.
  std::size_t start = content.size();
  std::size_t lines = 0;
  while (start > 0) {
    if (content[start - 1] == '\n' && start != content.size() && ++lines == kLogTailLines) {
      break;
    }
    --start;
  }
  return content.substr(start);
}

bool logMentions(const std::string& path, std::string_view text) {
  try {
    return readFile(path).find(text) != std::string::npos;
  } catch (const std::runtime_error&) {
    return false;
  }
}

std::string shellQuote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  }
  return out + "'";
}

void runOpenssl(const std::string& arguments) {
  std::string output;
  if (runCommand("openssl " + arguments, &output) != 0) {
    throw std::runtime_error("openssl " + arguments + " failed: " + output);
  }
}

void validatePercent(int value, const char* name) {
  if (value < 0 || value > 100) {
    throw std::invalid_argument(std::string("PebbleOptions::") + name + " must be 0..100, got " +
                                std::to_string(value));
  }
}

std::size_t appendToString(char* data, std::size_t size, std::size_t count, void* userdata) {
  static_cast<std::string*>(userdata)->append(data, size * count);
  return size * count;
}

void curlGlobalInit() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

}  // namespace

LoopbackListeners loopbackListeners(pid_t pid) {
  const std::set<unsigned long> inodes = socketInodes(pid);
  if (inodes.empty()) {
    return {};
  }
  // 0A: TCP_LISTEN. An unconnected UDP socket shows 07 (TCP_CLOSE), a connected one 01.
  return {loopbackPorts("/proc/net/tcp", "0A", inodes), loopbackPorts("/proc/net/udp", "07", inodes)};
}

Result<HttpsResponse> httpsGet(const std::string& url, const std::string& caFile, std::chrono::milliseconds timeout) {
  curlGlobalInit();
  std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> curl(curl_easy_init(), &curl_easy_cleanup);
  if (!curl) {
    return fail(Errc::internal, "curl_easy_init failed", url);
  }
  HttpsResponse response;
  std::array<char, CURL_ERROR_SIZE> errorBuffer{};
  CURL* h = curl.get();
  curl_easy_setopt(h, CURLOPT_URL, url.c_str());
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https");
  curl_easy_setopt(h, CURLOPT_CAINFO, caFile.c_str());
  curl_easy_setopt(h, CURLOPT_CAPATH, static_cast<const char*>(nullptr));
  curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
  curl_easy_setopt(h, CURLOPT_PROXY, "");
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout.count()));
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, &appendToString);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &response.body);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errorBuffer.data());
  CURLcode rc = curl_easy_perform(h);
  if (rc != CURLE_OK) {
    Error error;
    error.code = Errc::network;
    error.message = errorBuffer[0] != '\0' ? errorBuffer.data() : curl_easy_strerror(rc);
    error.context = "GET " + url;
    error.native = rc;
    error.nativeName = curl_easy_strerror(rc);
    return fail(std::move(error));
  }
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &response.status);
  return response;
}

PebbleServer::PebbleServer(PebbleOptions options) : options_(std::move(options)) {
  validatePercent(options_.nonceRejectPercent, "nonceRejectPercent");
  validatePercent(options_.authzReusePercent, "authzReusePercent");
  for (const char* binary : {kPebbleBinary, kChallTestSrvBinary}) {
    if (::access(binary, X_OK) != 0) {
      throw std::runtime_error(std::string(binary) + " not found: install the Debian package pebble");
    }
  }
  writeTlsCertificates();
  start();
}

PebbleServer::~PebbleServer() {
  stop();
}

std::string PebbleServer::directoryUrl() const {
  return "https://" + loopback(acmePort_) + "/dir";
}

std::string PebbleServer::pebbleLogFile() const {
  return sandbox_.file("pebble." + std::to_string(starts_) + ".log");
}

std::string PebbleServer::dnsLogFile() const {
  return sandbox_.file("challtestsrv." + std::to_string(starts_) + ".log");
}

std::string PebbleServer::issuingRootsPem(int index) const {
  return managementGet("/roots/" + std::to_string(index));
}

std::string PebbleServer::intermediatesPem() const {
  return managementGet("/intermediates/0");
}

std::string PebbleServer::writeIssuingRoots(const std::string& path) const {
  std::string pem = issuingRootsPem();
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << pem;
  out.close();
  if (!out) {
    throw std::runtime_error("cannot write " + path);
  }
  return path;
}

void PebbleServer::stop() {
  terminate(pebblePid_);
  terminate(dnsPid_);
}

void PebbleServer::start() {
  if (running()) {
    return;
  }
  for (int attempt = 1; attempt <= kStartAttempts; ++attempt) {
    Outcome outcome = Outcome::ready;
    try {
      outcome = startOnce();
    } catch (...) {
      stop();
      throw;
    }
    if (outcome == Outcome::ready) {
      return;
    }
    stop();
    // Only known ports (a restart) can clash: one may still be held by a socket on its way
    // out. Keep them, clients have the URLs.
    std::this_thread::sleep_for(milliseconds(200));
  }
  throw std::runtime_error(
      failureReport("Pebble: ports still in use after " + std::to_string(kStartAttempts) + " start attempts"));
}

void PebbleServer::writeTlsCertificates() {
  const std::string conf = sandbox_.write("tls-openssl.cnf",
                                          "[req]\n"
                                          "distinguished_name = dn\n"
                                          "prompt = no\n"
                                          "[dn]\n"
                                          "CN = placeholder\n"
                                          "[ca_ext]\n"
                                          "basicConstraints = critical,CA:TRUE\n"
                                          "keyUsage = critical,keyCertSign,cRLSign\n"
                                          "subjectKeyIdentifier = hash\n"
                                          "[leaf_ext]\n"
                                          "basicConstraints = critical,CA:FALSE\n"
                                          "keyUsage = critical,digitalSignature\n"
                                          "extendedKeyUsage = serverAuth\n"
                                          "subjectAltName = DNS:localhost,IP:127.0.0.1\n"
                                          "subjectKeyIdentifier = hash\n"
                                          "authorityKeyIdentifier = keyid\n");
  const std::string newKey = " -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -config " + shellQuote(conf);
  const std::string caKey = sandbox_.file("tls-ca.key");
  tlsCaFile_ = sandbox_.file("tls-ca.pem");
  runOpenssl("req -x509 -days 7 -extensions ca_ext -subj '/CN=shaken-kms test Pebble TLS CA'" + newKey + " -keyout " +
             shellQuote(caKey) + " -out " + shellQuote(tlsCaFile_));
  runOpenssl("req -new -subj /CN=localhost" + newKey + " -keyout " + shellQuote(sandbox_.file("tls.key")) + " -out " +
             shellQuote(sandbox_.file("tls.csr")));
  runOpenssl("x509 -req -days 7 -in " + shellQuote(sandbox_.file("tls.csr")) + " -CA " + shellQuote(tlsCaFile_) +
             " -CAkey " + shellQuote(caKey) + " -CAserial " + shellQuote(sandbox_.file("tls-ca.srl")) +
             " -CAcreateserial -extfile " + shellQuote(conf) + " -extensions leaf_ext -out " +
             shellQuote(sandbox_.file("tls.pem")));
}

void PebbleServer::writeConfig() const {
  nlohmann::json pebble = {
      {"listenAddress", loopback(acmePort_)},
      {"managementListenAddress", loopback(managementPort_)},
      {"certificate", sandbox_.file("tls.pem")},
      {"privateKey", sandbox_.file("tls.key")},
      {"httpPort", options_.httpPort},
      {"tlsPort", 0},  // no tls-alpn-01 responder: validation is refused
      {"ocspResponderURL", ""},
      {"externalAccountBindingRequired", options_.eabRequired},
  };
  if (!options_.eabKeys.empty()) {
    pebble["externalAccountMACKeys"] = options_.eabKeys;
  }
  sandbox_.write("pebble-config.json", nlohmann::json{{"pebble", pebble}}.dump(2) + "\n");
}

PebbleServer::Outcome PebbleServer::startOnce() {
  ++starts_;
  const auto deadline = Clock::now() + kReadyTimeout;
  const std::vector<std::string> env = childEnvironment(options_);
  // The DNS port is new at every start: only Pebble, started below with it, queries it.
  dnsPid_ = spawn({kChallTestSrvBinary, "-dns01", loopback(0), "-http01", "", "-https01", "", "-tlsalpn01", "",
                   "-management", loopback(dnsManagementPort_), "-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""},
                  env, dnsLogFile());
  if (Outcome dns = waitUntilReady("pebble-challtestsrv", dnsPid_, deadline, [this] { return challTestSrvReady(); });
      dns != Outcome::ready) {
    return dns;
  }
  writeConfig();
  pebblePid_ = spawn({kPebbleBinary, "-config", sandbox_.file("pebble-config.json"), "-dnsserver", loopback(dnsPort_)},
                     env, pebbleLogFile());
  return waitUntilReady("Pebble", pebblePid_, deadline, [this] { return pebbleReady(); });
}

PebbleServer::Outcome PebbleServer::waitUntilReady(const std::string& name, pid_t process, Clock::time_point deadline,
                                                   const std::function<bool()>& ready) {
  for (;;) {
    const bool exited = exitedNow(dnsPid_) || exitedNow(pebblePid_);
    // pebble-challtestsrv logs a clash on its management port but keeps running.
    if (logMentions(pebbleLogFile(), kPortClashMarker) || logMentions(dnsLogFile(), kPortClashMarker)) {
      return Outcome::portClash;
    }
    if (exited) {
      throw std::runtime_error(failureReport("Pebble or pebble-challtestsrv exited during start"));
    }
    if (ready()) {
      return Outcome::ready;
    }
    if (Clock::now() >= deadline) {
      throw std::runtime_error(failureReport(name + " not ready within " + std::to_string(kReadyTimeout.count()) +
                                             " s (listening on " + describe(loopbackListeners(process)) + ")"));
    }
    std::this_thread::sleep_for(kPollInterval);
  }
}

// The UDP socket is the DNS server Pebble queries. Of the TCP listeners (DNS over TCP on a
// port of its own, the management API) the management API is the one speaking HTTP.
bool PebbleServer::challTestSrvReady() {
  if (!runs(dnsPid_, kChallTestSrvBinary)) {
    return false;
  }
  const LoopbackListeners found = loopbackListeners(dnsPid_);
  if (found.udp.size() != 1 || !dnsAnswersLoopback(found.udp.front())) {
    return false;
  }
  const auto management = std::find_if(found.tcp.begin(), found.tcp.end(), answersHttp);
  if (management == found.tcp.end()) {
    return false;
  }
  dnsPort_ = found.udp.front();
  dnsManagementPort_ = *management;
  return true;
}

// Of Pebble's two TCP listeners the ACME API serves /dir, the management API /roots/0.
bool PebbleServer::pebbleReady() {
  if (!runs(pebblePid_, kPebbleBinary)) {
    return false;
  }
  auto serves = [this](uint16_t port, const std::string& path) {
    auto response = httpsGet("https://" + loopback(port) + path, tlsCaFile_, kProbeTimeout);
    return response.has_value() && response->status == 200;
  };
  uint16_t acme = 0;
  uint16_t management = 0;
  for (uint16_t port : loopbackListeners(pebblePid_).tcp) {
    if (serves(port, "/dir")) {
      acme = port;
    } else if (serves(port, "/roots/0")) {
      management = port;
    }
  }
  if (acme == 0 || management == 0) {
    return false;
  }
  acmePort_ = acme;
  managementPort_ = management;
  return true;
}

std::string PebbleServer::managementGet(const std::string& path) const {
  const std::string url = "https://" + loopback(managementPort_) + path;
  auto response = httpsGet(url, tlsCaFile_);
  if (!response) {
    throw std::runtime_error(response.error().toString());
  }
  if (response->status != 200 || response->body.find(kCertificateMarker) == std::string::npos) {
    throw std::runtime_error("GET " + url + ": HTTP " + std::to_string(response->status) +
                             ", no PEM certificate: " + response->body.substr(0, 200));
  }
  return response->body;
}

std::string PebbleServer::failureReport(const std::string& what) const {
  std::ostringstream report;
  report << what << " (sandbox " << sandbox_.path() << ")\n--- " << pebbleLogFile() << " (tail) ---\n"
         << logTail(pebbleLogFile()) << "--- " << dnsLogFile() << " (tail) ---\n"
         << logTail(dnsLogFile());
  return report.str();
}

}  // namespace kms::test
