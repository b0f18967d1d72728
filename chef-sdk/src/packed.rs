//! The packed batch form (`on-packed`, layout version 1 in `docs/packed-batch.md`): how a
//! Rust chef reads its packets where they lie.
//!
//! Why: wit-bindgen lifts a `list<packet>` into a `Vec<wit::Packet>` field by field (about 60
//! scalars per packet with the nested options and variants), ~53 ns per packet in every
//! chef that takes every packet, whether or not the chef reads those fields. A `list<u8>`
//! lifts as the buffer the kitchen already wrote into the chef's memory (wit-bindgen makes
//! it a `Vec` with `from_raw_parts`: no copy, no per-field work), and the kitchen writes the
//! packed form once per batch for all such chefs. [`crate::Packet`] then reads each field
//! from the record's bytes at its fixed offset when a handler asks for it.
//!
//! This module holds the layout (offsets, presence bits), the batch header check, and an
//! encoder from WIT records (for a chef that asked for `records`, and for
//! `chef_sdk::testing`); the kitchen's own encoder is `kitchen/src/parse/packed_batch.rs`,
//! and a kitchen test checks both write the same bytes.

use std::fmt;

use crate::wit;

/// First four bytes of a packed batch.
pub const MAGIC: [u8; 4] = *b"NDPB";
/// The layout version this SDK reads; a batch of any other version is refused.
pub const VERSION: u16 = 1;
/// Bytes of the batch header before the first record.
pub const HEADER_SIZE: usize = 16;
/// Bytes of a version-1 record that this SDK reads (the original record; the DNS slots and
/// the time text that kitchens append after it are for the interpreted SDKs). A batch says
/// its own `record_size` (264 today); records are stepped by that.
pub const RECORD_SIZE: usize = 224;

/// One record's bytes, as [`crate::Packet`] reads them: fixed size, so every field read at
/// a constant offset compiles to a load without a bounds check.
pub type Record = [u8; RECORD_SIZE];

/// Presence bits (record offset 48, u32): which optional parts of the record are filled.
pub mod present {
    /// `ethernet` (offsets 64..80).
    pub const ETHERNET: u32 = 1 << 0;
    /// `linux-sll` (96..112).
    pub const LINUX_SLL: u32 = 1 << 1;
    /// `vlan-outer` (80..88).
    pub const VLAN_OUTER: u32 = 1 << 2;
    /// `vlan-inner` (88..96).
    pub const VLAN_INNER: u32 = 1 << 3;
    /// `arp` (112..140).
    pub const ARP: u32 = 1 << 4;
    /// `ip` is `v4`.
    pub const IPV4: u32 = 1 << 5;
    /// `ip` is `v6`.
    pub const IPV6: u32 = 1 << 6;
    /// The IPv6 header's `fragment` (156..164).
    pub const IPV6_FRAGMENT: u32 = 1 << 7;
    /// `transport` is `tcp`.
    pub const TCP: u32 = 1 << 8;
    /// `transport` is `udp`.
    pub const UDP: u32 = 1 << 9;
    /// `transport` is `icmpv4`.
    pub const ICMPV4: u32 = 1 << 10;
    /// `transport` is `icmpv6`.
    pub const ICMPV6: u32 = 1 << 11;
    /// `stopped` (52..54).
    pub const STOPPED: u32 = 1 << 12;
    /// `flow` (54, 56..64).
    pub const FLOW: u32 = 1 << 13;
}

/// Why a packed batch was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayoutError {
    /// Fewer bytes than the 16-byte batch header.
    Short(usize),
    /// Not `NDPB`, or a layout version this SDK does not know, or records shorter than
    /// version 1's 224 bytes. A guest must refuse these rather than misread them.
    Unknown {
        /// The first four bytes.
        magic: [u8; 4],
        /// The header's layout version.
        version: u16,
        /// The header's bytes per record.
        record_size: u16,
    },
    /// The header claims more records than the bytes hold.
    Truncated {
        /// Records claimed.
        count: u32,
        /// Bytes of `headers`.
        len: usize,
    },
}

