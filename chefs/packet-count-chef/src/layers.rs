//! scapy-style layer names for a parsed packet, in the order scapy would dissect them.
//!
//! The names are scapy 2.4.5's `Layer.name` values (the original kitchen's dissector),
//! for every layer the kitchen's parser decodes, plus the application layers scapy binds
//! to well-known UDP/TCP ports that can be recognised from the payload's first bytes.
//! Anything not recognised is `Raw`, and Ethernet padding is `Padding`, as in scapy.

use chef_sdk::parse::dns;
use chef_sdk::wit::{IpHeader, TransportHeader};
use chef_sdk::Packet;

/// Linux SLL2 link type (DLT 276).
const DLT_LINUX_SLL2: u32 = 276;
/// BSD loopback link types (DLT_NULL, DLT_LOOP).
const DLT_NULL: u32 = 0;
const DLT_LOOP: u32 = 108;
/// The BOOTP magic cookie that makes scapy add a `DHCP options` layer.
const DHCP_MAGIC: [u8; 4] = [99, 130, 83, 99];

/// The layers almost every packet has, counted by index instead of by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Hot {
    /// `Ethernet`
    Ethernet,
    /// `802.3`
    Dot3,
    /// `ARP`
    Arp,
    /// `IP`
    Ip,
    /// `IPv6`
    Ipv6,
    /// `TCP`
    Tcp,
    /// `UDP`
    Udp,
    /// `ICMP`
    Icmp,
    /// `Raw`
    Raw,
    /// `Padding`
    Padding,
    /// `DNS`
    Dns,
}

// `Hot::COUNT` sizes the chef's per-layer table: it must cover every variant.
const _: () = assert!(Hot::Dns as usize + 1 == Hot::COUNT);

impl Hot {
    /// Number of hot layers.
    pub const COUNT: usize = 11;

    /// The scapy name.
    pub const fn name(self) -> &'static str {
        match self {
            Hot::Ethernet => "Ethernet",
            Hot::Dot3 => "802.3",
            Hot::Arp => "ARP",
            Hot::Ip => "IP",
            Hot::Ipv6 => "IPv6",
            Hot::Tcp => "TCP",
            Hot::Udp => "UDP",
            Hot::Icmp => "ICMP",
            Hot::Raw => "Raw",
            Hot::Padding => "Padding",
            Hot::Dns => "DNS",
        }
    }
}

/// Receives the layers of a packet, outermost first: common ones as [`Hot`], the rest by
/// name. A hot layer's [`Hot::name`] is its name, exactly as if it had come by name.
pub trait LayerSink {
    /// A common layer.
    fn hot(&mut self, layer: Hot);
    /// Any other layer.
    fn name(&mut self, name: &'static str);
}

/// Adapts a closure over names to a [`LayerSink`].
struct Names<F>(F);

impl<F: FnMut(&'static str)> LayerSink for Names<F> {
    #[inline]
    fn hot(&mut self, layer: Hot) {
        (self.0)(layer.name())
    }
    #[inline]
    fn name(&mut self, name: &'static str) {
        (self.0)(name)
    }
}

/// Calls `f` with the name of each layer of `p`, outermost first.
pub fn for_each_layer(p: &Packet<'_>, f: impl FnMut(&'static str)) {
    walk(p, &mut Names(f));
}

