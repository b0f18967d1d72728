#!/usr/bin/env bash
# Runs every test of netdumplings, installing what it lacks first (see scripts/setup.sh).
#   ./test.sh            format check, clippy, all Rust tests, Python eater tests,
#                        chefs in other languages
#   ./test.sh --quick    only the Rust tests
# Everything builds in one profile (--release) so wasmtime is compiled once.
set -euo pipefail
cd "$(dirname "$0")"
quick=0; [ "${1:-}" = --quick ] && quick=1
ND_SETUP_TESTS=1 ND_SETUP_PYTHON=1 ND_SETUP_C=$((1 - quick)) source scripts/setup.sh

step() { printf '\n==> %s\n' "$*" >&2; }
if [ $quick = 0 ]; then
  step "cargo fmt --check"
  cargo fmt --all -- --check
  cargo fmt --manifest-path chefs/Cargo.toml --all -- --check
fi
step "build (release, whole workspace)"
cargo build --release --workspace --all-targets --locked
if [ $quick = 0 ]; then
  step "clippy"
  cargo clippy --release --workspace --all-targets --locked -- -D warnings
fi
if [ $quick = 0 ]; then
  step "the Python original (netdumplings 0.5.1 from PyPI), for the compatibility tests"
  python/setup-original.sh || echo "warning: could not install the original; its compatibility tests will say SKIP" >&2
  # Before the Rust tests: it also makes the venv the kitchen-to-Python-eater test uses.
  step "Python eater package (pytest against our nd-hub)"
  python/run-tests.sh
fi
step "Rust tests (unit and end-to-end)"
cargo test --release --workspace --locked --no-fail-fast
step "sample chefs' own unit tests"
cargo test --release --manifest-path chefs/Cargo.toml --target-dir target/chefs --locked
if [ $quick = 0 ]; then
  # A separate workspace (built for wasm32-wasip2 too), so the clippy step above misses it.
  step "clippy (sample chefs)"
  cargo clippy --release --manifest-path chefs/Cargo.toml --target-dir target/chefs --all-targets --locked -- -D warnings
  step "chefs in Python, JavaScript and C, built from source and run in the kitchen"
  tests/lang-chefs.sh
fi
step "all tests passed"
