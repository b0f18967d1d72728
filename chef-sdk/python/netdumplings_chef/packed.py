"""Lazy packets over the packed batch form (``on-packed``; layout in ``docs/packed-batch.md``).

The kitchen hands a Python chef its packets as one ``headers`` byte string (a 16-byte batch
header, then one fixed-size little-endian record per packet) plus the usual byte arena.
:class:`PackedPacket` is a :class:`~netdumplings_chef.packet.Packet` over one record: every
attribute unpacks its slot (``struct.unpack_from`` at a fixed offset) when a handler reads it,
so a chef pays only for the fields it touches, and a handler that reads nothing costs one
object. ``packet.wit`` is a view with the WIT record's field names, built on first access, so
chefs and helpers that read the raw record keep working.

Like :mod:`netdumplings_chef.packet`, this module imports nothing from the component bindings
and is unit tested under plain CPython (``chef-sdk/python/tests``).
"""

from __future__ import annotations

import ipaddress
import struct

from .packet import (
    ARP,
    DNS,
    DNSQuestion,
    ICMP,
    IP,
    TCP,
    UDP,
    CookedLinux,
    Dot1Q,
    Ether,
    IPv6,
    Packet,
    DNS_TCP_PORTS,
    DNS_UDP_PORTS,
    dns_from_payload,
)

__all__ = ["PackedPacket", "PackedBatchError", "packed_packets", "packed_layout", "MAGIC", "VERSION", "HEADER_SIZE"]

MAGIC = b"NDPB"
VERSION = 1
HEADER_SIZE = 16
RECORD_SIZE_V1 = 224
# Records of at least this size carry the DNS slots (offsets 224..256); a kitchen that
# writes 224-byte records predates them, and the SDK then parses DNS from the payload.
RECORD_SIZE_DNS = 256
# Records of at least this size carry the time-text slot (offsets 256..264); before it,
# ``time_text`` is formatted here (``repr``).
RECORD_SIZE_TIME = 264

# Presence bits (record offset 48).
ETHERNET = 1 << 0
LINUX_SLL = 1 << 1
VLAN_OUTER = 1 << 2
VLAN_INNER = 1 << 3
ARP_BIT = 1 << 4
IPV4 = 1 << 5
IPV6 = 1 << 6
IPV6_FRAGMENT = 1 << 7
TCP_BIT = 1 << 8
UDP_BIT = 1 << 9
ICMPV4 = 1 << 10
ICMPV6 = 1 << 11
STOPPED = 1 << 12
FLOW = 1 << 13
_PORTS = TCP_BIT | UDP_BIT

_u8 = struct.Struct("<B").unpack_from
_u16 = struct.Struct("<H").unpack_from
_u32 = struct.Struct("<I").unpack_from
_u64 = struct.Struct("<Q").unpack_from
_span = struct.Struct("<II").unpack_from
_ports = struct.Struct("<HH").unpack_from
_batch = struct.Struct("<4sHHI").unpack_from
_be32 = struct.Struct(">I").unpack_from
_be64 = struct.Struct(">Q").unpack_from
_be48 = struct.Struct(">HI").unpack_from


# What the runner stores in a packet's cache slots (``_dns``, ``_view``) until first use, so
# that a packet object can be given the next record (``Runner._run``).
UNSET = object()


class PackedBatchError(ValueError):
    """``headers`` is not a packed batch this SDK can read."""


def packed_packets(headers, arena):
    """The :class:`PackedPacket` of every record in a packed batch, in order."""
    cls, bases = packed_layout(headers)
    out = []
    add = out.append
    for base in bases:
        p = cls()
        p._b = headers
        p._o = base
        p._arena = arena
        add(p)
    return out


