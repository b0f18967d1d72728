"""DNSLookupChef: the netdumplings sample chef, ported to the Python chef SDK.

Same payloads and rules as the Rust sample chef (chefs/dns-lookup-chef):
packet payload {"lookup": {"hostname", "when"}} for every DNS *query* with a question
(responses are skipped, so each lookup counts once; the original counted both);
interval payload {"lookups_seen": {hostname: {"count", "latest"}}}, sent on every poke,
even when empty, holding at most 1000 hostnames (least recently seen evicted).
Times are capture times (float seconds).
Both payloads are written as JSON text (``packet_json_text``, ``interval_json_text``): the
same bytes the SDK's encoder writes for those dicts (tested), at a fraction of the cost
inside wasm. The table keeps, per hostname, ``[count, latest time as text, hostname as
JSON text]``, so a lookup of a known name formats nothing and a poke formats no float.
Hot reload: the table follows the chef to its new version (``snapshot`` / ``restore``),
with its bound and recency order, in the same form as before (``{"count", "latest"}``
per name; at most ~1.6 MB of JSON even for 1000 names of 255 escaped bytes, under the
kitchen's default 4 MiB ``--chef-state-max-bytes``).
"""

import math

from netdumplings_chef import BoundedDict, DumplingChef, Interest, dump_state, json_string, load_state

MAX_HOSTNAMES = 1000
STATE_VERSION = 1  # bump when the state's meaning changes: older states are then refused


class DNSLookupChef(DumplingChef):
    """One dumpling per DNS query; every poke, the host names looked up so far."""

    # DNS on UDP/TCP 53 and mDNS on 5353.
    interest = Interest(transport=["udp", "tcp"], ports=[53, 5353])
    # The handlers return their payloads' JSON text (the same bytes the encoder would make).
    packet_json_text = True
    interval_json_text = True

    def __init__(self):
        super().__init__()
        # hostname -> [count, latest time text (repr of the float), hostname JSON text]
        self.lookups_seen = BoundedDict(MAX_HOSTNAMES)

    def packet_handler(self, packet):
        dns = packet.parse_dns()  # the interest already picked the DNS ports
        if dns is None or dns.is_response:
            return None
        qd = dns.qd
        if not qd:
            return None
        hostname = qd[0].name  # labels joined with ".", invalid UTF-8 replaced
        when = packet.time_text  # repr(packet.time), written by the kitchen
        table = self.lookups_seen
        seen = table.get(hostname)
        if seen is None:
            entry = [0, when, json_string(hostname)]
            seen = table.touch(hostname, lambda: entry)
        else:
            table.refresh(hostname)  # touch() for a name already there, without its frame
        seen[0] += 1
        seen[1] = when
        # {"lookup": {"hostname": hostname, "when": packet.time}} as the encoder writes it.
        return f'{{"lookup": {{"hostname": {seen[2]}, "when": {when}}}}}'

    def interval_handler(self, interval=None):
        # {"lookups_seen": {hostname: {"count": n, "latest": t}}} as the encoder writes it.
        return '{"lookups_seen": {%s}}' % ", ".join(
            [f'{name}: {{"count": {count}, "latest": {latest}}}' for count, latest, name in self.lookups_seen.values()]
        )

    def snapshot(self):
        state = self.lookups_seen.state()
        state["entries"] = [[k, {"count": v[0], "latest": float(v[1])}] for k, v in state["entries"]]
        return dump_state(self, STATE_VERSION, {"lookups_seen": state})

    def restore(self, data):
        seen = BoundedDict.from_state(load_state(self, STATE_VERSION, data)["lookups_seen"], MAX_HOSTNAMES)
        for name, v in list(seen.items()):
            if not (
                isinstance(name, str)
                and isinstance(v, dict)
                and isinstance(v.get("count"), int)
                and isinstance(v.get("latest"), (int, float))
                and not isinstance(v["latest"], bool)
                and math.isfinite(v["latest"])
            ):
                raise ValueError("not a lookups_seen entry: %r" % ([name, v],))
            latest = v["latest"]
            # Replaced in place: the key keeps its order and its recency.
            dict.__setitem__(seen, name, [v["count"], repr(float(latest)), json_string(name)])
        self.lookups_seen = seen
