//! Capture record → the WIT `packet` record, parsed as far as the bytes allow.
//!
//! The link layer is decoded here by hand (it is a handful of fixed headers, and the WIT
//! wants fields etherparse does not expose for SLL2 and BSD null/loop); from the network
//! layer on, etherparse 0.21's lax slicers do the work (`LaxIpSlice` walks IPv4 options and
//! IPv6 extension headers and keeps what parsed before an error; `ArpPacketSlice`,
//! `TcpSlice`, `UdpSlice`, `Icmpv4Slice`, `Icmpv6Slice` validate the transport headers).
//! Every error becomes a WIT `parse-stop {layer, reason}` and parsing stops there: the
//! parser never fails and never panics, whatever the bytes (see the random-input test and
//! `kitchen/fuzz/`).
//!
//! Spans: [`parse_into`] appends the frame to the batch arena and every `span` in the
//! record points into that arena. Offsets of sub-slices are computed from pointer
//! differences inside the one frame slice, so they are exact by construction.

use crate::chef_host::bindings::{
    ArpPacket, EthernetHeader, IcmpHeader, IpHeader, Ipv4Header, Ipv6Fragment, Ipv6Header, Layer,
    LinuxSllHeader, Packet, ParseStop, Span, StopReason, TcpFlags, TcpHeader, TransportHeader,
    UdpHeader, VlanTag,
};
use crate::chef_host::WirePacket;
use crate::parse::defrag::{Defragmenter, FragKey, Fragment};
use capture::PacketRecord;
use etherparse::err::ip::LaxHeaderSliceError;
use etherparse::err::ipv6_exts::HeaderSliceError as ExtSliceError;
use etherparse::{
    ArpPacketSlice, Icmpv4Slice, Icmpv6Slice, Ipv6ExtensionSlice, LaxIpSlice, TcpSlice, UdpSlice,
};

/// pcap link types (DLT numbers) the parser decodes.
pub mod dlt {
    /// BSD loopback: 4-byte address family in the capturing host's byte order.
    pub const NULL: u32 = 0;
    /// Ethernet II (with up to two 802.1Q/802.1ad tags).
    pub const ETHERNET: u32 = 1;
    /// Raw IP (BSD value).
    pub const RAW_BSD: u32 = 12;
    /// Raw IP (OpenBSD value).
    pub const RAW_OPENBSD: u32 = 14;
    /// Raw IP (LINKTYPE_RAW).
    pub const RAW: u32 = 101;
    /// OpenBSD loopback: like NULL, address family in network byte order.
    pub const LOOP: u32 = 108;
    /// Linux cooked capture v1.
    pub const LINUX_SLL: u32 = 113;
    /// Raw IPv4.
    pub const IPV4: u32 = 228;
    /// Raw IPv6.
    pub const IPV6: u32 = 229;
    /// Linux cooked capture v2.
    pub const LINUX_SLL2: u32 = 276;

    /// Whether the parser decodes this link type. A packet of any other stops at the link
    /// layer (`unsupported`, the whole frame its payload): chefs taking every packet get
    /// it, undecoded, and no protocol chef sees it.
    pub fn decoded(link_type: u32) -> bool {
        matches!(
            link_type,
            NULL | ETHERNET
                | RAW_BSD
                | RAW_OPENBSD
                | RAW
                | LOOP
                | LINUX_SLL
                | IPV4
                | IPV6
                | LINUX_SLL2
        )
    }

    /// libpcap's name of a link type (`DLT_` left out), for the common ones: for log lines.
    pub fn name(link_type: u32) -> Option<&'static str> {
        Some(match link_type {
            NULL => "NULL",
            ETHERNET => "EN10MB",
            6 => "IEEE802",
            7 => "ARCNET",
            8 => "SLIP",
            9 => "PPP",
            10 => "FDDI",
            11 => "ATM_RFC1483",
            RAW_BSD | RAW_OPENBSD | RAW => "RAW",
            15 => "SLIP_BSDOS",
            16 => "PPP_BSDOS",
            19 => "ATM_CLIP",
            50 => "PPP_SERIAL",
            51 => "PPP_ETHER",
            104 => "C_HDLC",
            105 => "IEEE802_11",
            107 => "FRELAY",
            LOOP => "LOOP",
            109 => "ENC",
            LINUX_SLL => "LINUX_SLL",
            117 => "PFLOG",
            119 => "PRISM_HEADER",
            127 => "IEEE802_11_RADIO",
            163 => "IEEE802_11_RADIO_AVS",
            187 => "BLUETOOTH_HCI_H4",
            189 => "USB_LINUX",
            192 => "PPI",
            195 => "IEEE802_15_4",
            201 => "BLUETOOTH_HCI_H4_WITH_PHDR",
            204 => "PPP_WITH_DIR",
            220 => "USB_LINUX_MMAPPED",
            IPV4 => "IPV4",
            IPV6 => "IPV6",
            239 => "NFLOG",
            249 => "USBPCAP",
            253 => "NETLINK",
            LINUX_SLL2 => "LINUX_SLL2",
            _ => return None,
        })
    }
}

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_ARP: u16 = 0x0806;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;
const ETHERTYPE_QINQ_OLD: u16 = 0x9100;
/// PPPoE session stage (RFC 2516): a 6-byte PPPoE header and a PPP protocol number, then
/// the datagram. DSL uplinks carry IP this way, often inside VLAN tags.
const ETHERTYPE_PPPOE_SESSION: u16 = 0x8864;
/// PPP protocol numbers of IPv4 and IPv6 (RFC 1332, RFC 5072).
const PPP_IPV4: u16 = 0x0021;
const PPP_IPV6: u16 = 0x0057;

/// Network-layer class of a parsed packet, for interest matching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum NetClass {
    /// ARP.
    Arp = 0,
    /// IPv4.
    Ipv4 = 1,
    /// IPv6.
    Ipv6 = 2,
    /// Anything the parser did not decode.
    Other = 3,
}

/// Transport-layer class of a parsed packet, for interest matching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum TransportClass {
    /// TCP.
    Tcp = 0,
    /// UDP.
    Udp = 1,
    /// ICMPv4.
    Icmpv4 = 2,
    /// ICMPv6.
    Icmpv6 = 3,
    /// No transport header was parsed.
    None = 4,
}

/// The few facts interest matching needs, kept beside each record so the dispatcher does
/// not walk the WIT record's options for every chef.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketClass {
    /// pcap DLT of the packet.
    pub link_type: u32,
    /// Network layer.
    pub net: NetClass,
    /// Transport layer.
    pub transport: TransportClass,
    /// TCP/UDP (source, destination) ports, when a TCP or UDP header was parsed.
    pub ports: Option<(u16, u16)>,
}

/// The parser's output fields of a value with the header fields (a `Packet` or a
/// `ParsedFrame`: the same names and types).
macro_rules! headers_of {
    ($p:expr) => {
        Headers {
            ethernet: &mut $p.ethernet,
            linux_sll: &mut $p.linux_sll,
            vlan_outer: &mut $p.vlan_outer,
            vlan_inner: &mut $p.vlan_inner,
            arp: &mut $p.arp,
            ip: &mut $p.ip,
            transport: &mut $p.transport,
            payload: &mut $p.payload,
            padding: &mut $p.padding,
            stopped: &mut $p.stopped,
        }
    };
}

/// Parse one capture record, append its frame to `arena`, and return the WIT record (spans
/// into `arena`) and its class.
///
/// Frames larger than `u32::MAX` bytes cannot occur (pcap lengths are 32-bit); spans are
/// clamped rather than trusted, so a malicious source cannot make them overflow.
pub fn parse_into(record: &PacketRecord<'_>, arena: &mut Vec<u8>) -> (Packet, PacketClass) {
    let mut packets = Vec::with_capacity(1);
    let class = parse_push(record, arena, &mut packets);
    let WirePacket(packet) = packets[0];
    (packet, class)
}

