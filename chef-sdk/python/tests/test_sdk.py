"""Unit tests of the Python chef guest layer under plain CPython (no component needed).

    python3 -m unittest discover -s chef-sdk/python/tests -v

WIT records are faked with small classes named like componentize-py's (variants as
`IpHeader_V4(value)` etc.), which is all the layer relies on.
"""

import importlib.util
import json
import os
import struct
import sys
import unittest
from types import SimpleNamespace as NS

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
sys.path.insert(0, os.path.dirname(HERE))

import netdumplings_chef as nd  # noqa: E402
from netdumplings_chef.packet import Packet  # noqa: E402


class IpHeader_V4:  # noqa: N801 (componentize-py's naming)
    def __init__(self, value):
        self.value = value


class IpHeader_V6:  # noqa: N801
    def __init__(self, value):
        self.value = value


class TransportHeader_Udp:  # noqa: N801
    def __init__(self, value):
        self.value = value


class TransportHeader_Tcp:  # noqa: N801
    def __init__(self, value):
        self.value = value


class TransportHeader_Icmpv4:  # noqa: N801
    def __init__(self, value):
        self.value = value


def span(off, n):
    return NS(offset=off, len=n)


def packet(arena_parts, *, ts=1_000_000_000, eth=True, arp=None, ip=None, transport=None, payload=b"", padding=b"", link_type=1):
    """A fake WIT packet whose payload/padding live in an arena after some header bytes."""
    header = b"\0" * 14
    arena = header + payload + padding
    off = len(arena_parts)
    arena_parts.extend(arena)
    return NS(
        timestamp_ns=ts,
        captured_len=len(arena),
        original_len=len(arena),
        link_type=link_type,
        interface_index=0,
        frame=span(off, len(arena)),
        ethernet=NS(source=0x020000000001, destination=0xFFFFFFFFFFFF, ether_type=0x0800) if eth else None,
        linux_sll=None,
        vlan_outer=None,
        vlan_inner=None,
        arp=arp,
        ip=ip,
        transport=transport,
        payload=span(off + 14, len(payload)),
        padding=span(off + 14 + len(payload), len(padding)),
        stopped=None,
    )


def ipv4(src=0x7F000001, dst=0x7F000002, proto=17):
    return IpHeader_V4(NS(source=src, destination=dst, protocol=proto, ttl=64, tos=0, header_len=20,
                          total_len=0, identification=0, dont_fragment=True, more_fragments=False, fragment_offset=0))


def udp(sport, dport):
    return TransportHeader_Udp(NS(source_port=sport, destination_port=dport, length=0))


def dns_query(name, qr=0, qid=0x1234):
    msg = struct.pack(">HHHHHH", qid, (qr << 15) | 0x0100, 1, 0, 0, 0)
    for label in name.split(b"."):
        msg += bytes([len(label)]) + label
    return msg + b"\0\0\x01\0\x01"


