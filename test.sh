#!/usr/bin/env bash
# Runs every test of netdumplings, installing what it lacks first (see scripts/setup.sh).
#   ./test.sh            format check, clippy, all Rust tests, Python eater tests,
#                        chefs in other languages
#   ./test.sh --quick    only the Rust tests
# Everything builds in one profile (--release) so wasmtime is compiled once.
set -euo pipefail
cd "$(dirname "$0")"
quick=0; [ "${1:-}" = --quick ] && quick=1
ND_SETUP_PYTHON=1 source scripts/setup.sh

step() { printf '\n==> %s\n' "$*" >&2; }
if [ $quick = 0 ]; then
  step "cargo fmt --check"
  cargo fmt --all -- --check
fi
step "build (release, whole workspace)"
cargo build --release --workspace --all-targets --locked
if [ $quick = 0 ]; then
  step "clippy"
  cargo clippy --release --workspace --all-targets --locked -- -D warnings
fi
step "Rust tests (unit and end-to-end)"
cargo test --release --workspace --locked
step "sample chefs' own unit tests"
cargo test --release --manifest-path chefs/Cargo.toml --target-dir target/chefs --locked
if [ $quick = 0 ]; then
  for extra in python/run-tests.sh tests/lang-chefs.sh; do
    if [ -x "$extra" ]; then
      step "$extra"
      "$extra"
    fi
  done
fi
step "all tests passed"