/// Hands each layer of `p` to `f`, outermost first (see [`for_each_layer`]).
#[inline]
pub fn walk(p: &Packet<'_>, f: &mut impl LayerSink) {
    let link_type = p.link_type();

    // Link layer. An Ethernet "type" of 1500 or less is an IEEE 802.3 length: scapy
    // calls such a frame `802.3` and the next layer `LLC`.
    let mut ether_type = None;
    let mut link_len = 0usize;
    if let Some(e) = p.ethernet() {
        f.hot(if e.ether_type <= 1500 && p.vlan_outer().is_none() {
            Hot::Dot3
        } else {
            Hot::Ethernet
        });
        ether_type = Some(e.ether_type);
        link_len = 14;
    } else if let Some(s) = p.linux_sll() {
        let v2 = link_type == DLT_LINUX_SLL2;
        f.name(if v2 {
            "cooked linux v2"
        } else {
            "cooked linux"
        });
        ether_type = Some(s.protocol_type);
        link_len = if v2 { 20 } else { 16 };
    } else if link_type == DLT_NULL || link_type == DLT_LOOP {
        f.name("Loopback");
        link_len = 4;
    }

    // VLAN tags: scapy names 802.1ad (S-tag, 0x88a8) `802_1AD`, and 802.1Q `802.1Q`.
    let mut last_type = ether_type;
    if let Some(outer) = p.vlan_outer() {
        f.name(if ether_type == Some(0x88a8) {
            "802_1AD"
        } else {
            "802.1Q"
        });
        link_len += 4;
        last_type = Some(outer.ether_type);
        if let Some(inner) = p.vlan_inner() {
            f.name(if outer.ether_type == 0x88a8 {
                "802_1AD"
            } else {
                "802.1Q"
            });
            link_len += 4;
            last_type = Some(inner.ether_type);
        }
    }

    if p.arp().is_some() {
        f.hot(Hot::Arp);
    }

    let payload = p.payload();
    match p.ip() {
        Some(IpHeader::V4(_)) => f.hot(Hot::Ip),
        Some(IpHeader::V6(h)) => {
            f.hot(Hot::Ipv6);
            let frame = p.frame();
            let walked = frame
                .get(link_len..)
                .filter(|ip| ip.first().map(|b| b >> 4) == Some(6))
                .map(|ip| ipv6_extension_headers(ip, f))
                .is_some();
            if !walked && h.fragment.is_some() {
                f.name("IPv6 Extension Header - Fragmentation header");
            }
        }
        None => {
            if p.ethernet().is_some() || p.linux_sll().is_some() {
                if let Some(len) = last_type.filter(|t| *t <= 1500) {
                    llc(payload, usize::from(len), f);
                    // Bytes past the 802.3 length are padding (the kitchen's parser
                    // leaves them in the payload, since it does not decode LLC).
                    if payload.len() > usize::from(len) || !p.padding().is_empty() {
                        f.hot(Hot::Padding);
                    }
                    return;
                }
            }
        }
    }

    match p.transport() {
        Some(TransportHeader::Tcp(t)) => {
            f.hot(Hot::Tcp);
            if !payload.is_empty() {
                tcp_application(t.source_port, t.destination_port, payload, f);
            }
        }
        Some(TransportHeader::Udp(u)) => {
            f.hot(Hot::Udp);
            if !payload.is_empty() {
                udp_application(u.source_port, u.destination_port, payload, f);
            }
        }
        Some(TransportHeader::Icmpv4(h)) => {
            f.hot(Hot::Icmp);
            if !payload.is_empty() {
                if matches!(h.icmp_type, 3 | 4 | 5 | 11 | 12) {
                    icmp_error_quote(payload, false, f);
                } else {
                    f.hot(Hot::Raw);
                }
            }
        }
        Some(TransportHeader::Icmpv6(h)) => icmpv6(h.icmp_type, payload, f),
        None => {
            if !payload.is_empty() {
                f.hot(Hot::Raw);
            }
        }
    }

    if !p.padding().is_empty() {
        f.hot(Hot::Padding);
    }
}

/// Names the IPv6 extension headers at the start of `ip` (an IPv6 header), as scapy does.
fn ipv6_extension_headers(ip: &[u8], f: &mut impl LayerSink) {
    let Some(mut next) = ip.get(6).copied() else {
        return;
    };
    let mut pos = 40;
    for _ in 0..8 {
        let Some(hdr) = ip.get(pos..pos + 2) else {
            return;
        };
        let len = match next {
            0 => {
                f.name("IPv6 Extension Header - Hop-by-Hop Options Header");
                (usize::from(hdr[1]) + 1) * 8
            }
            60 => {
                f.name("IPv6 Extension Header - Destination Options Header");
                (usize::from(hdr[1]) + 1) * 8
            }
            43 => {
                f.name(if ip.get(pos + 2) == Some(&4) {
                    "IPv6 Option Header Segment Routing"
                } else {
                    "IPv6 Option Header Routing"
                });
                (usize::from(hdr[1]) + 1) * 8
            }
            44 => {
                f.name("IPv6 Extension Header - Fragmentation header");
                8
            }
            _ => return,
        };
        next = hdr[0];
        pos += len;
    }
}