def packed_layout(headers):
    """``(cls, offsets)`` of a packed batch: the :class:`PackedPacket` class its records
    take and the range of their offsets in ``headers``. A packet is then ``p = cls()`` with
    ``p._b = headers``, ``p._o = offset``, ``p._arena = arena``: no Python-level __init__
    (the class's is object's, in C), a frame less per packet, which an interpreter inside
    wasm pays for every packet of every batch (``Runner`` makes each packet right before its
    handler call this way, without a list between)."""
    if len(headers) < HEADER_SIZE:
        raise PackedBatchError("packed batch of %d bytes is shorter than its header" % len(headers))
    magic, version, size, count = _batch(headers, 0)
    if magic != MAGIC or version != VERSION or size < RECORD_SIZE_V1:
        raise PackedBatchError("unknown packed batch (magic %r, version %d, record size %d)" % (magic, version, size))
    if HEADER_SIZE + count * size > len(headers):
        raise PackedBatchError("packed batch claims %d records but holds %d bytes" % (count, len(headers)))
    cls = PackedPacketTime if size >= RECORD_SIZE_TIME else PackedPacketDns if size >= RECORD_SIZE_DNS else PackedPacket
    return cls, range(HEADER_SIZE, HEADER_SIZE + count * size, size)


def _mac(b, at: int) -> int:
    hi, lo = _be48(b, at)
    return (hi << 32) | lo


def _bits(b, o: int) -> int:
    return _u32(b, o + 48)[0]


# --- WIT-shaped views (``packet.wit``) --------------------------------------------------
class _Span:
    __slots__ = ("offset", "len")

    def __init__(self, offset: int, length: int):
        self.offset = offset
        self.len = length


class _View:
    """A sub-record of one packed record: ``b`` the headers, ``o`` the record's offset."""

    __slots__ = ("_b", "_o")

    def __init__(self, b, o: int):
        self._b = b
        self._o = o


def _field(fn, off):
    return property(lambda s: fn(s._b, s._o + off)[0])


def _flag(off, mask):
    return property(lambda s: bool(_u8(s._b, s._o + off)[0] & mask))


class EthernetView(_View):
    __slots__ = ()
    source = property(lambda s: _mac(s._b, s._o + 64))
    destination = property(lambda s: _mac(s._b, s._o + 70))
    ether_type = _field(_u16, 76)


class VlanView(_View):
    """``o`` here is the record offset plus the tag's slot (80 outer, 88 inner)."""

    __slots__ = ()
    priority = _field(_u8, 0)
    drop_eligible = _flag(1, 1)
    id = _field(_u16, 2)
    ether_type = _field(_u16, 4)


class LinuxSllView(_View):
    __slots__ = ()
    packet_type = _field(_u16, 96)
    arp_hardware_type = _field(_u16, 98)
    protocol_type = _field(_u16, 100)
    source_len = _field(_u8, 102)
    source = _field(_be64, 104)


class ArpView(_View):
    __slots__ = ()
    hardware_type = _field(_u16, 112)
    protocol_type = _field(_u16, 114)
    operation = _field(_u16, 116)
    sender_hardware = property(lambda s: _mac(s._b, s._o + 118))
    sender_protocol = _field(_be32, 124)
    target_hardware = property(lambda s: _mac(s._b, s._o + 128))
    target_protocol = _field(_be32, 134)


class Ipv4View(_View):
    __slots__ = ()
    protocol = _field(_u8, 140)
    ttl = _field(_u8, 141)
    tos = _field(_u8, 142)
    header_len = _field(_u8, 143)
    total_len = _field(_u16, 144)
    identification = _field(_u16, 146)
    fragment_offset = _field(_u16, 148)
    dont_fragment = _flag(150, 1)
    more_fragments = _flag(150, 2)
    source = _field(_be32, 164)
    destination = _field(_be32, 180)


class Ipv6FragmentView(_View):
    __slots__ = ()
    offset = _field(_u16, 156)
    more_fragments = _flag(158, 1)
    identification = _field(_u32, 160)