/// [`parse_into`], writing the record straight into the end of `packets` (a batch): the
/// record is 240 bytes, and building it in place instead of moving it through return
/// values saves several copies per packet.
pub fn parse_push(
    record: &PacketRecord<'_>,
    arena: &mut Vec<u8>,
    packets: &mut Vec<WirePacket>,
) -> PacketClass {
    parse_push_reassembling(record, arena, packets, None)
}

/// [`parse_push`] with IP reassembly ([`crate::parse::defrag`]): with `defrag` given and on,
/// an IP fragment stops at the transport layer (`fragment`), and the fragment that completes
/// a datagram also gets the datagram's transport header and payload, the payload appended
/// to `arena` right after the frame.
pub fn parse_push_reassembling(
    record: &PacketRecord<'_>,
    arena: &mut Vec<u8>,
    packets: &mut Vec<WirePacket>,
    defrag: Option<&mut Defragmenter>,
) -> PacketClass {
    let base = arena.len();
    arena.extend_from_slice(record.data);
    packets.push(WirePacket(Packet {
        timestamp_ns: record.timestamp_ns,
        captured_len: clamp_u32(record.data.len()),
        original_len: record.original_len,
        link_type: record.link_type,
        interface_index: record.interface_index,
        frame: span(base, record.data.len()),
        ethernet: None,
        linux_sll: None,
        vlan_outer: None,
        vlan_inner: None,
        arp: None,
        ip: None,
        transport: None,
        payload: span(0, 0),
        padding: span(0, 0),
        stopped: None,
        // Filled later by the flow tracker, only when some chef uses flows or streams.
        flow: None,
    }));
    let Some(WirePacket(out)) = packets.last_mut() else {
        unreachable!("a record was just pushed");
    };
    let mut parser = Parser {
        frame: record.data,
        out: headers_of!(out),
        reassembling: defrag.as_ref().is_some_and(|d| d.enabled()),
        fragment: None,
    };
    parser.link(record.link_type);
    let fragment = parser.fragment.take();
    let mut headers = parser.out;
    let base = clamp_u32(base);
    for s in [&mut *headers.payload, &mut *headers.padding] {
        s.offset = s.offset.saturating_add(base);
    }
    if let (Some(fragment), Some(defrag)) = (fragment, defrag) {
        if let Some(whole) = defrag.offer(&fragment, record.timestamp_ns) {
            // The datagram is dissected at the frame of its last fragment, as tshark does.
            let at = clamp_u32(arena.len());
            arena.extend_from_slice(whole.payload);
            *headers.stopped = None;
            let mut datagram = Parser {
                frame: whole.payload,
                out: headers,
                reassembling: false,
                fragment: None,
            };
            datagram.transport(whole.ip_number, whole.payload);
            headers = datagram.out;
            headers.payload.offset = headers.payload.offset.saturating_add(at);
        }
    }
    class_of(
        record.link_type,
        headers.arp.as_ref(),
        headers.ip.as_ref(),
        headers.transport.as_ref(),
    )
}

/// The parser's output: the header fields of a [`Packet`] (or of a [`ParsedFrame`]).
struct Headers<'o> {
    ethernet: &'o mut Option<EthernetHeader>,
    linux_sll: &'o mut Option<LinuxSllHeader>,
    vlan_outer: &'o mut Option<VlanTag>,
    vlan_inner: &'o mut Option<VlanTag>,
    arp: &'o mut Option<ArpPacket>,
    ip: &'o mut Option<IpHeader>,
    transport: &'o mut Option<TransportHeader>,
    payload: &'o mut Span,
    padding: &'o mut Span,
    stopped: &'o mut Option<ParseStop>,
}

/// Headers and spans of one frame, spans relative to the start of the frame.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedFrame {
    /// Ethernet II header.
    pub ethernet: Option<EthernetHeader>,
    /// Linux cooked header (SLL or SLL2).
    pub linux_sll: Option<LinuxSllHeader>,
    /// Outer VLAN tag.
    pub vlan_outer: Option<VlanTag>,
    /// Inner VLAN tag.
    pub vlan_inner: Option<VlanTag>,
    /// ARP packet.
    pub arp: Option<ArpPacket>,
    /// IP header.
    pub ip: Option<IpHeader>,
    /// Transport header.
    pub transport: Option<TransportHeader>,
    /// Bytes after the last parsed header, up to the end of the IP datagram / ARP packet.
    pub payload: Span,
    /// Bytes after the IP datagram / ARP packet.
    pub padding: Span,
    /// Where parsing stopped, if it stopped early.
    pub stopped: Option<ParseStop>,
}

impl ParsedFrame {
    fn empty() -> Self {
        ParsedFrame {
            ethernet: None,
            linux_sll: None,
            vlan_outer: None,
            vlan_inner: None,
            arp: None,
            ip: None,
            transport: None,
            payload: span(0, 0),
            padding: span(0, 0),
            stopped: None,
        }
    }

    /// The class interest matching uses.
    pub fn class(&self, link_type: u32) -> PacketClass {
        class_of(
            link_type,
            self.arp.as_ref(),
            self.ip.as_ref(),
            self.transport.as_ref(),
        )
    }
}

fn class_of(
    link_type: u32,
    arp: Option<&ArpPacket>,
    ip: Option<&IpHeader>,
    transport: Option<&TransportHeader>,
) -> PacketClass {
    let net = match (arp, ip) {
        (Some(_), _) => NetClass::Arp,
        (None, Some(IpHeader::V4(_))) => NetClass::Ipv4,
        (None, Some(IpHeader::V6(_))) => NetClass::Ipv6,
        (None, None) => NetClass::Other,
    };
    let (transport, ports) = match transport {
        Some(TransportHeader::Tcp(t)) => (
            TransportClass::Tcp,
            Some((t.source_port, t.destination_port)),
        ),
        Some(TransportHeader::Udp(u)) => (
            TransportClass::Udp,
            Some((u.source_port, u.destination_port)),
        ),
        Some(TransportHeader::Icmpv4(_)) => (TransportClass::Icmpv4, None),
        Some(TransportHeader::Icmpv6(_)) => (TransportClass::Icmpv6, None),
        None => (TransportClass::None, None),
    };
    PacketClass {
        link_type,
        net,
        transport,
        ports,
    }
}

/// Parse a frame of the given link type. Never panics; every span lies inside `frame`.
pub fn parse_frame(link_type: u32, frame: &[u8]) -> ParsedFrame {
    parse_alone(link_type, frame, false).0
}

/// The IP fragment a frame carries, as the reassembler sees it (any fragment, first or
/// not), or `None` for a frame that is not a whole, uncut IP fragment. Crash capsules use
/// it to rebuild the other fragments of a datagram whose completing fragment they save.
pub fn fragment_of(link_type: u32, frame: &[u8]) -> Option<Fragment<'_>> {
    parse_alone(link_type, frame, true).1
}

/// One frame parsed outside a batch: its headers, and (with `reassembling`) the IP
/// fragment it carries.
fn parse_alone(
    link_type: u32,
    frame: &[u8],
    reassembling: bool,
) -> (ParsedFrame, Option<Fragment<'_>>) {
    let mut out = ParsedFrame::empty();
    let mut p = Parser {
        frame,
        out: headers_of!(out),
        reassembling,
        fragment: None,
    };
    p.link(link_type);
    let fragment = p.fragment;
    (out, fragment)
}

struct Parser<'a, 'o> {
    frame: &'a [u8],
    out: Headers<'o>,
    /// IP reassembly is on: every fragment stops at the transport layer and is noted in
    /// `fragment` (off: only non-first fragments stop, the first parses its transport).
    reassembling: bool,
    /// The IP fragment this frame carries, for the reassembler.
    fragment: Option<Fragment<'a>>,
}

