//! [`Packet`]: a zero-copy view of one WIT `packet` plus the batch's arena, with typed
//! helpers; and [`Mac`], a printable MAC address.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::time::Timestamp;
use crate::wit;

/// One captured packet as the kitchen parsed it: the WIT record plus the bytes it points
/// at. Cheap to make and to copy (two references); nothing here allocates.
///
/// Headers that were not present (or not reached by the kitchen's parser) are `None`.
#[derive(Clone, Copy)]
pub struct Packet<'a> {
    raw: &'a wit::Packet,
    arena: &'a [u8],
}

impl fmt::Debug for Packet<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Packet")
            .field("timestamp_ns", &self.raw.timestamp_ns)
            .field("captured_len", &self.raw.captured_len)
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

impl<'a> Packet<'a> {
    /// Wraps a WIT packet and the arena its spans point into.
    #[inline]
    pub fn new(raw: &'a wit::Packet, arena: &'a [u8]) -> Self {
        Packet { raw, arena }
    }

    /// The WIT record itself, for fields without a helper.
    #[inline]
    pub fn raw(&self) -> &'a wit::Packet {
        self.raw
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
        Timestamp::from_nanos(self.raw.timestamp_ns)
    }

    /// The whole captured frame.
    #[inline]
    pub fn frame(&self) -> &'a [u8] {
        self.bytes(self.raw.frame)
    }

    /// The bytes after the last parsed header: the TCP/UDP/ICMP payload of a fully parsed
    /// packet (ICMP: after its 8-byte header), empty for ARP, the unparsed rest after a
    /// parse stop.
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        self.bytes(self.raw.payload)
    }

    /// Link-layer padding after the IP datagram or ARP packet (usually empty).
    #[inline]
    pub fn padding(&self) -> &'a [u8] {
        self.bytes(self.raw.padding)
    }

    /// pcap link type (1 = Ethernet, 113 = Linux SLL, ...).
    #[inline]
    pub fn link_type(&self) -> u32 {
        self.raw.link_type
    }

    /// Bytes on the wire (may exceed the captured frame).
    #[inline]
    pub fn original_len(&self) -> u32 {
        self.raw.original_len
    }

    /// Bytes captured.
    #[inline]
    pub fn captured_len(&self) -> u32 {
        self.raw.captured_len
    }

    /// Which capture interface (0-based).
    #[inline]
    pub fn interface_index(&self) -> u32 {
        self.raw.interface_index
    }

    /// The packet's flow and direction (0.2): filled only while some loaded chef uses flows
    /// or streams (`Interest::flow_events` / `Interest::stream_bytes`), else `None`.
    #[inline]
    pub fn flow(&self) -> Option<wit::FlowRef> {
        self.raw.flow
    }

    /// Why parsing stopped early, if it did.
    #[inline]
    pub fn stopped(&self) -> Option<wit::ParseStop> {
        self.raw.stopped
    }

    /// The Ethernet II header.
    #[inline]
    pub fn ethernet(&self) -> Option<&'a wit::EthernetHeader> {
        self.raw.ethernet.as_ref()
    }

    /// The Linux cooked-capture header.
    #[inline]
    pub fn linux_sll(&self) -> Option<&'a wit::LinuxSllHeader> {
        self.raw.linux_sll.as_ref()
    }

    /// The outer VLAN tag.
    #[inline]
    pub fn vlan_outer(&self) -> Option<&'a wit::VlanTag> {
        self.raw.vlan_outer.as_ref()
    }

    /// The inner VLAN tag (QinQ).
    #[inline]
    pub fn vlan_inner(&self) -> Option<&'a wit::VlanTag> {
        self.raw.vlan_inner.as_ref()
    }

    /// The ARP packet.
    #[inline]
    pub fn arp(&self) -> Option<&'a wit::ArpPacket> {
        self.raw.arp.as_ref()
    }

    /// The IP header (either version).
    #[inline]
    pub fn ip(&self) -> Option<&'a wit::IpHeader> {
        self.raw.ip.as_ref()
    }

    /// The IPv4 header.
    #[inline]
    pub fn ipv4(&self) -> Option<&'a wit::Ipv4Header> {
        match &self.raw.ip {
            Some(wit::IpHeader::V4(h)) => Some(h),
            _ => None,
        }
    }

    /// The IPv6 header.
    #[inline]
    pub fn ipv6(&self) -> Option<&'a wit::Ipv6Header> {
        match &self.raw.ip {
            Some(wit::IpHeader::V6(h)) => Some(h),
            _ => None,
        }
    }

    /// The transport header.
    #[inline]
    pub fn transport(&self) -> Option<&'a wit::TransportHeader> {
        self.raw.transport.as_ref()
    }

    /// The TCP header.
    #[inline]
    pub fn tcp(&self) -> Option<&'a wit::TcpHeader> {
        match &self.raw.transport {
            Some(wit::TransportHeader::Tcp(h)) => Some(h),
            _ => None,
        }
    }

    /// The UDP header.
    #[inline]
    pub fn udp(&self) -> Option<&'a wit::UdpHeader> {
        match &self.raw.transport {
            Some(wit::TransportHeader::Udp(h)) => Some(h),
            _ => None,
        }
    }

    /// The ICMPv4 header.
    #[inline]
    pub fn icmpv4(&self) -> Option<&'a wit::IcmpHeader> {
        match &self.raw.transport {
            Some(wit::TransportHeader::Icmpv4(h)) => Some(h),
            _ => None,
        }
    }

    /// The ICMPv6 header.
    #[inline]
    pub fn icmpv6(&self) -> Option<&'a wit::IcmpHeader> {
        match &self.raw.transport {
            Some(wit::TransportHeader::Icmpv6(h)) => Some(h),
            _ => None,
        }
    }

    /// IP source address.
    #[inline]
    pub fn src_ip(&self) -> Option<IpAddr> {
        match &self.raw.ip {
            Some(wit::IpHeader::V4(h)) => Some(IpAddr::V4(ipv4_addr(h.source))),
            Some(wit::IpHeader::V6(h)) => Some(IpAddr::V6(ipv6_addr(h.source))),
            None => None,
        }
    }

    /// IP destination address.
    #[inline]
    pub fn dst_ip(&self) -> Option<IpAddr> {
        match &self.raw.ip {
            Some(wit::IpHeader::V4(h)) => Some(IpAddr::V4(ipv4_addr(h.destination))),
            Some(wit::IpHeader::V6(h)) => Some(IpAddr::V6(ipv6_addr(h.destination))),
            None => None,
        }
    }

    /// The IP protocol number of the transport (IPv4 `protocol`, IPv6 last `next-header`).
    #[inline]
    pub fn ip_protocol(&self) -> Option<u8> {
        match &self.raw.ip {
            Some(wit::IpHeader::V4(h)) => Some(h.protocol),
            Some(wit::IpHeader::V6(h)) => Some(h.next_header),
            None => None,
        }
    }

    /// TCP or UDP source port.
    #[inline]
    pub fn src_port(&self) -> Option<u16> {
        match &self.raw.transport {
            Some(wit::TransportHeader::Tcp(h)) => Some(h.source_port),
            Some(wit::TransportHeader::Udp(h)) => Some(h.source_port),
            _ => None,
        }
    }

    /// TCP or UDP destination port.
    #[inline]
    pub fn dst_port(&self) -> Option<u16> {
        match &self.raw.transport {
            Some(wit::TransportHeader::Tcp(h)) => Some(h.destination_port),
            Some(wit::TransportHeader::Udp(h)) => Some(h.destination_port),
            _ => None,
        }
    }

    /// Whether `port` is the TCP/UDP source or destination port.
    #[inline]
    pub fn has_port(&self, port: u16) -> bool {
        self.src_port() == Some(port) || self.dst_port() == Some(port)
    }

    /// Link-layer source MAC (Ethernet, or a 6-byte Linux SLL address).
    #[inline]
    pub fn src_mac(&self) -> Option<Mac> {
        if let Some(e) = &self.raw.ethernet {
            return Some(Mac(e.source));
        }
        match &self.raw.linux_sll {
            Some(s) if s.source_len == 6 => Some(Mac(s.source >> 16)),
            _ => None,
        }
    }

    /// Link-layer destination MAC (Ethernet only; SLL has none).
    #[inline]
    pub fn dst_mac(&self) -> Option<Mac> {
        self.raw.ethernet.as_ref().map(|e| Mac(e.destination))
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
        let p = Packet::new(&raw, &arena);
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
        let p = Packet::new(&raw, &arena);
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
