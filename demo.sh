#!/usr/bin/env bash
# The main job on an embedded default, with no root and no running services:
# replays a bundled capture through the sample chefs into a real hub and shows the
# dumplings a real eater receives.
#   ./demo.sh                      replay captures/ndpi__anyconnect-vpn.pcap
#   ./demo.sh FILE.pcap [ARGS...]  replay your own capture (extra ARGS go to nd-sniff)
# Installs what it lacks first (see scripts/setup.sh). Everything listens on 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/setup.sh

capture=${1:-captures/ndpi__anyconnect-vpn.pcap}
[ $# -gt 0 ] && shift
[ -r "$capture" ] || die "cannot read capture file: $capture"

say "building nd-hub, nd-sniff and the eaters (release; the first build takes a while: wasmtime)"
cargo build --release --locked -p hub -p kitchen -p eaters --bins

free_port() { # the first free port from $1 upward, on 127.0.0.1
  python3 - "$1" <<'PY'
import socket, sys
p = int(sys.argv[1])
while True:
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p)); s.close(); print(p); break
    except OSError:
        p += 1
PY
}
in_port=$(free_port 11347)
out_port=$(free_port $((in_port + 1)))

pids=()
cleanup() { for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

say "starting nd-hub on 127.0.0.1 (kitchens: $in_port, eaters: $out_port)"
target/release/nd-hub -a 127.0.0.1 -i "$in_port" -o "$out_port" -f 5 2> target/demo-hub.log &
pids+=($!)
for _ in $(seq 100); do
  (exec 3<>/dev/tcp/127.0.0.1/$out_port) 2>/dev/null && break
  sleep 0.1
done

say "starting nd-print (an eater) on ws://127.0.0.1:$out_port"
target/release/nd-print -h "127.0.0.1:$out_port" 2>/dev/null &
pids+=($!)
sleep 0.5

say "replaying $capture through the sample chefs (nd-sniff -r)"
target/release/nd-sniff -n demo_kitchen -r "$capture" -h "127.0.0.1:$in_port" -p 10 "$@"
sleep 1
say "done: every dumpling above went kitchen -> hub -> eater over WebSockets."
say "try: target/release/nd-sniff -r $capture --stdout --no-hub | jq -c .payload | head"
