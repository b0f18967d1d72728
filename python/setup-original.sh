#!/usr/bin/env bash
# Install the Python original (netdumplings 0.5.1) into target/ndorig for the compatibility
# tests and the benchmark, following shared/docs/netdumplings-original.md §2: Python 3.11,
# websockets 10.4 instead of the broken 8.1 pin, and a .pth shim importing
# websockets.client. Idempotent; exits 0 with a message when it cannot install.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="$ROOT/target/ndorig"
PY="${PYTHON:-python3}"
if [ -x "$VENV/bin/nd-hub" ] && [ -x "$VENV/bin/nd-print" ]; then
    # Its scripts name the venv's own path: one made before the checkout (or its target/)
    # moved no longer runs, so it is installed again.
    if "$VENV/bin/nd-print" --help >/dev/null 2>&1; then
        echo "original netdumplings already installed in $VENV"
        exit 0
    fi
    echo "$VENV was made at another path; installing it again"
    rm -rf "$VENV"
fi
# Work from a private dir: stray .py files in the cwd could shadow the stdlib.
mkdir -p "$ROOT/target" && cd "$ROOT/target" || exit 0
if ! "$PY" -m venv "$VENV"; then
    echo "SKIP: cannot create a venv with $PY"; exit 0
fi
if ! "$VENV/bin/pip" install --quiet netdumplings==0.5.1 \
   || ! "$VENV/bin/pip" install --quiet websockets==10.4; then
    echo "SKIP: cannot install netdumplings 0.5.1 from PyPI"; rm -rf "$VENV"; exit 0
fi
SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "import websockets.client" > "$SITE/zz_netdumplings_ws_compat.pth"
echo "original netdumplings installed in $VENV"