impl<'a> Parser<'a, '_> {
    /// Offset of `sub` (a sub-slice of the frame) from the frame's start.
    fn off(&self, sub: &[u8]) -> usize {
        // Both are slices of the same allocation; `saturating_sub` only guards against a
        // bug elsewhere handing us a foreign slice (it would give a wrong span, not UB).
        (sub.as_ptr() as usize).saturating_sub(self.frame.as_ptr() as usize)
    }

    fn span_of(&self, sub: &[u8]) -> Span {
        span(self.off(sub), sub.len())
    }

    /// Stop at `layer` for `reason`; `rest` (what was not parsed) becomes the payload.
    fn stop(&mut self, layer: Layer, reason: StopReason, rest: &[u8]) {
        *self.out.stopped = Some(ParseStop { layer, reason });
        *self.out.payload = self.span_of(rest);
    }

    fn link(&mut self, link_type: u32) {
        let frame = self.frame;
        match link_type {
            dlt::ETHERNET => self.ethernet(frame),
            dlt::LINUX_SLL => self.linux_sll(frame),
            dlt::LINUX_SLL2 => self.linux_sll2(frame),
            dlt::RAW | dlt::RAW_BSD | dlt::RAW_OPENBSD | dlt::IPV4 | dlt::IPV6 => self.ip(frame),
            dlt::NULL | dlt::LOOP => self.null_loop(frame),
            _ => self.stop(Layer::Link, StopReason::Unsupported, frame),
        }
    }

    fn ethernet(&mut self, data: &'a [u8]) {
        let Some((hdr, rest)) = data.split_first_chunk::<14>() else {
            return self.stop(Layer::Link, StopReason::Truncated, data);
        };
        let ether_type = be16(hdr, 12);
        *self.out.ethernet = Some(EthernetHeader {
            destination: mac(&hdr[0..6]),
            source: mac(&hdr[6..12]),
            ether_type,
        });
        self.ether_type(ether_type, rest);
    }

    fn linux_sll(&mut self, data: &'a [u8]) {
        // packet type (2), ARPHRD (2), address length (2), address (8), protocol (2).
        let Some((hdr, rest)) = data.split_first_chunk::<16>() else {
            return self.stop(Layer::Link, StopReason::Truncated, data);
        };
        let protocol = be16(hdr, 14);
        *self.out.linux_sll = Some(LinuxSllHeader {
            packet_type: be16(hdr, 0),
            arp_hardware_type: be16(hdr, 2),
            source: u64::from_be_bytes(sub8(&hdr[6..14])),
            source_len: be16(hdr, 4).min(8) as u8,
            protocol_type: protocol,
        });
        self.sll_protocol(protocol, rest);
    }

    fn linux_sll2(&mut self, data: &'a [u8]) {
        // protocol (2), reserved (2), ifindex (4), ARPHRD (2), packet type (1),
        // address length (1), address (8).
        let Some((hdr, rest)) = data.split_first_chunk::<20>() else {
            return self.stop(Layer::Link, StopReason::Truncated, data);
        };
        let protocol = be16(hdr, 0);
        *self.out.linux_sll = Some(LinuxSllHeader {
            packet_type: u16::from(hdr[10]),
            arp_hardware_type: be16(hdr, 8),
            source: u64::from_be_bytes(sub8(&hdr[12..20])),
            source_len: hdr[11].min(8),
            protocol_type: protocol,
        });
        self.sll_protocol(protocol, rest);
    }

    /// SLL's protocol field is an EtherType for values >= 0x0600; smaller values are
    /// Linux-internal protocol numbers (802.2 LLC, CAN, ...) the parser does not decode.
    fn sll_protocol(&mut self, protocol: u16, rest: &'a [u8]) {
        if protocol >= 0x0600 {
            self.ether_type(protocol, rest);
        } else {
            self.stop(Layer::Network, StopReason::Unsupported, rest);
        }
    }

    fn null_loop(&mut self, data: &'a [u8]) {
        let Some((hdr, rest)) = data.split_first_chunk::<4>() else {
            return self.stop(Layer::Link, StopReason::Truncated, data);
        };
        // DLT_NULL is in the capturing host's byte order, DLT_LOOP in network order; the
        // family is a small number, so whichever reading is small is the right one.
        let le = u32::from_le_bytes(*hdr);
        let family = if le <= 0xffff {
            le
        } else {
            u32::from_be_bytes(*hdr)
        };
        match family {
            // AF_INET everywhere; AF_INET6 is 10 (Linux), 24 (NetBSD/OpenBSD), 28
            // (FreeBSD), 30 (macOS).
            2 | 10 | 24 | 28 | 30 => self.ip(rest),
            _ => self.stop(Layer::Network, StopReason::Unsupported, rest),
        }
    }

    /// After the link header: VLAN tags, then ARP or IP.
    fn ether_type(&mut self, ether_type: u16, rest: &'a [u8]) {
        let (mut ether_type, mut rest) = (ether_type, rest);
        let mut tags = 0;
        while matches!(
            ether_type,
            ETHERTYPE_VLAN | ETHERTYPE_QINQ | ETHERTYPE_QINQ_OLD
        ) {
            if tags == 2 {
                // A third tag: the WIT has room for two.
                return self.stop(Layer::Vlan, StopReason::Unsupported, rest);
            }
            let Some((tag, after)) = rest.split_first_chunk::<4>() else {
                return self.stop(Layer::Vlan, StopReason::Truncated, rest);
            };
            let tci = be16(tag, 0);
            let inner_type = be16(tag, 2);
            let vlan = VlanTag {
                priority: (tci >> 13) as u8,
                drop_eligible: tci & 0x1000 != 0,
                id: tci & 0x0fff,
                ether_type: inner_type,
            };
            if tags == 0 {
                *self.out.vlan_outer = Some(vlan);
            } else {
                *self.out.vlan_inner = Some(vlan);
            }
            tags += 1;
            ether_type = inner_type;
            rest = after;
        }
        match ether_type {
            ETHERTYPE_IPV4 | ETHERTYPE_IPV6 => self.ip(rest),
            ETHERTYPE_ARP => self.arp(rest),
            ETHERTYPE_PPPOE_SESSION => self.pppoe_session(rest),
            _ => self.stop(Layer::Network, StopReason::Unsupported, rest),
        }
    }

    /// A PPPoE session frame: version/type (0x11), code (0 = session data), session id,
    /// length, then the 2-byte PPP protocol. The WIT has no PPPoE record, so the shim is
    /// skipped (the ethernet/VLAN ether-type still says 0x8864) and IP is decoded after
    /// it, as tshark and scapy do; other PPP protocols (LCP, IPCP, ...) stop here.
    fn pppoe_session(&mut self, data: &'a [u8]) {
        let Some((hdr, rest)) = data.split_first_chunk::<8>() else {
            return self.stop(Layer::Link, StopReason::Truncated, data);
        };
        if hdr[0] != 0x11 || hdr[1] != 0 {
            return self.stop(Layer::Link, StopReason::Malformed, data);
        }
        match be16(hdr, 6) {
            PPP_IPV4 | PPP_IPV6 => self.ip(rest),
            _ => self.stop(Layer::Network, StopReason::Unsupported, rest),
        }
    }

    fn arp(&mut self, data: &'a [u8]) {
        let arp = match ArpPacketSlice::from_slice(data) {
            Ok(arp) => arp,
            Err(_) => return self.stop(Layer::Network, StopReason::Truncated, data),
        };
        let whole = arp.slice();
        let end = self.off(whole) + whole.len();
        let ethernet_ipv4 = arp.hw_addr_type().0 == 1
            && arp.proto_addr_type().0 == ETHERTYPE_IPV4
            && arp.hw_addr_size() == 6
            && arp.proto_addr_size() == 4;
        let (shw, spa, thw, tpa) = if ethernet_ipv4 {
            (
                mac(arp.sender_hw_addr()),
                be32_of(arp.sender_protocol_addr()),
                mac(arp.target_hw_addr()),
                be32_of(arp.target_protocol_addr()),
            )
        } else {
            (0, 0, 0, 0)
        };
        *self.out.arp = Some(ArpPacket {
            hardware_type: arp.hw_addr_type().0,
            protocol_type: arp.proto_addr_type().0,
            operation: arp.operation().0,
            sender_hardware: shw,
            sender_protocol: spa,
            target_hardware: thw,
            target_protocol: tpa,
        });
        // Decoded addresses leave nothing for the payload; otherwise the raw address bytes
        // (after the 8-byte fixed part) are the payload, as the WIT promises.
        *self.out.payload = if ethernet_ipv4 {
            span(end, 0)
        } else {
            self.span_of(whole.get(8..).unwrap_or(&[]))
        };
        *self.out.padding = span(end, self.frame.len().saturating_sub(end));
    }

    fn ip(&mut self, data: &'a [u8]) {
        let (ip, ext_stop) = match LaxIpSlice::from_slice(data) {
            Ok(v) => v,
            Err(LaxHeaderSliceError::Len(_)) => {
                return self.stop(Layer::Network, StopReason::Truncated, data)
            }
            Err(LaxHeaderSliceError::Content(_)) => {
                return self.stop(Layer::Network, StopReason::Malformed, data)
            }
        };
        let ip_payload = ip.payload();
        let payload = ip_payload.payload;
        // The datagram ends where etherparse cut the payload (total/payload length, or the
        // capture end when those lie); what follows is link-layer padding.
        let datagram_end = self.off(payload) + payload.len();
        *self.out.padding = span(datagram_end, self.frame.len().saturating_sub(datagram_end));
        let ip_number = ip_payload.ip_number.0;
        let mut non_first_fragment = false;
        let mut fragment = None;
        match &ip {
            LaxIpSlice::Ipv4(v4) => {
                let h = v4.header();
                let b = h.slice();
                let frag = be16(b, 6);
                let offset_bytes = (frag & 0x1fff).wrapping_mul(8);
                non_first_fragment = offset_bytes != 0;
                let more = frag & 0x2000 != 0;
                // Only whole fragments can be put together: not one the snaplen cut.
                let whole = || {
                    let header_len = usize::from(b[0] & 0x0f) * 4;
                    usize::from(be16(b, 2)).saturating_sub(header_len) == payload.len()
                };
                if (more || non_first_fragment) && whole() {
                    fragment = Some(Fragment {
                        key: FragKey {
                            source: u128::from(be32(b, 12)),
                            destination: u128::from(be32(b, 16)),
                            identification: u32::from(be16(b, 4)),
                            protocol: b[9],
                            ipv6: false,
                        },
                        offset: u32::from(offset_bytes),
                        more,
                        ip_number: b[9],
                        data: payload,
                    });
                }
                *self.out.ip = Some(IpHeader::V4(Ipv4Header {
                    source: be32(b, 12),
                    destination: be32(b, 16),
                    protocol: b[9],
                    ttl: b[8],
                    tos: b[1],
                    header_len: (b[0] & 0x0f) * 4,
                    total_len: be16(b, 2),
                    identification: be16(b, 4),
                    dont_fragment: frag & 0x4000 != 0,
                    more_fragments: frag & 0x2000 != 0,
                    fragment_offset: offset_bytes,
                }));
            }
            LaxIpSlice::Ipv6(v6) => {
                let h = v6.header();
                let b = h.slice();
                let mut ipv6_fragment = None;
                for ext in v6.extensions().clone() {
                    if let Ipv6ExtensionSlice::Fragment(f) = ext {
                        let offset = f.fragment_offset().byte_offset();
                        non_first_fragment |= offset != 0;
                        ipv6_fragment = Some(Ipv6Fragment {
                            offset,
                            more_fragments: f.more_fragments(),
                            identification: f.identification(),
                        });
                        // The fragment's bytes start right after its 8-byte header.
                        let start = self.off(f.slice()) + 8;
                        let declared = usize::from(be16(b, 4)) + 40;
                        let whole = self.off(b) + declared == datagram_end;
                        if (f.more_fragments() || offset != 0) && whole {
                            fragment = Some(Fragment {
                                key: FragKey {
                                    source: (u128::from(be64(b, 8)) << 64)
                                        | u128::from(be64(b, 16)),
                                    destination: (u128::from(be64(b, 24)) << 64)
                                        | u128::from(be64(b, 32)),
                                    identification: f.identification(),
                                    protocol: 0,
                                    ipv6: true,
                                },
                                offset: u32::from(offset),
                                more: f.more_fragments(),
                                ip_number: f.next_header().0,
                                data: self.frame.get(start..datagram_end).unwrap_or(&[]),
                            });
                        }
                    }
                }
                *self.out.ip = Some(IpHeader::V6(Ipv6Header {
                    source: (be64(b, 8), be64(b, 16)),
                    destination: (be64(b, 24), be64(b, 32)),
                    next_header: ip_number,
                    hop_limit: b[7],
                    traffic_class: ((b[0] & 0x0f) << 4) | (b[1] >> 4),
                    flow_label: be32(b, 0) & 0x000f_ffff,
                    payload_len: be16(b, 4),
                    fragment: ipv6_fragment,
                }));
            }
        }
        if let Some((err, _)) = ext_stop {
            let reason = match err {
                ExtSliceError::Len(_) => StopReason::Truncated,
                ExtSliceError::Content(_) => StopReason::Malformed,
            };
            return self.stop(Layer::IpExtension, reason, payload);
        }
        if self.reassembling && fragment.is_some() {
            // Reassembly gives the datagram its transport at the completing fragment; no
            // fragment shows a partial one (a chef would see the first bytes twice).
            self.fragment = fragment;
            return self.stop(Layer::Transport, StopReason::Fragment, payload);
        }
        if non_first_fragment {
            // The transport header is in the first fragment; these bytes are not one.
            return self.stop(Layer::Transport, StopReason::Fragment, payload);
        }
        self.transport(ip_number, payload);
    }

    fn transport(&mut self, ip_number: u8, data: &'a [u8]) {
        const ICMP: u8 = 1;
        const TCP: u8 = 6;
        const UDP: u8 = 17;
        const ICMPV6: u8 = 58;
        match ip_number {
            TCP => match TcpSlice::from_slice(data) {
                Ok(tcp) => {
                    let b = tcp.slice();
                    let hlen = usize::from(b[12] >> 4) * 4;
                    *self.out.transport = Some(TransportHeader::Tcp(TcpHeader {
                        source_port: be16(b, 0),
                        destination_port: be16(b, 2),
                        sequence: be32(b, 4),
                        acknowledgment: be32(b, 8),
                        flags: tcp_flags(b[13]),
                        window: be16(b, 14),
                        header_len: hlen as u8,
                        urgent_pointer: be16(b, 18),
                    }));
                    *self.out.payload = self.span_of(tcp.payload());
                }
                Err(etherparse::err::tcp::HeaderSliceError::Len(_)) => {
                    self.stop(Layer::Transport, StopReason::Truncated, data)
                }
                Err(etherparse::err::tcp::HeaderSliceError::Content(_)) => {
                    self.stop(Layer::Transport, StopReason::Malformed, data)
                }
            },
            UDP => match UdpSlice::from_slice_lax(data) {
                Ok(udp) => {
                    let b = udp.slice();
                    *self.out.transport = Some(TransportHeader::Udp(UdpHeader {
                        source_port: be16(b, 0),
                        destination_port: be16(b, 2),
                        length: be16(b, 4),
                    }));
                    *self.out.payload = self.span_of(udp.payload());
                }
                Err(_) => self.stop(Layer::Transport, StopReason::Truncated, data),
            },
            ICMP => match Icmpv4Slice::from_slice(data) {
                Ok(icmp) => {
                    let b = icmp.slice();
                    *self.out.transport = Some(TransportHeader::Icmpv4(icmp_header(b)));
                    *self.out.payload = self.span_of(b.get(8..).unwrap_or(&[]));
                }
                Err(_) => self.stop(Layer::Transport, StopReason::Truncated, data),
            },
            ICMPV6 => match Icmpv6Slice::from_slice(data) {
                Ok(icmp) => {
                    let b = icmp.slice();
                    *self.out.transport = Some(TransportHeader::Icmpv6(icmp_header(b)));
                    *self.out.payload = self.span_of(b.get(8..).unwrap_or(&[]));
                }
                Err(_) => self.stop(Layer::Transport, StopReason::Truncated, data),
            },
            _ => self.stop(Layer::Transport, StopReason::Unsupported, data),
        }
    }
}

