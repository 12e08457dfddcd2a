#!/usr/bin/env bash
# Installs every Debian 12 package that shaken-kms needs to build, test and run its
# quickstart. This is the only place package names are listed. Idempotent and
# non-interactive; run as root (or through sudo).
set -euo pipefail

packages=(
  # toolchain
  build-essential cmake pkg-config ccache git
  # libraries (see README "Dependencies" for why each is here)
  libssl-dev openssl            # X.509, CSR, JOSE, TLS (OpenSSL 3)
  libsqlite3-dev sqlite3        # storage
  libtomlplusplus-dev           # config file parser
  libexpected-dev               # tl::expected (Result type until std::expected)
  libcli11-dev                  # command-line parsing for kmsd/kmsctl
  libspdlog-dev                 # kmsd's log lines (text or JSON) on stderr
  nlohmann-json3-dev            # JSON for JWK/JWS and APIs
  libcurl4-openssl-dev          # HTTP client (ACME, STI-PA)
  libboost-dev                  # Asio/Beast
  libp11-kit-dev                # PKCS#11 headers (pkcs11.h)
  libsystemd-dev                # socket activation (the http-01 port passed by systemd)
  softhsm2 libsofthsm2          # embedded default HSM (PKCS#11 module + softhsm2-util)
  # tests and benchmarks
  libgtest-dev libgmock-dev libbenchmark-dev
  pebble                        # the independent ACME server (pebble, pebble-challtestsrv)
  curl                          # used by the dns-01 test hook to reach pebble-challtestsrv
  python3                       # python3 -m http.server serves recorded ACME responses
  python3-cryptography          # recorded_server.py verifies the ES256 JWS it is sent
  lego                          # reference ACME client for tests/bench/acme_issue
  clang-14 libfuzzer-14-dev libclang-rt-14-dev   # fuzzing (tests/fuzz: libFuzzer + ASan/UBSan)
  procps                        # ps/pkill used by tests
  nginx                         # the STI-CR web server of deploy/nginx/sti-cr.conf (tests start their own)
  secsipidx                     # asipto's STIR/SHAKEN reference tool: checks every PASSporT kmsd signs
  kamailio kamailio-utils-modules kamailio-json-modules kamailio-secsipid-modules
                                # the SIP call-path test: an SBC signing through kmsd (http_client,
                                # json) and a verifier (secsipid); tests start their own instances
  sip-tester                    # sipp: places the calls of that test
  wrk                           # HTTP load for the signing API benchmark (tests/bench)
  systemd                       # systemd-analyze verify/security judge deploy/systemd
  man-db                        # the man pages are checked for roff warnings
  debhelper dpkg-dev fakeroot lintian   # the kmsd and kms-lab .deb packages (debian/), and their check
  prometheus                    # promtool checks kmsd's /metrics; tests start their own prometheus
  prometheus-alertmanager       # kmsd's Alertmanager channel is tested against a real one
  python3-aiosmtpd              # kmsd's SMTP channel is tested against a real SMTP server
  mmdebstrap systemd-container zstd     # the `system` test: a Debian 12 root (cached as .tar.zst)
                                        # booted by systemd-nspawn, the packages installed inside
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  # Server packages (nginx) must not start a system-wide service here: tests start their
  # own instances on 127.0.0.1. policy-rc.d answering 101 tells invoke-rc.d so.
  policy=/usr/sbin/policy-rc.d
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod 0755 "$policy"
    trap '$SUDO rm -f "$policy"' EXIT
  fi
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
echo "install-deps: all ${#packages[@]} packages present"
