//! [`Packet`]: a zero-copy view of one packet record of a packed batch (`on-packed`) plus
//! the batch's arena, reading each field at its fixed offset when asked; and [`Mac`], a
//! printable MAC address.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::packed::{present, Record};
use crate::time::Timestamp;
use crate::wit;

/// One captured packet as the kitchen parsed it: its record in the packed batch (layout
/// version 1, `docs/packed-batch.md`) plus the bytes its spans point at. Cheap to make and
/// to copy (two references); nothing here allocates.
///
/// Each accessor reads its field from the record's bytes when called, so a handler pays
/// only for what it reads. Header accessors (`ethernet()`, `ip()`, `tcp()`, ...) return the
/// WIT record by value, decoded from those bytes; the inlined decode of a field the caller
/// does not use is optimised away.
///
/// Headers that were not present (or not reached by the kitchen's parser) are `None`.
#[derive(Clone, Copy)]
pub struct Packet<'a> {
    rec: &'a Record,
    arena: &'a [u8],
}

impl fmt::Debug for Packet<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Packet")
            .field("timestamp_ns", &self.timestamp_ns())
            .field("captured_len", &self.captured_len())
            .field("src_ip", &self.src_ip())
            .field("dst_ip", &self.dst_ip())
            .field("src_port", &self.src_port())
            .field("dst_port", &self.dst_port())
            .field("payload_len", &self.payload().len())
            .finish_non_exhaustive()
    }
}

/// Converts a WIT `ipv4-address` (big-endian number) to an [`Ipv4Addr`].
#[inline]
pub fn ipv4_addr(a: wit::Ipv4Address) -> Ipv4Addr {
    Ipv4Addr::from(a)
}

/// Converts a WIT `ipv6-address` (high, low halves) to an [`Ipv6Addr`].
#[inline]
pub fn ipv6_addr((hi, lo): wit::Ipv6Address) -> Ipv6Addr {
    Ipv6Addr::from((u128::from(hi) << 64) | u128::from(lo))
}

/// `layer` by its code in the record (declaration order; an unknown code, which no
/// version-1 kitchen writes, reads as the last layer).
fn layer(code: u8) -> wit::Layer {
    match code {
        0 => wit::Layer::Link,
        1 => wit::Layer::Vlan,
        2 => wit::Layer::Network,
        3 => wit::Layer::IpExtension,
        _ => wit::Layer::Transport,
    }
}

/// `stop-reason` by its code (declaration order; an unknown code reads as `unsupported`).
fn stop_reason(code: u8) -> wit::StopReason {
    match code {
        0 => wit::StopReason::Truncated,
        1 => wit::StopReason::Malformed,
        3 => wit::StopReason::Fragment,
        _ => wit::StopReason::Unsupported,
    }
}

impl<'a> Packet<'a> {
    /// Wraps one packed record (its first [`crate::packed::RECORD_SIZE`] bytes) and the
    /// arena its spans point into. [`crate::packed::Batch::records`] gives the records of a
    /// batch; [`crate::packed::encode_record`] writes one from a WIT record.
    #[inline]
    pub fn from_record(rec: &'a Record, arena: &'a [u8]) -> Self {
        Packet { rec, arena }
    }