fn icmp_header(b: &[u8]) -> IcmpHeader {
    IcmpHeader {
        icmp_type: b.first().copied().unwrap_or(0),
        code: b.get(1).copied().unwrap_or(0),
        rest: be32(b, 4),
    }
}

/// Each TCP header flag bit and its WIT flag.
pub(crate) const TCP_FLAG_BITS: [(u8, TcpFlags); 8] = [
    (0x01, TcpFlags::FIN),
    (0x02, TcpFlags::SYN),
    (0x04, TcpFlags::RST),
    (0x08, TcpFlags::PSH),
    (0x10, TcpFlags::ACK),
    (0x20, TcpFlags::URG),
    (0x40, TcpFlags::ECE),
    (0x80, TcpFlags::CWR),
];

/// The WIT flags of a TCP header's flags byte.
pub(crate) fn tcp_flags(bits: u8) -> TcpFlags {
    let mut f = TcpFlags::empty();
    for (mask, flag) in TCP_FLAG_BITS {
        if bits & mask != 0 {
            f |= flag;
        }
    }
    f
}

/// The TCP header flags byte of WIT flags ([`tcp_flags`]' inverse). The WIT declares the
/// flags in header bit order (fin = bit 0 ... cwr = bit 7), and wasmtime keeps a flags
/// value as one bit per flag in declaration order, so this is that word's low byte.
#[inline]
pub(crate) fn tcp_flag_bits(f: TcpFlags) -> u8 {
    f.as_array()[0] as u8
}

