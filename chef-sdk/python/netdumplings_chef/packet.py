"""A read-only, scapy-flavoured view of one packet handed to a chef.

The kitchen parses every packet before a chef sees it and passes the headers as WIT
records plus one shared byte arena per batch (see ``wit/chef.wit``). :class:`Packet`
wraps one such record: every layer is decoded lazily, on first access, so a chef pays
only for what it reads.

Names follow scapy where the original netdumplings chefs used them (``packet.arp.psrc``,
``packet.ip.src``, ``packet.udp.dport``, ``packet.dns.qd``...), and the WIT names work too
(``packet.arp.sender_protocol``). Addresses are strings (``"127.0.0.1"``,
``"02:00:00:00:00:01"``).

This module imports nothing from the component bindings, so it also runs (and is unit
tested) under plain CPython with duck-typed records.
"""

from __future__ import annotations

import ipaddress
import struct

from .scapy_names import ICMPV6_FALLBACK, ICMPV6_NAMES, layer_names

__all__ = [
    "Packet",
    "Ether",
    "CookedLinux",
    "Dot1Q",
    "ARP",
    "IP",
    "IPv6",
    "TCP",
    "UDP",
    "ICMP",
    "DNS",
    "DNSQuestion",
    "DNSParseError",
    "mac_str",
    "ipv4_str",
    "ipv6_str",
]

# UDP/TCP ports on which scapy 2.4.5 (what the original used) decodes a DNS layer.
DNS_UDP_PORTS = frozenset((53, 5353))
DNS_TCP_PORTS = frozenset((53,))


_TCP_FLAG_LETTERS = "FSRPAUEC"  # bit order of the WIT `tcp-flags` (fin first), as scapy prints


def mac_str(value: int) -> str:
    """A MAC address number (six bytes big-endian in the low 48 bits) as ``aa:bb:cc:dd:ee:ff``."""
    return ":".join("%02x" % ((value >> shift) & 0xFF) for shift in (40, 32, 24, 16, 8, 0))


def ipv4_str(value: int) -> str:
    """An IPv4 address number (big-endian) as dotted quad."""
    return "%d.%d.%d.%d" % ((value >> 24) & 0xFF, (value >> 16) & 0xFF, (value >> 8) & 0xFF, value & 0xFF)


def ipv6_str(value) -> str:
    """An IPv6 address given as (high 64 bits, low 64 bits), in compressed form."""
    high, low = value
    return str(ipaddress.IPv6Address((high << 64) | low))


def _flag_set(flags, name: str) -> bool:
    """Whether a WIT flags value (a Python ``enum.Flag`` in the component) has ``name``."""
    member = getattr(type(flags), name.upper(), None)
    if member is not None:
        return bool(flags & member)
    # Duck-typed test doubles: a set of names or an object with boolean attributes.
    if isinstance(flags, (set, frozenset)):
        return name in flags
    return bool(getattr(flags, name, False))


class _Layer:
    """Base of the layer views: keeps the WIT record as ``wit``."""

    __slots__ = ("wit",)
    name = "?"

    def __init__(self, wit):
        self.wit = wit

    def __repr__(self) -> str:
        fields = ", ".join("%s=%r" % (k, getattr(self, k)) for k in self._show)
        return "<%s %s>" % (self.name, fields)

    _show: tuple = ()


class Ether(_Layer):
    """Ethernet II header: ``src``, ``dst`` (MAC strings) and ``type`` (EtherType)."""

    __slots__ = ()
    name = "Ethernet"
    _show = ("src", "dst", "type")

    @property
    def src(self) -> str:
        return mac_str(self.wit.source)

    @property
    def dst(self) -> str:
        return mac_str(self.wit.destination)

    @property
    def type(self) -> int:
        return self.wit.ether_type


class CookedLinux(_Layer):
    """Linux "cooked" capture header (SLL/SLL2)."""

    __slots__ = ()
    name = "cooked linux"
    _show = ("pkttype", "proto")

    @property
    def pkttype(self) -> int:
        return self.wit.packet_type

    @property
    def proto(self) -> int:
        return self.wit.protocol_type

    @property
    def src(self) -> str:
        n = self.wit.source_len
        raw = self.wit.source.to_bytes(8, "big")[: min(n, 8)]
        return ":".join("%02x" % b for b in raw)


