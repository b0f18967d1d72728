"""DNSLookupChef: the original netdumplings sample chef, ported to the Python chef SDK.

Packet payload: {"lookup": {"hostname", "when"}} for every DNS message (query or response)
with at least one question; interval payload: {"lookups_seen": {hostname: {"count",
"latest"}}}, sent on every poke, even when empty. Times are capture times (float seconds).
"""

from netdumplings_chef import DumplingChef, Interest


class DNSLookupChef(DumplingChef):
    """Reports DNS lookups (first question name) and a running count per hostname."""

    # DNS on UDP/TCP 53 and mDNS on UDP 5353, as scapy decoded it for the original.
    interest = Interest(transport=["udp", "tcp"], ports=[53, 5353])

    def __init__(self):
        super().__init__()
        self.lookups_seen = {}

    def packet_handler(self, packet):
        dns = packet.dns
        if dns is None or not dns.qd:
            return None
        hostname = dns.qd[0].name  # UTF-8, one trailing dot removed
        when = packet.time
        seen = self.lookups_seen.setdefault(hostname, {"count": 0, "latest": when})
        seen["count"] += 1
        seen["latest"] = when
        return {"lookup": {"hostname": hostname, "when": when}}

    def interval_handler(self, interval=None):
        return {"lookups_seen": self.lookups_seen}
