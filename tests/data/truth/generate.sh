#!/usr/bin/env bash
# Regenerates the ground-truth files in this folder with tshark (Wireshark's dissectors),
# an implementation independent of ours. The end-to-end tests compare the sample chefs'
# dumplings with these files. Run from anywhere:
#   tests/data/truth/generate.sh [path/to/shared/pcaps]
# Needs: tshark (Debian package `tshark`). Output is committed, so CI does not need tshark.
#
# TCP and IP reassembly are switched off on purpose: chefs see one packet at a time, so a TLS
# ClientHello or HTTP request split across segments is (by design) not seen by them either.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
pcaps=${1:-$here/../../../../shared/pcaps}
orig=$here/../original
command -v tshark >/dev/null || { echo "tshark not found: apt-get install -y tshark" >&2; exit 1; }
T() { tshark -n -o tcp.desegment_tcp_streams:FALSE -o tcp.analyze_sequence_numbers:FALSE -o ip.defragment:FALSE -o ipv6.defragment:FALSE "$@" 2>/dev/null; }

# capture name -> path
declare -A files
for f in arkime__dns-wiresharkrepo.pcap zeek__var-services-std-ports.pcap ndpi__anyconnect-vpn.pcap \
         arkime__cloudshark-arp.pcap ndpi__dns-tunnel-iodine.pcap ndpi__chrome.pcap \
         pcapplusplus__ExamplesTest__pcap_examples__tls.pcap arkime__http-simple-get.pcap \
         zeek__http__methods.pcap arkime__wireshark-dhcp.pcap tcpdump__dhcp-rfc4388.pcap \
         arkime__twovlan.pcap arkime__v6.pcap ndpi__icmp-tunnel.pcap; do
  files[$f]=$pcaps/$f
done
files[loopback_dns_arp_http.pcap]=$orig/loopback_dns_arp_http.pcap

for name in "${!files[@]}"; do
  f=${files[$name]}
  base=${name%.pcap}
  # Every frame: number, epoch time, and the dissector chain (eth:ethertype:ip:udp:dns).
  T -r "$f" -T fields -E separator=/t -e frame.number -e frame.time_epoch -e frame.protocols > "$here/$base.frames.tsv"
  # DNS and mDNS messages with at least one question: frame, response flag, id, first name.
  T -r "$f" -Y '(dns or mdns) and dns.count.queries > 0' -T fields -E separator=/t -E occurrence=f \
    -e frame.number -e frame.time_epoch -e dns.flags.response -e dns.id -e dns.qry.name > "$here/$base.dns.tsv"
  # ARP over Ethernet/IPv4.
  T -r "$f" -Y 'arp' -T fields -E separator=/t \
    -e frame.number -e frame.time_epoch -e arp.opcode -e arp.src.hw_mac -e arp.src.proto_ipv4 \
    -e arp.dst.hw_mac -e arp.dst.proto_ipv4 > "$here/$base.arp.tsv"
  # TLS ClientHello server names (one segment only).
  T -r "$f" -Y 'tls.handshake.type == 1' -T fields -E separator=/t -E occurrence=f \
    -e frame.number -e tls.handshake.extensions_server_name > "$here/$base.sni.tsv"
  # HTTP requests over TCP (one segment only; SSDP's HTTP-over-UDP is not HTTP traffic).
  T -r "$f" -Y 'http.request and tcp' -T fields -E separator=/t -E occurrence=f \
    -e frame.number -e http.request.method -e http.host -e http.request.uri -e http.user_agent > "$here/$base.http.tsv"
  # DHCP (BOOTP) messages.
  T -r "$f" -Y 'dhcp' -T fields -E separator=/t -E occurrence=f \
    -e frame.number -e dhcp.option.dhcp -e dhcp.hw.mac_addr -e dhcp.ip.your -e dhcp.option.requested_ip_address \
    -e dhcp.option.hostname > "$here/$base.dhcp.tsv"
done
# Drop empty files: a missing file means "none in this capture".
find "$here" -name '*.tsv' -empty -delete
tshark --version | head -1 > "$here/TSHARK_VERSION"
echo "wrote $(ls "$here"/*.tsv | wc -l) files"
