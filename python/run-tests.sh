#!/usr/bin/env bash
# Run the Python eater package's tests against our nd-hub.
# Creates a venv under target/, installs the package (pip install ./python/netdumplings-eater)
# with websockets and pytest, and runs pytest; each test starts target/release/nd-hub on
# free 127.0.0.1 ports. Needs `cargo build --release -p hub` first.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="$ROOT/target/py-eater-venv"
PY="${PYTHON:-python3}"
if [ ! -x "$ROOT/target/release/nd-hub" ]; then
    echo "target/release/nd-hub missing: run cargo build --release -p hub" >&2
    exit 1
fi
# A venv records its own path in its scripts: one made before the checkout (or its target/)
# moved no longer runs, so it is made again.
if [ -d "$VENV" ] && ! "$VENV/bin/pip" --version >/dev/null 2>&1; then
    echo "$VENV was made at another path; making it again"
    rm -rf "$VENV"
fi
if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
"$VENV/bin/pip" install --quiet --upgrade "$ROOT/python/netdumplings-eater[test]"
cd "$ROOT/python/netdumplings-eater"
ND_HUB_BIN="$ROOT/target/release/nd-hub" exec "$VENV/bin/python" -m pytest -q -p no:cacheprovider tests "$@"
