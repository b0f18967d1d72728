"""DNSLookupChef probe (touch): also updates the bounded per-name table (everything but making the dumpling), then returns None.

For tools/bench-languages.sh PROBES=1: the difference between consecutive probes (empty,
parse, name, touch, the full chef) is what each step of the Python DNSLookupChef costs.
"""

from netdumplings_chef import BoundedDict, DumplingChef, Interest, json_string


class DnsProbe(DumplingChef):
    interest = Interest(transport=["udp", "tcp"], ports=[53, 5353])

    def __init__(self):
        super().__init__()
        self.lookups_seen = BoundedDict(1000)

    def packet_handler(self, packet):
        # The chef's own table update (chefs/python/dns_lookup_chef), without the dumpling.
        dns = packet.parse_dns()
        if dns is None or dns.is_response or not dns.qd:
            return None
        hostname = dns.qd[0].name
        when = packet.time_text
        table = self.lookups_seen
        seen = table.get(hostname)
        if seen is None:
            entry = [0, when, json_string(hostname)]
            seen = table.touch(hostname, lambda: entry)
        else:
            table.refresh(hostname)
        seen[0] += 1
        seen[1] = when
        return None