    /// The record's bytes (layout version 1), for fields without a helper.
    #[inline]
    pub fn record(&self) -> &'a Record {
        self.rec
    }

    /// The whole WIT record, decoded from the packed bytes. Slow next to the accessors
    /// (it decodes every field, ~60 of them, where an accessor reads one); for tests,
    /// debugging and the rare chef that wants the record whole. (Before the packed form this
    /// was `raw() -> &wit::Packet`, a reference into wit-bindgen's lifted records.)
    pub fn to_wit(&self) -> wit::Packet {
        wit::Packet {
            timestamp_ns: self.timestamp_ns(),
            captured_len: self.captured_len(),
            original_len: self.original_len(),
            link_type: self.link_type(),
            interface_index: self.interface_index(),
            frame: self.span(24),
            ethernet: self.ethernet(),
            linux_sll: self.linux_sll(),
            vlan_outer: self.vlan_outer(),
            vlan_inner: self.vlan_inner(),
            arp: self.arp(),
            ip: self.ip(),
            transport: self.transport(),
            payload: self.span(32),
            padding: self.span(40),
            stopped: self.stopped(),
            flow: self.flow(),
        }
    }

    #[inline(always)]
    fn arr<const N: usize>(&self, at: usize) -> [u8; N] {
        let mut b = [0u8; N];
        b.copy_from_slice(&self.rec[at..at + N]);
        b
    }
    #[inline(always)]
    fn u8_at(&self, at: usize) -> u8 {
        self.rec[at]
    }
    #[inline(always)]
    fn u16_at(&self, at: usize) -> u16 {
        u16::from_le_bytes(self.arr(at))
    }
    #[inline(always)]
    fn u32_at(&self, at: usize) -> u32 {
        u32::from_le_bytes(self.arr(at))
    }
    #[inline(always)]
    fn u64_at(&self, at: usize) -> u64 {
        u64::from_le_bytes(self.arr(at))
    }
    /// Six bytes in network order as a WIT `mac-address` number.
    #[inline(always)]
    fn mac_at(&self, at: usize) -> u64 {
        let m: [u8; 6] = self.arr(at);
        u64::from_be_bytes([0, 0, m[0], m[1], m[2], m[3], m[4], m[5]])
    }
    #[inline(always)]
    fn be32_at(&self, at: usize) -> u32 {
        u32::from_be_bytes(self.arr(at))
    }
    #[inline(always)]
    fn be64_at(&self, at: usize) -> u64 {
        u64::from_be_bytes(self.arr(at))
    }
    #[inline(always)]
    fn span(&self, at: usize) -> wit::Span {
        wit::Span {
            offset: self.u32_at(at),
            len: self.u32_at(at + 4),
        }
    }
    #[inline(always)]
    fn bits(&self) -> u32 {
        self.u32_at(48)
    }
    #[inline(always)]
    fn has(&self, bit: u32) -> bool {
        self.bits() & bit != 0
    }
    #[inline(always)]
    fn vlan(&self, at: usize) -> wit::VlanTag {
        wit::VlanTag {
            priority: self.u8_at(at),
            drop_eligible: self.u8_at(at + 1) != 0,
            id: self.u16_at(at + 2),
            ether_type: self.u16_at(at + 4),
        }
    }
    #[inline(always)]
    fn icmp(&self) -> wit::IcmpHeader {
        wit::IcmpHeader {
            icmp_type: self.u8_at(216),
            code: self.u8_at(217),
            rest: self.u32_at(220),
        }
    }
    #[inline(always)]
    fn ipv4_at(&self, at: usize) -> Ipv4Addr {
        Ipv4Addr::from(self.arr::<4>(at))
    }
    #[inline(always)]
    fn ipv6_at(&self, at: usize) -> Ipv6Addr {
        Ipv6Addr::from(self.arr::<16>(at))
    }

    /// The bytes of a span; empty if the span is empty or (a kitchen bug) out of range.
    #[inline]
    pub fn bytes(&self, span: wit::Span) -> &'a [u8] {
        let start = span.offset as usize;
        match start.checked_add(span.len as usize) {
            Some(end) => self.arena.get(start..end).unwrap_or(&[]),
            None => &[],
        }
    }

    /// Capture time.
    #[inline]
    pub fn timestamp(&self) -> Timestamp {
        Timestamp::from_nanos(self.timestamp_ns())
    }

    /// Capture time in nanoseconds since the Unix epoch (the WIT `timestamp-ns`).
    #[inline]
    pub fn timestamp_ns(&self) -> u64 {
        self.u64_at(0)
    }

    /// The whole captured frame.
    #[inline]
    pub fn frame(&self) -> &'a [u8] {
        self.bytes(self.span(24))
    }

    /// The bytes after the last parsed header: the TCP/UDP/ICMP payload of a fully parsed
    /// packet (ICMP: after its 8-byte header), empty for ARP, the unparsed rest after a
    /// parse stop.
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        self.bytes(self.span(32))
    }

    /// Link-layer padding after the IP datagram or ARP packet (usually empty).
    #[inline]
    pub fn padding(&self) -> &'a [u8] {
        self.bytes(self.span(40))
    }

    /// pcap link type (1 = Ethernet, 113 = Linux SLL, ...).
    #[inline]
    pub fn link_type(&self) -> u32 {
        self.u32_at(16)
    }

    /// Bytes on the wire (may exceed the captured frame).
    #[inline]
    pub fn original_len(&self) -> u32 {
        self.u32_at(12)
    }

    /// Bytes captured.
    #[inline]
    pub fn captured_len(&self) -> u32 {
        self.u32_at(8)
    }

    /// Which capture interface (0-based).
    #[inline]
    pub fn interface_index(&self) -> u32 {
        self.u32_at(20)
    }

    /// The packet's flow and direction (0.2): filled only while some loaded chef uses flows
    /// or streams (`Interest::flow_events` / `Interest::stream_bytes`), else `None`.
    #[inline]
    pub fn flow(&self) -> Option<wit::FlowRef> {
        self.has(present::FLOW).then(|| wit::FlowRef {
            id: self.u64_at(56),
            direction: if self.u8_at(54) == 1 {
                wit::Direction::FromResponder
            } else {
                wit::Direction::FromOriginator
            },
        })
    }

    /// Why parsing stopped early, if it did.
    #[inline]
    pub fn stopped(&self) -> Option<wit::ParseStop> {
        self.has(present::STOPPED).then(|| wit::ParseStop {
            layer: layer(self.u8_at(52)),
            reason: stop_reason(self.u8_at(53)),
        })
    }

    /// The Ethernet II header.
    #[inline]
    pub fn ethernet(&self) -> Option<wit::EthernetHeader> {
        self.has(present::ETHERNET).then(|| wit::EthernetHeader {
            source: self.mac_at(64),
            destination: self.mac_at(70),
            ether_type: self.u16_at(76),
        })
    }

    /// The Linux cooked-capture header.
    #[inline]
    pub fn linux_sll(&self) -> Option<wit::LinuxSllHeader> {
        self.has(present::LINUX_SLL).then(|| wit::LinuxSllHeader {
            packet_type: self.u16_at(96),
            arp_hardware_type: self.u16_at(98),
            source: self.be64_at(104),
            source_len: self.u8_at(102),
            protocol_type: self.u16_at(100),
        })
    }

    /// The outer VLAN tag.
    #[inline]
    pub fn vlan_outer(&self) -> Option<wit::VlanTag> {
        self.has(present::VLAN_OUTER).then(|| self.vlan(80))
    }

    /// The inner VLAN tag (QinQ).
    #[inline]
    pub fn vlan_inner(&self) -> Option<wit::VlanTag> {
        self.has(present::VLAN_INNER).then(|| self.vlan(88))
    }

    /// The ARP packet.
    #[inline]
    pub fn arp(&self) -> Option<wit::ArpPacket> {
        self.has(present::ARP).then(|| wit::ArpPacket {
            hardware_type: self.u16_at(112),
            protocol_type: self.u16_at(114),
            operation: self.u16_at(116),
            sender_hardware: self.mac_at(118),
            sender_protocol: self.be32_at(124),
            target_hardware: self.mac_at(128),
            target_protocol: self.be32_at(134),
        })
    }

    /// The IP header (either version).
    #[inline]
    pub fn ip(&self) -> Option<wit::IpHeader> {
        if let Some(h) = self.ipv4() {
            Some(wit::IpHeader::V4(h))
        } else {
            self.ipv6().map(wit::IpHeader::V6)
        }
    }

    /// The IPv4 header.
    #[inline]
    pub fn ipv4(&self) -> Option<wit::Ipv4Header> {
        self.has(present::IPV4).then(|| {
            let frag = self.u8_at(150);
            wit::Ipv4Header {
                source: self.be32_at(164),
                destination: self.be32_at(180),
                protocol: self.u8_at(140),
                ttl: self.u8_at(141),
                tos: self.u8_at(142),
                header_len: self.u8_at(143),
                total_len: self.u16_at(144),
                identification: self.u16_at(146),
                dont_fragment: frag & 1 != 0,
                more_fragments: frag & 2 != 0,
                fragment_offset: self.u16_at(148),
            }
        })
    }

    /// The IPv6 header.
    #[inline]
    pub fn ipv6(&self) -> Option<wit::Ipv6Header> {
        self.has(present::IPV6).then(|| wit::Ipv6Header {
            source: (self.be64_at(164), self.be64_at(172)),
            destination: (self.be64_at(180), self.be64_at(188)),
            next_header: self.u8_at(140),
            hop_limit: self.u8_at(141),
            traffic_class: self.u8_at(142),
            flow_label: self.u32_at(152),
            payload_len: self.u16_at(144),
            fragment: self.has(present::IPV6_FRAGMENT).then(|| wit::Ipv6Fragment {
                offset: self.u16_at(156),
                more_fragments: self.u8_at(158) != 0,
                identification: self.u32_at(160),
            }),
        })
    }

    /// The transport header.
    #[inline]
    pub fn transport(&self) -> Option<wit::TransportHeader> {
        let bits = self.bits();
        if bits & present::TCP != 0 {
            self.tcp().map(wit::TransportHeader::Tcp)
        } else if bits & present::UDP != 0 {
            self.udp().map(wit::TransportHeader::Udp)
        } else if bits & present::ICMPV4 != 0 {
            Some(wit::TransportHeader::Icmpv4(self.icmp()))
        } else if bits & present::ICMPV6 != 0 {
            Some(wit::TransportHeader::Icmpv6(self.icmp()))
        } else {
            None
        }
    }

    /// The TCP header.
    #[inline]
    pub fn tcp(&self) -> Option<wit::TcpHeader> {
        self.has(present::TCP).then(|| wit::TcpHeader {
            source_port: self.u16_at(196),
            destination_port: self.u16_at(198),
            sequence: self.u32_at(200),
            acknowledgment: self.u32_at(204),
            flags: wit::TcpFlags::from_bits_retain(self.u8_at(210)),
            window: self.u16_at(208),
            header_len: self.u8_at(211),
            urgent_pointer: self.u16_at(212),
        })
    }

    /// The UDP header.
    #[inline]
    pub fn udp(&self) -> Option<wit::UdpHeader> {
        self.has(present::UDP).then(|| wit::UdpHeader {
            source_port: self.u16_at(196),
            destination_port: self.u16_at(198),
            length: self.u16_at(214),
        })
    }

    /// The ICMPv4 header.
    #[inline]
    pub fn icmpv4(&self) -> Option<wit::IcmpHeader> {
        self.has(present::ICMPV4).then(|| self.icmp())
    }

    /// The ICMPv6 header.
    #[inline]
    pub fn icmpv6(&self) -> Option<wit::IcmpHeader> {
        self.has(present::ICMPV6).then(|| self.icmp())
    }

    /// IP source address.
    #[inline]
    pub fn src_ip(&self) -> Option<IpAddr> {
        let bits = self.bits();
        if bits & present::IPV4 != 0 {
            Some(IpAddr::V4(self.ipv4_at(164)))
        } else if bits & present::IPV6 != 0 {
            Some(IpAddr::V6(self.ipv6_at(164)))
        } else {
            None
        }
    }

    /// IP destination address.
    #[inline]
    pub fn dst_ip(&self) -> Option<IpAddr> {
        let bits = self.bits();
        if bits & present::IPV4 != 0 {
            Some(IpAddr::V4(self.ipv4_at(180)))
        } else if bits & present::IPV6 != 0 {
            Some(IpAddr::V6(self.ipv6_at(180)))
        } else {
            None
        }
    }

    /// The IP protocol number of the transport (IPv4 `protocol`, IPv6 last `next-header`).
    #[inline]
    pub fn ip_protocol(&self) -> Option<u8> {
        (self.bits() & (present::IPV4 | present::IPV6) != 0).then(|| self.u8_at(140))
    }

    /// Whether the packet has a TCP or UDP header (the ports' slots are shared).
    #[inline(always)]
    fn has_ports(&self) -> bool {
        self.bits() & (present::TCP | present::UDP) != 0
    }

    /// TCP or UDP source port.
    #[inline]
    pub fn src_port(&self) -> Option<u16> {
        self.has_ports().then(|| self.u16_at(196))
    }

    /// TCP or UDP destination port.
    #[inline]
    pub fn dst_port(&self) -> Option<u16> {
        self.has_ports().then(|| self.u16_at(198))
    }

    /// Whether `port` is the TCP/UDP source or destination port.
    #[inline]
    pub fn has_port(&self, port: u16) -> bool {
        self.has_ports() && (self.u16_at(196) == port || self.u16_at(198) == port)
    }

    /// Link-layer source MAC (Ethernet, or a 6-byte Linux SLL address).
    #[inline]
    pub fn src_mac(&self) -> Option<Mac> {
        let bits = self.bits();
        if bits & present::ETHERNET != 0 {
            Some(Mac(self.mac_at(64)))
        } else if bits & present::LINUX_SLL != 0 && self.u8_at(102) == 6 {
            Some(Mac(self.mac_at(104)))
        } else {
            None
        }
    }

    /// Link-layer destination MAC (Ethernet only; SLL has none).
    #[inline]
    pub fn dst_mac(&self) -> Option<Mac> {
        self.has(present::ETHERNET).then(|| Mac(self.mac_at(70)))
    }
}

