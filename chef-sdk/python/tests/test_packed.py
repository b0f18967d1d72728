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
from netdumplings_chef import packed as packed_module  # noqa: E402
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


def read_name(msg, pos):
    """(labels, end) of the name at ``pos`` as docs/packed-batch.md's DNS slots define it, or None."""
    labels, end, pointers, wire = [], None, 0, 0
    while pos < len(msg):
        n = msg[pos]
        if n == 0:
            return labels, end if end is not None else pos + 1
        if n & 0xC0 == 0:
            if pos + 1 + n > len(msg) or wire + 1 + n > 255:
                return None
            wire += 1 + n
            labels.append(msg[pos + 1 : pos + 1 + n])
            pos += 1 + n
        elif n & 0xC0 == 0xC0:
            pointers += 1
            if pointers > 16 or pos + 1 >= len(msg):
                return None
            end = pos + 2 if end is None else end
            pos = ((n & 0x3F) << 8) | msg[pos + 1]
        else:
            return None
    return None


def dns_slots(r, p, arena, tail, tail_base, time_text=None):
    """Fill the DNS slots (offsets 224..256) of record ``r`` as docs/packed-batch.md says,
    and in records of 264 bytes or more the time text (256..264): ``time_text(ns)``, by
    default ``repr(ns / 1e9)`` as the kitchen writes it (its exactness is tested there)."""
    tag = _tag(p.transport) if p.transport is not None else None
    if tag not in ("tcp", "udp"):
        return
    h = p.transport.value
    if not {h.source_port, h.destination_port} & {53, 5353}:
        return
    bits = 1
    payload = arena[p.payload.offset : p.payload.offset + p.payload.len]
    at, msg = 0, payload
    if tag == "tcp":
        n = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
        at, msg = 2, (payload[2 : 2 + n] if n is not None and len(payload) >= 2 + n else b"")
    if len(msg) >= 12:
        bits |= 2
        struct.pack_into("<6H", r, 232, *struct.unpack(">6H", msg[:12]))
        struct.pack_into("<II", r, 248, p.payload.offset + at, len(msg))
        qdcount = struct.unpack(">H", msg[4:6])[0]
        got = read_name(msg, 12) if qdcount else None
        if got is not None and got[1] + 4 <= len(msg):
            labels, end = got
            if not any(b"." in label for label in labels):
                bits |= 4 | (8 if qdcount == 1 else 0)
                name = b".".join(labels)
                struct.pack_into("<HI", r, 226, len(name), tail_base + len(tail))
                tail += name
                struct.pack_into("<HH", r, 244, *struct.unpack(">HH", msg[end : end + 4]))
        else:
            bits |= 8
    r[224] = bits
    if len(r) >= 264:
        text = (time_text or (lambda ns: repr(ns / 1e9)))(p.timestamp_ns).encode("ascii")
        struct.pack_into("<HI", r, 258, len(text), tail_base + len(tail))
        tail += text


def pack(records, record_size=224, arena=None, time_text=None):
    """Pack duck-typed WIT records as docs/packed-batch.md says (version 1); records of 256
    bytes or more carry the DNS slots (then ``arena`` is needed), their names in the tail;
    of 264 or more the time text too (see ``dns_slots``)."""
    out = bytearray(struct.pack("<4sHHII", b"NDPB", 1, record_size, len(records), 0))
    tail, tail_base = bytearray(), 16 + len(records) * record_size
    for p in records:
        r = bytearray(record_size)
        if record_size >= 256:
            dns_slots(r, p, arena, tail, tail_base, time_text)

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
    return bytes(out + tail)


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