class Ipv6View(_View):
    __slots__ = ()
    next_header = _field(_u8, 140)
    hop_limit = _field(_u8, 141)
    traffic_class = _field(_u8, 142)
    payload_len = _field(_u16, 144)
    flow_label = _field(_u32, 152)
    source = property(lambda s: (_be64(s._b, s._o + 164)[0], _be64(s._b, s._o + 172)[0]))
    destination = property(lambda s: (_be64(s._b, s._o + 180)[0], _be64(s._b, s._o + 188)[0]))

    @property
    def fragment(self):
        return Ipv6FragmentView(self._b, self._o) if _bits(self._b, self._o) & IPV6_FRAGMENT else None


class _TcpFlags:
    """The WIT ``tcp-flags`` as booleans (``flags.syn``...), what ``TCP.flags`` reads."""

    __slots__ = ("bits",)
    _NAMES = ("fin", "syn", "rst", "psh", "ack", "urg", "ece", "cwr")

    def __init__(self, bits: int):
        self.bits = bits

    def __getattr__(self, name):
        try:
            return bool(self.bits & (1 << self._NAMES.index(name)))
        except ValueError:
            raise AttributeError(name) from None


class TcpView(_View):
    __slots__ = ()
    source_port = _field(_u16, 196)
    destination_port = _field(_u16, 198)
    sequence = _field(_u32, 200)
    acknowledgment = _field(_u32, 204)
    window = _field(_u16, 208)
    flags = property(lambda s: _TcpFlags(_u8(s._b, s._o + 210)[0]))
    header_len = _field(_u8, 211)
    urgent_pointer = _field(_u16, 212)


class UdpView(_View):
    __slots__ = ()
    source_port = _field(_u16, 196)
    destination_port = _field(_u16, 198)
    length = _field(_u16, 214)


class IcmpView(_View):
    __slots__ = ()
    icmp_type = _field(_u8, 216)
    code = _field(_u8, 217)
    rest = _field(_u32, 220)


class _Variant:
    """A WIT variant value: the case is the class name's tail (as componentize-py names it)."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value


class IpHeader_V4(_Variant):  # noqa: N801 (componentize-py's naming, read by packet._tag)
    __slots__ = ()


class IpHeader_V6(_Variant):  # noqa: N801
    __slots__ = ()


class TransportHeader_Tcp(_Variant):  # noqa: N801
    __slots__ = ()


class TransportHeader_Udp(_Variant):  # noqa: N801
    __slots__ = ()


class TransportHeader_Icmpv4(_Variant):  # noqa: N801
    __slots__ = ()


class TransportHeader_Icmpv6(_Variant):  # noqa: N801
    __slots__ = ()


_LAYERS = ("link", "vlan", "network", "ip-extension", "transport")
_REASONS = ("truncated", "malformed", "unsupported", "fragment")


class ParseStopView:
    """``stopped``: ``layer`` and ``reason`` as the WIT enum case names."""

    __slots__ = ("layer", "reason")

    def __init__(self, layer: str, reason: str):
        self.layer = layer
        self.reason = reason


class FlowRefView:
    """``flow``: ``id`` and ``direction`` (``"from-originator"`` / ``"from-responder"``)."""

    __slots__ = ("id", "direction")

    def __init__(self, flow_id: int, direction: str):
        self.id = flow_id
        self.direction = direction


class PacketView(_View):
    """The WIT ``packet`` record's field names over one packed record (``packet.wit``)."""

    __slots__ = ()
    timestamp_ns = _field(_u64, 0)
    captured_len = _field(_u32, 8)
    original_len = _field(_u32, 12)
    link_type = _field(_u32, 16)
    interface_index = _field(_u32, 20)
    frame = property(lambda s: _Span(*_span(s._b, s._o + 24)))
    payload = property(lambda s: _Span(*_span(s._b, s._o + 32)))
    padding = property(lambda s: _Span(*_span(s._b, s._o + 40)))

    def _part(self, bit, cls, off=0):
        return cls(self._b, self._o + off) if _bits(self._b, self._o) & bit else None

    ethernet = property(lambda s: s._part(ETHERNET, EthernetView))
    linux_sll = property(lambda s: s._part(LINUX_SLL, LinuxSllView))
    vlan_outer = property(lambda s: s._part(VLAN_OUTER, VlanView, 80))
    vlan_inner = property(lambda s: s._part(VLAN_INNER, VlanView, 88))
    arp = property(lambda s: s._part(ARP_BIT, ArpView))

    @property
    def ip(self):
        bits = _bits(self._b, self._o)
        if bits & IPV4:
            return IpHeader_V4(Ipv4View(self._b, self._o))
        if bits & IPV6:
            return IpHeader_V6(Ipv6View(self._b, self._o))
        return None

    @property
    def transport(self):
        bits = _bits(self._b, self._o)
        if bits & TCP_BIT:
            return TransportHeader_Tcp(TcpView(self._b, self._o))
        if bits & UDP_BIT:
            return TransportHeader_Udp(UdpView(self._b, self._o))
        if bits & ICMPV4:
            return TransportHeader_Icmpv4(IcmpView(self._b, self._o))
        if bits & ICMPV6:
            return TransportHeader_Icmpv6(IcmpView(self._b, self._o))
        return None

    @property
    def stopped(self):
        if not _bits(self._b, self._o) & STOPPED:
            return None
        layer, reason = _u8(self._b, self._o + 52)[0], _u8(self._b, self._o + 53)[0]
        return ParseStopView(_LAYERS[layer] if layer < 5 else "?", _REASONS[reason] if reason < 4 else "?")

    @property
    def flow(self):
        if not _bits(self._b, self._o) & FLOW:
            return None
        direction = "from-responder" if _u8(self._b, self._o + 54)[0] else "from-originator"
        return FlowRefView(_u64(self._b, self._o + 56)[0], direction)