class Dot1Q(_Layer):
    """One 802.1Q VLAN tag: ``vlan``, ``prio``, ``type``."""

    __slots__ = ()
    name = "802.1Q"
    _show = ("vlan", "prio", "type")

    @property
    def vlan(self) -> int:
        return self.wit.id

    @property
    def prio(self) -> int:
        return self.wit.priority

    @property
    def type(self) -> int:
        return self.wit.ether_type


class ARP(_Layer):
    """ARP packet with scapy's field names: ``op``, ``hwsrc``, ``psrc``, ``hwdst``, ``pdst``."""

    __slots__ = ()
    name = "ARP"
    _show = ("op", "hwsrc", "psrc", "hwdst", "pdst")

    @property
    def op(self) -> int:
        return self.wit.operation

    @property
    def hwtype(self) -> int:
        return self.wit.hardware_type

    @property
    def ptype(self) -> int:
        return self.wit.protocol_type

    @property
    def hwsrc(self) -> str:
        return mac_str(self.wit.sender_hardware)

    @property
    def psrc(self) -> str:
        return ipv4_str(self.wit.sender_protocol)

    @property
    def hwdst(self) -> str:
        return mac_str(self.wit.target_hardware)

    @property
    def pdst(self) -> str:
        return ipv4_str(self.wit.target_protocol)


class IP(_Layer):
    """IPv4 header: ``src``, ``dst`` (strings), ``proto``, ``ttl``, ``tos``, ``len``, ``id``."""

    __slots__ = ()
    name = "IP"
    version = 4
    _show = ("src", "dst", "proto")

    @property
    def src(self) -> str:
        return ipv4_str(self.wit.source)

    @property
    def dst(self) -> str:
        return ipv4_str(self.wit.destination)

    @property
    def proto(self) -> int:
        return self.wit.protocol

    @property
    def ttl(self) -> int:
        return self.wit.ttl

    @property
    def tos(self) -> int:
        return self.wit.tos

    @property
    def len(self) -> int:
        return self.wit.total_len

    @property
    def id(self) -> int:
        return self.wit.identification

    @property
    def frag(self) -> int:
        """Fragment offset in bytes."""
        return self.wit.fragment_offset


class IPv6(_Layer):
    """IPv6 header: ``src``, ``dst`` (strings), ``nh``, ``hlim``, ``tc``, ``fl``, ``plen``."""

    __slots__ = ()
    name = "IPv6"
    version = 6
    _show = ("src", "dst", "nh")

    @property
    def src(self) -> str:
        return ipv6_str(self.wit.source)

    @property
    def dst(self) -> str:
        return ipv6_str(self.wit.destination)

    @property
    def nh(self) -> int:
        return self.wit.next_header

    proto = nh

    @property
    def hlim(self) -> int:
        return self.wit.hop_limit

    ttl = hlim

    @property
    def tc(self) -> int:
        return self.wit.traffic_class

    @property
    def fl(self) -> int:
        return self.wit.flow_label

    @property
    def plen(self) -> int:
        return self.wit.payload_len


class TCP(_Layer):
    """TCP header: ``sport``, ``dport``, ``seq``, ``ack``, ``flags`` (scapy letters, e.g. ``"SA"``)."""

    __slots__ = ()
    name = "TCP"
    _show = ("sport", "dport", "flags")

    @property
    def sport(self) -> int:
        return self.wit.source_port

    @property
    def dport(self) -> int:
        return self.wit.destination_port

    @property
    def seq(self) -> int:
        return self.wit.sequence

    @property
    def ack(self) -> int:
        return self.wit.acknowledgment

    @property
    def window(self) -> int:
        return self.wit.window

    @property
    def flags(self) -> str:
        f = self.wit.flags
        names = ("fin", "syn", "rst", "psh", "ack", "urg", "ece", "cwr")
        return "".join(letter for letter, n in zip(_TCP_FLAG_LETTERS, names) if _flag_set(f, n))