/// IEEE 802.2 LLC after an 802.3 length field, then SNAP or STP; the rest is `Raw`.
fn llc(payload: &[u8], len: usize, f: &mut impl LayerSink) {
    let data = payload.get(..len).unwrap_or(payload);
    if data.is_empty() {
        return;
    }
    f.name("LLC");
    let rest = match (data.first(), data.get(1)) {
        (Some(0xaa), Some(0xaa)) if data.len() > 3 => {
            f.name("SNAP");
            data.get(8..).unwrap_or(&[])
        }
        (Some(0x42), Some(0x42)) if data.len() > 3 => {
            f.name("Spanning Tree Protocol");
            &[]
        }
        _ => data.get(3..).unwrap_or(&[]),
    };
    if !rest.is_empty() {
        f.hot(Hot::Raw);
    }
}

/// Whether scapy's (lenient) DNS dissector would accept `msg`: a whole header, and a
/// readable first question when the header says there are questions.
fn dissects_as_dns(msg: &[u8]) -> bool {
    msg.len() >= dns::HEADER_LEN && (be16(msg, 4) == Some(0) || question_reads(msg))
}

/// Exactly `dns::question(msg).is_some()` for a message with a non-zero question count,
/// without building the name (no allocation): the same walk over labels and compression
/// pointers, with the same limits (pinned by a test against `dns::question`).
fn question_reads(msg: &[u8]) -> bool {
    /// `dns::read_name`'s limits.
    const MAX_NAME_LEN: usize = 255;
    const MAX_POINTERS: usize = 16;
    if msg.len() < dns::HEADER_LEN || be16(msg, 4).unwrap_or(0) == 0 {
        return false;
    }
    let mut pos = dns::HEADER_LEN;
    let mut end_after = None;
    let mut pointers = 0;
    let mut wire_len = 0usize;
    let after = loop {
        let Some(&len) = msg.get(pos) else {
            return false;
        };
        match len & 0xc0 {
            0x00 => {
                if len == 0 {
                    break end_after.unwrap_or(pos + 1);
                }
                let label_end = pos + 1 + usize::from(len);
                if label_end > msg.len() {
                    return false;
                }
                wire_len += 1 + usize::from(len);
                if wire_len > MAX_NAME_LEN {
                    return false;
                }
                pos = label_end;
            }
            0xc0 => {
                pointers += 1;
                if pointers > MAX_POINTERS {
                    return false;
                }
                let Some(target) = be16(msg, pos) else {
                    return false;
                };
                end_after.get_or_insert(pos + 2);
                pos = usize::from(target & 0x3fff);
            }
            _ => return false,
        }
    };
    be16(msg, after).is_some() && be16(msg, after + 2).is_some()
}

/// scapy's TCP port bindings: DNS on 53 (when it parses), otherwise `Raw`.
fn tcp_application(sport: u16, dport: u16, payload: &[u8], f: &mut impl LayerSink) {
    let is_dns =
        (sport == 53 || dport == 53) && dns::strip_tcp_length(payload).is_some_and(dissects_as_dns);
    f.hot(if is_dns { Hot::Dns } else { Hot::Raw });
}