# --- the packet chefs see ---------------------------------------------------------------
class PackedPacket(Packet):
    """A :class:`Packet` over one packed record: same attributes, each decoded on access."""

    __slots__ = ("_b", "_o", "_view")

    # Made by packed_packets(), which stores ``_b`` (the headers), ``_o`` (the record's
    # offset) and ``_arena``: object's __init__ (C), not Packet's (``wit`` is a lazy
    # property here). Made once per packet, so it stores only what every packet needs;
    # ``_dns`` and ``_view`` stay unset until first used (an unset slot raises AttributeError).
    __init__ = object.__init__

    @property
    def wit(self):
        """The WIT-shaped record view (built on first access)."""
        try:
            v = self._view
        except AttributeError:  # a packet made by hand without the cache slots set
            v = UNSET
        if v is UNSET:
            v = self._view = PacketView(self._b, self._o)
        return v

    # --- metadata ---
    @property
    def time(self) -> float:
        return _u64(self._b, self._o)[0] / 1e9

    @property
    def timestamp_ns(self) -> int:
        return _u64(self._b, self._o)[0]

    @property
    def time_text(self) -> str:
        return repr(_u64(self._b, self._o)[0] / 1e9)

    @property
    def link_type(self) -> int:
        return _u32(self._b, self._o + 16)[0]

    @property
    def interface_index(self) -> int:
        return _u32(self._b, self._o + 20)[0]

    def __len__(self) -> int:
        return _u32(self._b, self._o + 12)[0]

    @property
    def wirelen(self) -> int:
        return _u32(self._b, self._o + 12)[0]

    @property
    def caplen(self) -> int:
        return _u32(self._b, self._o + 8)[0]

    # --- bytes ---
    def _slice(self, at: int) -> bytes:
        off, n = _span(self._b, self._o + at)
        return self._arena[off : off + n]

    @property
    def frame(self) -> bytes:
        return self._slice(24)

    @property
    def payload(self) -> bytes:
        return self._slice(32)

    @property
    def padding(self) -> bytes:
        return self._slice(40)

    # --- layers ---
    @property
    def ether(self):
        return Ether(EthernetView(self._b, self._o)) if _bits(self._b, self._o) & ETHERNET else None

    @property
    def sll(self):
        return CookedLinux(LinuxSllView(self._b, self._o)) if _bits(self._b, self._o) & LINUX_SLL else None

    @property
    def vlan(self):
        return Dot1Q(VlanView(self._b, self._o + 80)) if _bits(self._b, self._o) & VLAN_OUTER else None

    @property
    def vlan_inner(self):
        return Dot1Q(VlanView(self._b, self._o + 88)) if _bits(self._b, self._o) & VLAN_INNER else None

    @property
    def arp(self):
        return PackedARP(ArpView(self._b, self._o)) if _bits(self._b, self._o) & ARP_BIT else None

    @property
    def ip(self):
        bits = _bits(self._b, self._o)
        if bits & IPV4:
            return PackedIP(Ipv4View(self._b, self._o))
        if bits & IPV6:
            return PackedIPv6(Ipv6View(self._b, self._o))
        return None

    @property
    def ipv4(self):
        return PackedIP(Ipv4View(self._b, self._o)) if _bits(self._b, self._o) & IPV4 else None

    @property
    def ipv6(self):
        return PackedIPv6(Ipv6View(self._b, self._o)) if _bits(self._b, self._o) & IPV6 else None

    @property
    def tcp(self):
        return TCP(TcpView(self._b, self._o)) if _bits(self._b, self._o) & TCP_BIT else None

    @property
    def udp(self):
        return UDP(UdpView(self._b, self._o)) if _bits(self._b, self._o) & UDP_BIT else None

    @property
    def icmp(self):
        bits = _bits(self._b, self._o)
        if bits & ICMPV4:
            return ICMP(IcmpView(self._b, self._o), 4)
        if bits & ICMPV6:
            return ICMP(IcmpView(self._b, self._o), 6)
        return None

    @property
    def sport(self):
        return _u16(self._b, self._o + 196)[0] if _bits(self._b, self._o) & _PORTS else None

    @property
    def dport(self):
        return _u16(self._b, self._o + 198)[0] if _bits(self._b, self._o) & _PORTS else None

    @property
    def dns(self):
        try:
            d = self._dns
        except AttributeError:  # a packet made by hand without the cache slots set
            d = UNSET
        if d is not UNSET:
            return d
        self._dns = None
        bits = _bits(self._b, self._o)
        if bits & _PORTS:
            ports = DNS_UDP_PORTS if bits & UDP_BIT else DNS_TCP_PORTS
            sport, dport = _ports(self._b, self._o + 196)
            if sport in ports or dport in ports:
                self._dns = self.parse_dns()
        return self._dns

    def parse_dns(self):
        bits = _bits(self._b, self._o)
        if not bits & _PORTS:
            return None
        return dns_from_payload(self._slice(32), bits & TCP_BIT)


