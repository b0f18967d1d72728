#!/usr/bin/env bash
# Builds the hostile chefs (tests/hostile-chefs/, a separate workspace) for wasm32-wasip2.
# The components land in target/hostile-chefs/wasm32-wasip2/release/<crate_name>.wasm.
#
# Canonical command (what this script runs, from the repository root):
#   cargo build --release --manifest-path tests/hostile-chefs/Cargo.toml \
#     --target wasm32-wasip2 --target-dir target/hostile-chefs
#
# Safe to call from anywhere, and from inside another cargo (tests/tests/hostile_chefs.rs
# runs it once per test process; a tests/build.rs could too): it drops the variables an
# outer cargo exports that would break a wasm build or fight over the outer build's lock.
# Cargo's own fingerprints make a second run a no-op, so "stale" is cargo's business.
# Extra arguments are passed to cargo (e.g. --locked, --offline, -q).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

for v in CARGO_TARGET_DIR CARGO_BUILD_TARGET CARGO_BUILD_TARGET_DIR RUSTFLAGS \
         CARGO_ENCODED_RUSTFLAGS CARGO_BUILD_RUSTFLAGS RUSTDOCFLAGS CARGO_ENCODED_RUSTDOCFLAGS \
         CARGO_MAKEFLAGS MAKEFLAGS MFLAGS RUSTC_WORKSPACE_WRAPPER RUSTC_WRAPPER \
         CARGO_PRIMARY_PACKAGE TARGET HOST OUT_DIR PROFILE OPT_LEVEL DEBUG NUM_JOBS \
         RUSTC_LINKER CARGO_INCREMENTAL CARGO_MANIFEST_DIR CARGO_MANIFEST_PATH \
         CARGO_CRATE_NAME CARGO_BIN_NAME CARGO_TARGET_TMPDIR; do
  unset "$v"
done
while IFS='=' read -r name _; do
  case "$name" in
    CARGO_CFG_*|CARGO_FEATURE_*|CARGO_PKG_*|CARGO_BIN_EXE_*) unset "$name" ;;
  esac
done < <(env)

if ! rustc --print sysroot >/dev/null 2>&1 \
   || [ ! -d "$(rustc --print sysroot)/lib/rustlib/wasm32-wasip2" ]; then
  echo "build.sh: the Rust target wasm32-wasip2 is not installed; run: rustup target add wasm32-wasip2" >&2
  exit 1
fi

cd "$root"
exec "${CARGO:-cargo}" build --release \
  --manifest-path tests/hostile-chefs/Cargo.toml \
  --target wasm32-wasip2 --target-dir target/hostile-chefs "$@"