def dns_corpus():
    """DNS packets covering every case of the DNS slots, and their arena."""
    arena = bytearray()

    def msg(names, flags=0x0100, qid=0x1234, extra=b""):
        m = struct.pack(">HHHHHH", qid, flags, len(names), 1, 2, 3)
        for labels in names:
            m += b"".join(bytes([len(x)]) + x for x in labels) + b"\0\0\x1c\x80\x01"
        return m + extra

    pointer = struct.pack(">HHHHHH", 7, 0x8400, 1, 0, 0, 0) + b"\xc0\x12\0\x01\0\x01" + b"\x03foo\x00"
    tcp_msg = msg([[b"t", b"test"]])
    payloads = [
        (udp(40000, 53), msg([[b"www", b"example", b"test"]])),
        (udp(5353, 5353), msg([[b"caf\xc3\xa9", b"\xff\xfe", b"local"]], flags=0x8400)),
        (tcp(50000, 53), struct.pack(">H", len(tcp_msg)) + tcp_msg),
        (udp(53, 40000), msg([[b"a"], [b"b"]])),
        (udp(53, 40000), msg([[b"a.b", b"c"]])),
        (udp(53, 40000), msg([[b"abc"]])[:-3]),
        (udp(53, 40000), msg([])),
        (udp(53, 40000), pointer),
        (udp(53, 40000), msg([[]])),
        (udp(53, 40000), b"\0" * 11),
        (tcp(53, 50000), b"\0\x20" + tcp_msg),
        (tcp(5353, 1), struct.pack(">H", len(tcp_msg)) + tcp_msg),
        (udp(5355, 40000), msg([[b"llmnr"]])),
        (udp(1, 2), msg([[b"x"]])),
    ]
    pks = [packet(arena, ts=i + 1, ip=ipv4(proto=6 if _tag(t) == "tcp" else 17), transport=t, payload=p)
           for i, (t, p) in enumerate(payloads)]
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

    def test_dns_slots_give_what_the_payload_parser_gives(self):
        records, arena = dns_corpus()
        packed = packed_packets(pack(records, 256, arena), arena)
        self.assertEqual(type(packed[0]).__name__, "PackedPacketDns")
        # Which packets the slots answer for, and which fall back to the payload parser.
        bits = [pk._b[pk._o + 224] for pk in packed]
        self.assertEqual(bits[:3], [15, 15, 15])
        self.assertIn(7, bits)  # a second question: the SDK parses the list itself
        self.assertIn(3, bits)  # a label holding a dot: likewise
        self.assertIn(11, bits)  # a first question that does not parse: none
        self.assertIn(1, bits)  # too short for a header
        self.assertIn(0, bits)  # not on a DNS port
        for i, (rec, pk) in enumerate(zip(records, packed)):
            ref = Packet(rec, arena)
            for dr, dp in ((ref.dns, pk.dns), (ref.parse_dns(), pk.parse_dns())):
                self.assertEqual(dr is None, dp is None, i)
                if dr is None:
                    continue
                for a in ("id", "qr", "opcode", "rcode", "qdcount", "ancount", "nscount", "arcount", "raw",
                          "is_response", "qname"):
                    self.assertEqual(getattr(dp, a), getattr(dr, a), (i, a))
                self.assertEqual(repr(dp), repr(dr), i)
                self.assertEqual(len(dp.qd), len(dr.qd), i)
                for qr_, qp in zip(dr.qd, dp.qd):
                    for a in ("name", "qname", "labels", "qtype", "qclass"):
                        self.assertEqual(getattr(qp, a), getattr(qr_, a), (i, a))
        # The same batch with 224-byte records (an older kitchen): parsed from the payload.
        old = packed_packets(pack(records, 224), arena)
        self.assertEqual(type(old[0]).__name__, "PackedPacket")
        self.assertEqual([p.dns.qname if p.dns else None for p in old], [p.dns.qname if p.dns else None for p in packed])

    def test_names_from_an_ascii_tail_and_packets_kept_across_batches(self):
        # A batch whose names are all ASCII reads them as slices of its tail decoded once; a
        # batch holding a non-ASCII byte decodes each name (invalid bytes replaced). Packets
        # kept from an earlier batch keep their values while later batches are decoded (the
        # decoded tail is cached for the last batch only).
        records, arena = dns_corpus()
        ascii_records = [r for i, r in enumerate(records) if i != 1]
        batches, decoded = [], []
        for recs in (ascii_records, records, ascii_records[:3]):
            headers = pack(recs, 256, arena)
            packets = packed_packets(headers, arena)
            names = [[q.name for q in p.parse_dns().qd] if p.parse_dns() else None for p in packets]
            want = [[q.name for q in Packet(r, arena).parse_dns().qd] if Packet(r, arena).parse_dns() else None
                    for r in recs]
            self.assertEqual(names, want)
            decoded.append(isinstance(packed_module._TAIL[1], str))
            batches.append((packets, want, [p.time for p in packets]))
        self.assertEqual(decoded, [True, False, True])
        self.assertIn(["café.\ufffd\ufffd.local"], batches[1][1])
        self.assertTrue(all(n is None or all(x.isascii() for x in n) for n in batches[0][1]))
        # Read again after later batches (and out of order): the same values.
        for packets, want, times in reversed(batches):
            self.assertEqual([[q.name for q in p.dns.qd] if p.dns else None for p in packets],
                             [w if p.dns else None for p, w in zip(packets, want)])
            self.assertEqual([p.time for p in packets], times)
        kept = batches[0][0][0].parse_dns()
        packed_packets(pack(records, 256, arena), arena)[1].parse_dns()
        self.assertEqual(kept.qd[0].name, "www.example.test")
        self.assertEqual(kept.qd[0].labels, [b"www", b"example", b"test"])

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
        # With the DNS slots, and answered in one JSON text (packed-json).
        lean = nd.Runner(load_chef(chef_path))
        c = [tuple(pair) for pair in json.loads(lean.packed_json(pack(records, 256, arena), arena))]
        self.assertEqual(a, c)
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