# Layer views whose addresses come from the packed bytes directly (no int round trip).
class PackedARP(ARP):
    __slots__ = ()

    @property
    def hwsrc(self) -> str:
        w = self.wit
        return w._b[w._o + 118 : w._o + 124].hex(":")

    @property
    def psrc(self) -> str:
        w = self.wit
        return "%d.%d.%d.%d" % tuple(w._b[w._o + 124 : w._o + 128])

    @property
    def hwdst(self) -> str:
        w = self.wit
        return w._b[w._o + 128 : w._o + 134].hex(":")

    @property
    def pdst(self) -> str:
        w = self.wit
        return "%d.%d.%d.%d" % tuple(w._b[w._o + 134 : w._o + 138])


class PackedIP(IP):
    __slots__ = ()

    @property
    def src(self) -> str:
        w = self.wit
        return "%d.%d.%d.%d" % tuple(w._b[w._o + 164 : w._o + 168])

    @property
    def dst(self) -> str:
        w = self.wit
        return "%d.%d.%d.%d" % tuple(w._b[w._o + 180 : w._o + 184])


class PackedIPv6(IPv6):
    __slots__ = ()

    @property
    def src(self) -> str:
        w = self.wit
        return str(ipaddress.IPv6Address(bytes(w._b[w._o + 164 : w._o + 180])))

    @property
    def dst(self) -> str:
        w = self.wit
        return str(ipaddress.IPv6Address(bytes(w._b[w._o + 180 : w._o + 196])))


