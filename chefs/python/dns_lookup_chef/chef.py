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
JSON text, length of serde_json's text of it (taken when a poke needs it), latest time in
ns]``, so a lookup of a known name formats nothing and a poke formats no float.
Payload bound: the interval payload stays under the kitchen's limit on one dumpling
(1,044,480 bytes; a payload over it is refused, at every poke). As in the Rust chef,
names of control bytes escape to 6 JSON bytes each (1000 names of 253: ~1.56 MB); when
the table's JSON, counted as the Rust chef writes it, is over ``PAYLOAD_BUDGET`` (900 KiB),
only the most recently looked-up names that fit are listed (still in first-seen order)
and ``"lookups_unreported": n`` follows the table with how many were left out: the same
names and count as the Rust chef (each entry's cost is the length of serde_json's compact
text of it, with the Rust chef's float for its time, not the length of this chef's spaced,
ASCII-escaped text). This chef's text is longer (separators; non-ASCII as "\\u" escapes, up
to 3x): if the listed entries would still make a payload over the kitchen's limit, the
least recently looked-up of them are left out too (then the two chefs differ).
Hot reload: the table follows the chef to its new version (``snapshot`` / ``restore``),
with its bound and recency order, in the same form as before (``{"count", "latest"}``
per name; at most ~1.6 MB of JSON even for 1000 names of 255 escaped bytes, under the
kitchen's default 4 MiB ``--chef-state-max-bytes``).
"""

import math

from netdumplings_chef import (
    KITCHEN_MAX_DUMPLING_BYTES,
    PAYLOAD_BUDGET,
    BoundedDict,
    DumplingChef,
    Interest,
    dump_state,
    json_string,
    load_state,
)

MAX_HOSTNAMES = 1000
STATE_VERSION = 1  # bump when the state's meaning changes: older states are then refused
# Per byte of a name's UTF-8: what serde_json's escape adds to it (\" \\ \b \f \n \r \t: 1;
# other controls, \u00XX: 5).
_ESCAPE_EXTRA = bytes(
    1 if b in (0x22, 0x5C, 0x08, 0x0C, 0x0A, 0x0D, 0x09) else 5 if b < 0x20 else 0 for b in range(256)
)


def serde_string_len(s):
    """Length of serde_json's text of the string ``s`` (quotes included; UTF-8 bytes)."""
    b = s.encode("utf-8", "surrogatepass")
    return len(b) + 2 + sum(b.translate(_ESCAPE_EXTRA))


def serde_f64_len(x):
    """Length of serde_json's text of the float ``x`` (zmij: the shortest digits that read
    back, plain from 1e-5 to below 1e16 with at least one digit after the point, else
    d.ddde+N / d.ddde-N)."""
    text = repr(float(x))
    neg = text.startswith("-")
    mant, _, e = text.lstrip("-").partition("e")
    ip, _, fp = mant.partition(".")
    digits = (ip + fp).lstrip("0").rstrip("0")
    if not digits:
        return 3 + neg  # 0.0
    if ip.strip("0"):
        dexp = len(ip.lstrip("0")) - 1
    else:
        dexp = -(len(fp) - len(fp.lstrip("0"))) - 1
    dexp += int(e) if e else 0
    n = len(digits)
    if -5 <= dexp <= 15:
        if n - 1 <= dexp:
            size = dexp + 3  # 1234e7 -> 12340000000.0
        elif dexp >= 0:
            size = n + 1  # 12.34
        else:
            size = 1 - dexp + n  # 0.001234
    else:
        size = n + (n > 1) + 2 + len(str(abs(dexp)))  # 1.234e+33
    return size + neg


def rust_time(ns):
    """The Rust chef's float for a capture time (``Timestamp::as_secs_f64``: whole seconds and
    the fraction converted apart, then added), not always ``ns / 1e9``."""
    return float(ns // 1_000_000_000) + (ns % 1_000_000_000) / 1e9


def rust_entry_cost(hostname, entry):
    """An entry's share of the Rust chef's payload: ``"name":{"count":N,"latest":T}`` and a
    comma (``NameTally``'s cost in ``BoundedMap::newest_within``). The name's length is
    kept in the entry from the first time (not taken per lookup: most pokes never need it)."""
    count, latest, _, name_len, ns = entry
    if name_len is None:
        name_len = entry[3] = serde_string_len(hostname)
    t = rust_time(ns) if ns is not None else float(latest)
    return name_len + len(str(count)) + serde_f64_len(t) + 22


class DNSLookupChef(DumplingChef):
    """One dumpling per DNS query; every poke, the host names looked up so far."""

    # DNS on UDP/TCP 53 and mDNS on 5353.
    interest = Interest(transport=["udp", "tcp"], ports=[53, 5353])
    # The handlers return their payloads' JSON text (the same bytes the encoder would make).
    packet_json_text = True
    interval_json_text = True

    def __init__(self):
        super().__init__()
        # hostname -> [count, latest time text (repr of the float), hostname JSON text,
        #              length of serde_json's text of hostname (None: not taken yet),
        #              latest time in ns]
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
            entry = [0, when, json_string(hostname), None, 0]
            seen = table.touch(hostname, lambda: entry)
        else:
            table.refresh(hostname)  # touch() for a name already there, without its frame
        seen[0] += 1
        seen[1] = when
        seen[4] = packet.timestamp_ns
        # {"lookup": {"hostname": hostname, "when": packet.time}} as the encoder writes it.
        return f'{{"lookup": {{"hostname": {seen[2]}, "when": {when}}}}}'

    def interval_handler(self, interval=None):
        # {"lookups_seen": {hostname: {"count": n, "latest": t}}} as the encoder writes it.
        text = '{"lookups_seen": {%s}}' % ", ".join(
            [f'{name}: {{"count": {count}, "latest": {latest}}}' for count, latest, name, _, _ in self.lookups_seen.values()]
        )
        # This text (ASCII: its length is its size) is the Rust chef's for the same table
        # but for its separators (4 bytes more an entry), names (no shorter) and times (the
        # float may be another, and no float text is 24 bytes longer than another): so
        # within the budget with 24 bytes an entry to spare here is within it there. The
        # whole table then, as always but for names of escaped control bytes.
        if len(text) + 24 * len(self.lookups_seen) <= PAYLOAD_BUDGET:
            return text
        return self.bounded_payload()

    def bounded_payload(self):
        """The payload of a table too large for one: the Rust chef's choice of names
        (``newest_within``), less the oldest of them if this text would be over the
        kitchen's limit all the same."""
        table = self.lookups_seen
        shown, left_out = table.newest_within(PAYLOAD_BUDGET, rust_entry_cost)
        parts = {
            hostname: f'{name}: {{"count": {count}, "latest": {latest}}}'
            for hostname, (count, latest, name, _, _) in shown
        }
        # ", " and room for the rest of the payload.
        limit = KITCHEN_MAX_DUMPLING_BYTES - 128
        if sum(len(p) + 2 for p in parts.values()) > limit:
            keep, used = set(), 0
            for hostname in table.newest_first():
                part = parts.get(hostname)
                if part is None:
                    continue
                used += len(part) + 2
                if used > limit:
                    break
                keep.add(hostname)
            parts = {k: p for k, p in parts.items() if k in keep}
            left_out = len(table) - len(parts)
        table_text = '{"lookups_seen": {%s}' % ", ".join(parts.values())
        if left_out:
            return '%s, "lookups_unreported": %d}' % (table_text, left_out)
        return table_text + "}"

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
            # The time in ns is not in the state: the Rust chef's cost of the entry is then
            # reckoned from the float (the same but for the last digits).
            dict.__setitem__(
                seen, name, [v["count"], repr(float(latest)), json_string(name), None, None]
            )
        self.lookups_seen = seen