/// A MAC address (the six bytes big-endian in the low 48 bits of the number, as in WIT).
///
/// Displays and serialises as lower-case `aa:bb:cc:dd:ee:ff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Mac(pub u64);

impl Mac {
    /// The six bytes, first byte first.
    #[inline]
    pub fn octets(self) -> [u8; 6] {
        let b = self.0.to_be_bytes();
        [b[2], b[3], b[4], b[5], b[6], b[7]]
    }

    /// From six bytes.
    #[inline]
    pub fn from_octets(o: [u8; 6]) -> Self {
        Mac(u64::from_be_bytes([
            0, 0, o[0], o[1], o[2], o[3], o[4], o[5],
        ]))
    }
}

impl Mac {
    /// `aa:bb:cc:dd:ee:ff` in a stack buffer. Why: chefs print MACs in every ARP/DHCP
    /// dumpling, and `core::fmt` with six padded hex arguments cost several times this in
    /// wasm.
    fn text(self) -> [u8; 17] {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = [b':'; 17];
        for (i, o) in self.octets().into_iter().enumerate() {
            out[i * 3] = HEX[usize::from(o >> 4)];
            out[i * 3 + 1] = HEX[usize::from(o & 0xf)];
        }
        out
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.text();
        // Only ASCII hex digits and colons went in.
        f.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?)
    }
}