class UDP(_Layer):
    """UDP header: ``sport``, ``dport``, ``len``."""

    __slots__ = ()
    name = "UDP"
    _show = ("sport", "dport", "len")

    @property
    def sport(self) -> int:
        return self.wit.source_port

    @property
    def dport(self) -> int:
        return self.wit.destination_port

    @property
    def len(self) -> int:
        return self.wit.length


class ICMP(_Layer):
    """ICMPv4 or ICMPv6 header: ``type``, ``code``, ``rest`` (bytes 4..8), ``version``."""

    __slots__ = ("version",)
    _show = ("type", "code")

    def __init__(self, wit, version: int):
        super().__init__(wit)
        self.version = version

    @property
    def name(self) -> str:  # type: ignore[override]
        if self.version == 4:
            return "ICMP"
        return ICMPV6_NAMES.get(self.wit.icmp_type, ICMPV6_FALLBACK)

    @property
    def type(self) -> int:
        return self.wit.icmp_type

    @property
    def code(self) -> int:
        return self.wit.code

    @property
    def rest(self) -> int:
        return self.wit.rest


class DNSParseError(ValueError):
    """The bytes on a DNS port are not a DNS message this parser can read."""


class DNSQuestion:
    """One DNS question: ``qname`` (bytes, with the trailing dot, as scapy), ``qtype``, ``qclass``.

    ``name`` is the text form: labels decoded as UTF-8 with invalid bytes replaced (U+FFFD),
    joined with ``.``, no trailing dot -- exactly what the Rust chef SDK gives.
    """

    __slots__ = ("labels", "qtype", "qclass")

    def __init__(self, labels: list, qtype: int, qclass: int):
        self.labels = labels
        self.qtype = qtype
        self.qclass = qclass

    @property
    def qname(self) -> bytes:
        return b".".join(self.labels) + b"."

    @property
    def name(self) -> str:
        # One decode of the joined labels gives the same text as decoding each label: "."
        # is ASCII, so an invalid sequence never spans it and is replaced alike.
        return b".".join(self.labels).decode("utf-8", "replace")

    def __repr__(self) -> str:
        return "<DNSQuestion %r qtype=%d qclass=%d>" % (self.qname, self.qtype, self.qclass)


MAX_NAME_LEN = 255  # wire bytes of a name, as in the Rust SDK's parser
_DNS_HEADER = struct.Struct(">HBBHHHH").unpack_from
_QTYPE_QCLASS = struct.Struct(">HH").unpack_from
MAX_POINTERS = 16


def _read_name(msg: bytes, pos: int):
    """Read a (possibly compressed) name at ``pos``: (labels, position after it), or None."""
    labels = []
    end = None
    pointers = 0
    wire = 0
    n = len(msg)
    while True:
        if pos >= n:
            return None
        length = msg[pos]
        kind = length & 0xC0
        if kind == 0:
            if length == 0:
                return labels, (end if end is not None else pos + 1)
            if pos + 1 + length > n:
                return None
            wire += 1 + length
            if wire > MAX_NAME_LEN:
                return None
            labels.append(msg[pos + 1 : pos + 1 + length])
            pos += 1 + length
        elif kind == 0xC0:
            pointers += 1
            if pointers > MAX_POINTERS or pos + 1 >= n:
                return None
            if end is None:
                end = pos + 2
            pos = ((length & 0x3F) << 8) | msg[pos + 1]
        else:
            return None


