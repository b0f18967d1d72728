"""The packed batch form under plain CPython: a packer written from docs/packed-batch.md,
and every attribute of PackedPacket compared with the records-form Packet on the same
packets (the kitchen's encoder is checked against the same layout by its round-trip test,
and end to end by tests/lang-chefs.sh, where packed Python/JS chefs must match Rust chefs).

    python3 -m unittest discover -s chef-sdk/python/tests -v
"""

import json
import os
import struct
import sys
import unittest
from types import SimpleNamespace as NS

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

import netdumplings_chef as nd  # noqa: E402
from netdumplings_chef.packed import PackedBatchError, packed_packets  # noqa: E402
from netdumplings_chef.packet import Packet, _tag  # noqa: E402
from test_sdk import (  # noqa: E402
    REPO,
    IpHeader_V4,
    IpHeader_V6,
    TransportHeader_Icmpv4,
    TransportHeader_Tcp,
    dns_query,
    ipv4,
    load_chef,
    packet,
    udp,
)

FLAG_NAMES = ("fin", "syn", "rst", "psh", "ack", "urg", "ece", "cwr")
LAYERS = ("link", "vlan", "network", "ip-extension", "transport")
REASONS = ("truncated", "malformed", "unsupported", "fragment")


class TransportHeader_Icmpv6:  # noqa: N801
    def __init__(self, value):
        self.value = value


def pack(records, record_size=224):
    """Pack duck-typed WIT records as docs/packed-batch.md says (version 1)."""
    out = bytearray(struct.pack("<4sHHII", b"NDPB", 1, record_size, len(records), 0))
    for p in records:
        r = bytearray(record_size)

        def put(fmt, at, *v):
            struct.pack_into(fmt, r, at, *v)

        bits = 0
        put("<QIIII", 0, p.timestamp_ns, p.captured_len, p.original_len, p.link_type, p.interface_index)
        put("<IIIIII", 24, p.frame.offset, p.frame.len, p.payload.offset, p.payload.len, p.padding.offset, p.padding.len)
        if p.stopped is not None:
            bits |= 1 << 12
            put("<BB", 52, LAYERS.index(p.stopped.layer), REASONS.index(p.stopped.reason))
        flow = getattr(p, "flow", None)
        if flow is not None:
            bits |= 1 << 13
            put("<B", 54, 1 if flow.direction == "from-responder" else 0)
            put("<Q", 56, flow.id)
        if p.ethernet is not None:
            bits |= 1
            r[64:70] = p.ethernet.source.to_bytes(6, "big")
            r[70:76] = p.ethernet.destination.to_bytes(6, "big")
            put("<H", 76, p.ethernet.ether_type)
        for bit, at, v in ((2, 80, p.vlan_outer), (3, 88, p.vlan_inner)):
            if v is not None:
                bits |= 1 << bit
                put("<BBHH", at, v.priority, int(v.drop_eligible), v.id, v.ether_type)
        if p.linux_sll is not None:
            s = p.linux_sll
            bits |= 2
            put("<HHHB", 96, s.packet_type, s.arp_hardware_type, s.protocol_type, s.source_len)
            r[104:112] = s.source.to_bytes(8, "big")
        if p.arp is not None:
            a = p.arp
            bits |= 1 << 4
            put("<HHH", 112, a.hardware_type, a.protocol_type, a.operation)
            r[118:124] = a.sender_hardware.to_bytes(6, "big")
            r[124:128] = a.sender_protocol.to_bytes(4, "big")
            r[128:134] = a.target_hardware.to_bytes(6, "big")
            r[134:138] = a.target_protocol.to_bytes(4, "big")
        if p.ip is not None:
            h = p.ip.value
            if _tag(p.ip) == "v4":
                bits |= 1 << 5
                put("<BBBBHHHB", 140, h.protocol, h.ttl, h.tos, h.header_len, h.total_len, h.identification,
                    h.fragment_offset, int(h.dont_fragment) | int(h.more_fragments) << 1)
                r[164:168] = h.source.to_bytes(4, "big")
                r[180:184] = h.destination.to_bytes(4, "big")
            else:
                bits |= 1 << 6
                put("<BBB", 140, h.next_header, h.hop_limit, h.traffic_class)
                put("<H", 144, h.payload_len)
                put("<I", 152, h.flow_label)
                if h.fragment is not None:
                    bits |= 1 << 7
                    put("<HBxI", 156, h.fragment.offset, int(h.fragment.more_fragments), h.fragment.identification)
                r[164:180] = ((h.source[0] << 64) | h.source[1]).to_bytes(16, "big")
                r[180:196] = ((h.destination[0] << 64) | h.destination[1]).to_bytes(16, "big")
        if p.transport is not None:
            tag, h = _tag(p.transport), p.transport.value
            if tag == "tcp":
                bits |= 1 << 8
                flags = sum(1 << i for i, n in enumerate(FLAG_NAMES) if n in h.flags)
                put("<HHIIHBBH", 196, h.source_port, h.destination_port, h.sequence, h.acknowledgment, h.window,
                    flags, h.header_len, h.urgent_pointer)
            elif tag == "udp":
                bits |= 1 << 9
                put("<HH", 196, h.source_port, h.destination_port)
                put("<H", 214, h.length)
            else:
                bits |= 1 << (10 if tag == "icmpv4" else 11)
                put("<BB", 216, h.icmp_type, h.code)
                put("<I", 220, h.rest)
        put("<I", 48, bits)
        out += r
    return bytes(out)