// A hand-written Display (not thiserror): the SDK builds into every chef component, so it
// keeps to the few dependencies it already has.
impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LayoutError::Short(n) => {
                write!(f, "packed batch of {n} bytes is shorter than its header")
            }
            LayoutError::Unknown {
                magic,
                version,
                record_size,
            } => write!(
                f,
                "unknown packed batch (magic {magic:?}, layout version {version}, record size \
                 {record_size}): this chef's SDK reads layout version {VERSION} with records \
                 of at least {RECORD_SIZE} bytes; rebuild the chef with a newer chef-sdk"
            ),
            LayoutError::Truncated { count, len } => {
                write!(
                    f,
                    "packed batch claims {count} records but holds {len} bytes"
                )
            }
        }
    }
}

impl std::error::Error for LayoutError {}

/// A checked packed batch: the header said version 1, and all its records are there.
#[derive(Debug, Clone, Copy)]
pub struct Batch<'a> {
    records: &'a [u8],
    record_size: usize,
    count: usize,
}

impl<'a> Batch<'a> {
    /// Checks the batch header of `headers` (magic, version, record size, count).
    pub fn parse(headers: &'a [u8]) -> Result<Self, LayoutError> {
        let Some(h) = headers.first_chunk::<HEADER_SIZE>() else {
            return Err(LayoutError::Short(headers.len()));
        };
        let magic = [h[0], h[1], h[2], h[3]];
        let version = u16::from_le_bytes([h[4], h[5]]);
        let record_size = u16::from_le_bytes([h[6], h[7]]);
        let count = u32::from_le_bytes([h[8], h[9], h[10], h[11]]);
        if magic != MAGIC || version != VERSION || usize::from(record_size) < RECORD_SIZE {
            return Err(LayoutError::Unknown {
                magic,
                version,
                record_size,
            });
        }
        let bytes = (count as usize)
            .checked_mul(usize::from(record_size))
            .and_then(|n| n.checked_add(HEADER_SIZE));
        match bytes {
            Some(end) if end <= headers.len() => Ok(Batch {
                records: &headers[HEADER_SIZE..end],
                record_size: usize::from(record_size),
                count: count as usize,
            }),
            _ => Err(LayoutError::Truncated {
                count,
                len: headers.len(),
            }),
        }
    }

    /// Number of packet records.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes per record, as the header says (at least [`RECORD_SIZE`]).
    pub fn record_size(&self) -> usize {
        self.record_size
    }

    /// Each record's first [`RECORD_SIZE`] bytes, in order.
    pub fn records(&self) -> impl ExactSizeIterator<Item = &'a Record> + 'a {
        // `parse` checked record_size >= RECORD_SIZE, so every chunk has its first 224
        // bytes; the fallback is never taken.
        const EMPTY: &Record = &[0; RECORD_SIZE];
        self.records
            .chunks_exact(self.record_size)
            .map(|r| r.first_chunk::<RECORD_SIZE>().unwrap_or(EMPTY))
    }
}

/// Writes the batch header for `count` records of `record_size` bytes into `out[..16]`.
fn header(out: &mut [u8], record_size: u16, count: u32) {
    out[0..4].copy_from_slice(&MAGIC);
    out[4..6].copy_from_slice(&VERSION.to_le_bytes());
    out[6..8].copy_from_slice(&record_size.to_le_bytes());
    out[8..12].copy_from_slice(&count.to_le_bytes());
    out[12..16].fill(0);
}

/// Packs `packets` into `out` (replacing its contents): the batch header and one
/// [`RECORD_SIZE`]-byte record each, no DNS slots or string tail (a Rust chef does not read
/// them). For a chef that asked for `records`, and for `chef_sdk::testing` (feature `testing`).
pub fn encode(packets: &[wit::Packet], out: &mut Vec<u8>) {
    out.clear();
    out.resize(HEADER_SIZE + packets.len() * RECORD_SIZE, 0);
    // A batch holds at most a few thousand packets; RECORD_SIZE fits a u16.
    header(out, RECORD_SIZE as u16, packets.len() as u32);
    for (p, rec) in packets
        .iter()
        .zip(out[HEADER_SIZE..].chunks_exact_mut(RECORD_SIZE))
    {
        if let Some(rec) = rec.first_chunk_mut::<RECORD_SIZE>() {
            encode_record(p, rec);
        }
    }
}