/// ICMPv6: the message (scapy names one class per type), then ND options or the quoted
/// datagram of an error. Other message bodies are fields in scapy, not layers.
fn icmpv6(icmp_type: u8, payload: &[u8], f: &mut impl LayerSink) {
    f.name(icmpv6_name(icmp_type));
    let options_at = match icmp_type {
        1..=4 => {
            if !payload.is_empty() {
                icmp_error_quote(payload, true, f);
            }
            return;
        }
        133 => 0,
        134 => 8,
        135 | 136 => 16,
        137 => 32,
        _ => return,
    };
    let mut opts = payload.get(options_at..).unwrap_or(&[]);
    for _ in 0..32 {
        let (Some(&kind), Some(&len8)) = (opts.first(), opts.get(1)) else {
            return;
        };
        let len = usize::from(len8) * 8;
        if len == 0 {
            f.hot(Hot::Raw);
            return;
        }
        f.name(nd_option_name(kind));
        opts = opts.get(len..).unwrap_or(&[]);
    }
}

/// scapy 2.4.5's ICMPv6 Neighbor Discovery option names.
fn nd_option_name(kind: u8) -> &'static str {
    match kind {
        1 => "ICMPv6 Neighbor Discovery Option - Source Link-Layer Address",
        2 => "ICMPv6 Neighbor Discovery Option - Destination Link-Layer Address",
        3 => "ICMPv6 Neighbor Discovery Option - Prefix Information",
        4 => "ICMPv6 Neighbor Discovery Option - Redirected Header",
        5 => "ICMPv6 Neighbor Discovery Option - MTU",
        6 => "ICMPv6 Neighbor Discovery Option - NBMA Shortcut Limit",
        7 => "ICMPv6 Neighbor Discovery - Interval Advertisement",
        8 => "ICMPv6 Neighbor Discovery - Home Agent Information",
        9 => "ICMPv6 Inverse Neighbor Discovery Option - Source Address List",
        10 => "ICMPv6 Inverse Neighbor Discovery Option - Target Address List",
        17 => "ICMPv6 Neighbor Discovery - IP Address Option (FH for MIPv6)",
        18 => "ICMPv6 Neighbor Discovery - New Router Prefix Information Option (FH for MIPv6)",
        19 => "ICMPv6 Neighbor Discovery - Link-Layer Address (LLA) Option (FH for MIPv6)",
        23 => "ICMPv6 Neighbor Discovery - MAP Option",
        24 => "ICMPv6 Neighbor Discovery Option - Route Information Option",
        25 => "ICMPv6 Neighbor Discovery Option - Recursive DNS Server Option",
        26 => "ICMPv6 Neighbor Discovery Option - Expanded Flags Option",
        31 => "ICMPv6 Neighbor Discovery Option - DNS Search List Option",
        _ => "ICMPv6 Neighbor Discovery Option - Scapy Unimplemented",
    }
}

/// scapy's UDP port bindings, in scapy's order (the ones decidable from the header and
/// the first bytes; a DNS payload that does not parse is `Raw`, as in scapy).
fn udp_application(sport: u16, dport: u16, payload: &[u8], f: &mut impl LayerSink) {
    let either = |port: u16| sport == port || dport == port;
    if (sport, dport) == (68, 67) || (sport, dport) == (67, 68) || (sport, dport) == (67, 67) {
        f.name("BOOTP");
        // scapy: options start with the magic cookie at offset 236 → DHCP options layer.
        if payload.get(236..240) == Some(&DHCP_MAGIC[..]) {
            f.name("DHCP options");
        } else if payload.len() > 236 {
            f.hot(Hot::Raw);
        }
    } else if either(5353) || either(53) {
        f.hot(if dissects_as_dns(payload) {
            Hot::Dns
        } else {
            Hot::Raw
        });
    } else if dport == 547 || dport == 546 {
        dhcpv6(payload, f);
    } else if either(4500) {
        if payload.len() >= 8 {
            f.name("ESP");
        } else {
            f.hot(Hot::Raw);
        }
    } else if either(500) {
        f.name("ISAKMP");
    } else if either(5355) {
        // LLMNR: the QR bit picks query or response.
        f.name(match payload.get(2) {
            Some(b) if b & 0x80 != 0 => "Link Local Multicast Node Resolution - Response",
            _ => "Link Local Multicast Node Resolution - Query",
        });
    } else if dport == 137 {
        f.name("NBNS query request");
    } else if sport == 137 {
        f.name("NBNS query response");
    } else if dport == 138 {
        f.name("NBT Datagram Packet");
        if payload.len() > 82 {
            f.hot(Hot::Raw);
        }
    } else if either(123) {
        f.name("NTPHeader");
    } else if either(1812) || either(1813) || either(3799) {
        f.name("RADIUS");
    } else if either(520) {
        f.name("RIP header");
        for entry in payload.get(4..).unwrap_or(&[]).chunks(20).take(64) {
            f.name(if entry.starts_with(&[0xff, 0xff]) {
                "RIP authentication"
            } else {
                "RIP entry"
            });
        }
    } else if either(161) || either(162) {
        f.name("SNMP");
    } else if dport == 69 {
        f.name("TFTP opcode");
        f.name(match payload.get(..2) {
            Some([0, 1]) => "TFTP Read Request",
            Some([0, 2]) => "TFTP Write Request",
            Some([0, 3]) => "TFTP Data",
            Some([0, 4]) => "TFTP Ack",
            Some([0, 5]) => "TFTP Error",
            Some([0, 6]) => "TFTP Option Ack",
            _ => "Raw",
        });
    } else {
        f.hot(Hot::Raw);
    }
}

