"""scapy-style layer names of a parsed packet: ``Packet.layers()``.

A line-by-line port of the Rust sample chef's table (``chefs/packet-count-chef/src/layers.rs``),
so that the Python ``PacketCountChef`` counts exactly what the Rust one counts: scapy 2.4.5's
``Layer.name`` values for every layer the kitchen's parser decodes, plus the application layers
scapy binds to well-known ports that can be recognised from the first bytes; anything else is
``Raw``, and Ethernet padding is ``Padding``. When the Rust table changes, change this file
(``tests/lang-chefs.sh`` compares the two chefs' output).
"""

from __future__ import annotations

_DLT_LINUX_SLL2 = 276
_DLT_NULL_LOOP = (0, 108)
_DHCP_MAGIC = b"\x63\x82\x53\x63"

ICMPV6_NAMES = {
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
ICMPV6_FALLBACK = "Scapy6 ICMPv6 fallback class"

_ND_OPTION_NAMES = {
    1: "ICMPv6 Neighbor Discovery Option - Source Link-Layer Address",
    2: "ICMPv6 Neighbor Discovery Option - Destination Link-Layer Address",
    3: "ICMPv6 Neighbor Discovery Option - Prefix Information",
    4: "ICMPv6 Neighbor Discovery Option - Redirected Header",
    5: "ICMPv6 Neighbor Discovery Option - MTU",
    6: "ICMPv6 Neighbor Discovery Option - NBMA Shortcut Limit",
    7: "ICMPv6 Neighbor Discovery - Interval Advertisement",
    8: "ICMPv6 Neighbor Discovery - Home Agent Information",
    9: "ICMPv6 Inverse Neighbor Discovery Option - Source Address List",
    10: "ICMPv6 Inverse Neighbor Discovery Option - Target Address List",
    17: "ICMPv6 Neighbor Discovery - IP Address Option (FH for MIPv6)",
    18: "ICMPv6 Neighbor Discovery - New Router Prefix Information Option (FH for MIPv6)",
    19: "ICMPv6 Neighbor Discovery - Link-Layer Address (LLA) Option (FH for MIPv6)",
    23: "ICMPv6 Neighbor Discovery - MAP Option",
    24: "ICMPv6 Neighbor Discovery Option - Route Information Option",
    25: "ICMPv6 Neighbor Discovery Option - Recursive DNS Server Option",
    26: "ICMPv6 Neighbor Discovery Option - Expanded Flags Option",
    31: "ICMPv6 Neighbor Discovery Option - DNS Search List Option",
}
_ND_OPTION_FALLBACK = "ICMPv6 Neighbor Discovery Option - Scapy Unimplemented"

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

_DHCPV6_OPTION_NAMES = {
    1: "DHCP6 Client Identifier Option",
    2: "DHCP6 Server Identifier Option",
    3: "DHCP6 Identity Association for Non-temporary Addresses Option",
    4: "DHCP6 Identity Association for Temporary Addresses Option",
    5: "DHCP6 IA Address Option (IA_TA or IA_NA suboption)",
    6: "DHCP6 Option Request Option",
    7: "DHCP6 Preference Option",
    8: "DHCP6 Elapsed Time Option",
    9: "DHCP6 Relay Message Option",
    11: "DHCP6 Option - Authentication",
    12: "DHCP6 Server Unicast Option",
    13: "DHCP6 Status Code Option",
    14: "DHCP6 Rapid Commit Option",
    15: "DHCP6 User Class Option",
    16: "DHCP6 Vendor Class Option",
    17: "DHCP6 Vendor-specific Information Option",
    18: "DHCP6 Interface-Id Option",
    19: "DHCP6 Reconfigure Message Option",
    20: "DHCP6 Reconfigure Accept Option",
    21: "DHCP6 Option - SIP Servers Domain Name List",
    22: "DHCP6 Option - SIP Servers IPv6 Address List",
    23: "DHCP6 Option - DNS Recursive Name Server",
    24: "DHCP6 Option - Domain Search List option",
    25: "DHCP6 Option - Identity Association for Prefix Delegation",
    26: "DHCP6 Option - IA Prefix option",
    27: "DHCP6 Option - NIS Servers",
    28: "DHCP6 Option - NIS+ Servers",
    29: "DHCP6 Option - NIS Domain Name",
    30: "DHCP6 Option - NIS+ Domain Name",
    31: "DHCP6 option - SNTP Servers",
    32: "DHCP6 Option - Information Refresh Time",
    33: "DHCP6 Option - BCMCS Domain Name List",
    34: "DHCP6 Option - BCMCS Addresses List",
    37: "DHCP6 Option - Relay Agent Remote-ID",
    38: "DHCP6 Option - Subscriber ID",
    39: "DHCP6 Option - Client FQDN",
    40: "DHCP6 PANA Authentication Agent Option",
    41: "DHCP6 POSIX Timezone Option",
    42: "DHCP6 TZDB Timezone Option",
    43: "DHCP6 Option - RelayRequest Option",
    48: "DHCP6 Client Link Option",
    59: "DHCP6 Boot File URL Option",
    61: "DHCP6 Client System Architecture Type Option",
    62: "DHCP6 Client Network Interface Identifier Option",
    65: "DHCP6 Option - ERP Domain Name List",
    66: "DHCP6 Relay-Supplied Options Option",
    68: "DHCP6 Option - Virtual Subnet Selection",
    79: "DHCP6 Option - Client Link Layer address",
    112: "DHCP6 Option - MUD URL",
}

_TFTP_NAMES = {
    1: "TFTP Read Request",
    2: "TFTP Write Request",
    3: "TFTP Data",
    4: "TFTP Ack",
    5: "TFTP Error",
    6: "TFTP Option Ack",
}


def _be16(b: bytes, at: int):
    return (b[at] << 8) | b[at + 1] if at + 1 < len(b) else None


def layer_names(pk) -> list:
    """The layer names of ``pk`` (a :class:`~netdumplings_chef.packet.Packet`), outermost first."""
    from .packet import _tag  # local import: packet.py imports this module

    w = pk.wit
    names = []
    f = names.append

    # Link layer. An Ethernet "type" of 1500 or less is an IEEE 802.3 length.
    ether_type = None
    link_len = 0
    if w.ethernet is not None:
        f("802.3" if w.ethernet.ether_type <= 1500 and w.vlan_outer is None else "Ethernet")
        ether_type = w.ethernet.ether_type
        link_len = 14
    elif w.linux_sll is not None:
        v2 = w.link_type == _DLT_LINUX_SLL2
        f("cooked linux v2" if v2 else "cooked linux")
        ether_type = w.linux_sll.protocol_type
        link_len = 20 if v2 else 16
    elif w.link_type in _DLT_NULL_LOOP:
        f("Loopback")
        link_len = 4

    last_type = ether_type
    outer = w.vlan_outer
    if outer is not None:
        f("802_1AD" if ether_type == 0x88A8 else "802.1Q")
        link_len += 4
        last_type = outer.ether_type
        inner = w.vlan_inner
        if inner is not None:
            f("802_1AD" if outer.ether_type == 0x88A8 else "802.1Q")
            link_len += 4
            last_type = inner.ether_type

    if w.arp is not None:
        f("ARP")

    payload = pk.payload
    ip = w.ip
    if ip is not None:
        if _tag(ip) == "v4":
            f("IP")
        else:
            f("IPv6")
            frame = pk.frame
            walked = len(frame) > link_len and frame[link_len] >> 4 == 6
            if walked:
                _ipv6_extension_headers(frame[link_len:], f)
            elif ip.value.fragment is not None:
                f("IPv6 Extension Header - Fragmentation header")
    elif (w.ethernet is not None or w.linux_sll is not None) and last_type is not None and last_type <= 1500:
        _llc(payload, last_type, f)
        if len(payload) > last_type or w.padding.len:
            f("Padding")
        return names

    t = w.transport
    if t is not None:
        tag = _tag(t)
        h = t.value
        if tag == "tcp":
            f("TCP")
            if payload:
                _tcp_application(h.source_port, h.destination_port, payload, f)
        elif tag == "udp":
            f("UDP")
            if payload:
                _udp_application(h.source_port, h.destination_port, payload, f)
        elif tag == "icmpv4":
            f("ICMP")
            if payload:
                if h.icmp_type in (3, 4, 5, 11, 12):
                    _icmp_error_quote(payload, False, f)
                else:
                    f("Raw")
        else:
            _icmpv6(h.icmp_type, payload, f)
    elif payload:
        f("Raw")

    if w.padding.len:
        f("Padding")
    return names


def _ipv6_extension_headers(ip: bytes, f) -> None:
    if len(ip) <= 6:
        return
    nxt = ip[6]
    pos = 40
    for _ in range(8):
        if pos + 2 > len(ip):
            return
        hdr0, hdr1 = ip[pos], ip[pos + 1]
        if nxt == 0:
            f("IPv6 Extension Header - Hop-by-Hop Options Header")
            length = (hdr1 + 1) * 8
        elif nxt == 60:
            f("IPv6 Extension Header - Destination Options Header")
            length = (hdr1 + 1) * 8
        elif nxt == 43:
            segment = pos + 2 < len(ip) and ip[pos + 2] == 4
            f("IPv6 Option Header Segment Routing" if segment else "IPv6 Option Header Routing")
            length = (hdr1 + 1) * 8
        elif nxt == 44:
            f("IPv6 Extension Header - Fragmentation header")
            length = 8
        else:
            return
        nxt = hdr0
        pos += length


def _llc(payload: bytes, length: int, f) -> None:
    data = payload[:length]
    if not data:
        return
    f("LLC")
    if len(data) > 3 and data[0] == 0xAA and data[1] == 0xAA:
        f("SNAP")
        rest = data[8:]
    elif len(data) > 3 and data[0] == 0x42 and data[1] == 0x42:
        f("Spanning Tree Protocol")
        rest = b""
    else:
        rest = data[3:]
    if rest:
        f("Raw")


def _dissects_as_dns(msg: bytes) -> bool:
    """Whether scapy's (lenient) DNS dissector accepts ``msg``: a whole header, and a readable
    first question when the header says there are questions."""
    from .packet import DNS

    if len(msg) < 12:
        return False
    if _be16(msg, 4) == 0:
        return True
    return bool(DNS(msg).qd)


def _strip_tcp_length(segment: bytes):
    if len(segment) < 2:
        return None
    length = (segment[0] << 8) | segment[1]
    return segment[2 : 2 + length] if len(segment) >= 2 + length else None


def _tcp_application(sport: int, dport: int, payload: bytes, f) -> None:
    is_dns = False
    if sport == 53 or dport == 53:
        msg = _strip_tcp_length(payload)
        is_dns = msg is not None and _dissects_as_dns(msg)
    f("DNS" if is_dns else "Raw")


def _icmpv6(icmp_type: int, payload: bytes, f) -> None:
    f(ICMPV6_NAMES.get(icmp_type, ICMPV6_FALLBACK))
    if 1 <= icmp_type <= 4:
        if payload:
            _icmp_error_quote(payload, True, f)
        return
    options_at = {133: 0, 134: 8, 135: 16, 136: 16, 137: 32}.get(icmp_type)
    if options_at is None:
        return
    opts = payload[options_at:]
    for _ in range(32):
        if len(opts) < 2:
            return
        length = opts[1] * 8
        if length == 0:
            f("Raw")
            return
        f(_ND_OPTION_NAMES.get(opts[0], _ND_OPTION_FALLBACK))
        opts = opts[length:]


def _udp_application(sport: int, dport: int, payload: bytes, f) -> None:
    def either(port):
        return sport == port or dport == port

    if (sport, dport) in ((68, 67), (67, 68), (67, 67)):
        f("BOOTP")
        if payload[236:240] == _DHCP_MAGIC:
            f("DHCP options")
        elif len(payload) > 236:
            f("Raw")
    elif either(5353) or either(53):
        f("DNS" if _dissects_as_dns(payload) else "Raw")
    elif dport in (547, 546):
        _dhcpv6(payload, f)
    elif either(4500):
        f("ESP" if len(payload) >= 8 else "Raw")
    elif either(500):
        f("ISAKMP")
    elif either(5355):
        response = len(payload) > 2 and payload[2] & 0x80
        f("Link Local Multicast Node Resolution - Response" if response else "Link Local Multicast Node Resolution - Query")
    elif dport == 137:
        f("NBNS query request")
    elif sport == 137:
        f("NBNS query response")
    elif dport == 138:
        f("NBT Datagram Packet")
        if len(payload) > 82:
            f("Raw")
    elif either(123):
        f("NTPHeader")
    elif either(1812) or either(1813) or either(3799):
        f("RADIUS")
    elif either(520):
        f("RIP header")
        entries = payload[4:]
        for i in range(0, min(len(entries), 64 * 20), 20):
            f("RIP authentication" if entries[i : i + 2] == b"\xff\xff" else "RIP entry")
    elif either(161) or either(162):
        f("SNMP")
    elif dport == 69:
        f("TFTP opcode")
        op = payload[:2]
        f(_TFTP_NAMES.get(op[1], "Raw") if len(op) == 2 and op[0] == 0 else "Raw")
    else:
        f("Raw")


def _dhcpv6(payload: bytes, f) -> None:
    f(_DHCPV6_NAMES.get(payload[0], "DHCPv6 Generic Message"))
    header = 34 if payload[0] in (12, 13) else 4
    opts = payload[header:]
    for _ in range(64):
        code, length = _be16(opts, 0), _be16(opts, 2)
        if code is None or length is None:
            if opts:
                f("Raw")
            return
        f(_DHCPV6_OPTION_NAMES.get(code, "Unknown DHCPv6 Option"))
        opts = opts[4 + length :]


def _icmp_error_quote(quote: bytes, v6: bool, f) -> None:
    if v6:
        f("IPv6 in ICMPv6")
        ip_len = 40
        proto = quote[6] if len(quote) > 6 else None
    else:
        f("IP in ICMP")
        ip_len = max(20, (quote[0] & 0x0F) * 4 if quote else 20)
        proto = quote[9] if len(quote) > 9 else None
    rest = quote[ip_len:]
    if not rest:
        return
    sport = _be16(rest, 0) or 0
    dport = _be16(rest, 2) or 0
    if proto == 17:
        f("UDP in ICMP")
        app = rest[8:]
        if app:
            _udp_application(sport, dport, app, f)
    elif proto == 6:
        f("TCP in ICMP")
        hdr = max(20, (rest[12] >> 4) * 4 if len(rest) > 12 else 20)
        app = rest[hdr:]
        if app:
            _tcp_application(sport, dport, app, f)
    elif proto == 1 and not v6:
        f("ICMP in ICMP")
        if len(rest) > 8:
            f("Raw")
    elif proto == 58 and v6:
        f(ICMPV6_NAMES.get(rest[0], ICMPV6_FALLBACK))
    else:
        f("Raw")
