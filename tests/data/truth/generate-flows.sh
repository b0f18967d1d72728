#!/usr/bin/env bash
# Regenerates the flow ground truth (`*.conv.tsv`) with tshark's own conversation tracking
# (`tcp.stream` / `udp.stream`, the index behind `tshark -z conv,tcp` / `conv,udp`, which
# prints bytes rounded to kB; the per-frame fields give them exactly). Run from anywhere:
#   tests/data/truth/generate-flows.sh [path/to/shared/pcaps]
# Needs tshark. Output is committed, so CI does not need tshark.
#
# One row per tshark conversation: protocol, endpoint A (source of its first frame),
# endpoint B, frames A->B, bytes A->B, frames B->A, bytes B->A (bytes = frame.len, the
# length on the wire). ICMP errors quoting a TCP/UDP header are left out (they are ICMP
# flows to the kitchen); IP reassembly is off, as in the kitchen (non-first fragments carry
# no ports).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
pcaps=${1:-$here/../../../../shared/pcaps}
command -v tshark >/dev/null || { echo "tshark not found: apt-get install -y tshark" >&2; exit 1; }
T() { tshark -n -o tcp.desegment_tcp_streams:FALSE -o tcp.analyze_sequence_numbers:FALSE -o ip.defragment:FALSE -o ipv6.defragment:FALSE "$@" 2>/dev/null; }

for name in arkime__dns-wiresharkrepo.pcap ndpi__chrome.pcap ndpi__anyconnect-vpn.pcap \
            zeek__var-services-std-ports.pcap arkime__http-simple-get.pcap zeek__http__methods.pcap \
            arkime__v6.pcap pcapplusplus__ExamplesTest__pcap_examples__tls.pcap; do
  f=$pcaps/$name
  base=${name%.pcap}
  for proto in tcp udp; do
    T -r "$f" -Y "$proto and not icmp and not icmpv6" -T fields -E separator=/t \
      -e "$proto.stream" -e ip.src -e ipv6.src -e "$proto.srcport" -e ip.dst -e ipv6.dst -e "$proto.dstport" -e frame.len |
    awk -F'\t' -v proto="$proto" '
      function ep(ip4, ip6, port) { return (ip4 != "" ? ip4 : "[" ip6 "]") ":" port }
      {
        s = $1; src = ep($2, $3, $4); dst = ep($5, $6, $7)
        if (!(s in a)) { a[s] = src; b[s] = dst; order[n++] = s }
        if (src == a[s]) { fab[s]++; bab[s] += $8 } else { fba[s]++; bba[s] += $8 }
      }
      END { for (i = 0; i < n; i++) { s = order[i]
        printf "%s\t%s\t%s\t%d\t%d\t%d\t%d\n", proto, a[s], b[s], fab[s], bab[s], fba[s], bba[s] } }'
  done > "$here/$base.conv.tsv"
done
find "$here" -name '*.conv.tsv' -empty -delete
echo "wrote $(ls "$here"/*.conv.tsv | wc -l) conversation files"