/// DHCPv6: the message, then each top-level option.
fn dhcpv6(payload: &[u8], f: &mut impl LayerSink) {
    f.name(dhcpv6_name(payload[0]));
    let header = if matches!(payload[0], 12 | 13) { 34 } else { 4 };
    let mut opts = payload.get(header..).unwrap_or(&[]);
    for _ in 0..64 {
        let (Some(code), Some(len)) = (be16(opts, 0), be16(opts, 2)) else {
            if !opts.is_empty() {
                f.hot(Hot::Raw);
            }
            return;
        };
        f.name(dhcpv6_option_name(code));
        opts = opts.get(4 + usize::from(len)..).unwrap_or(&[]);
    }
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// scapy 2.4.5's DHCPv6 option class names.
fn dhcpv6_option_name(code: u16) -> &'static str {
    match code {
        1 => "DHCP6 Client Identifier Option",
        2 => "DHCP6 Server Identifier Option",
        3 => "DHCP6 Identity Association for Non-temporary Addresses Option",
        4 => "DHCP6 Identity Association for Temporary Addresses Option",
        5 => "DHCP6 IA Address Option (IA_TA or IA_NA suboption)",
        6 => "DHCP6 Option Request Option",
        7 => "DHCP6 Preference Option",
        8 => "DHCP6 Elapsed Time Option",
        9 => "DHCP6 Relay Message Option",
        11 => "DHCP6 Option - Authentication",
        12 => "DHCP6 Server Unicast Option",
        13 => "DHCP6 Status Code Option",
        14 => "DHCP6 Rapid Commit Option",
        15 => "DHCP6 User Class Option",
        16 => "DHCP6 Vendor Class Option",
        17 => "DHCP6 Vendor-specific Information Option",
        18 => "DHCP6 Interface-Id Option",
        19 => "DHCP6 Reconfigure Message Option",
        20 => "DHCP6 Reconfigure Accept Option",
        21 => "DHCP6 Option - SIP Servers Domain Name List",
        22 => "DHCP6 Option - SIP Servers IPv6 Address List",
        23 => "DHCP6 Option - DNS Recursive Name Server",
        24 => "DHCP6 Option - Domain Search List option",
        25 => "DHCP6 Option - Identity Association for Prefix Delegation",
        26 => "DHCP6 Option - IA Prefix option",
        27 => "DHCP6 Option - NIS Servers",
        28 => "DHCP6 Option - NIS+ Servers",
        29 => "DHCP6 Option - NIS Domain Name",
        30 => "DHCP6 Option - NIS+ Domain Name",
        31 => "DHCP6 option - SNTP Servers",
        32 => "DHCP6 Option - Information Refresh Time",
        33 => "DHCP6 Option - BCMCS Domain Name List",
        34 => "DHCP6 Option - BCMCS Addresses List",
        37 => "DHCP6 Option - Relay Agent Remote-ID",
        38 => "DHCP6 Option - Subscriber ID",
        39 => "DHCP6 Option - Client FQDN",
        40 => "DHCP6 PANA Authentication Agent Option",
        41 => "DHCP6 POSIX Timezone Option",
        42 => "DHCP6 TZDB Timezone Option",
        43 => "DHCP6 Option - RelayRequest Option",
        48 => "DHCP6 Client Link Option",
        59 => "DHCP6 Boot File URL Option",
        61 => "DHCP6 Client System Architecture Type Option",
        62 => "DHCP6 Client Network Interface Identifier Option",
        65 => "DHCP6 Option - ERP Domain Name List",
        66 => "DHCP6 Relay-Supplied Options Option",
        68 => "DHCP6 Option - Virtual Subnet Selection",
        79 => "DHCP6 Option - Client Link Layer address",
        112 => "DHCP6 Option - MUD URL",
        _ => "Unknown DHCPv6 Option",
    }
}

