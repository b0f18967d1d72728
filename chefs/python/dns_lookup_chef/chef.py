"""DNSLookupChef: the netdumplings sample chef, ported to the Python chef SDK.

Same payloads and rules as the Rust sample chef (chefs/dns-lookup-chef):
packet payload {"lookup": {"hostname", "when"}} for every DNS *query* with a question
(responses are skipped, so each lookup counts once; the original counted both);
interval payload {"lookups_seen": {hostname: {"count", "latest"}}}, sent on every poke,
even when empty, holding at most 1000 hostnames (least recently seen evicted).
Times are capture times (float seconds).
Hot reload: the table follows the chef to its new version (``snapshot`` / ``restore``),
with its bound and recency order (at most ~1.6 MB of JSON even for 1000 names of 255
escaped bytes, under the kitchen's default 4 MiB ``--chef-state-max-bytes``).
"""

from netdumplings_chef import BoundedDict, DumplingChef, Interest, dump_state, json_string, load_state

MAX_HOSTNAMES = 1000
STATE_VERSION = 1  # bump when the state's meaning changes: older states are then refused


class DNSLookupChef(DumplingChef):
    """One dumpling per DNS query; every poke, the host names looked up so far."""

    # DNS on UDP/TCP 53 and mDNS on 5353.
    interest = Interest(transport=["udp", "tcp"], ports=[53, 5353])
    # packet_handler returns the lookup's JSON text (the same bytes the encoder would make).
    packet_json_text = True

    def __init__(self):
        super().__init__()
        self.lookups_seen = BoundedDict(MAX_HOSTNAMES)

    def packet_handler(self, packet):
        dns = packet.parse_dns()  # the interest already picked the DNS ports
        if dns is None or dns.is_response or not dns.qd:
            return None
        hostname = dns.qd[0].name  # labels joined with ".", invalid UTF-8 replaced
        when = packet.time
        table = self.lookups_seen
        seen = table.get(hostname)
        if seen is None:
            seen = table.touch(hostname, dict)  # new: "count" first, then "latest"
            seen["count"] = 1
        else:
            table.refresh(hostname)  # touch() for a name already there, without its frame
            seen["count"] += 1
        seen["latest"] = when
        # {"lookup": {"hostname": hostname, "when": when}} written as its JSON text: the
        # same bytes the encoder makes (json_string; a float's repr), at half its cost.
        return f'{{"lookup": {{"hostname": {json_string(hostname)}, "when": {when!r}}}}}'

    def interval_handler(self, interval=None):
        return {"lookups_seen": self.lookups_seen}

    def snapshot(self):
        return dump_state(self, STATE_VERSION, {"lookups_seen": self.lookups_seen.state()})

    def restore(self, data):
        seen = BoundedDict.from_state(load_state(self, STATE_VERSION, data)["lookups_seen"], MAX_HOSTNAMES)
        for name, v in seen.items():
            if not (isinstance(name, str) and isinstance(v, dict) and isinstance(v.get("count"), int)):
                raise ValueError("not a lookups_seen entry: %r" % ([name, v],))
        self.lookups_seen = seen
