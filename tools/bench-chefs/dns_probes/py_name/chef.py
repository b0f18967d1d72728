"""DNSLookupChef probe (name): also reads the first question's name and the packet time, then returns None.

For tools/bench-languages.sh PROBES=1: the difference between consecutive probes (empty,
parse, name, touch, the full chef) is what each step of the Python DNSLookupChef costs.
"""

from netdumplings_chef import DumplingChef, Interest


class DnsProbe(DumplingChef):
    interest = Interest(transport=["udp", "tcp"], ports=[53, 5353])

    def packet_handler(self, packet):
        dns = packet.parse_dns()
        if dns is None or dns.is_response or not dns.qd:
            return None
        hostname = dns.qd[0].name
        when = packet.time_text
        return None