/// scapy's DHCPv6 message class names by message type.
fn dhcpv6_name(msg_type: u8) -> &'static str {
    match msg_type {
        1 => "DHCPv6 Solicit Message",
        2 => "DHCPv6 Advertise Message",
        3 => "DHCPv6 Request Message",
        4 => "DHCPv6 Confirm Message",
        5 => "DHCPv6 Renew Message",
        6 => "DHCPv6 Rebind Message",
        7 => "DHCPv6 Reply Message",
        8 => "DHCPv6 Release Message",
        9 => "DHCPv6 Decline Message",
        10 => "DHCPv6 Reconfigure Message",
        11 => "DHCPv6 Information Request Message",
        12 => "DHCPv6 Relay Forward Message (Relay Agent/Server Message)",
        13 => "DHCPv6 Relay Reply Message (Relay Agent/Server Message)",
        _ => "DHCPv6 Generic Message",
    }
}

/// scapy 2.4.5's ICMPv6 class names by type.
fn icmpv6_name(icmp_type: u8) -> &'static str {
    match icmp_type {
        1 => "ICMPv6 Destination Unreachable",
        2 => "ICMPv6 Packet Too Big",
        3 => "ICMPv6 Time Exceeded",
        4 => "ICMPv6 Parameter Problem",
        128 => "ICMPv6 Echo Request",
        129 => "ICMPv6 Echo Reply",
        130 => "MLD - Multicast Listener Query",
        131 => "MLD - Multicast Listener Report",
        132 => "MLD - Multicast Listener Done",
        133 => "ICMPv6 Neighbor Discovery - Router Solicitation",
        134 => "ICMPv6 Neighbor Discovery - Router Advertisement",
        135 => "ICMPv6 Neighbor Discovery - Neighbor Solicitation",
        136 => "ICMPv6 Neighbor Discovery - Neighbor Advertisement",
        137 => "ICMPv6 Neighbor Discovery - Redirect",
        141 => "ICMPv6 Inverse Neighbor Discovery Solicitation",
        142 => "ICMPv6 Inverse Neighbor Discovery Advertisement",
        143 => "MLDv2 - Multicast Listener Report",
        144 => "ICMPv6 Home Agent Address Discovery Request",
        145 => "ICMPv6 Home Agent Address Discovery Reply",
        146 => "ICMPv6 Mobile Prefix Solicitation",
        147 => "ICMPv6 Mobile Prefix Advertisement",
        151 => "ICMPv6 Multicast Router Discovery Advertisement",
        152 => "ICMPv6 Multicast Router Discovery Solicitation",
        153 => "ICMPv6 Multicast Router Discovery Termination",
        155 => "RPL",
        _ => "Scapy6 ICMPv6 fallback class",
    }
}