/// One record, as the kitchen writes it (offsets in `docs/packed-batch.md`). Every byte of
/// `rec` is written (absent parts zero).
pub fn encode_record(p: &wit::Packet, rec: &mut Record) {
    let mut w = W(rec);
    w.0.fill(0);
    let mut bits = 0u32;
    w.u64(0, p.timestamp_ns);
    w.u32(8, p.captured_len);
    w.u32(12, p.original_len);
    w.u32(16, p.link_type);
    w.u32(20, p.interface_index);
    w.span(24, p.frame);
    w.span(32, p.payload);
    w.span(40, p.padding);
    if let Some(s) = p.stopped {
        bits |= present::STOPPED;
        w.u8(52, s.layer as u8);
        w.u8(53, s.reason as u8);
    }
    if let Some(f) = p.flow {
        bits |= present::FLOW;
        w.u8(54, u8::from(f.direction == wit::Direction::FromResponder));
        w.u64(56, f.id);
    }
    if let Some(e) = p.ethernet {
        bits |= present::ETHERNET;
        w.mac(64, e.source);
        w.mac(70, e.destination);
        w.u16(76, e.ether_type);
    }
    if let Some(v) = p.vlan_outer {
        bits |= present::VLAN_OUTER;
        w.vlan(80, v);
    }
    if let Some(v) = p.vlan_inner {
        bits |= present::VLAN_INNER;
        w.vlan(88, v);
    }
    if let Some(s) = p.linux_sll {
        bits |= present::LINUX_SLL;
        w.u16(96, s.packet_type);
        w.u16(98, s.arp_hardware_type);
        w.u16(100, s.protocol_type);
        w.u8(102, s.source_len);
        w.bytes(104, &s.source.to_be_bytes());
    }
    if let Some(a) = p.arp {
        bits |= present::ARP;
        w.u16(112, a.hardware_type);
        w.u16(114, a.protocol_type);
        w.u16(116, a.operation);
        w.mac(118, a.sender_hardware);
        w.bytes(124, &a.sender_protocol.to_be_bytes());
        w.mac(128, a.target_hardware);
        w.bytes(134, &a.target_protocol.to_be_bytes());
    }
    match p.ip {
        Some(wit::IpHeader::V4(h)) => {
            bits |= present::IPV4;
            w.u8(140, h.protocol);
            w.u8(141, h.ttl);
            w.u8(142, h.tos);
            w.u8(143, h.header_len);
            w.u16(144, h.total_len);
            w.u16(146, h.identification);
            w.u16(148, h.fragment_offset);
            w.u8(
                150,
                u8::from(h.dont_fragment) | (u8::from(h.more_fragments) << 1),
            );
            w.bytes(164, &h.source.to_be_bytes());
            w.bytes(180, &h.destination.to_be_bytes());
        }
        Some(wit::IpHeader::V6(h)) => {
            bits |= present::IPV6;
            w.u8(140, h.next_header);
            w.u8(141, h.hop_limit);
            w.u8(142, h.traffic_class);
            w.u16(144, h.payload_len);
            w.u32(152, h.flow_label);
            if let Some(f) = h.fragment {
                bits |= present::IPV6_FRAGMENT;
                w.u16(156, f.offset);
                w.u8(158, u8::from(f.more_fragments));
                w.u32(160, f.identification);
            }
            w.bytes(164, &h.source.0.to_be_bytes());
            w.bytes(172, &h.source.1.to_be_bytes());
            w.bytes(180, &h.destination.0.to_be_bytes());
            w.bytes(188, &h.destination.1.to_be_bytes());
        }
        None => {}
    }
    match p.transport {
        Some(wit::TransportHeader::Tcp(h)) => {
            bits |= present::TCP;
            w.u16(196, h.source_port);
            w.u16(198, h.destination_port);
            w.u32(200, h.sequence);
            w.u32(204, h.acknowledgment);
            w.u16(208, h.window);
            w.u8(210, h.flags.bits());
            w.u8(211, h.header_len);
            w.u16(212, h.urgent_pointer);
        }
        Some(wit::TransportHeader::Udp(h)) => {
            bits |= present::UDP;
            w.u16(196, h.source_port);
            w.u16(198, h.destination_port);
            w.u16(214, h.length);
        }
        Some(wit::TransportHeader::Icmpv4(h)) => {
            bits |= present::ICMPV4;
            w.icmp(h);
        }
        Some(wit::TransportHeader::Icmpv6(h)) => {
            bits |= present::ICMPV6;
            w.icmp(h);
        }
        None => {}
    }
    w.u32(48, bits);
}

/// Little-endian stores at fixed offsets of one record.
struct W<'a>(&'a mut Record);