impl serde::Serialize for Mac {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let text = self.text();
        match std::str::from_utf8(&text) {
            Ok(t) => s.serialize_str(t),
            Err(_) => s.collect_str(self),
        }
    }
}

impl<'de> serde::Deserialize<'de> for Mac {
    /// Reads what `Serialize` writes (`aa:bb:cc:dd:ee:ff`, either case), for chef state.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let mut octets = [0u8; 6];
        let mut parts = text.split(':');
        for o in &mut octets {
            let part = parts
                .next()
                .filter(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()));
            *o = part
                .and_then(|p| u8::from_str_radix(p, 16).ok())
                .ok_or_else(|| D::Error::custom("not a MAC address (aa:bb:cc:dd:ee:ff)"))?;
        }
        if parts.next().is_some() {
            return Err(D::Error::custom("not a MAC address (aa:bb:cc:dd:ee:ff)"));
        }
        Ok(Mac::from_octets(octets))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A UDP/IPv4 packet whose spans point into `arena`.
    pub(crate) fn udp_packet(arena_len: u32, payload: wit::Span) -> wit::Packet {
        wit::Packet {
            timestamp_ns: 1_500_000_000,
            captured_len: arena_len,
            original_len: arena_len,
            link_type: 1,
            interface_index: 0,
            frame: wit::Span {
                offset: 0,
                len: arena_len,
            },
            ethernet: Some(wit::EthernetHeader {
                source: 0x0200_0000_0001,
                destination: 0xffff_ffff_ffff,
                ether_type: 0x0800,
            }),
            linux_sll: None,
            vlan_outer: None,
            vlan_inner: None,
            arp: None,
            ip: Some(wit::IpHeader::V4(wit::Ipv4Header {
                source: 0x7f00_0001,
                destination: 0x0a00_0002,
                protocol: 17,
                ttl: 64,
                tos: 0,
                header_len: 20,
                total_len: 40,
                identification: 1,
                dont_fragment: false,
                more_fragments: false,
                fragment_offset: 0,
            })),
            transport: Some(wit::TransportHeader::Udp(wit::UdpHeader {
                source_port: 5353,
                destination_port: 53,
                length: 20,
            })),
            payload,
            padding: wit::Span { offset: 0, len: 0 },
            stopped: None,
            flow: None,
        }
    }

    /// `raw` packed as the kitchen packs it.
    fn packed(raw: &wit::Packet) -> Record {
        let mut rec = [0; crate::packed::RECORD_SIZE];
        crate::packed::encode_record(raw, &mut rec);
        rec
    }

    #[test]
    fn typed_helpers() {
        let arena = [0u8; 64];
        let raw = udp_packet(
            64,
            wit::Span {
                offset: 42,
                len: 12,
            },
        );
        let rec = packed(&raw);
        let p = Packet::from_record(&rec, &arena);
        assert_eq!(p.src_ip(), Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1))));
        assert_eq!(p.dst_ip(), Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2))));
        assert_eq!((p.src_port(), p.dst_port()), (Some(5353), Some(53)));
        assert!(p.has_port(53) && !p.has_port(80));
        assert_eq!(p.payload().len(), 12);
        assert_eq!(p.frame().len(), 64);
        assert!(p.padding().is_empty());
        assert_eq!(
            p.src_mac().map(|m| m.to_string()).as_deref(),
            Some("02:00:00:00:00:01")
        );
        assert_eq!(p.timestamp().as_secs_f64(), 1.5);
        assert!(p.tcp().is_none() && p.udp().is_some() && p.ipv6().is_none());
    }

    #[test]
    fn out_of_range_spans_are_empty_not_panics() {
        let arena = [0u8; 8];
        let raw = udp_packet(
            64,
            wit::Span {
                offset: u32::MAX,
                len: u32::MAX,
            },
        );
        let rec = packed(&raw);
        let p = Packet::from_record(&rec, &arena);
        assert!(p.payload().is_empty());
        assert!(
            p.frame().is_empty(),
            "frame span 0..64 exceeds an 8-byte arena"
        );
    }

    #[test]
    fn mac_and_ipv6_formatting() {
        let m = Mac(0xaabb_ccdd_eeff);
        assert_eq!(m.to_string(), "aa:bb:cc:dd:ee:ff");
        assert_eq!(Mac::from_octets(m.octets()), m);
        assert_eq!(
            serde_json::to_string(&m).ok().as_deref(),
            Some("\"aa:bb:cc:dd:ee:ff\"")
        );
        assert_eq!(
            ipv6_addr((0x2001_0db8_0000_0000, 1)).to_string(),
            "2001:db8::1"
        );
        assert_eq!(ipv4_addr(0x7f00_0001).to_string(), "127.0.0.1");
    }
}