/// The datagram quoted in an ICMP error: `IP in ICMP` / `IPv6 in ICMPv6`, then the quoted
/// transport (`UDP in ICMP`, `TCP in ICMP`, `ICMP in ICMP`, or an ICMPv6 message), then
/// the application layer scapy would guess from the quoted ports, or `Raw`.
fn icmp_error_quote(quote: &[u8], v6: bool, f: &mut impl LayerSink) {
    let (ip_len, proto) = if v6 {
        f.name("IPv6 in ICMPv6");
        (40, quote.get(6).copied())
    } else {
        f.name("IP in ICMP");
        let ihl = quote.first().map_or(20, |b| usize::from(b & 0x0f) * 4);
        (ihl.max(20), quote.get(9).copied())
    };
    let Some(rest) = quote.get(ip_len..).filter(|r| !r.is_empty()) else {
        return;
    };
    let ports = (be16(rest, 0).unwrap_or(0), be16(rest, 2).unwrap_or(0));
    match proto {
        Some(17) => {
            f.name("UDP in ICMP");
            if let Some(app) = rest.get(8..).filter(|a| !a.is_empty()) {
                udp_application(ports.0, ports.1, app, f);
            }
        }
        Some(6) => {
            f.name("TCP in ICMP");
            let hdr = rest.get(12).map_or(20, |b| usize::from(b >> 4) * 4).max(20);
            if let Some(app) = rest.get(hdr..).filter(|a| !a.is_empty()) {
                tcp_application(ports.0, ports.1, app, f);
            }
        }
        Some(1) if !v6 => {
            f.name("ICMP in ICMP");
            if rest.len() > 8 {
                f.hot(Hot::Raw);
            }
        }
        Some(58) if v6 => f.name(icmpv6_name(rest[0])),
        _ => f.hot(Hot::Raw),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `question_reads` must agree with `dns::question(..).is_some()` everywhere.
    #[test]
    fn question_reads_matches_the_sdk_parser() {
        let mut msgs: Vec<Vec<u8>> = Vec::new();
        // Every UDP/TCP payload of the corpus (DNS and not), and truncations of them.
        for (_, batch) in chef_sdk::testing::corpus() {
            for p in batch.iter() {
                let pl = p.payload();
                if pl.len() >= dns::HEADER_LEN {
                    msgs.push(pl.to_vec());
                    msgs.push(pl[..pl.len() / 2].to_vec());
                    if let Some(m) = dns::strip_tcp_length(pl) {
                        msgs.push(m.to_vec());
                    }
                }
            }
        }
        // Hand-made edge cases: pointer loops, long names, extended label types.
        let hdr = [0u8, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        let mut looped = hdr.to_vec();
        looped.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
        msgs.push(looped);
        let mut long = hdr.to_vec();
        for _ in 0..5 {
            long.push(63);
            long.extend_from_slice(&[b'a'; 63]);
        }
        long.extend_from_slice(&[0, 0, 1, 0, 1]);
        msgs.push(long);
        let mut ext = hdr.to_vec();
        ext.extend_from_slice(&[0x41, 0, 0, 1, 0, 1]);
        msgs.push(ext);
        let mut ok = hdr.to_vec();
        ok.extend_from_slice(&[1, b'a', 0, 0, 1, 0, 1]);
        msgs.push(ok.clone());
        msgs.push(ok[..ok.len() - 1].to_vec());
        // Pseudo-random bytes after a header with one question.
        let mut x = 0x2545_f491_u32;
        for n in 0..20_000 {
            let mut m = hdr.to_vec();
            for _ in 0..(n % 40) {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                m.push(if x.is_multiple_of(5) {
                    0xc0 | (x >> 8) as u8 & 0xc0
                } else {
                    (x >> 8) as u8 % 20
                });
            }
            msgs.push(m);
        }
        let mut both = 0;
        for m in &msgs {
            let nonzero_qd = m.len() >= dns::HEADER_LEN && be16(m, 4) != Some(0);
            let expected = nonzero_qd && dns::question(m).is_some();
            assert_eq!(question_reads(m), expected, "message {m:?}");
            both += usize::from(expected);
        }
        assert!(
            both > 100,
            "the corpus should hold readable DNS questions ({both})"
        );
    }
}