impl W<'_> {
    fn bytes(&mut self, at: usize, v: &[u8]) {
        self.0[at..at + v.len()].copy_from_slice(v);
    }
    fn u8(&mut self, at: usize, v: u8) {
        self.0[at] = v;
    }
    fn u16(&mut self, at: usize, v: u16) {
        self.bytes(at, &v.to_le_bytes());
    }
    fn u32(&mut self, at: usize, v: u32) {
        self.bytes(at, &v.to_le_bytes());
    }
    fn u64(&mut self, at: usize, v: u64) {
        self.bytes(at, &v.to_le_bytes());
    }
    fn span(&mut self, at: usize, s: wit::Span) {
        self.u32(at, s.offset);
        self.u32(at + 4, s.len);
    }
    /// A MAC number (six bytes big-endian in the low 48 bits) as its six bytes.
    fn mac(&mut self, at: usize, v: u64) {
        self.bytes(at, &v.to_be_bytes()[2..]);
    }
    fn vlan(&mut self, at: usize, v: wit::VlanTag) {
        self.u8(at, v.priority);
        self.u8(at + 1, u8::from(v.drop_eligible));
        self.u16(at + 2, v.id);
        self.u16(at + 4, v.ether_type);
    }
    fn icmp(&mut self, h: wit::IcmpHeader) {
        self.u8(216, h.icmp_type);
        self.u8(217, h.code);
        self.u32(220, h.rest);
    }
}

/// A header for a batch of `count` records of `record_size` bytes (tests: odd sizes).
#[cfg(any(test, feature = "testing"))]
pub(crate) fn header_bytes(record_size: u16, count: u32) -> [u8; HEADER_SIZE] {
    let mut h = [0; HEADER_SIZE];
    header(&mut h, record_size, count);
    h
}

#[cfg(test)]
mod tests {
    //! Differential: every accessor of [`crate::Packet`] over the packed bytes against the
    //! same packet in record form ([`crate::testing::assert_same_packet`]), for synthesized
    //! packets with every optional part and for the corpus; the header checks.
    use super::*;
    use crate::testing::{assert_same_packet, corpus, Batch as TestBatch};
    use crate::Packet;

    const LAYERS: [wit::Layer; 5] = [
        wit::Layer::Link,
        wit::Layer::Vlan,
        wit::Layer::Network,
        wit::Layer::IpExtension,
        wit::Layer::Transport,
    ];
    const REASONS: [wit::StopReason; 4] = [
        wit::StopReason::Truncated,
        wit::StopReason::Malformed,
        wit::StopReason::Unsupported,
        wit::StopReason::Fragment,
    ];