class PackedJsonTests(unittest.TestCase):
    def setUp(self):
        self.logged = []
        nd.LOG_SINK = lambda level, message: self.logged.append((level, message))

    def tearDown(self):
        nd.LOG_SINK = None

    def test_pairs_and_errors(self):
        class Chef(nd.DumplingChef):
            def __init__(self):
                super().__init__()
                self.state = {"n": 0}

            def packet_handler(self, packet):
                t = packet.timestamp_ns
                if t == 2:
                    return float("nan")  # not JSON: logged, skipped
                if t == 3:
                    raise ValueError("boom")
                if t == 4:
                    return None
                self.state["n"] += 1
                return self.state  # a live object: encoded as it is when returned

        arena = bytearray()
        pks = [packet(arena, ts=t) for t in range(1, 7)]
        text = nd.Runner(Chef()).packed_json(pack(pks), bytes(arena))
        self.assertEqual(json.loads(text), [[0, {"n": 1}], [4, {"n": 2}], [5, {"n": 3}]])
        self.assertEqual(text, '[[0,{"n": 1}],[4,{"n": 2}],[5,{"n": 3}]]')
        self.assertEqual([level for level, _ in self.logged], ["error", "error"])
        self.assertIn("ValueError: boom", self.logged[1][1])
        self.assertEqual(nd.Runner(Chef()).packed_json(pack([]), b""), "[]")

    def test_the_cached_encoder_matches_json(self):
        values = [{"a": [1, 2.5, None, True, "é\"\n\u2028"], "b": {}}, "x", 3, 1e300, -0.0, [],
                  {"lookups_seen": {"h": {"count": 2, "latest": 1700000000.000001}}}]
        for v in values:
            self.assertEqual(nd.encode_payload(v), json.dumps(v, allow_nan=False))
        loop = []
        loop.append(loop)
        for bad in (float("inf"), {"s": {1, 2}}, loop):
            with self.assertRaises((ValueError, TypeError)):
                nd.encode_payload(bad)
        # A failed encode leaves nothing behind that breaks the next one.
        shared = {"k": 1}
        self.assertEqual(nd.encode_payload([shared, shared]), '[{"k": 1}, {"k": 1}]')

    def test_json_text_payloads_pass_as_written(self):
        # A chef with packet_json_text returns each packet payload as its JSON text: sent
        # as it is; anything but a str is a handler error (logged, skipped; raised when
        # errors are not caught). Interval payloads are encoded as before.
        class Chef(nd.DumplingChef):
            packet_json_text = True

            def packet_handler(self, packet):
                t = packet.timestamp_ns
                return {"not": "text"} if t == 2 else '{"t": %d}' % t

            def interval_handler(self, interval=None):
                return {"poke": interval}

        arena = bytearray()
        pks = [packet(arena, ts=t) for t in range(1, 4)]
        r = nd.Runner(Chef())
        self.assertEqual(r.packed_json(pack(pks), bytes(arena)), '[[0,{"t": 1}],[2,{"t": 3}]]')
        self.assertEqual([level for level, _ in self.logged], ["error"])
        self.assertIn("must return JSON text (a str), not dict", self.logged[0][1])
        self.assertEqual(r.interval(10, 5_000_000_000), ['{"poke": 5.0}'])
        self.assertEqual(r.packets(pks[:1], bytes(arena), lambda i, s: (i, s)), [(0, '{"t": 1}')])
        r.catch = False
        self.assertEqual(r.packed_json(pack(pks[:1]), bytes(arena)), '[[0,{"t": 1}]]')
        with self.assertRaises(TypeError):
            r.packed_json(pack(pks), bytes(arena))

        class Sub(str):
            pass

        class SubChef(Chef):
            def packet_handler(self, packet):
                return Sub('{"t": 1}')

        out = nd.Runner(SubChef()).packed_json(pack(pks[:1]), bytes(arena))
        self.assertEqual(out, '[[0,{"t": 1}]]')

        # interval_json_text: the interval payload passes as written, a subclass made exact;
        # anything but a str is an error (logged, no payload; raised when not caught).
        class IntervalChef(nd.DumplingChef):
            interval_json_text = True
            value = '{"n": 1}'

            def interval_handler(self, interval=None):
                return self.value

        chef = IntervalChef()
        r = nd.Runner(chef)
        self.assertEqual(r.interval(10, 5), ['{"n": 1}'])
        chef.value = Sub('{"n": 2}')
        self.assertIs(type(r.interval(10, 5)[0]), str)
        chef.value = None
        self.assertEqual(r.interval(10, 5), [])
        chef.value = {"n": 3}
        self.logged.clear()
        self.assertEqual(r.interval(10, 5), [])
        self.assertIn("interval_json_text is set, so interval_handler must return JSON text", self.logged[0][1])
        r.catch = False
        with self.assertRaises(TypeError):
            r.interval(10, 5)
        for text in ("a.test", "caf\u00e9.\ufffd", 'q"u\\o\x01te\u2028', "", "\U0001f600"):
            self.assertEqual(nd.json_string(text), json.dumps(text))

    def test_packets_a_chef_keeps_keep_their_values(self):
        # The runner makes each packet right before its handler call (no list between): a
        # packet the handler stores is its own object and still reads its own record, DNS
        # name included, after later batches (ASCII and non-ASCII tails) were handled.
        class Keeper(nd.DumplingChef):
            def __init__(self):
                super().__init__()
                self.kept = []

            def packet_handler(self, packet):
                self.kept.append(packet)
                return None

        records, arena = dns_corpus()
        chef = Keeper()
        r = nd.Runner(chef)
        batches = [records, records[2:], records[:1]]
        for recs in batches:
            self.assertEqual(r.packed_json(pack(recs, 256, arena), arena), "[]")
        flat = [rec for recs in batches for rec in recs]
        self.assertEqual(len(chef.kept), len(flat))
        self.assertEqual(len({id(p) for p in chef.kept}), len(flat))
        for p, rec in zip(chef.kept, flat):
            want = Packet(rec, arena).parse_dns()
            got = p.parse_dns()
            self.assertEqual(p.timestamp_ns, rec.timestamp_ns)
            self.assertEqual(got is None, want is None)
            if want is not None:
                self.assertEqual([q.name for q in got.qd], [q.name for q in want.qd])
                self.assertEqual(got.is_response, want.is_response)

    def test_a_packet_nothing_keeps_is_reused_and_a_kept_one_never(self):
        # The runner gives the next record to the last packet object when the handler kept
        # no reference to it (nor to its DNS view or question, which hold it); its caches
        # start empty again. Kept packets, and packets whose DNS objects were kept, keep
        # their own records.
        records, arena = dns_corpus()

        class Chef(nd.DumplingChef):
            def __init__(self):
                super().__init__()
                self.ids, self.kept, self.kept_dns, self.seen = set(), [], [], []

            def packet_handler(self, packet):
                self.ids.add(id(packet))
                d = packet.dns  # cached on the packet: must not leak into the next record
                self.seen.append((packet.timestamp_ns, packet.time_text, d.qd[0].name if d and d.qd else None,
                                  packet.wit.timestamp_ns))
                n = len(self.seen)
                if n % 3 == 0:
                    self.kept.append((packet, self.seen[-1]))
                elif n % 3 == 1 and d is not None:
                    self.kept_dns.append((d, self.seen[-1]))
                return None

        chef = Chef()
        r = nd.Runner(chef)
        many = records * 4
        self.assertEqual(r.packed_json(pack(many, 264, arena), arena), "[]")
        want = [(p.timestamp_ns, repr(p.timestamp_ns / 1e9), p.dns.qd[0].name if p.dns and p.dns.qd else None,
                 p.timestamp_ns) for p in (Packet(rec, arena) for rec in many)]
        self.assertEqual(chef.seen, want)
        self.assertLess(len(chef.ids), len(many))  # reused
        for p, (ts, text, name, wts) in chef.kept:
            self.assertEqual((p.timestamp_ns, p.time_text, p.wit.timestamp_ns), (ts, text, wts))
            self.assertEqual(p.dns.qd[0].name if p.dns and p.dns.qd else None, name)
        for d, (ts, text, name, wts) in chef.kept_dns:
            self.assertEqual(d.qd[0].name if d.qd else None, name)
            self.assertEqual(d._p.timestamp_ns, ts)

    def test_dns_lookup_text_is_what_the_encoder_writes(self):
        # The sample DNSLookupChef writes its packet payload as JSON text: byte for byte what
        # encoding the dict {"lookup": {"hostname", "when"}} gives, for names that need
        # escaping and timestamps of every shape; its table (and so its interval payload)
        # is what the dict-building version kept.
        names = [b"www.example.test", b"caf\xc3\xa9.\xff\xfe.local", b'q"u\\o\x01te.test', b"a", b"x" * 63,
                 b"\xe2\x80\xa8.test", b"www.example.test"]
        stamps = [1, 3, 1_700_000_000_123_456_789, 1_700_000_000_000_012_000, 999_999_999_999,
                  1_700_000_000_100_000_000, 2**63 - 1]
        arena = bytearray()
        recs = []
        for i, (name, ts) in enumerate(zip(names, stamps)):
            qr = 1 if i == 3 else 0  # one response: no dumpling, not counted
            recs.append(packet(arena, ts=ts, ip=ipv4(), transport=udp(40000, 53) if not qr else udp(53, 40000),
                               payload=dns_query(name, qr=qr)))
        arena = bytes(arena)
        chef_path = os.path.join(REPO, "chefs", "python", "dns_lookup_chef", "chef.py")
        for size in (256, 264):  # the time text formatted by the SDK, then read from its slot
            with self.subTest(record_size=size):
                self.check_dns_lookup_chef(chef_path, recs, arena, size)

    def check_dns_lookup_chef(self, chef_path, recs, arena, size):
        r = nd.Runner(load_chef(chef_path))
        self.assertEqual(r.interval(1, 5), ['{"lookups_seen": {}}'])
        text = r.packed_json(pack(recs, size, arena), arena)
        want, seen = [], {}
        for i, rec in enumerate(recs):
            dns = Packet(rec, arena).parse_dns()
            if dns.is_response:
                continue
            host, when = dns.qd[0].name, rec.timestamp_ns / 1e9
            want.append("[%d,%s]" % (i, json.dumps({"lookup": {"hostname": host, "when": when}})))
            entry = seen.setdefault(host, {"count": 0, "latest": when})
            entry["count"] += 1
            entry["latest"] = when
        self.assertEqual(text, "[" + ",".join(want) + "]")
        self.assertIn('"caf\\u00e9.\\ufffd\\ufffd.local"', text)
        self.assertEqual(r.interval(10, 5)[0], json.dumps({"lookups_seen": seen}))
        # A reload carries the same table (in the dict form older versions wrote), and the
        # restored chef writes the same interval payload.
        again = nd.Runner(load_chef(chef_path))
        state = r.snapshot()
        self.assertEqual(json.loads(state)["state"]["lookups_seen"]["entries"], [[k, v] for k, v in seen.items()])
        self.assertIsNone(again.restore(state))
        self.assertEqual(again.interval(10, 5), r.interval(10, 5))

    def test_time_text_is_read_from_its_slot_else_formatted(self):
        # Records of 264 bytes carry the kitchen's time text for the DNS-port packets: the SDK
        # returns that text (here a marker, so reading it is what is tested), from ASCII and
        # non-ASCII tails alike, and keeps it for a packet kept across batches; any other
        # record, and shorter records, give repr(packet.time).
        records, arena = dns_corpus()
        def marker(ns):
            return "T%d" % ns

        def want(p):  # the marker on the DNS ports (where the kitchen writes it), else repr
            on_dns = (p.tcp or p.udp) is not None and {p.sport, p.dport} & {53, 5353}
            return marker(p.timestamp_ns) if on_dns else repr(p.time)

        kept = []
        for recs in (records, [r for i, r in enumerate(records) if i != 1], records[:2]):
            packets = packed_packets(pack(recs, 264, arena, time_text=marker), arena)
            kept.append((packets, recs))
            for p in packed_packets(pack(recs, 256, arena), arena):
                self.assertEqual(p.time_text, repr(p.time))
        for packets, recs in kept:
            self.assertEqual([p.time_text for p in packets], [want(p) for p in packets])
        others, other_arena = corpus()
        for size in (224, 256, 264):
            packets = packed_packets(pack(others, size, other_arena, time_text=marker), other_arena)
            self.assertEqual([p.time_text for p in packets],
                             [want(p) if size == 264 else repr(p.time) for p in packets])
        for rec in records + others:
            self.assertEqual(Packet(rec, arena).time_text, repr(rec.timestamp_ns / 1e9))


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