def tcp(sport, dport, flags=("syn", "ack")):
    return TransportHeader_Tcp(NS(source_port=sport, destination_port=dport, sequence=0xFFFFFFF0,
                                  acknowledgment=7, flags=set(flags), window=512, header_len=20, urgent_pointer=3))


def ipv6(nh=17, frag=None):
    return IpHeader_V6(NS(source=(0x20010DB800000000, 1), destination=(0xFE80000000000000, 0xABCD), next_header=nh,
                          hop_limit=64, traffic_class=0xB8, flow_label=0x12345, payload_len=100, fragment=frag))


def corpus():
    """Packets covering every optional part, and the arena they point into."""
    arena = bytearray()
    arp = NS(hardware_type=1, protocol_type=0x800, operation=2, sender_hardware=0x0A0B0C0D0E0F,
             sender_protocol=0xC0A80001, target_hardware=0x111213141516, target_protocol=0x0A0000FE)
    pks = [
        packet(arena, ts=1_700_000_000_123_456_789, ip=ipv4(), transport=udp(40000, 53), payload=dns_query(b"a.test")),
        packet(arena, ts=2, arp=arp, padding=b"\0" * 18),
        packet(arena, ts=3, ip=ipv4(proto=6), transport=tcp(53, 40000),
               payload=struct.pack(">H", 24) + dns_query(b"b.test")),
        packet(arena, ts=4, ip=ipv6(frag=NS(offset=1448, more_fragments=True, identification=0xDEADBEEF)),
               transport=udp(5353, 5353), payload=dns_query(b"c.local")),
        packet(arena, ts=5, ip=ipv6(nh=58), transport=TransportHeader_Icmpv6(NS(icmp_type=135, code=0, rest=0)),
               payload=b"\0" * 16),
        packet(arena, ts=6, ip=ipv4(proto=1), transport=TransportHeader_Icmpv4(NS(icmp_type=8, code=0, rest=0x10001)),
               payload=b"ping"),
        packet(arena, ts=7, eth=False, link_type=113, payload=b"raw bytes"),
        packet(arena, ts=8, ip=ipv4(proto=6), transport=tcp(443, 50000, FLAG_NAMES), payload=b"\x16\x03\x01"),
    ]
    pks[6].linux_sll = NS(packet_type=4, arp_hardware_type=772, source=0x0102030405060000, source_len=6,
                          protocol_type=0x0800)
    pks[6].stopped = NS(layer="network", reason="truncated")
    pks[7].vlan_outer = NS(priority=5, drop_eligible=True, id=4094, ether_type=0x8100)
    pks[7].vlan_inner = NS(priority=3, drop_eligible=False, id=17, ether_type=0x0800)
    pks[7].flow = NS(id=2**64 - 2, direction="from-responder")
    return pks, bytes(arena)