    /// A packet with every optional part filled with distinct, non-zero values (`kind`
    /// picks the IP version and transport; spans point into a 2000-byte arena).
    fn full(i: u32) -> wit::Packet {
        let k = u64::from(i);
        let ip6 = i.is_multiple_of(2);
        wit::Packet {
            timestamp_ns: 1_700_000_000_123_456_789 + k * 1_000_003,
            captured_len: 1000 + i,
            original_len: 1500 + i,
            link_type: 1 + i,
            interface_index: 7 + i,
            frame: wit::Span {
                offset: 11 + i,
                len: 1000 + i,
            },
            ethernet: Some(wit::EthernetHeader {
                source: 0x0200_0000_0001 + k,
                destination: 0xffee_ddcc_bbaa - k,
                ether_type: 0x8100,
            }),
            linux_sll: Some(wit::LinuxSllHeader {
                packet_type: 4,
                arp_hardware_type: 772,
                source: 0x0102_0304_0506_0708 + k,
                source_len: if i.is_multiple_of(3) { 6 } else { 8 },
                protocol_type: 0x86dd,
            }),
            vlan_outer: Some(wit::VlanTag {
                priority: 5,
                drop_eligible: true,
                id: 4094,
                ether_type: 0x8100,
            }),
            vlan_inner: Some(wit::VlanTag {
                priority: 3,
                drop_eligible: false,
                id: 17 + i as u16,
                ether_type: 0x0800,
            }),
            arp: Some(wit::ArpPacket {
                hardware_type: 1,
                protocol_type: 0x0800,
                operation: 2,
                sender_hardware: 0x0a0b_0c0d_0e0f,
                sender_protocol: 0xc0a8_0001 + i,
                target_hardware: 0x1112_1314_1516,
                target_protocol: 0x0a00_00fe,
            }),
            ip: Some(if ip6 {
                wit::IpHeader::V6(wit::Ipv6Header {
                    source: (0x2001_0db8_0000_0000, 0x1 + k),
                    destination: (0xfe80_0000_0000_0000, 0xdead_beef_0000_0002),
                    next_header: 17,
                    hop_limit: 255,
                    traffic_class: 0xb8,
                    flow_label: 0xf_ffff,
                    payload_len: 1400,
                    fragment: (i.is_multiple_of(4)).then_some(wit::Ipv6Fragment {
                        offset: 1448,
                        more_fragments: true,
                        identification: 0xdead_beef,
                    }),
                })
            } else {
                wit::IpHeader::V4(wit::Ipv4Header {
                    source: 0x7f00_0001 + i,
                    destination: 0xc0a8_01fe,
                    protocol: 6,
                    ttl: 63,
                    tos: 0x10,
                    header_len: 24,
                    total_len: 1480,
                    identification: 0xabcd,
                    dont_fragment: i % 3 != 1,
                    more_fragments: i % 5 < 2,
                    fragment_offset: 1480,
                })
            }),
            transport: Some(match i % 4 {
                0 => wit::TransportHeader::Tcp(wit::TcpHeader {
                    source_port: 443,
                    destination_port: 50_000 + i as u16,
                    sequence: 0xffff_fff0,
                    acknowledgment: 0x1234_5678,
                    flags: wit::TcpFlags::from_bits_retain(i as u8 * 37),
                    window: 65_535,
                    header_len: 40,
                    urgent_pointer: 9,
                }),
                1 => wit::TransportHeader::Udp(wit::UdpHeader {
                    source_port: 53,
                    destination_port: 5353,
                    length: 77,
                }),
                2 => wit::TransportHeader::Icmpv4(wit::IcmpHeader {
                    icmp_type: 8,
                    code: 1,
                    rest: 0x8000_0001,
                }),
                _ => wit::TransportHeader::Icmpv6(wit::IcmpHeader {
                    icmp_type: 135,
                    code: 2,
                    rest: 0x7fff_fffe,
                }),
            }),
            payload: wit::Span {
                offset: 60 + i,
                len: 900,
            },
            padding: wit::Span {
                offset: 960 + i,
                len: 3,
            },
            stopped: Some(wit::ParseStop {
                layer: LAYERS[i as usize % 5],
                reason: REASONS[i as usize % 4],
            }),
            flow: Some(wit::FlowRef {
                id: u64::MAX - k,
                direction: if i.is_multiple_of(2) {
                    wit::Direction::FromOriginator
                } else {
                    wit::Direction::FromResponder
                },
            }),
        }
    }

    /// `full(i)` with the parts picked by the bits of `mask` removed.
    fn partial(i: u32, mask: u32) -> wit::Packet {
        let mut p = full(i);
        let off = |b: u32| mask & (1 << b) != 0;
        if off(0) {
            p.ethernet = None;
        }
        if off(1) {
            p.linux_sll = None;
        }
        if off(2) {
            p.vlan_outer = None;
        }
        if off(3) {
            p.vlan_inner = None;
        }
        if off(4) {
            p.arp = None;
        }
        if off(5) {
            p.ip = None;
        }
        if off(6) {
            p.transport = None;
        }
        if off(7) {
            p.stopped = None;
        }
        if off(8) {
            p.flow = None;
        }
        p
    }

    /// Checks every packet of `batch` through a packed batch whose records are
    /// `record_size` bytes (the bytes after the first 224 filled with junk).
    fn check_batch(batch: &TestBatch, record_size: u16) {
        let mut headers = header_bytes(record_size, batch.len() as u32).to_vec();
        for p in batch.iter() {
            headers.extend_from_slice(p.record());
            let junk = usize::from(record_size) - RECORD_SIZE;
            headers.extend((0..junk).map(|j| (j as u8).wrapping_mul(29) | 1));
        }
        headers.extend_from_slice(b"string tail");
        let parsed = Batch::parse(&headers).expect("a version-1 batch");
        assert_eq!(parsed.len(), batch.len());
        assert_eq!(parsed.record_size(), usize::from(record_size));
        for (rec, raw) in parsed.records().zip(batch.packets()) {
            assert_same_packet(&Packet::from_record(rec, batch.arena()), raw, batch.arena());
        }
    }

