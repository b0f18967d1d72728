#!/usr/bin/env bash
# Regenerates the ground truth for stream-reading chefs: what tshark (Wireshark's
# dissectors) sees WITH TCP reassembly on (desegmentation and out-of-order reassembly),
# over the corpus and over the synthesized captures (tests/data/streams/synth.py).
# The stream e2e tests check that the TLS and HTTP chefs see at least all of it.
#   tests/data/truth/generate-streams.sh [path/to/shared/pcaps]
# Needs: tshark (Debian package `tshark`), python3. Output is committed; CI needs neither tshark
# nor this script (the tests regenerate the synthesized captures with synth.py, which is
# deterministic).
#
# Output, one file per capture with at least one row (a missing file means "none"):
#   <name>.sni-reassembled.tsv   client port, server name   (TLS over TCP)
#   <name>.http-reassembled.tsv  client port, method, host  (HTTP requests over TCP)
# Synthesized captures are named synth__<file>.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
pcaps=${1:-$here/../../../../shared/pcaps}
command -v tshark >/dev/null || { echo "tshark not found: apt-get install -y tshark" >&2; exit 1; }
T() { tshark -n -o tcp.desegment_tcp_streams:TRUE -o tcp.reassemble_out_of_order:TRUE \
        -o tcp.analyze_sequence_numbers:TRUE "$@" 2>/dev/null || true; }  # damaged captures: keep what parsed
synth=$(mktemp -d)
trap 'rm -rf "$synth"' EXIT
python3 "$here/../streams/synth.py" "$synth"
rm -f "$here"/*.sni-reassembled.tsv "$here"/*.http-reassembled.tsv
truth() { # path base
  T -r "$1" -Y 'tls.handshake.extensions_server_name and tcp' -T fields -E separator=/t \
    -E occurrence=f -e tcp.srcport -e tls.handshake.extensions_server_name > "$here/$2.sni-reassembled.tsv"
  T -r "$1" -Y 'http.request and tcp' -T fields -E separator=/t -E occurrence=f \
    -e tcp.srcport -e http.request.method -e http.host > "$here/$2.http-reassembled.tsv"
}
for f in "$pcaps"/*.pcap "$pcaps"/*.pcapng; do
  name=$(basename "$f"); truth "$f" "${name%.*}"
done
for f in "$synth"/*.pcap; do
  name=$(basename "$f"); truth "$f" "synth__${name%.pcap}"
done
find "$here" -name '*-reassembled.tsv' -empty -delete
echo "wrote $(ls "$here"/*-reassembled.tsv | wc -l) files"