fn span(offset: usize, len: usize) -> Span {
    Span {
        offset: clamp_u32(offset),
        len: clamp_u32(len),
    }
}

fn clamp_u32(v: usize) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

// Field readers. Callers pass slices whose length etherparse (or a fixed-size chunk) has
// already checked; out-of-range reads still return 0 instead of panicking.
fn be16(b: &[u8], at: usize) -> u16 {
    b.get(at..at + 2)
        .map_or(0, |s| u16::from_be_bytes([s[0], s[1]]))
}

fn be32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .map_or(0, |s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

fn be32_of(b: &[u8]) -> u32 {
    be32(b, 0)
}

fn be64(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8).map_or(0, |s| u64::from_be_bytes(sub8(s)))
}

fn sub8(s: &[u8]) -> [u8; 8] {
    let mut out = [0u8; 8];
    let n = s.len().min(8);
    out[..n].copy_from_slice(&s[..n]);
    out
}

/// Six bytes big-endian in the low 48 bits.
fn mac(b: &[u8]) -> u64 {
    b.iter()
        .take(6)
        .fold(0u64, |acc, &x| (acc << 8) | u64::from(x))
}

/// Frames for tests elsewhere in the kitchen.
#[cfg(test)]
pub(crate) mod test_frames {
    /// A raw IPv6 frame (DLT 101) from 2001:db8:2001:db8:: to 2001:db9:..., identification
    /// 0xdeadbeef, whose fragment header (next header UDP) says `offset` (bytes, a multiple
    /// of 8) and `more`, carrying `data`.
    pub(crate) fn raw_ipv6_udp_fragment(offset: u16, more: bool, data: &[u8]) -> Vec<u8> {
        let mut f = vec![0x60, 0, 0, 0];
        f.extend_from_slice(&((8 + data.len()) as u16).to_be_bytes());
        f.extend_from_slice(&[44, 64]);
        f.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8].repeat(4));
        f.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb9].repeat(4));
        f.extend_from_slice(&[17, 0]);
        f.extend_from_slice(&(offset | u16::from(more)).to_be_bytes());
        f.extend_from_slice(&0xdead_beefu32.to_be_bytes());
        f.extend_from_slice(data);
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eth(dst: [u8; 6], src: [u8; 6], ether_type: u16) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&dst);
        f.extend_from_slice(&src);
        f.extend_from_slice(&ether_type.to_be_bytes());
        f
    }

    fn ipv4_udp(src_port: u16, dst_port: u16, payload: &[u8]) -> Vec<u8> {
        let total = 20 + 8 + payload.len();
        let mut f = vec![
            0x45, 0x00, 0, 0, 0x12, 0x34, 0x40, 0x00, 64, 17, 0, 0, 127, 0, 0, 1, 10, 0, 0, 2,
        ];
        f[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        f.extend_from_slice(&src_port.to_be_bytes());
        f.extend_from_slice(&dst_port.to_be_bytes());
        f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(payload);
        f
    }

    fn bytes<'a>(frame: &'a [u8], s: &Span) -> &'a [u8] {
        &frame[s.offset as usize..(s.offset + s.len) as usize]
    }

    #[test]
    fn ethernet_ipv4_udp_with_padding() {
        let mut f = eth([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2], 0x0800);
        f.extend(ipv4_udp(5353, 53, b"hello"));
        f.extend_from_slice(&[0; 7]); // Ethernet padding to the 60-byte minimum
        let p = parse_frame(dlt::ETHERNET, &f);
        assert_eq!(p.stopped, None);
        let e = p.ethernet.unwrap();
        assert_eq!(e.destination, 0x0200_0000_0001);
        assert_eq!(e.source, 0x0200_0000_0002);
        match p.ip {
            Some(IpHeader::V4(ip)) => {
                assert_eq!(ip.source, 0x7f00_0001);
                assert_eq!(ip.destination, 0x0a00_0002);
                assert_eq!(ip.protocol, 17);
                assert!(ip.dont_fragment);
                assert_eq!(ip.header_len, 20);
            }
            other => panic!("expected IPv4, got {other:?}"),
        }
        match p.transport {
            Some(TransportHeader::Udp(u)) => {
                assert_eq!(
                    (u.source_port, u.destination_port, u.length),
                    (5353, 53, 13)
                )
            }
            other => panic!("expected UDP, got {other:?}"),
        }
        assert_eq!(bytes(&f, &p.payload), b"hello");
        assert_eq!(p.padding.len, 7);
        assert_eq!(p.padding.offset as usize + 7, f.len());
        assert_eq!(
            p.class(1).ports,
            Some((5353, 53)),
            "class carries the ports"
        );
    }

    #[test]
    fn double_vlan_and_tcp_flags() {
        let mut f = eth([0xff; 6], [1, 2, 3, 4, 5, 6], 0x88a8);
        f.extend_from_slice(&[0xa0, 0x0a, 0x81, 0x00]); // PCP 5, id 10, inner 802.1Q
        f.extend_from_slice(&[0x10, 0x14, 0x08, 0x00]); // DEI, id 20, IPv4
        let mut ip = vec![
            0x45, 0, 0, 44, 0, 1, 0, 0, 64, 6, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8,
        ];
        ip.extend_from_slice(&[0, 80, 0x1f, 0x90, 0, 0, 0, 1, 0, 0, 0, 2, 0x50, 0x12]);
        ip.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0]);
        ip.extend_from_slice(b"GET ");
        f.extend(ip);
        let p = parse_frame(dlt::ETHERNET, &f);
        assert_eq!(p.stopped, None, "{p:?}");
        let outer = p.vlan_outer.unwrap();
        assert_eq!(
            (outer.priority, outer.id, outer.ether_type),
            (5, 10, 0x8100)
        );
        let inner = p.vlan_inner.unwrap();
        assert!(inner.drop_eligible);
        assert_eq!((inner.id, inner.ether_type), (20, 0x0800));
        match p.transport {
            Some(TransportHeader::Tcp(t)) => {
                assert_eq!(t.flags, TcpFlags::SYN | TcpFlags::ACK);
                assert_eq!((t.source_port, t.destination_port), (80, 8080));
                assert_eq!(t.header_len, 20);
            }
            other => panic!("expected TCP, got {other:?}"),
        }
        assert_eq!(bytes(&f, &p.payload), b"GET ");
    }

    #[test]
    fn pppoe_session_inside_vlan_tags_reaches_ip_and_tcp() {
        // The layout of PcapPlusPlus' one_http_stream_rst.pcap: two 802.1Q tags, a PPPoE
        // session header, PPP protocol 0x0021, IPv4, TCP.
        let mut f = eth([0xff; 6], [1, 2, 3, 4, 5, 6], 0x8100);
        f.extend_from_slice(&[0x03, 0xab, 0x81, 0x00, 0x02, 0xe8, 0x88, 0x64]);
        let mut ip = vec![
            0x45, 0, 0, 44, 0, 1, 0, 0, 64, 6, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8,
        ];
        ip.extend_from_slice(&[0x13, 0xcc, 0, 80, 0, 0, 0, 1, 0, 0, 0, 2, 0x50, 0x18]);
        ip.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0]);
        ip.extend_from_slice(b"GET ");
        let ppp_len = (ip.len() + 2) as u16;
        f.extend_from_slice(&[0x11, 0x00, 0xdd, 0xe5]);
        f.extend_from_slice(&ppp_len.to_be_bytes());
        f.extend_from_slice(&[0x00, 0x21]);
        f.extend(ip);
        let p = parse_frame(dlt::ETHERNET, &f);
        assert_eq!(p.stopped, None, "{p:?}");
        assert_eq!(p.vlan_inner.map(|v| v.ether_type), Some(0x8864));
        assert!(matches!(p.ip, Some(IpHeader::V4(_))), "{p:?}");
        match p.transport {
            Some(TransportHeader::Tcp(t)) => {
                assert_eq!((t.source_port, t.destination_port), (5068, 80));
            }
            other => panic!("expected TCP, got {other:?}"),
        }
        assert_eq!(bytes(&f, &p.payload), b"GET ");
        // PPP control traffic (LCP, 0xc021) is not decoded; a cut or foreign header stops
        // at the link layer.
        let lcp_at = f.len() - 46;
        let mut lcp = f.clone();
        lcp[lcp_at..lcp_at + 2].copy_from_slice(&[0xc0, 0x21]);
        let p = parse_frame(dlt::ETHERNET, &lcp);
        assert_eq!(
            p.stopped,
            Some(ParseStop {
                layer: Layer::Network,
                reason: StopReason::Unsupported
            })
        );
        assert_eq!(p.ip, None);
        let p = parse_frame(dlt::ETHERNET, &f[..lcp_at - 2]);
        assert_eq!(
            p.stopped.map(|s| (s.layer, s.reason)),
            Some((Layer::Link, StopReason::Truncated))
        );
        let mut bad = f.clone();
        bad[lcp_at - 6] = 0x12; // version 1, type 2
        let p = parse_frame(dlt::ETHERNET, &bad);
        assert_eq!(
            p.stopped.map(|s| (s.layer, s.reason)),
            Some((Layer::Link, StopReason::Malformed))
        );
    }

    #[test]
    fn arp_request_is_decoded() {
        let mut f = eth([0xff; 6], [2, 0, 0, 0, 0, 1], 0x0806);
        f.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
        f.extend_from_slice(&[2, 0, 0, 0, 0, 1, 192, 168, 1, 1]);
        f.extend_from_slice(&[0, 0, 0, 0, 0, 0, 192, 168, 1, 2]);
        f.extend_from_slice(&[0; 18]);
        let p = parse_frame(dlt::ETHERNET, &f);
        let arp = p.arp.unwrap();
        assert_eq!(arp.operation, 1);
        assert_eq!(arp.sender_hardware, 0x0200_0000_0001);
        assert_eq!(arp.sender_protocol, 0xc0a8_0101);
        assert_eq!(arp.target_protocol, 0xc0a8_0102);
        assert_eq!(p.payload.len, 0);
        assert_eq!(p.padding.len, 18);
        assert_eq!(p.stopped, None);
        assert_eq!(p.class(1).net, NetClass::Arp);
    }

    /// Raw IPv4 fragments (DLT_RAW) of one UDP datagram carrying `payload`, cut after every
    /// `piece` bytes of the IP payload (a multiple of 8).
    fn ipv4_fragments(payload: &[u8], piece: usize) -> Vec<Vec<u8>> {
        let whole = ipv4_udp(5353, 53, payload);
        let ip_payload = &whole[20..];
        ip_payload
            .chunks(piece)
            .enumerate()
            .map(|(i, chunk)| {
                let mut f = whole[..20].to_vec();
                f[2..4].copy_from_slice(&((20 + chunk.len()) as u16).to_be_bytes());
                let more = (i + 1) * piece < ip_payload.len();
                let field = ((i * piece / 8) as u16) | if more { 0x2000 } else { 0 };
                f[6..8].copy_from_slice(&field.to_be_bytes());
                f.extend_from_slice(chunk);
                f
            })
            .collect()
    }

    fn record(data: &[u8], link_type: u32) -> PacketRecord<'_> {
        PacketRecord {
            timestamp_ns: 1_000,
            original_len: data.len() as u32,
            link_type,
            interface_index: 0,
            data,
        }
    }

    #[test]
    fn the_completing_fragment_carries_the_reassembled_datagram() {
        use crate::parse::defrag::{DefragLimits, Defragmenter};
        let message: Vec<u8> = (0..100u8).collect();
        let mut frames = ipv4_fragments(&message, 48);
        assert_eq!(frames.len(), 3);
        // Out of order: the last fragment first, the first one last.
        frames.swap(0, 2);
        let mut defrag = Defragmenter::new(DefragLimits::default());
        let mut arena = vec![7u8; 5];
        let mut packets = Vec::new();
        let mut classes = Vec::new();
        for f in &frames {
            classes.push(parse_push_reassembling(
                &record(f, dlt::RAW),
                &mut arena,
                &mut packets,
                Some(&mut defrag),
            ));
        }
        for WirePacket(p) in &packets[..2] {
            assert!(p.transport.is_none(), "{p:?}");
            assert_eq!(
                p.stopped.map(|s| (s.layer, s.reason)),
                Some((Layer::Transport, StopReason::Fragment))
            );
        }
        let WirePacket(last) = &packets[2];
        assert_eq!(last.stopped, None);
        match last.transport {
            Some(TransportHeader::Udp(u)) => {
                assert_eq!(
                    (u.source_port, u.destination_port, u.length),
                    (5353, 53, 108)
                )
            }
            other => panic!("expected UDP, got {other:?}"),
        }
        // The payload lies right after the frame, in the arena.
        assert_eq!(last.payload.offset, last.frame.offset + last.frame.len + 8);
        assert_eq!(bytes(&arena, &last.payload), &message[..]);
        assert_eq!(classes[2].ports, Some((5353, 53)));
        assert_eq!(classes[0].transport, TransportClass::None);
        // A selective chef's queue copies the reassembled bytes with the frame.
        let batch = crate::parse::batch::Batch {
            arena: arena.clone(),
            packets: packets.clone(),
            ..Default::default()
        };
        let mut queue = crate::dispatch::chef_queue::ChefQueue::default();
        assert!(queue.push(&batch, 2, std::time::Instant::now()));
        let WirePacket(q) = queue.packets[0];
        assert_eq!(bytes(&queue.arena, &q.payload), &message[..]);
        assert_eq!(defrag.stats().reassembled, 1);
    }

    #[test]
    fn without_reassembly_the_first_fragment_keeps_its_transport() {
        use crate::parse::defrag::{DefragLimits, Defragmenter};
        let frames = ipv4_fragments(&[1; 100], 48);
        let mut off = Defragmenter::new(DefragLimits {
            max_bytes: 0,
            timeout_ns: 1,
        });
        let mut arena = Vec::new();
        let mut packets = Vec::new();
        for f in &frames {
            parse_push_reassembling(
                &record(f, dlt::RAW),
                &mut arena,
                &mut packets,
                Some(&mut off),
            );
        }
        assert!(matches!(
            packets[0].0.transport,
            Some(TransportHeader::Udp(_))
        ));
        assert!(packets[1..].iter().all(|p| p.0.transport.is_none()));
        assert_eq!(arena.len(), frames.iter().map(Vec::len).sum::<usize>());
    }

    #[test]
    fn ipv6_fragments_are_reassembled_and_a_cut_fragment_is_not_offered() {
        use crate::parse::defrag::{DefragLimits, Defragmenter};
        // IPv6 + fragment header (next header UDP) + 16 bytes; then the last 12 bytes.
        let udp: Vec<u8> = [&[0x13, 0x88, 0x00, 0x35, 0, 28, 0, 0][..], &[9u8; 20]].concat();
        let first = test_frames::raw_ipv6_udp_fragment(0, true, &udp[..16]);
        let last = test_frames::raw_ipv6_udp_fragment(16, false, &udp[16..]);
        let mut defrag = Defragmenter::new(DefragLimits::default());
        let mut arena = Vec::new();
        let mut packets = Vec::new();
        // A copy of the first fragment cut by the snaplen is not offered.
        let cut = &first[..first.len() - 4];
        for f in [cut, &first[..], &last[..]] {
            parse_push_reassembling(
                &record(f, dlt::RAW),
                &mut arena,
                &mut packets,
                Some(&mut defrag),
            );
        }
        assert_eq!(defrag.stats().fragments, 2);
        let WirePacket(p) = &packets[2];
        match p.transport {
            Some(TransportHeader::Udp(u)) => {
                assert_eq!((u.source_port, u.destination_port), (5000, 53))
            }
            other => panic!("expected UDP, got {other:?}"),
        }
        assert_eq!(bytes(&arena, &p.payload), &[9u8; 20][..]);
    }

    #[test]
    fn non_first_ipv4_fragment_stops_at_transport() {
        let mut f = ipv4_udp(1, 2, b"abcdefgh");
        f[6..8].copy_from_slice(&0x0003u16.to_be_bytes()); // offset 3 * 8 = 24 bytes
        let p = parse_frame(dlt::RAW, &f);
        assert_eq!(
            p.stopped,
            Some(ParseStop {
                layer: Layer::Transport,
                reason: StopReason::Fragment
            })
        );
        match p.ip {
            Some(IpHeader::V4(ip)) => assert_eq!(ip.fragment_offset, 24),
            other => panic!("{other:?}"),
        }
        assert!(p.transport.is_none());
        assert_eq!(p.payload.offset, 20);
    }

    #[test]
    fn first_fragment_still_parses_transport() {
        let mut f = ipv4_udp(1, 2, b"abcdefgh");
        f[6..8].copy_from_slice(&0x2000u16.to_be_bytes()); // MF, offset 0
        let p = parse_frame(dlt::IPV4, &f);
        assert!(matches!(p.transport, Some(TransportHeader::Udp(_))));
        assert_eq!(p.stopped, None);
    }

    #[test]
    fn ipv6_icmpv6_over_linux_sll() {
        let mut f = vec![0, 4, 0, 1, 0, 6, 2, 0, 0, 0, 0, 9, 0, 0, 0x86, 0xdd];
        let mut ip6 = vec![0x60, 0, 0, 0, 0, 8, 58, 255];
        ip6.extend_from_slice(&[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        ip6.extend_from_slice(&[0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        ip6.extend_from_slice(&[133, 0, 0, 0, 0, 0, 0, 0]); // router solicitation
        f.extend(ip6);
        let p = parse_frame(dlt::LINUX_SLL, &f);
        let sll = p.linux_sll.unwrap();
        assert_eq!(sll.packet_type, 4);
        assert_eq!(sll.source_len, 6);
        assert_eq!(sll.source, 0x0200_0000_0009_0000);
        match p.ip {
            Some(IpHeader::V6(h)) => {
                assert_eq!(h.source, (0xfe80_0000_0000_0000, 1));
                assert_eq!(h.next_header, 58);
                assert_eq!(h.hop_limit, 255);
            }
            other => panic!("{other:?}"),
        }
        match p.transport {
            Some(TransportHeader::Icmpv6(i)) => assert_eq!(i.icmp_type, 133),
            other => panic!("{other:?}"),
        }
        assert_eq!(p.class(113).net, NetClass::Ipv6);
    }

    #[test]
    fn sll2_and_null_loop() {
        let mut f = vec![0x08, 0x00, 0, 0, 0, 0, 0, 3, 0, 1, 0, 6];
        f.extend_from_slice(&[2, 0, 0, 0, 0, 7, 0, 0]);
        f.extend(ipv4_udp(10, 20, b"x"));
        let p = parse_frame(dlt::LINUX_SLL2, &f);
        assert_eq!(p.linux_sll.unwrap().arp_hardware_type, 1);
        assert!(matches!(p.transport, Some(TransportHeader::Udp(_))));

        let mut null_le = 2u32.to_le_bytes().to_vec();
        null_le.extend(ipv4_udp(10, 20, b"x"));
        assert!(matches!(
            parse_frame(dlt::NULL, &null_le).transport,
            Some(TransportHeader::Udp(_))
        ));
        let mut loop_be = 2u32.to_be_bytes().to_vec();
        loop_be.extend(ipv4_udp(10, 20, b"x"));
        assert!(matches!(
            parse_frame(dlt::LOOP, &loop_be).transport,
            Some(TransportHeader::Udp(_))
        ));
        let mut unknown = 99u32.to_le_bytes().to_vec();
        unknown.extend_from_slice(b"zz");
        assert_eq!(
            parse_frame(dlt::NULL, &unknown).stopped,
            Some(ParseStop {
                layer: Layer::Network,
                reason: StopReason::Unsupported
            })
        );
    }

    #[test]
    fn decoded_link_types_are_the_ones_the_parser_decodes() {
        // The log line about undecoded link types (`batch::UndecodedLinkTypes`) relies on
        // `dlt::decoded`: it must say exactly which frames stop as `unsupported` links.
        for lt in 0..1000u32 {
            let stopped = parse_frame(lt, &[0u8; 64]).stopped;
            let unsupported = stopped
                == Some(ParseStop {
                    layer: Layer::Link,
                    reason: StopReason::Unsupported,
                });
            assert_eq!(dlt::decoded(lt), !unsupported, "link type {lt}");
        }
    }

    #[test]
    fn unsupported_link_type_keeps_the_frame_as_payload() {
        let f = [1u8, 2, 3, 4, 5];
        let p = parse_frame(105, &f); // 802.11
        assert_eq!(
            p.stopped,
            Some(ParseStop {
                layer: Layer::Link,
                reason: StopReason::Unsupported
            })
        );
        assert_eq!(p.payload, span(0, 5));
        assert_eq!(p.class(105).net, NetClass::Other);
    }

    #[test]
    fn truncations_name_the_layer() {
        let full = {
            let mut f = eth([1; 6], [2; 6], 0x0800);
            f.extend(ipv4_udp(1, 2, b""));
            f
        };
        let cases = [
            (5, Layer::Link, StopReason::Truncated),
            (14 + 10, Layer::Network, StopReason::Truncated),
            (14 + 20 + 4, Layer::Transport, StopReason::Truncated),
        ];
        for (len, layer, reason) in cases {
            let p = parse_frame(dlt::ETHERNET, &full[..len]);
            assert_eq!(p.stopped, Some(ParseStop { layer, reason }), "len {len}");
        }
        let mut bad_version = full.clone();
        bad_version[14] = 0x75;
        assert_eq!(
            parse_frame(dlt::ETHERNET, &bad_version).stopped,
            Some(ParseStop {
                layer: Layer::Network,
                reason: StopReason::Malformed
            })
        );
    }

    #[test]
    fn unknown_ether_type_and_ip_protocol_are_unsupported() {
        let mut lldp = eth([1; 6], [2; 6], 0x88cc);
        lldp.extend_from_slice(&[0; 10]);
        let p = parse_frame(dlt::ETHERNET, &lldp);
        assert_eq!(p.stopped.unwrap().layer, Layer::Network);
        assert_eq!(p.payload, span(14, 10));

        let mut igmp = ipv4_udp(0, 0, b"");
        igmp[9] = 2;
        let p = parse_frame(dlt::RAW, &igmp);
        assert_eq!(
            p.stopped,
            Some(ParseStop {
                layer: Layer::Transport,
                reason: StopReason::Unsupported
            })
        );
        assert_eq!(p.payload, span(20, 8));
    }

    #[test]
    fn parse_into_rebases_spans_into_the_arena() {
        let mut arena = vec![9u8; 100];
        let mut f = eth([1; 6], [2; 6], 0x0800);
        f.extend(ipv4_udp(1, 53, b"q"));
        let rec = PacketRecord {
            timestamp_ns: 7,
            link_type: 1,
            interface_index: 0,
            original_len: f.len() as u32,
            data: &f,
        };
        let (p, class) = parse_into(&rec, &mut arena);
        assert_eq!(p.frame, span(100, f.len()));
        assert_eq!(bytes(&arena, &p.payload), b"q");
        assert_eq!(class.transport, TransportClass::Udp);
        assert_eq!(class.ports, Some((1, 53)));
    }

    /// No input may panic, and every span must lie inside the frame: random bytes and
    /// every truncation of hand-built frames, for every supported link type.
    /// A tiny deterministic random source (xorshift64) for the random-input tests.
    fn xorshift(mut state: u64) -> impl FnMut() -> u64 {
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        }
    }

    #[test]
    fn random_fragments_never_panic_and_stay_within_bounds() {
        use crate::parse::defrag::{DefragLimits, Defragmenter};
        let mut next = xorshift(0x2545_f491_4f6c_dd1d);
        let limits = DefragLimits {
            max_bytes: 16 * 1024,
            timeout_ns: 50,
        };
        let mut defrag = Defragmenter::new(limits);
        let mut arena = Vec::new();
        let mut packets = Vec::new();
        for i in 0..20_000u64 {
            // IPv4 fragments of a few datagrams (ids collide on purpose), random offsets,
            // lengths, flags, protocols and bytes; some cut short, some with a bad header.
            let len = (next() % 64) as usize;
            let mut f = ipv4_udp(1, 2, &vec![0u8; len]);
            f[4..6].copy_from_slice(&((next() % 4) as u16).to_be_bytes());
            let offset_units = (next() % 16) as u16;
            let more = !next().is_multiple_of(3);
            f[6..8].copy_from_slice(&(offset_units | if more { 0x2000 } else { 0 }).to_be_bytes());
            f[9] = [6u8, 17, 1, 58, 99][(next() % 5) as usize];
            for b in f[20..].iter_mut() {
                *b = next() as u8;
            }
            if next().is_multiple_of(10) {
                f[2..4].copy_from_slice(&(next() as u16).to_be_bytes());
            }
            let cut = if next().is_multiple_of(8) {
                (next() as usize) % (f.len() + 1)
            } else {
                f.len()
            };
            let rec = PacketRecord {
                timestamp_ns: i,
                link_type: dlt::RAW,
                interface_index: 0,
                original_len: f.len() as u32,
                data: &f[..cut],
            };
            parse_push_reassembling(&rec, &mut arena, &mut packets, Some(&mut defrag));
            assert!(
                defrag.held_bytes() <= limits.max_bytes,
                "held {}",
                defrag.held_bytes()
            );
            let WirePacket(p) = packets.last().expect("a record");
            for s in [&p.frame, &p.payload, &p.padding] {
                assert!((s.offset as usize + s.len as usize) <= arena.len(), "{s:?}");
            }
            if packets.len() == 256 {
                packets.clear();
                arena.clear();
            }
        }
        let s = defrag.stats();
        assert!(
            s.reassembled > 0 && s.conflicting > 0 && s.timed_out > 0,
            "{s:?}"
        );
    }

    #[test]
    fn random_and_truncated_input_never_panics() {
        let mut seeds: Vec<Vec<u8>> = Vec::new();
        let mut f = eth([1; 6], [2; 6], 0x8100);
        f.extend_from_slice(&[0, 1, 0x86, 0xdd]);
        let mut ip6 = vec![0x60, 0, 0, 0, 0, 16, 44, 64];
        ip6.extend_from_slice(&[0; 32]);
        ip6.extend_from_slice(&[17, 0, 0, 8, 0, 0, 0, 1]); // fragment header, offset 1
        ip6.extend_from_slice(&[0; 8]);
        f.extend(ip6);
        seeds.push(f);
        let mut g = eth([1; 6], [2; 6], 0x0800);
        g.extend(ipv4_udp(53, 53, b"payload"));
        seeds.push(g);
        let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
        for _ in 0..2000 {
            let len = (next() % 128) as usize;
            seeds.push((0..len).map(|_| next() as u8).collect());
        }
        let link_types = [0, 1, 12, 14, 101, 108, 113, 228, 229, 276, 9999];
        for seed in &seeds {
            for cut in 0..=seed.len() {
                let frame = &seed[..cut];
                for &lt in &link_types {
                    let p = parse_frame(lt, frame);
                    for s in [&p.payload, &p.padding] {
                        assert!(
                            (s.offset as usize + s.len as usize) <= frame.len(),
                            "span {s:?} outside a {}-byte frame (dlt {lt})",
                            frame.len()
                        );
                    }
                    // The in-place path the batches use decodes exactly the same.
                    let mut arena = vec![0u8; 3];
                    let rec = PacketRecord {
                        timestamp_ns: 1,
                        link_type: lt,
                        interface_index: 0,
                        original_len: frame.len() as u32,
                        data: frame,
                    };
                    let (q, class) = parse_into(&rec, &mut arena);
                    assert_eq!(class, p.class(lt));
                    let shifted = |s: Span| span(s.offset as usize + 3, s.len as usize);
                    assert_eq!(
                        (q.ethernet, q.linux_sll, q.vlan_outer, q.vlan_inner, q.arp),
                        (p.ethernet, p.linux_sll, p.vlan_outer, p.vlan_inner, p.arp)
                    );
                    assert_eq!(
                        (q.ip, q.transport, q.stopped),
                        (p.ip, p.transport, p.stopped)
                    );
                    assert_eq!(q.payload, shifted(p.payload));
                    assert_eq!(q.padding, shifted(p.padding));
                }
            }
        }
    }
}