# --- DNS from the record's DNS slots (offsets 224..256) ---------------------------------
# The kitchen reads the DNS header and first question of UDP/TCP packets on ports 53 and
# 5353 (docs/packed-batch.md); the views below answer from those slots with the same values
# the payload parser in packet.py gives, and fall back to it for what the slots leave open
# (a second question, a label holding a "." byte, a packet on other ports).
DNS_AT = 224
DNS_CHECKED = 1
DNS_MESSAGE = 2
DNS_QUESTION = 4
DNS_QUESTIONS_COMPLETE = 8
_name_slot = struct.Struct("<HI").unpack_from


# The batch's string tail decoded once (a name or time text is then a slice of it at the
# same offsets: one str slice instead of a bytes slice and a decode per string). One entry,
# for the batch decoded last: ``[headers, text or None, tail start, latin]``: ``text`` is
# the tail when every byte of it is ASCII, else None; ``latin`` is the tail decoded byte
# for byte (Latin-1, the same object as ``text`` when that is set), so its offsets are the
# tail's even when some name holds UTF-8: a slice of it that is ASCII is that name, and only
# a name that is not is decoded from its bytes (before, one such name in a batch made every
# name of the batch a bytes slice and a UTF-8 decode). A packet kept from an older batch
# finds another ``headers`` there and decodes that batch's tail again.
_TAIL = [None, None, 0, None]


def _tail_text(b, size: int, count: int):
    start = HEADER_SIZE + count * size
    tail = bytes(b[start:])  # the same object when `b` is bytes (as in a component)
    latin = str(tail, "latin-1")
    _TAIL[:] = [b, latin if tail.isascii() else None, start, latin]
    return _TAIL


class PackedDNSQuestion(DNSQuestion):
    """The first question, from the DNS slots: the name is one byte string in the batch's
    tail (labels joined with "."). ``name`` is decoded when the question is made (nearly
    every chef reads it; a slot read costs less than a property call in the interpreter).
    It holds its packet (``_p``), not copies of the batch's references: two stores.
    Made by :meth:`PackedPacketDns.parse_dns` (object's ``__init__``: see there)."""

    __slots__ = ("_p", "name")
    __init__ = object.__init__

    def _dotted(self) -> bytes:
        p = self._p
        n, at = _name_slot(p._b, p._o + 226)
        return bytes(p._b[at : at + n])

    @property
    def qname(self) -> bytes:
        return self._dotted() + b"."

    @property
    def labels(self) -> list:
        dotted = self._dotted()
        # The kitchen fills the slots only when no label holds a ".", so this split is exact.
        return dotted.split(b".") if dotted else []

    qtype = property(lambda s: _u16(s._p._b, s._p._o + 244)[0])
    qclass = property(lambda s: _u16(s._p._b, s._p._o + 246)[0] & 0x7FFF)


def _packet_field(fn, off):
    return property(lambda s: fn(s._p._b, s._p._o + off)[0])


class PackedDNS(DNS):
    """A :class:`~netdumplings_chef.packet.DNS` over the DNS slots of packet ``_p``:
    ``is_response`` and the question list are set when it is made (what nearly every DNS
    chef reads first); the other header fields are read from the record on access, ``raw``
    from the arena. Made by :meth:`PackedPacketDns.parse_dns` (object's ``__init__``: see there)."""

    __slots__ = ("_p", "is_response", "qd")
    __init__ = object.__init__

    id = _packet_field(_u16, 232)
    qr = property(lambda s: s._p._b[s._p._o + 235] >> 7)
    opcode = property(lambda s: (_u16(s._p._b, s._p._o + 234)[0] >> 11) & 0x0F)
    rcode = property(lambda s: _u16(s._p._b, s._p._o + 234)[0] & 0x0F)
    qdcount = _packet_field(_u16, 236)
    ancount = _packet_field(_u16, 238)
    nscount = _packet_field(_u16, 240)
    arcount = _packet_field(_u16, 242)

    @property
    def raw(self) -> bytes:
        p = self._p
        off, n = _span(p._b, p._o + 248)
        return p._arena[off : off + n]


