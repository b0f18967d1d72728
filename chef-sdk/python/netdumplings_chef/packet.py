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

# ICMPv4 types whose body quotes the offending IP datagram (scapy's "IP in ICMP").
_ICMP_ERROR_TYPES = frozenset((3, 4, 5, 11, 12))

# scapy 2.4.5's ICMPv6 class names by type (as the Rust PacketCountChef names them).
_ICMPV6_NAMES = {
    1: "ICMPv6 Destination Unreachable",
    2: "ICMPv6 Packet Too Big",
    3: "ICMPv6 Time Exceeded",
    4: "ICMPv6 Parameter Problem",
    128: "ICMPv6 Echo Request",
    129: "ICMPv6 Echo Reply",
    130: "MLD - Multicast Listener Query",
    131: "MLD - Multicast Listener Report",
    132: "MLD - Multicast Listener Done",
    133: "ICMPv6 Neighbor Discovery - Router Solicitation",
    134: "ICMPv6 Neighbor Discovery - Router Advertisement",
    135: "ICMPv6 Neighbor Discovery - Neighbor Solicitation",
    136: "ICMPv6 Neighbor Discovery - Neighbor Advertisement",
    137: "ICMPv6 Neighbor Discovery - Redirect",
    141: "ICMPv6 Inverse Neighbor Discovery Solicitation",
    142: "ICMPv6 Inverse Neighbor Discovery Advertisement",
    143: "MLDv2 - Multicast Listener Report",
    144: "ICMPv6 Home Agent Address Discovery Request",
    145: "ICMPv6 Home Agent Address Discovery Reply",
    146: "ICMPv6 Mobile Prefix Solicitation",
    147: "ICMPv6 Mobile Prefix Advertisement",
    151: "ICMPv6 Multicast Router Discovery Advertisement",
    152: "ICMPv6 Multicast Router Discovery Solicitation",
    153: "ICMPv6 Multicast Router Discovery Termination",
    155: "RPL",
}
_ICMPV6_FALLBACK = "Scapy6 ICMPv6 fallback class"

# scapy's DHCPv6 message class names by message type.
_DHCPV6_NAMES = {
    1: "DHCPv6 Solicit Message",
    2: "DHCPv6 Advertise Message",
    3: "DHCPv6 Request Message",
    4: "DHCPv6 Confirm Message",
    5: "DHCPv6 Renew Message",
    6: "DHCPv6 Rebind Message",
    7: "DHCPv6 Reply Message",
    8: "DHCPv6 Release Message",
    9: "DHCPv6 Decline Message",
    10: "DHCPv6 Reconfigure Message",
    11: "DHCPv6 Information Request Message",
    12: "DHCPv6 Relay Forward Message (Relay Agent/Server Message)",
    13: "DHCPv6 Relay Reply Message (Relay Agent/Server Message)",
}

_DHCP_MAGIC = b"\x63\x82\x53\x63"
_DLT_LINUX_SLL2 = 276
_DLT_NULL_LOOP = (0, 108)

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
        return _ICMPV6_NAMES.get(self.wit.icmp_type, _ICMPV6_FALLBACK)

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
        return ".".join(label.decode("utf-8", "replace") for label in self.labels)

    def __repr__(self) -> str:
        return "<DNSQuestion %r qtype=%d qclass=%d>" % (self.qname, self.qtype, self.qclass)


MAX_NAME_LEN = 255  # wire bytes of a name, as in the Rust SDK's parser
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
        self.id = (msg[0] << 8) | msg[1]
        self.qr = msg[2] >> 7
        self.opcode = (msg[2] >> 3) & 0x0F
        self.rcode = msg[3] & 0x0F
        self.qdcount = (msg[4] << 8) | msg[5]
        self.ancount = (msg[6] << 8) | msg[7]
        self.nscount = (msg[8] << 8) | msg[9]
        self.arcount = (msg[10] << 8) | msg[11]
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
                qtype = (msg[pos] << 8) | msg[pos + 1]
                qclass = ((msg[pos + 2] << 8) | msg[pos + 3]) & 0x7FFF
                pos += 4
                questions.append(DNSQuestion(labels, qtype, qclass))
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