class DNS:
    """A DNS message: header fields and the question section.

    ``qd`` lists the questions that parse (scapy's name; parsing stops at the first bad one),
    ``qname`` is the first question's name as text, or ``None``.
    """

    __slots__ = ("id", "qr", "opcode", "rcode", "qdcount", "ancount", "nscount", "arcount", "raw", "_qd")
    name = "DNS"

    def __init__(self, msg: bytes):
        if len(msg) < 12:
            raise DNSParseError("shorter than a DNS header")
        self.raw = msg
        self.id, b2, b3, self.qdcount, self.ancount, self.nscount, self.arcount = _DNS_HEADER(msg)
        self.qr = b2 >> 7
        self.opcode = (b2 >> 3) & 0x0F
        self.rcode = b3 & 0x0F
        self._qd = None

    @property
    def is_response(self) -> bool:
        return bool(self.qr)

    @property
    def qd(self) -> list:
        if self._qd is None:
            msg = self.raw
            questions = []
            pos = 12
            for _ in range(self.qdcount):
                got = _read_name(msg, pos)
                if got is None or got[1] + 4 > len(msg):
                    break
                labels, pos = got
                qtype, qclass = _QTYPE_QCLASS(msg, pos)
                pos += 4
                questions.append(DNSQuestion(labels, qtype, qclass & 0x7FFF))
            self._qd = questions
        return self._qd

    @property
    def qname(self):
        """First question's name (text, no trailing dot), or ``None``."""
        qd = self.qd
        return qd[0].name if qd else None

    def __repr__(self) -> str:
        return "<DNS id=%d qr=%d qd=%r>" % (self.id, self.qr, self.qd)


_MISSING = object()


def dns_from_payload(data: bytes, tcp: bool):
    """A UDP/TCP payload as a DNS message (over TCP after the two-byte length prefix,
    which must fit), or ``None`` when too short for a DNS header."""
    if tcp:
        if len(data) < 2:
            return None
        length = (data[0] << 8) | data[1]
        if len(data) < 2 + length:
            return None
        data = data[2 : 2 + length]
    if len(data) < 12:
        return None
    return DNS(data)