def _size_count(b):
    """(record size, record count) of the packed batch ``b``."""
    _, _, size, count = _batch(b, 0)
    return size, count


class PackedDNSOne(PackedDNS):
    """A :class:`PackedDNS` whose one question is in the slots: ``qd`` (the list holding
    it) is made on first read and kept. Why: a DNS chef reads ``is_response`` first and
    skips the responses, nearly half of DNS packets, without reading their question; made
    eagerly, the question, its name and the list cost such a packet about as much as the
    rest of ``parse_dns`` (inside wasm)."""

    __slots__ = ()

    @property
    def qd(self) -> list:
        qd = self._qd
        if qd is None:
            p = self._p
            b = p._b
            q = PackedDNSQuestion()
            q._p = p
            n, at = _name_slot(b, p._o + 226)
            t = _TAIL
            if t[0] is not b:
                t = _tail_text(b, *_size_count(b))
            text = t[1]
            if text is not None:
                at -= t[2]
                q.name = text[at : at + n]
            else:
                name = t[3][at - t[2] : at - t[2] + n]
                q.name = name if name.isascii() else str(b[at : at + n], "utf-8", "replace")
            qd = self._qd = [q]
        return qd


class PackedPacketDns(PackedPacket):
    """A :class:`PackedPacket` of a record with DNS slots: ``parse_dns()`` (and so ``dns``)
    answers from them when the kitchen filled them."""

    __slots__ = ()

    def parse_dns(self):
        # The DNS view and its question are made here, with object's __init__ (C) and
        # slot stores: a Python-level __init__ costs an interpreter inside wasm a frame,
        # and these two were a third of a DNS chef's decode step (tools/bench-languages.sh
        # PROBES=1). Nearly every DNS packet takes the first branch (literal offsets, no
        # global loads).
        b = self._b
        o = self._o
        bits = b[o + 224]  # DNS_AT
        if bits & 15 == 15:  # DNS_CHECKED | DNS_MESSAGE | DNS_QUESTION | DNS_QUESTIONS_COMPLETE
            d = PackedDNSOne()
            d._p = self
            d.is_response = b[o + 235] >= 0x80
            d._qd = None
            return d
        if not bits & DNS_CHECKED:
            return PackedPacket.parse_dns(self)
        if not bits & DNS_MESSAGE:
            return None
        d = PackedDNS()
        d._p = self
        d.is_response = b[o + 235] >= 0x80
        if bits & DNS_QUESTIONS_COMPLETE:
            d.qd = []  # complete without a question (with one, the branch above took it)
        else:
            d._qd = None
            d.qd = DNS.qd.fget(d)  # a second question or a dotted label: parse `raw`
        return d


class PackedPacketTime(PackedPacketDns):
    """A :class:`PackedPacketDns` of a record with the time-text slot (offsets 256..264):
    ``time_text`` is the kitchen's text when it wrote one (the records on the DNS ports),
    a slice of the batch's decoded tail; else ``repr(packet.time)`` as everywhere."""

    __slots__ = ()

    @property
    def time_text(self) -> str:
        b = self._b
        o = self._o
        n, at = _name_slot(b, o + 258)
        if not n:
            return repr(_u64(b, o)[0] / 1e9)
        t = _TAIL
        if t[0] is not b:
            t = _tail_text(b, *_size_count(b))
        at -= t[2]
        return t[3][at : at + n]