class Packet:
    """One captured packet as the kitchen parsed it.

    Layers are ``None`` when absent: ``ether``, ``sll``, ``vlan`` (outer tag), ``arp``, ``ip``
    (an :class:`IP` or :class:`IPv6`), ``ipv4``, ``ipv6``, ``tcp``, ``udp``, ``icmp``, ``dns``.
    Bytes: ``frame`` (whole capture), ``payload`` (after the last parsed header), ``padding``.
    Time: ``time`` (float seconds since the epoch, capture time), ``timestamp_ns``.
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
        data = self.payload
        if tag == "tcp":
            if len(data) < 2:
                return None
            length = (data[0] << 8) | data[1]
            if len(data) < 2 + length:
                return None
            data = data[2 : 2 + length]
        if len(data) < 12:
            return None
        return DNS(data)

    def haslayer(self, name: str) -> bool:
        """Whether the scapy-style layer ``name`` (e.g. ``"DNS"``, ``"ARP"``, ``"IP"``) is present."""
        return name in self.layers()

    def __contains__(self, name: str) -> bool:
        return self.haslayer(name)

    def layers(self) -> list:
        """The scapy-style display names of this packet's layers, outermost first.

        ``["Ethernet", "IP", "UDP", "DNS"]``, ``["Ethernet", "ARP"]``,
        ``["Ethernet", "IP", "ICMP", "IP in ICMP", "UDP in ICMP", "Raw"]``... (what the
        original ``PacketCountChef`` counted). The same table as the Rust chef SDK's sample
        chef: link, VLAN tags, ARP/IP, transport, the application layers scapy binds to
        well-known UDP ports (DNS, BOOTP/DHCP, DHCPv6, ISAKMP, LLMNR, NTP, RADIUS, RIP, SNMP,
        TFTP), the datagram quoted in ICMP errors, then ``Raw`` and ``Padding``.
        """
        w = self.wit
        names = []
        ether_type = None
        if w.ethernet is not None:
            names.append("Ethernet")
            ether_type = w.ethernet.ether_type
        elif w.linux_sll is not None:
            names.append("cooked linux v2" if w.link_type == _DLT_LINUX_SLL2 else "cooked linux")
            ether_type = w.linux_sll.protocol_type
        elif w.link_type in _DLT_NULL_LOOP:
            names.append("Loopback")
        outer = w.vlan_outer
        if outer is not None:
            names.append("802_1AD" if ether_type == 0x88A8 else "802.1Q")
            if w.vlan_inner is not None:
                names.append("802_1AD" if outer.ether_type == 0x88A8 else "802.1Q")
        if w.arp is not None:
            names.append("ARP")
        ip = w.ip
        if ip is not None:
            if _tag(ip) == "v4":
                names.append("IP")
            else:
                names.append("IPv6")
                if ip.value.fragment is not None:
                    names.append("IPv6 Extension Header - Fragmentation header")
        has_payload = w.payload.len > 0
        t = w.transport
        if t is not None:
            tag = _tag(t)
            h = t.value
            if tag == "tcp":
                names.append("TCP")
                if has_payload:
                    names.append("DNS" if h.source_port == 53 or h.destination_port == 53 else "Raw")
            elif tag == "udp":
                names.append("UDP")
                if has_payload:
                    _udp_application(h.source_port, h.destination_port, self.payload, names)
            elif tag == "icmpv4":
                names.append("ICMP")
                if has_payload:
                    if h.icmp_type in _ICMP_ERROR_TYPES:
                        _icmp_quote(self.payload, False, names)
                    else:
                        names.append("Raw")
            else:
                names.append(_ICMPV6_NAMES.get(h.icmp_type, _ICMPV6_FALLBACK))
                if has_payload and 1 <= h.icmp_type <= 4:
                    _icmp_quote(self.payload, True, names)
        elif has_payload:
            names.append("Raw")
        if w.padding.len:
            names.append("Padding")
        return names

    def __repr__(self) -> str:
        return "<Packet %s>" % " / ".join(self.layers())


def _udp_application(sport: int, dport: int, payload: bytes, names: list) -> None:
    """scapy's UDP port bindings (those decidable from the header and the first bytes)."""
    if (sport, dport) in ((68, 67), (67, 68), (67, 67)):
        names.append("BOOTP")
        if payload[236:240] == _DHCP_MAGIC:
            names.append("DHCP options")
        elif len(payload) > 236:
            names.append("Raw")
    elif sport in (53, 5353) or dport in (53, 5353):
        names.append("DNS")
    elif dport in (546, 547):
        names.append(_DHCPV6_NAMES.get(payload[0], "DHCPv6 Generic Message"))
    elif sport == 500 or dport == 500:
        names.append("ISAKMP")
    elif sport == 5355 or dport == 5355:
        response = len(payload) > 2 and payload[2] & 0x80
        names.append(
            "Link Local Multicast Node Resolution - Response" if response else "Link Local Multicast Node Resolution - Query"
        )
    elif sport == 123 or dport == 123:
        names.append("NTPHeader")
    elif sport in (1812, 1813, 3799) or dport in (1812, 1813, 3799):
        names.append("RADIUS")
    elif sport == 520 or dport == 520:
        names.append("RIP header")
    elif sport in (161, 162) or dport in (161, 162):
        names.append("SNMP")
    elif dport == 69:
        names.append("TFTP opcode")
    else:
        names.append("Raw")


def _icmp_quote(quote: bytes, v6: bool, names: list) -> None:
    """The datagram quoted in an ICMP error: ``IP in ICMP`` / ``IPv6 in ICMPv6``, the quoted
    transport (``UDP in ICMP``, ``TCP in ICMP``, ``ICMP in ICMP``), then ``Raw``."""
    if v6:
        names.append("IPv6 in ICMPv6")
        ip_len = 40
        proto = quote[6] if len(quote) > 6 else None
    else:
        names.append("IP in ICMP")
        ip_len = max(20, (quote[0] & 0x0F) * 4 if quote else 20)
        proto = quote[9] if len(quote) > 9 else None
    rest = quote[ip_len:]
    if not rest:
        return
    if proto == 17:
        name, hdr = "UDP in ICMP", 8
    elif proto == 6:
        name, hdr = "TCP in ICMP", max(20, (rest[12] >> 4) * 4 if len(rest) > 12 else 20)
    elif proto == 1 and not v6:
        name, hdr = "ICMP in ICMP", 8
    elif proto == 58 and v6:
        name, hdr = "ICMPv6 in ICMPv6", 8
    else:
        names.append("Raw")
        return
    names.append(name)
    if len(rest) > hdr:
        names.append("Raw")


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