PACKET_ATTRS = ("time", "timestamp_ns", "link_type", "interface_index", "wirelen", "caplen", "frame", "payload",
                "padding", "sport", "dport")
LAYER_ATTRS = {
    "ether": ("src", "dst", "type"),
    "sll": ("pkttype", "proto", "src"),
    "vlan": ("vlan", "prio", "type"),
    "vlan_inner": ("vlan", "prio", "type"),
    "arp": ("op", "hwtype", "ptype", "hwsrc", "psrc", "hwdst", "pdst"),
    "ip": ("version", "src", "dst", "proto", "ttl"),
    "ipv4": ("src", "dst", "proto", "ttl", "tos", "len", "id", "frag"),
    "ipv6": ("src", "dst", "nh", "hlim", "tc", "fl", "plen"),
    "tcp": ("sport", "dport", "seq", "ack", "window", "flags"),
    "udp": ("sport", "dport", "len"),
    "icmp": ("version", "type", "code", "rest", "name"),
}
WIT_FIELDS = ("timestamp_ns", "captured_len", "original_len", "link_type", "interface_index")


class PackedPacketTests(unittest.TestCase):
    def test_every_attribute_matches_the_records_form(self):
        records, arena = corpus()
        packed = packed_packets(pack(records), arena)
        self.assertEqual(len(packed), len(records))
        for i, (rec, pk) in enumerate(zip(records, packed)):
            ref = Packet(rec, arena)
            for a in PACKET_ATTRS:
                self.assertEqual(getattr(pk, a), getattr(ref, a), (i, a))
            self.assertEqual(len(pk), len(ref))
            for layer, attrs in LAYER_ATTRS.items():
                lr, lp = getattr(ref, layer), getattr(pk, layer)
                self.assertEqual(lr is None, lp is None, (i, layer))
                if lr is not None:
                    for a in attrs:
                        self.assertEqual(getattr(lp, a), getattr(lr, a), (i, layer, a))
            self.assertEqual(pk.layers(), ref.layers(), i)
            self.assertEqual(repr(pk), repr(ref))
            dr, dp = ref.dns, pk.dns
            self.assertEqual(dr is None, dp is None, i)
            if dr is not None:
                self.assertEqual((dp.id, dp.qr, dp.qname, dp.is_response), (dr.id, dr.qr, dr.qname, dr.is_response))
            pr, pp = ref.parse_dns(), pk.parse_dns()
            self.assertEqual(pr is None, pp is None, i)
            # The raw record view: same field names and values.
            for f in WIT_FIELDS:
                self.assertEqual(getattr(pk.wit, f), getattr(rec, f), (i, f))
            for span in ("frame", "payload", "padding"):
                self.assertEqual((getattr(pk.wit, span).offset, getattr(pk.wit, span).len),
                                 (getattr(rec, span).offset, getattr(rec, span).len))
            self.assertEqual(pk.wit.ethernet is None, rec.ethernet is None)
            if rec.ip is not None:
                self.assertEqual(_tag(pk.wit.ip), _tag(rec.ip))
                self.assertEqual(pk.wit.ip.value.source, rec.ip.value.source)
            if rec.arp is not None:
                self.assertEqual(pk.wit.arp.sender_hardware, rec.arp.sender_hardware)
            if rec.stopped is not None:
                self.assertEqual((pk.wit.stopped.layer, pk.wit.stopped.reason), (rec.stopped.layer, rec.stopped.reason))
            else:
                self.assertIsNone(pk.wit.stopped)
            flow = getattr(rec, "flow", None)
            if flow is not None:
                self.assertEqual((pk.wit.flow.id, pk.wit.flow.direction), (flow.id, flow.direction))
            else:
                self.assertIsNone(pk.wit.flow)
        self.assertEqual(packed[7].tcp.flags, "FSRPAUEC")
        self.assertEqual(packed[1].arp.hwsrc, "0a:0b:0c:0d:0e:0f")
        self.assertEqual(packed[3].ip.src, "2001:db8::1")

    def test_longer_records_are_stepped_over(self):
        # A later layout version may append fields: the guest steps by record_size.
        records, arena = corpus()
        packed = packed_packets(pack(records, record_size=240), arena)
        self.assertEqual([p.timestamp_ns for p in packed], [r.timestamp_ns for r in records])

    def test_bad_batches_are_refused(self):
        good = pack([], 224)
        self.assertEqual(packed_packets(good, b""), [])
        for bad in (b"", good[:10], b"XXXX" + good[4:], good[:4] + b"\x02\x00" + good[6:],
                    good[:8] + struct.pack("<I", 3) + good[12:]):
            with self.assertRaises(PackedBatchError):
                packed_packets(bad, b"")