    #[test]
    fn every_field_of_synthesized_packets_reads_as_in_record_form() {
        let mut batch = TestBatch::default();
        batch.push_arena(&(0..2100u32).map(|b| b as u8).collect::<Vec<_>>());
        for i in 0..24 {
            batch.push_record(full(i));
            for mask in [0x1ff, 0x1, 0x3, 0x20, 0x40, 0x60, 0x180, 0x0c, 0x12, 0x0f] {
                batch.push_record(partial(i, mask));
            }
        }
        // Spans out of the arena's range read as empty in both forms.
        let mut odd = full(3);
        odd.payload = wit::Span {
            offset: u32::MAX,
            len: u32::MAX,
        };
        odd.frame = wit::Span {
            offset: 2000,
            len: 200,
        };
        batch.push_record(odd);
        assert_eq!(batch.len(), 24 * 11 + 1);
        for record_size in [224, 256, 264, 300] {
            check_batch(&batch, record_size);
        }
    }

    #[test]
    fn the_corpus_reads_as_in_record_form() {
        let corpus = corpus();
        assert!(
            corpus.len() > 100,
            "the team's pcap corpus is beside the repository"
        );
        let mut packets = 0;
        for (_, batch) in &corpus {
            check_batch(batch, 264);
            packets += batch.len();
        }
        assert!(packets > 50_000, "{packets}");
    }

    #[test]
    fn unknown_layouts_are_refused() {
        let mut good = header_bytes(264, 1).to_vec();
        good.extend_from_slice(&[0; 264]);
        assert!(Batch::parse(&good).is_ok());
        assert_eq!(
            Batch::parse(&good[..15]).unwrap_err(),
            LayoutError::Short(15)
        );
        let mut v2 = good.clone();
        v2[4] = 2;
        let e = Batch::parse(&v2).unwrap_err();
        assert!(e.to_string().contains("layout version 2"), "{e}");
        let mut magic = good.clone();
        magic[0] = b'X';
        assert!(matches!(
            Batch::parse(&magic),
            Err(LayoutError::Unknown { .. })
        ));
        let small = [&header_bytes(200, 1)[..], &[0; 200]].concat();
        assert!(matches!(
            Batch::parse(&small),
            Err(LayoutError::Unknown { .. })
        ));
        assert_eq!(
            Batch::parse(&good[..100]).unwrap_err(),
            LayoutError::Truncated { count: 1, len: 100 }
        );
        let huge = header_bytes(264, u32::MAX);
        assert!(matches!(
            Batch::parse(&huge),
            Err(LayoutError::Truncated { .. })
        ));
        // The chef's handler refuses such a batch by trapping, never by misreading it.
        #[derive(Default)]
        struct Any;
        impl crate::Chef for Any {
            fn info() -> crate::ChefInfo {
                crate::ChefInfo::new("Any", "test")
            }
        }
        let refused = std::panic::catch_unwind(|| {
            crate::__private::on_packed(&mut Any, &v2, &[]);
        });
        assert!(refused.is_err());
        assert!(crate::__private::on_packed(&mut Any, &good, &[]).is_empty());
    }

    #[test]
    fn records_and_packed_forms_give_the_same_dumplings() {
        /// Echoes what it reads of every packet.
        #[derive(Default)]
        struct Echo;
        impl crate::Chef for Echo {
            fn info() -> crate::ChefInfo {
                crate::ChefInfo::new("Echo", "test")
            }
            fn on_packet(&mut self, p: &Packet<'_>) -> impl crate::Dumplings {
                Some(format!(
                    "{:?} {:?} {:?} {:?} {}",
                    p.to_wit(),
                    p.src_ip(),
                    p.src_port(),
                    p.src_mac(),
                    p.payload().len()
                ))
            }
        }
        let Some(batch) = crate::testing::sample_capture() else {
            panic!("the shared sample capture is missing");
        };
        let packed =
            crate::__private::on_packed(&mut Echo, &batch.packed(0..batch.len()), batch.arena());
        let records = crate::__private::on_packets(&mut Echo, batch.packets(), batch.arena());
        assert_eq!(packed.len(), batch.len());
        assert_eq!(
            packed
                .iter()
                .map(|d| (d.packet_index, &d.payload))
                .collect::<Vec<_>>(),
            records
                .iter()
                .map(|d| (d.packet_index, &d.payload))
                .collect::<Vec<_>>()
        );
    }
}