class Packet:
    """One captured packet as the kitchen parsed it.

    Layers are ``None`` when absent: ``ether``, ``sll``, ``vlan`` (outer tag), ``arp``, ``ip``
    (an :class:`IP` or :class:`IPv6`), ``ipv4``, ``ipv6``, ``tcp``, ``udp``, ``icmp``, ``dns``.
    Bytes: ``frame`` (whole capture), ``payload`` (after the last parsed header), ``padding``.
    Time: ``time`` (float seconds since the epoch, capture time), ``timestamp_ns``,
    ``time_text`` (``repr(time)``).
    The raw WIT record is ``wit``.
    """

    __slots__ = ("wit", "_arena", "_dns")

    def __init__(self, wit, arena: bytes):
        self.wit = wit
        self._arena = arena
        self._dns = _MISSING

    # --- metadata -------------------------------------------------------------------
    @property
    def time(self) -> float:
        """Capture time in float seconds since the Unix epoch (what scapy's ``.time`` was)."""
        return self.wit.timestamp_ns / 1e9

    @property
    def timestamp_ns(self) -> int:
        return self.wit.timestamp_ns

    @property
    def time_text(self) -> str:
        """``repr(packet.time)``: the capture time as Python and the JSON encoder write it
        (for a chef that writes its payload as JSON text, ``packet_json_text``). With the
        packed form the kitchen writes it for the packets on the DNS ports (a Python
        ``repr`` of the float costs an interpreter inside wasm about 1 µs)."""
        return repr(self.wit.timestamp_ns / 1e9)

    @property
    def link_type(self) -> int:
        return self.wit.link_type

    @property
    def interface_index(self) -> int:
        return self.wit.interface_index

    def __len__(self) -> int:
        return self.wit.original_len

    @property
    def wirelen(self) -> int:
        return self.wit.original_len

    @property
    def caplen(self) -> int:
        return self.wit.captured_len

    # --- bytes ----------------------------------------------------------------------
    def _span(self, span) -> bytes:
        return self._arena[span.offset : span.offset + span.len]

    @property
    def frame(self) -> bytes:
        return self._span(self.wit.frame)

    @property
    def payload(self) -> bytes:
        return self._span(self.wit.payload)

    @property
    def padding(self) -> bytes:
        return self._span(self.wit.padding)

    # --- layers ---------------------------------------------------------------------
    @property
    def ether(self):
        e = self.wit.ethernet
        return Ether(e) if e is not None else None

    @property
    def sll(self):
        s = self.wit.linux_sll
        return CookedLinux(s) if s is not None else None

    @property
    def vlan(self):
        v = self.wit.vlan_outer
        return Dot1Q(v) if v is not None else None

    @property
    def vlan_inner(self):
        v = self.wit.vlan_inner
        return Dot1Q(v) if v is not None else None

    @property
    def arp(self):
        a = self.wit.arp
        return ARP(a) if a is not None else None

    @property
    def ip(self):
        """The network layer: an :class:`IP` (v4) or :class:`IPv6`, or ``None``."""
        h = self.wit.ip
        if h is None:
            return None
        return IP(h.value) if _tag(h) == "v4" else IPv6(h.value)

    @property
    def ipv4(self):
        h = self.wit.ip
        return IP(h.value) if h is not None and _tag(h) == "v4" else None

    @property
    def ipv6(self):
        h = self.wit.ip
        return IPv6(h.value) if h is not None and _tag(h) == "v6" else None

    @property
    def tcp(self):
        t = self.wit.transport
        return TCP(t.value) if t is not None and _tag(t) == "tcp" else None

    @property
    def udp(self):
        t = self.wit.transport
        return UDP(t.value) if t is not None and _tag(t) == "udp" else None

    @property
    def icmp(self):
        t = self.wit.transport
        if t is None:
            return None
        tag = _tag(t)
        if tag == "icmpv4":
            return ICMP(t.value, 4)
        if tag == "icmpv6":
            return ICMP(t.value, 6)
        return None

    @property
    def sport(self):
        """TCP/UDP source port, or ``None``."""
        t = self.wit.transport
        if t is None or _tag(t) not in ("tcp", "udp"):
            return None
        return t.value.source_port

    @property
    def dport(self):
        """TCP/UDP destination port, or ``None``."""
        t = self.wit.transport
        if t is None or _tag(t) not in ("tcp", "udp"):
            return None
        return t.value.destination_port

    @property
    def dns(self):
        """The DNS message where scapy decoded one (UDP 53/5353, TCP 53, non-empty payload),
        or ``None`` (also for a payload too short for a DNS header)."""
        if self._dns is _MISSING:
            self._dns = None
            t = self.wit.transport
            if t is not None:
                tag = _tag(t)
                ports = DNS_UDP_PORTS if tag == "udp" else DNS_TCP_PORTS if tag == "tcp" else None
                if ports is not None and (t.value.source_port in ports or t.value.destination_port in ports):
                    self._dns = self.parse_dns()
        return self._dns

    def parse_dns(self):
        """The payload decoded as a DNS message whatever the ports (over TCP, after the
        two-byte length prefix, which must fit), or ``None``. For chefs whose ``interest``
        already names the DNS ports."""
        t = self.wit.transport
        if t is None:
            return None
        tag = _tag(t)
        if tag not in ("udp", "tcp"):
            return None
        return dns_from_payload(self.payload, tag == "tcp")

    def haslayer(self, name: str) -> bool:
        """Whether the scapy-style layer ``name`` (e.g. ``"DNS"``, ``"ARP"``, ``"IP"``) is present."""
        return name in self.layers()

    def __contains__(self, name: str) -> bool:
        return self.haslayer(name)

    def layers(self) -> list:
        """The scapy-style display names of this packet's layers, outermost first.

        ``["Ethernet", "IP", "UDP", "DNS"]``, ``["Ethernet", "ARP"]``,
        ``["Ethernet", "IP", "ICMP", "IP in ICMP", "UDP in ICMP", "Raw"]``... (what the
        original ``PacketCountChef`` counted): the same table as the Rust sample chef, see
        :mod:`netdumplings_chef.scapy_names`.
        """
        return layer_names(self)

    def __repr__(self) -> str:
        return "<Packet %s>" % " / ".join(self.layers())


_TAGS: dict = {}


def _tag(variant) -> str:
    """The case name of a WIT variant value (componentize-py class ``IpHeader_V4`` -> ``"v4"``)."""
    cls = type(variant)
    tag = _TAGS.get(cls)
    if tag is None:
        tag = getattr(variant, "tag", None)
        if tag is None:
            name = cls.__name__
            tag = name[name.rfind("_") + 1 :].lower()
            _TAGS[cls] = tag
    return tag
