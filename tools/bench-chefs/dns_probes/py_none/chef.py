"""DNSLookupChef probe (none): the DNS interest, but the handler returns None at once.

For tools/bench-languages.sh PROBES=1: with the DNS interest a chef is handed only the DNS
packets of each batch, so its per-call cost (lifting the batch, making the packet list) is
shared by fewer packets than the EmptyChef's; this row is that cost per DNS packet, the
base the parse/name/touch probes add to.
"""

from netdumplings_chef import DumplingChef, Interest


class DnsProbe(DumplingChef):
    interest = Interest(transport=["udp", "tcp"], ports=[53, 5353])

    def packet_handler(self, packet):
        return None