class PackedRunnerTests(unittest.TestCase):
    """Sample chefs give the same dumplings from both forms."""

    def check_same(self, chef_path, records, arena):
        ref = nd.Runner(load_chef(chef_path))
        got = nd.Runner(load_chef(chef_path))
        a = ref.packets(records, arena, lambda i, s: (i, json.loads(s)))
        b = got.packed(pack(records), arena, lambda i, s: (i, json.loads(s)))
        self.assertEqual(a, b)
        if ref.wants_interval:
            self.assertEqual(ref.interval(10, 5), got.interval(10, 5))
        return b

    def test_sample_chefs(self):
        records, arena = corpus()
        chefs = os.path.join(REPO, "chefs", "python")
        out = self.check_same(os.path.join(chefs, "dns_lookup_chef", "chef.py"), records, arena)
        self.assertEqual([o["lookup"]["hostname"] for _, o in out], ["a.test", "b.test", "c.local"])
        self.assertEqual(len(self.check_same(os.path.join(chefs, "arp_chef", "chef.py"), records, arena)), 1)
        self.check_same(os.path.join(chefs, "packet_count_chef", "chef.py"), records, arena)


class StateTests(unittest.TestCase):
    def test_method_pair(self):
        class Counter(nd.DumplingChef):
            def __init__(self):
                super().__init__()
                self.n = 0

            def packet_handler(self, packet):
                self.n += 1

            def snapshot(self):
                return json.dumps({"n": self.n}).encode()

            def restore(self, data):
                self.n = json.loads(data)["n"]

        old, new = nd.Runner(Counter()), nd.Runner(Counter())
        old.chef.n = 41
        self.assertIsNone(new.restore(old.snapshot()))
        self.assertEqual(new.chef.n, 41)
        refused = new.restore(b"not json")
        self.assertIn("Counter.restore() refused the state", refused)

    def test_packet_count_keeps_its_counts(self):
        path = os.path.join(REPO, "chefs", "python", "packet_count_chef", "chef.py")
        records, arena = corpus()
        old = nd.Runner(load_chef(path))
        old.packed(pack(records), arena, lambda i, s: s)
        new = nd.Runner(load_chef(path))
        self.assertIsNone(new.restore(old.snapshot()))
        new.packed(pack(records[:1]), arena, lambda i, s: s)
        counts = json.loads(new.interval(0, 1)[0])["packet_counts"]
        self.assertEqual(counts["Ethernet"], 8)  # 7 Ethernet packets before the reload, 1 after
        self.assertIn("refused", new.restore(b"[1, 2]"))

    def test_stateless_chef(self):
        class Plain(nd.DumplingChef):
            def packet_handler(self, packet):
                return None

        r = nd.Runner(Plain())
        self.assertEqual(r.snapshot(), b"")
        self.assertIsNone(r.restore(b""))
        self.assertIn("no restore() method", r.restore(b"old state"))


if __name__ == "__main__":
    unittest.main()