def load_chef(path):
    spec = importlib.util.spec_from_file_location("chef_under_test_%d" % abs(hash(path)), path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return nd.find_chef_class(mod)()


class AddressTests(unittest.TestCase):
    def test_formats(self):
        self.assertEqual(nd.mac_str(0x020000000001), "02:00:00:00:00:01")
        self.assertEqual(nd.ipv4_str(0x7F000001), "127.0.0.1")
        self.assertEqual(nd.ipv6_str((0x20010DB800000000, 1)), "2001:db8::1")


class DnsTests(unittest.TestCase):
    def test_query_and_names(self):
        d = nd.DNS(dns_query(b"www.example.test"))
        self.assertEqual((d.id, d.qr, d.qdcount), (0x1234, 0, 1))
        self.assertEqual(d.qname, "www.example.test")
        self.assertEqual(d.qd[0].qname, b"www.example.test.")
        self.assertEqual((d.qd[0].qtype, d.qd[0].qclass), (1, 1))

    def test_compression_and_loops(self):
        looped = bytes([0, 1, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0, 0xC0, 12, 0, 1, 0, 1])
        self.assertEqual(nd.DNS(looped).qd, [])
        ok = bytes([0, 1, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0, 0xC0, 18, 0, 1, 0, 1, 1, ord("a"), 0])
        d = nd.DNS(ok)
        self.assertEqual((d.qname, d.is_response), ("a", True))

    def test_invalid_utf8_is_replaced(self):
        d = nd.DNS(dns_query(b"ab\xff.test"))
        self.assertEqual(d.qname, "ab\ufffd.test")

    def test_truncated_messages_never_raise(self):
        q = dns_query(b"www.example.test")
        for cut in range(12, len(q)):
            self.assertEqual(nd.DNS(q[:cut]).qd, [], cut)
        with self.assertRaises(nd.DNSParseError):
            nd.DNS(q[:11])

    def test_packet_dns_by_port_and_tcp_prefix(self):
        arena = bytearray()
        p53 = packet(arena, ip=ipv4(), transport=udp(40000, 53), payload=dns_query(b"a.test"))
        p9 = packet(arena, ip=ipv4(), transport=udp(40000, 9), payload=dns_query(b"a.test"))
        msg = dns_query(b"b.test")
        tcp = TransportHeader_Tcp(NS(source_port=53, destination_port=40000, sequence=0, acknowledgment=0,
                                     flags=set(), window=0, header_len=20, urgent_pointer=0))
        ptcp = packet(arena, ip=ipv4(proto=6), transport=tcp, payload=struct.pack(">H", len(msg)) + msg)
        pcut = packet(arena, ip=ipv4(proto=6), transport=tcp, payload=struct.pack(">H", len(msg) + 5) + msg)
        arena = bytes(arena)
        self.assertEqual(Packet(p53, arena).dns.qname, "a.test")
        self.assertIsNone(Packet(p9, arena).dns)
        self.assertEqual(Packet(p9, arena).parse_dns().qname, "a.test")
        self.assertEqual(Packet(ptcp, arena).dns.qname, "b.test")
        self.assertIsNone(Packet(pcut, arena).dns)


class LayerTests(unittest.TestCase):
    def test_sample_like_packets(self):
        arena = bytearray()
        pk = [
            packet(arena, ip=ipv4(), transport=udp(40000, 53), payload=dns_query(b"a.test")),
            packet(arena, arp=NS(hardware_type=1, protocol_type=0x800, operation=1, sender_hardware=1,
                                 sender_protocol=1, target_hardware=0, target_protocol=2)),
            packet(arena, ip=ipv4(proto=1), transport=TransportHeader_Icmpv4(NS(icmp_type=3, code=3, rest=0)),
                   payload=bytes([0x45]) + b"\0" * 8 + bytes([17]) + b"\0" * 10 + b"\0" * 8 + b"data"),
            packet(arena, ip=ipv4(), transport=udp(68, 67), payload=b"\0" * 236 + b"\x63\x82\x53\x63"),
            packet(arena, ip=ipv4(), transport=udp(40000, 123), payload=b"\x23" * 48, padding=b"\0\0"),
        ]
        arena = bytes(arena)
        got = [Packet(p, arena).layers() for p in pk]
        self.assertEqual(got[0], ["Ethernet", "IP", "UDP", "DNS"])
        self.assertEqual(got[1], ["Ethernet", "ARP"])
        self.assertEqual(got[2], ["Ethernet", "IP", "ICMP", "IP in ICMP", "UDP in ICMP", "Raw"])
        self.assertEqual(got[3], ["Ethernet", "IP", "UDP", "BOOTP", "DHCP options"])
        self.assertEqual(got[4], ["Ethernet", "IP", "UDP", "NTPHeader", "Padding"])


class RunnerTests(unittest.TestCase):
    def setUp(self):
        self.logged = []
        nd.LOG_SINK = lambda level, msg: self.logged.append((level, msg))

    def tearDown(self):
        nd.LOG_SINK = None

    def test_batches_errors_and_json(self):
        class EveryOtherChef(nd.DumplingChef):
            def packet_handler(self, packet):
                if packet.timestamp_ns == 3:
                    raise ValueError("boom")
                return {"t": packet.timestamp_ns} if packet.timestamp_ns % 2 else None

            def interval_handler(self, interval=None):
                return {"interval": interval, "now": self.now}

        arena = bytearray()
        pks = [packet(arena, ts=t) for t in range(1, 6)]
        r = nd.Runner(EveryOtherChef())
        self.assertEqual((r.wants_packets, r.wants_interval), (True, True))
        out = r.packets(pks, bytes(arena), lambda i, s: (i, json.loads(s)))
        self.assertEqual(out, [(0, {"t": 1}), (4, {"t": 5})])
        self.assertEqual(self.logged, [("error", "Error invoking packet handler for chef EveryOtherChef: ValueError: boom")])
        self.assertEqual(json.loads(r.interval(2_000_000_000, 5_000_000_000)[0]), {"interval": 5.0, "now": 2.0})

    def test_uncaught_errors_and_bad_json(self):
        class StrictChef(nd.DumplingChef):
            catch_errors = False

            def packet_handler(self, packet):
                return float("nan")

        arena = bytearray()
        pks = [packet(arena)]
        with self.assertRaises(ValueError):
            nd.Runner(StrictChef()).packets(pks, bytes(arena), lambda i, s: s)
        self.assertEqual(nd.Runner(StrictChef()).wants_interval, False)

    def test_find_chef_class(self):
        mod = NS(__name__="m", A=type("A", (nd.DumplingChef,), {}), B=type("B", (nd.DumplingChef,), {}))
        with self.assertRaises(ValueError):
            nd.find_chef_class(mod)
        mod.A.assignable_to_kitchen = False
        self.assertIs(nd.find_chef_class(mod), mod.B)
        with self.assertRaises(ValueError):
            nd.find_chef_class(NS(__name__="empty"))

    def test_interest_validation(self):
        nd.Interest(network=["arp"], transport=["udp"], ports=[53], link_types=[1])
        for bad in ({"network": ["ip"]}, {"transport": ["sctp"]}, {"ports": [70000]}):
            with self.assertRaises(ValueError):
                nd.Interest(**bad)


class BoundedDictTests(unittest.TestCase):
    def test_evicts_least_recently_touched_and_keeps_order(self):
        d = nd.BoundedDict(2)
        d["a"] = 1
        d["b"] = 2
        d.touch("a", lambda: 0)
        d["c"] = 3
        self.assertEqual(list(d.items()), [("a", 1), ("c", 3)])
        self.assertEqual(d.evicted, 1)
        self.assertEqual(json.dumps(d), '{"a": 1, "c": 3}')

    def test_refresh_counts_as_touching(self):
        # d.refresh(k) is touch() for a key already there (what a hot path calls after
        # d.get(k)); it survives a snapshot round trip and refuses an absent key.
        d = nd.BoundedDict(2)
        d["a"] = 1
        d["b"] = 2
        d.refresh("a")
        d["c"] = 3
        self.assertEqual(list(d.items()), [("a", 1), ("c", 3)])
        with self.assertRaises(KeyError):
            d.refresh("b")
        e = nd.BoundedDict.from_state(json.loads(json.dumps(d.state())))
        e.refresh("a")
        e["d"] = 4
        self.assertEqual(list(e.items()), [("a", 1), ("d", 4)])
        self.assertEqual(json.dumps(e), '{"a": 1, "d": 4}')
        self.assertEqual(e.state()["recency"], [0, 1])

    def test_full_dict_inserts_do_constant_work(self):
        # Counted, not timed: a key's __eq__/__hash__ calls per insert into a full dict
        # must not grow with its capacity (a scan for the oldest key makes them grow).
        calls = [0]

        class Key:
            def __init__(self, n):
                self.n = n

            def __hash__(self):
                calls[0] += 1
                return hash(self.n)

            def __eq__(self, other):
                calls[0] += 1
                return self.n == other.n

        def per_insert(capacity):
            d = nd.BoundedDict(capacity)
            for n in range(capacity):
                d[Key(n)] = n
            calls[0] = 0
            for n in range(capacity, capacity + 2000):
                d.touch(Key(n), lambda: 0)
            self.assertEqual(len(d), capacity)
            return calls[0] / 2000

        small, big = per_insert(100), per_insert(10000)
        self.assertLess(small, 12)
        self.assertLessEqual(big, small * 1.5 + 1)


class SampleChefTests(unittest.TestCase):
    def test_arp_notes(self):
        chef = load_chef(os.path.join(REPO, "chefs", "python", "arp_chef", "chef.py"))

        def arp(op, shw, sip, thw, tip):
            return NS(hardware_type=1, protocol_type=0x800, operation=op, sender_hardware=shw,
                      sender_protocol=sip, target_hardware=thw, target_protocol=tip)

        arena = bytearray()
        pks = [
            packet(arena, arp=arp(1, 0x020000000001, 0x7F000001, 0, 0x7F000002)),
            packet(arena, arp=arp(2, 0x020000000002, 0x7F000002, 0x020000000001, 0x7F000001)),
            packet(arena, arp=arp(2, 0x020000000003, 0x7F000002, 0x020000000001, 0x7F000001)),
            packet(arena, arp=arp(2, 0x020000000003, 0x7F000002, 0x020000000001, 0x7F000001)),
        ]
        out = nd.Runner(chef).packets(pks, bytes(arena), lambda i, s: json.loads(s))
        self.assertEqual([o["operation"] for o in out], ["request", "reply", "reply", "reply"])
        self.assertEqual([o["notes"] for o in out], [None, "source device is new", "source device has new IP address", None])
        self.assertEqual(out[1]["src_hw"], "02:00:00:00:00:02")

    def test_dns_lookup_skips_responses(self):
        chef = load_chef(os.path.join(REPO, "chefs", "python", "dns_lookup_chef", "chef.py"))
        arena = bytearray()
        pks = [
            packet(arena, ts=1, ip=ipv4(), transport=udp(40000, 53), payload=dns_query(b"a.test")),
            packet(arena, ts=2, ip=ipv4(), transport=udp(53, 40000), payload=dns_query(b"a.test", qr=1)),
            packet(arena, ts=3, ip=ipv4(), transport=udp(40000, 53), payload=dns_query(b"a.test")),
        ]
        r = nd.Runner(chef)
        out = r.packets(pks, bytes(arena), lambda i, s: (i, json.loads(s)))
        self.assertEqual([i for i, _ in out], [0, 2])
        summary = json.loads(r.interval(10, 5_000_000_000)[0])
        self.assertEqual(summary, {"lookups_seen": {"a.test": {"count": 2, "latest": 3e-9}}})

    def fill_dns_lookup_chef(self, names, t0=1_700_000_000_000_000_000):
        """The sample DNSLookupChef after one query for each of `names`, 7 ms apart."""
        chef = load_chef(os.path.join(REPO, "chefs", "python", "dns_lookup_chef", "chef.py"))
        for i, name in enumerate(names):
            ns = t0 + i * 7_000_000
            dns = NS(is_response=False, qd=[NS(name=name)])
            chef.packet_handler(NS(parse_dns=lambda dns=dns: dns, time_text=repr(ns / 1e9), timestamp_ns=ns))
        return chef

    def test_bounded_dict_newest_within(self):
        d = nd.BoundedDict(10)
        for k in range(6):
            d[k] = k
        d[1] = 1  # touched: now the newest
        self.assertEqual(d.newest_within(6, lambda k, v: 1), (list(d.items()), 0))
        self.assertEqual(d.newest_within(3, lambda k, v: 1), ([(1, 1), (4, 4), (5, 5)], 3))
        # The first entry that does not fit ends the list (a smaller older one is not taken).
        self.assertEqual(d.newest_within(3, lambda k, v: 2 if k == 5 else 1), ([(1, 1), (5, 5)], 4))
        self.assertEqual(d.newest_within(0, lambda k, v: 1), ([], 6))

    def test_dns_lookup_table_too_large_for_one_payload(self):
        # 1000 names of 253 control bytes (6 JSON bytes each: ~1.56 MB in all), then the first
        # ten looked up again: the payload lists the most recently looked-up names that fit
        # the Rust chef's budget, by the Rust chef's text of each entry, in first-seen order.
        names = ["%04d%s" % (i, "\x01" * 249) for i in range(1000)]
        chef = self.fill_dns_lookup_chef(names + names[:10])
        text = chef.interval_handler()
        self.assertLessEqual(len(text), nd.PAYLOAD_BUDGET + 30_000)
        out = json.loads(text)
        shown = list(out["lookups_seen"])
        # The Rust chef's cost of an entry: serde_json's text of it (compact, names as
        # UTF-8) and a comma; its float for a time in ns is seconds + fraction / 1e9.
        mod = NS(**type(chef).interval_handler.__globals__)  # the chef module's names
        costs = {}
        for i, name in enumerate(names + names[:10]):
            ns = 1_700_000_000_000_000_000 + i * 7_000_000
            t = float(ns // 10**9) + (ns % 10**9) / 1e9
            count = 2 if name in names[:10] else 1
            entry = json.dumps({name: {"count": count}}, ensure_ascii=False, separators=(",", ":"))
            costs[name] = len(entry.encode()) - 3 + len(',"latest":') + mod.serde_f64_len(t) + len("},")
        newest_first = names[:10][::-1] + names[10:][::-1]
        used, want = 0, set()
        for name in newest_first:
            used += costs[name]
            if used > nd.PAYLOAD_BUDGET:
                break
            want.add(name)
        self.assertEqual(shown, [n for n in names if n in want])
        self.assertEqual(out["lookups_unreported"], 1000 - len(shown))
        self.assertGreater(len(shown), 550)
        self.assertIn(names[0], shown)
        self.assertIn(names[-1], shown)
        self.assertNotIn(names[10], shown)
        self.assertEqual(out["lookups_seen"][names[0]]["count"], 2)
        self.assertEqual(list(out)[-1], "lookups_unreported")
        # A table that fits is the whole table, and no count.
        small = self.fill_dns_lookup_chef(names[:100])
        self.assertNotIn("lookups_unreported", json.loads(small.interval_handler()))
        self.assertEqual(len(json.loads(small.interval_handler())["lookups_seen"]), 100)

    def test_dns_lookup_payload_within_the_kitchen_limit_where_this_text_is_longer(self):
        # Non-ASCII names take 3x the bytes here (\u00e9 for a 2-byte é): 600 names of control
        # bytes, then 400 of 126 é; the Rust chef's choice fits its budget, this chef's text
        # of it would not fit the kitchen's limit: the oldest of it are left out too.
        names = ["%04d%s" % (i, "\x01" * 249) for i in range(600)]
        names += ["%04d%s" % (i, "\u00e9" * 124) for i in range(600, 1000)]
        chef = self.fill_dns_lookup_chef(names)
        table = chef.lookups_seen
        mod = NS(**type(chef).interval_handler.__globals__)  # the chef module's names
        rust_shown, rust_left = table.newest_within(nd.PAYLOAD_BUDGET, mod.rust_entry_cost)
        text = chef.interval_handler()
        self.assertLessEqual(len(text.encode()), nd.KITCHEN_MAX_DUMPLING_BYTES)
        out = json.loads(text)
        shown = list(out["lookups_seen"])
        self.assertLess(len(shown), len(rust_shown))
        self.assertEqual(out["lookups_unreported"], 1000 - len(shown))
        self.assertEqual(shown, names[1000 - len(shown):])

    def test_packet_count(self):
        chef = load_chef(os.path.join(REPO, "chefs", "python", "packet_count_chef", "chef.py"))
        arena = bytearray()
        pks = [packet(arena, ip=ipv4(), transport=udp(1, 2), payload=b"x"), packet(arena, eth=True)]
        r = nd.Runner(chef)
        self.assertEqual(r.packets(pks, bytes(arena), lambda i, s: s), [])
        self.assertEqual(json.loads(r.interval(0, 1)[0]), {"packet_counts": {"Ethernet": 2, "IP": 1, "UDP": 1, "Raw": 1}})


if __name__ == "__main__":
    unittest.main()
