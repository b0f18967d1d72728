//! The packed batch form: packet records as fixed-size little-endian bytes (`on-packed`).
//!
//! Why: an interpreted guest (componentize-py, componentize-js) lifts a `list<packet>` into
//! interpreter objects field by field, ~60 scalars per packet with the nested options and
//! variants, whether or not the chef reads them: 25-54 µs per packet before any chef code
//! runs. `list<u8>` lifts as one copy, so a chef that declares `batch-form = packed` gets
//! the same records as bytes and its SDK decodes only the fields a handler touches, at
//! fixed offsets (Python `struct.unpack_from`, JS `DataView`).
//!
//! The layout is the contract in `docs/packed-batch.md` (versioned; keep the two in step):
//! a 16-byte batch header, then one [`RECORD_SIZE`]-byte record per packet. Every field
//! the WIT `packet` record carries has a fixed slot; optional headers have a presence bit.
//! Integers are little-endian; addresses (MAC, IPv4, IPv6, the SLL source) are their bytes
//! in network order, which is what a guest formats them from.
//!
//! The kitchen encodes a batch only when some loaded chef asks for `packed`, once per batch
//! for the chefs that take every packet and once per call for a selective chef's queue
//! ([`crate::dispatch`]).
//!
//! Records also carry the DNS header and first question of packets on the DNS ports
//! ([`dns`], offsets 224..256), with the question's name in a string tail after the
//! records, so the SDKs do not walk names byte by byte in the interpreter; and for those
//! packets the capture time as Python's `repr` writes it ([`time_text`], 256..264), so a
//! Python chef does not format the float in the interpreter.

use crate::chef_host::bindings::{
    Direction, IpHeader, Layer, Packet, StopReason, TransportHeader, VlanTag,
};
use crate::chef_host::wire::W;
use crate::chef_host::WirePacket;
use crate::parse::packet::tcp_flag_bits;

pub mod dns;
pub mod time_text;

/// First four bytes of a packed batch.
pub const MAGIC: [u8; 4] = *b"NDPB";
/// Layout version in the batch header (a guest refuses a version it does not know).
pub const VERSION: u16 = 1;
/// Bytes of the batch header before the first record.
pub const HEADER_SIZE: usize = 16;
/// Bytes of one packet record. Guests step by the header's `record_size`, so fields
/// appended within version 1 break no guest: the first 224 bytes are the original record,
/// 224..256 the DNS slots ([`dns`]), 256..264 the time text ([`time_text`]).
pub const RECORD_SIZE: usize = 264;

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
    /// `ip` is `v4` (140..151, addresses 164..168 and 180..184).
    pub const IPV4: u32 = 1 << 5;
    /// `ip` is `v6` (140..156, addresses 164..196).
    pub const IPV6: u32 = 1 << 6;
    /// The IPv6 header's `fragment` (156..164).
    pub const IPV6_FRAGMENT: u32 = 1 << 7;
    /// `transport` is `tcp` (196..214).
    pub const TCP: u32 = 1 << 8;
    /// `transport` is `udp` (196..200, 214..216).
    pub const UDP: u32 = 1 << 9;
    /// `transport` is `icmpv4` (216..224).
    pub const ICMPV4: u32 = 1 << 10;
    /// `transport` is `icmpv6` (216..224).
    pub const ICMPV6: u32 = 1 << 11;
    /// `stopped` (52..54).
    pub const STOPPED: u32 = 1 << 12;
    /// `flow` (54, 56..64).
    pub const FLOW: u32 = 1 << 13;
}

/// Encode `packets` (spans into `arena`, the call's arena, which travels beside unchanged)
/// into `out`, replacing its contents: the header, the records, then the string tail (DNS
/// names, time texts). `out` keeps its capacity, so a reused buffer allocates only while batches grow.
pub fn encode(packets: &[WirePacket], arena: &[u8], out: &mut Vec<u8>) {
    encode_as(packets, arena, out, Slots::Filled);
}

/// Whether a packed batch carries the DNS slots and time text (offsets 224..264).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slots {
    /// Filled for the packets on the DNS ports (what the interpreted SDKs read).
    Filled,
    /// Left open (zero, no string tail): the layout allows it (a guest then parses the
    /// payload and formats the time itself), and a Rust chef reads neither. Why: the DNS
    /// header and name and the time text cost ~0.2 µs per packet on the DNS ports, paid
    /// for nothing when no loaded chef reads them.
    Open,
}

impl Slots {
    /// `Filled` when `filled`.
    pub fn filled_if(filled: bool) -> Self {
        if filled {
            Slots::Filled
        } else {
            Slots::Open
        }
    }
}

/// [`encode`], with the DNS slots and time text filled or left open.
pub fn encode_as(packets: &[WirePacket], arena: &[u8], out: &mut Vec<u8>, slots: Slots) {
    out.clear();
    let tail_base = HEADER_SIZE + packets.len() * RECORD_SIZE;
    out.resize(tail_base, 0);
    out[0..4].copy_from_slice(&MAGIC);
    out[4..6].copy_from_slice(&VERSION.to_le_bytes());
    // RECORD_SIZE and a batch's count (at most a few thousand) fit their fields.
    out[6..8].copy_from_slice(&(RECORD_SIZE as u16).to_le_bytes());
    out[8..12].copy_from_slice(&(packets.len() as u32).to_le_bytes());
    let mut tail = Vec::new();
    let mut names = dns::NameIndex::default();
    for (p, rec) in packets
        .iter()
        .zip(out[HEADER_SIZE..].chunks_exact_mut(RECORD_SIZE))
    {
        record(&p.0, rec);
        if slots == Slots::Filled {
            dns_slots(&p.0, arena, rec, &mut tail, tail_base, &mut names);
        }
    }
    out.extend_from_slice(&tail);
}

/// The DNS slots of a UDP/TCP packet on a DNS port (left zero for any other packet).
fn dns_slots(
    p: &Packet,
    arena: &[u8],
    rec: &mut [u8],
    tail: &mut Vec<u8>,
    tail_base: usize,
    names: &mut dns::NameIndex,
) {
    let (ports, tcp) = match &p.transport {
        Some(TransportHeader::Tcp(h)) => ((h.source_port, h.destination_port), true),
        Some(TransportHeader::Udp(h)) => ((h.source_port, h.destination_port), false),
        _ => return,
    };
    if !dns::on_dns_port(ports.0, ports.1) {
        return;
    }
    let start = p.payload.offset as usize;
    let Some(payload) = arena.get(start..start + p.payload.len as usize) else {
        return;
    };
    dns::fill(rec, payload, p.payload.offset, tcp, tail, tail_base, names);
    time_text::fill(rec, p.timestamp_ns, tail, tail_base);
}

/// The dispatcher's packed buffers: a batch shared by every packed chef that takes every
/// packet is encoded once ([`PackedScratch::begin_batch`] names it; the first such chef's
/// call encodes it), any other packet list (a selective chef's queue) once per call.
#[derive(Debug)]
pub struct PackedScratch {
    batch: Vec<u8>,
    /// Address and length of the current batch's records; `None` between batches.
    batch_key: Option<(usize, usize)>,
    batch_ready: bool,
    /// Whether the current batch's DNS slots are filled (some chef taking it reads them).
    batch_slots: Slots,
    call: Vec<u8>,
}

impl Default for PackedScratch {
    fn default() -> Self {
        PackedScratch {
            batch: Vec::new(),
            batch_key: None,
            batch_ready: false,
            batch_slots: Slots::Filled,
            call: Vec::new(),
        }
    }
}

impl PackedScratch {
    /// A new batch is about to go to the chefs: `packets` may be asked for repeatedly;
    /// `slots` says whether a chef taking the whole batch reads the DNS slots.
    pub fn begin_batch(&mut self, packets: &[WirePacket], slots: Slots) {
        self.batch_key = Some((packets.as_ptr() as usize, packets.len()));
        self.batch_ready = false;
        self.batch_slots = slots;
    }

    /// The batch is done (its records may be reused for another batch).
    pub fn end_batch(&mut self) {
        self.batch_key = None;
    }

    /// The packed form of `packets` (spans into `arena`), encoded at most once per batch
    /// (with the batch's slots); any other list is encoded each time, with `slots`.
    pub fn headers(&mut self, packets: &[WirePacket], arena: &[u8], slots: Slots) -> &[u8] {
        if self.batch_key == Some((packets.as_ptr() as usize, packets.len())) {
            if !self.batch_ready {
                encode_as(packets, arena, &mut self.batch, self.batch_slots);
                self.batch_ready = true;
            }
            return &self.batch;
        }
        encode_as(packets, arena, &mut self.call, slots);
        &self.call
    }
}

/// The packed form's own slots, on top of the canonical-ABI writer of [`crate::chef_host::wire`].
trait PackedSlots {
    fn bytes(&mut self, at: usize, v: &[u8]);
    /// A MAC number (six bytes big-endian in the low 48 bits) as its six bytes.
    fn mac(&mut self, at: usize, v: u64);
    fn vlan(&mut self, at: usize, v: &VlanTag);
}

impl PackedSlots for W<'_> {
    fn bytes(&mut self, at: usize, v: &[u8]) {
        self.0[at..at + v.len()].copy_from_slice(v);
    }
    fn mac(&mut self, at: usize, v: u64) {
        self.bytes(at, &v.to_be_bytes()[2..]);
    }
    fn vlan(&mut self, at: usize, v: &VlanTag) {
        self.u8(at, v.priority);
        self.bool(at + 1, v.drop_eligible);
        self.u16(at + 2, v.id);
        self.u16(at + 4, v.ether_type);
    }
}

/// One record; offsets as in `docs/packed-batch.md`.
fn record(p: &Packet, rec: &mut [u8]) {
    let mut w = W(rec);
    let mut bits = 0u32;
    w.u64(0, p.timestamp_ns);
    w.u32(8, p.captured_len);
    w.u32(12, p.original_len);
    w.u32(16, p.link_type);
    w.u32(20, p.interface_index);
    w.span(24, &p.frame);
    w.span(32, &p.payload);
    w.span(40, &p.padding);
    if let Some(s) = &p.stopped {
        bits |= present::STOPPED;
        w.u8(52, layer_code(s.layer));
        w.u8(53, reason_code(s.reason));
    }
    if let Some(f) = &p.flow {
        bits |= present::FLOW;
        w.u8(54, u8::from(f.direction == Direction::FromResponder));
        w.u64(56, f.id);
    }
    if let Some(e) = &p.ethernet {
        bits |= present::ETHERNET;
        w.mac(64, e.source);
        w.mac(70, e.destination);
        w.u16(76, e.ether_type);
    }
    if let Some(v) = &p.vlan_outer {
        bits |= present::VLAN_OUTER;
        w.vlan(80, v);
    }
    if let Some(v) = &p.vlan_inner {
        bits |= present::VLAN_INNER;
        w.vlan(88, v);
    }
    if let Some(s) = &p.linux_sll {
        bits |= present::LINUX_SLL;
        w.u16(96, s.packet_type);
        w.u16(98, s.arp_hardware_type);
        w.u16(100, s.protocol_type);
        w.u8(102, s.source_len);
        w.bytes(104, &s.source.to_be_bytes());
    }
    if let Some(a) = &p.arp {
        bits |= present::ARP;
        w.u16(112, a.hardware_type);
        w.u16(114, a.protocol_type);
        w.u16(116, a.operation);
        w.mac(118, a.sender_hardware);
        w.bytes(124, &a.sender_protocol.to_be_bytes());
        w.mac(128, a.target_hardware);
        w.bytes(134, &a.target_protocol.to_be_bytes());
    }
    match &p.ip {
        Some(IpHeader::V4(h)) => {
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
        Some(IpHeader::V6(h)) => {
            bits |= present::IPV6;
            w.u8(140, h.next_header);
            w.u8(141, h.hop_limit);
            w.u8(142, h.traffic_class);
            w.u16(144, h.payload_len);
            w.u32(152, h.flow_label);
            if let Some(f) = &h.fragment {
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
    match &p.transport {
        Some(TransportHeader::Tcp(h)) => {
            bits |= present::TCP;
            w.u16(196, h.source_port);
            w.u16(198, h.destination_port);
            w.u32(200, h.sequence);
            w.u32(204, h.acknowledgment);
            w.u16(208, h.window);
            w.u8(210, tcp_flag_bits(h.flags));
            w.u8(211, h.header_len);
            w.u16(212, h.urgent_pointer);
        }
        Some(TransportHeader::Udp(h)) => {
            bits |= present::UDP;
            w.u16(196, h.source_port);
            w.u16(198, h.destination_port);
            w.u16(214, h.length);
        }
        Some(TransportHeader::Icmpv4(h) | TransportHeader::Icmpv6(h)) => {
            bits |= if matches!(p.transport, Some(TransportHeader::Icmpv4(_))) {
                present::ICMPV4
            } else {
                present::ICMPV6
            };
            w.u8(216, h.icmp_type);
            w.u8(217, h.code);
            w.u32(220, h.rest);
        }
        None => {}
    }
    w.u32(48, bits);
}

/// `layer` in declaration order (link = 0 ... transport = 4).
fn layer_code(l: Layer) -> u8 {
    match l {
        Layer::Link => 0,
        Layer::Vlan => 1,
        Layer::Network => 2,
        Layer::IpExtension => 3,
        Layer::Transport => 4,
    }
}

/// `stop-reason` in declaration order (truncated = 0 ... fragment = 3).
fn reason_code(r: StopReason) -> u8 {
    match r {
        StopReason::Truncated => 0,
        StopReason::Malformed => 1,
        StopReason::Unsupported => 2,
        StopReason::Fragment => 3,
    }
}

#[cfg(test)]
mod tests {
    //! Round trip: a decoder written from the layout doc must give back every field of
    //! every record, for synthesized packets that fill every optional part and for the
    //! parser's output on real frames.
    use super::*;
    use crate::chef_host::bindings::{
        ArpPacket, EthernetHeader, FlowRef, IcmpHeader, Ipv4Header, Ipv6Fragment, Ipv6Header,
        LinuxSllHeader, ParseStop, Span, TcpFlags, TcpHeader, UdpHeader,
    };

    struct R<'a>(&'a [u8]);
    impl R<'_> {
        fn u8(&self, at: usize) -> u8 {
            self.0[at]
        }
        fn u16(&self, at: usize) -> u16 {
            u16::from_le_bytes([self.0[at], self.0[at + 1]])
        }
        fn u32(&self, at: usize) -> u32 {
            u32::from_le_bytes(self.0[at..at + 4].try_into().unwrap())
        }
        fn u64(&self, at: usize) -> u64 {
            u64::from_le_bytes(self.0[at..at + 8].try_into().unwrap())
        }
        fn be32(&self, at: usize) -> u32 {
            u32::from_be_bytes(self.0[at..at + 4].try_into().unwrap())
        }
        fn be64(&self, at: usize) -> u64 {
            u64::from_be_bytes(self.0[at..at + 8].try_into().unwrap())
        }
        fn mac(&self, at: usize) -> u64 {
            let mut b = [0u8; 8];
            b[2..].copy_from_slice(&self.0[at..at + 6]);
            u64::from_be_bytes(b)
        }
        fn span(&self, at: usize) -> Span {
            Span {
                offset: self.u32(at),
                len: self.u32(at + 4),
            }
        }
        fn vlan(&self, at: usize) -> VlanTag {
            VlanTag {
                priority: self.u8(at),
                drop_eligible: self.u8(at + 1) != 0,
                id: self.u16(at + 2),
                ether_type: self.u16(at + 4),
            }
        }
    }

    const LAYERS: [Layer; 5] = [
        Layer::Link,
        Layer::Vlan,
        Layer::Network,
        Layer::IpExtension,
        Layer::Transport,
    ];
    const REASONS: [StopReason; 4] = [
        StopReason::Truncated,
        StopReason::Malformed,
        StopReason::Unsupported,
        StopReason::Fragment,
    ];

    /// The decoder a guest SDK implements, written from `docs/packed-batch.md`.
    fn decode(buf: &[u8]) -> Vec<Packet> {
        assert_eq!(buf[0..4], MAGIC);
        let h = R(buf);
        assert_eq!(h.u16(4), VERSION);
        let size = h.u16(6) as usize;
        let count = h.u32(8) as usize;
        // The records, then the string tail (DNS names).
        assert!(buf.len() >= HEADER_SIZE + count * size);
        (0..count)
            .map(|i| {
                let r = R(&buf[HEADER_SIZE + i * size..HEADER_SIZE + (i + 1) * size]);
                let bits = r.u32(48);
                let has = |b: u32| bits & b != 0;
                Packet {
                    timestamp_ns: r.u64(0),
                    captured_len: r.u32(8),
                    original_len: r.u32(12),
                    link_type: r.u32(16),
                    interface_index: r.u32(20),
                    frame: r.span(24),
                    payload: r.span(32),
                    padding: r.span(40),
                    stopped: has(present::STOPPED).then(|| ParseStop {
                        layer: LAYERS[r.u8(52) as usize],
                        reason: REASONS[r.u8(53) as usize],
                    }),
                    flow: has(present::FLOW).then(|| FlowRef {
                        id: r.u64(56),
                        direction: if r.u8(54) == 1 {
                            Direction::FromResponder
                        } else {
                            Direction::FromOriginator
                        },
                    }),
                    ethernet: has(present::ETHERNET).then(|| EthernetHeader {
                        source: r.mac(64),
                        destination: r.mac(70),
                        ether_type: r.u16(76),
                    }),
                    vlan_outer: has(present::VLAN_OUTER).then(|| r.vlan(80)),
                    vlan_inner: has(present::VLAN_INNER).then(|| r.vlan(88)),
                    linux_sll: has(present::LINUX_SLL).then(|| LinuxSllHeader {
                        packet_type: r.u16(96),
                        arp_hardware_type: r.u16(98),
                        protocol_type: r.u16(100),
                        source_len: r.u8(102),
                        source: r.be64(104),
                    }),
                    arp: has(present::ARP).then(|| ArpPacket {
                        hardware_type: r.u16(112),
                        protocol_type: r.u16(114),
                        operation: r.u16(116),
                        sender_hardware: r.mac(118),
                        sender_protocol: r.be32(124),
                        target_hardware: r.mac(128),
                        target_protocol: r.be32(134),
                    }),
                    ip: if has(present::IPV4) {
                        Some(IpHeader::V4(Ipv4Header {
                            protocol: r.u8(140),
                            ttl: r.u8(141),
                            tos: r.u8(142),
                            header_len: r.u8(143),
                            total_len: r.u16(144),
                            identification: r.u16(146),
                            fragment_offset: r.u16(148),
                            dont_fragment: r.u8(150) & 1 != 0,
                            more_fragments: r.u8(150) & 2 != 0,
                            source: r.be32(164),
                            destination: r.be32(180),
                        }))
                    } else if has(present::IPV6) {
                        Some(IpHeader::V6(Ipv6Header {
                            next_header: r.u8(140),
                            hop_limit: r.u8(141),
                            traffic_class: r.u8(142),
                            payload_len: r.u16(144),
                            flow_label: r.u32(152),
                            fragment: has(present::IPV6_FRAGMENT).then(|| Ipv6Fragment {
                                offset: r.u16(156),
                                more_fragments: r.u8(158) != 0,
                                identification: r.u32(160),
                            }),
                            source: (r.be64(164), r.be64(172)),
                            destination: (r.be64(180), r.be64(188)),
                        }))
                    } else {
                        None
                    },
                    transport: if has(present::TCP) {
                        Some(TransportHeader::Tcp(TcpHeader {
                            source_port: r.u16(196),
                            destination_port: r.u16(198),
                            sequence: r.u32(200),
                            acknowledgment: r.u32(204),
                            window: r.u16(208),
                            flags: crate::parse::packet::tcp_flags(r.u8(210)),
                            header_len: r.u8(211),
                            urgent_pointer: r.u16(212),
                        }))
                    } else if has(present::UDP) {
                        Some(TransportHeader::Udp(UdpHeader {
                            source_port: r.u16(196),
                            destination_port: r.u16(198),
                            length: r.u16(214),
                        }))
                    } else if has(present::ICMPV4) || has(present::ICMPV6) {
                        let h = IcmpHeader {
                            icmp_type: r.u8(216),
                            code: r.u8(217),
                            rest: r.u32(220),
                        };
                        Some(if has(present::ICMPV4) {
                            TransportHeader::Icmpv4(h)
                        } else {
                            TransportHeader::Icmpv6(h)
                        })
                    } else {
                        None
                    },
                }
            })
            .collect()
    }

    /// A packet with every optional part filled with distinct, non-zero values.
    fn full(i: u32, ip6: bool, tcp: bool) -> Packet {
        let k = u64::from(i);
        Packet {
            timestamp_ns: 1_700_000_000_123_456_789 + k,
            captured_len: 1000 + i,
            original_len: 1500 + i,
            link_type: 1 + i,
            interface_index: 7 + i,
            frame: Span {
                offset: 11 + i,
                len: 1000 + i,
            },
            ethernet: Some(EthernetHeader {
                source: 0x0200_0000_0001 + k,
                destination: 0xffee_ddcc_bbaa - k,
                ether_type: 0x8100,
            }),
            linux_sll: Some(LinuxSllHeader {
                packet_type: 4,
                arp_hardware_type: 772,
                source: 0x0102_0304_0506_0708 + k,
                source_len: 6,
                protocol_type: 0x86dd,
            }),
            vlan_outer: Some(VlanTag {
                priority: 5,
                drop_eligible: true,
                id: 4094,
                ether_type: 0x8100,
            }),
            vlan_inner: Some(VlanTag {
                priority: 3,
                drop_eligible: false,
                id: 17 + i as u16,
                ether_type: 0x0800,
            }),
            arp: Some(ArpPacket {
                hardware_type: 1,
                protocol_type: 0x0800,
                operation: 2,
                sender_hardware: 0x0a0b_0c0d_0e0f,
                sender_protocol: 0xc0a8_0001 + i,
                target_hardware: 0x1112_1314_1516,
                target_protocol: 0x0a00_00fe,
            }),
            ip: Some(if ip6 {
                IpHeader::V6(Ipv6Header {
                    source: (0x2001_0db8_0000_0000, 0x1 + k),
                    destination: (0xfe80_0000_0000_0000, 0xdead_beef_0000_0002),
                    next_header: 17,
                    hop_limit: 255,
                    traffic_class: 0xb8,
                    flow_label: 0xf_ffff,
                    payload_len: 1400,
                    fragment: Some(Ipv6Fragment {
                        offset: 1448,
                        more_fragments: true,
                        identification: 0xdead_beef,
                    }),
                })
            } else {
                IpHeader::V4(Ipv4Header {
                    source: 0x7f00_0001 + i,
                    destination: 0xc0a8_01fe,
                    protocol: 6,
                    ttl: 63,
                    tos: 0x10,
                    header_len: 24,
                    total_len: 1480,
                    identification: 0xabcd,
                    dont_fragment: true,
                    more_fragments: true,
                    fragment_offset: 1480,
                })
            }),
            transport: Some(if tcp {
                TransportHeader::Tcp(TcpHeader {
                    source_port: 443,
                    destination_port: 50_000 + i as u16,
                    sequence: 0xffff_fff0,
                    acknowledgment: 0x1234_5678,
                    flags: TcpFlags::SYN | TcpFlags::ACK | TcpFlags::CWR,
                    window: 65_535,
                    header_len: 40,
                    urgent_pointer: 9,
                })
            } else if i.is_multiple_of(3) {
                TransportHeader::Udp(UdpHeader {
                    source_port: 53,
                    destination_port: 5353,
                    length: 77,
                })
            } else {
                let h = IcmpHeader {
                    icmp_type: 135,
                    code: 1,
                    rest: 0x8000_0001,
                };
                if i % 3 == 1 {
                    TransportHeader::Icmpv4(h)
                } else {
                    TransportHeader::Icmpv6(h)
                }
            }),
            payload: Span {
                offset: 60 + i,
                len: 900,
            },
            padding: Span {
                offset: 960 + i,
                len: 3,
            },
            stopped: Some(ParseStop {
                layer: LAYERS[i as usize % 5],
                reason: REASONS[i as usize % 4],
            }),
            flow: Some(FlowRef {
                id: u64::MAX - k,
                direction: if i.is_multiple_of(2) {
                    Direction::FromOriginator
                } else {
                    Direction::FromResponder
                },
            }),
        }
    }

    #[test]
    fn every_field_round_trips() {
        let packets: Vec<WirePacket> = (0..12)
            .map(|i| WirePacket(full(i, i.is_multiple_of(2), i % 4 < 2)))
            .collect();
        let mut buf = Vec::new();
        encode(&packets, &[], &mut buf);
        assert_eq!(buf.len(), HEADER_SIZE + 12 * RECORD_SIZE);
        let back = decode(&buf);
        for (a, b) in packets.iter().zip(&back) {
            assert_eq!(&a.0, b);
        }
        // Options absent: every presence bit off, and the record decodes to the same.
        let mut bare = full(1, false, false);
        bare.ethernet = None;
        bare.linux_sll = None;
        bare.vlan_outer = None;
        bare.vlan_inner = None;
        bare.arp = None;
        bare.ip = None;
        bare.transport = None;
        bare.stopped = None;
        bare.flow = None;
        encode(&[WirePacket(bare)], &[], &mut buf);
        assert_eq!(R(&buf[HEADER_SIZE..]).u32(48), 0);
        assert_eq!(decode(&buf), vec![bare]);
        encode(&[], &[], &mut buf);
        assert_eq!(buf.len(), HEADER_SIZE);
        assert!(decode(&buf).is_empty());
    }

    #[test]
    fn a_batch_is_encoded_once_and_other_lists_each_time() {
        let batch: Vec<WirePacket> = (0..3).map(|i| WirePacket(full(i, false, true))).collect();
        let queue: Vec<WirePacket> = (5..7).map(|i| WirePacket(full(i, true, false))).collect();
        let mut s = PackedScratch::default();
        s.begin_batch(&batch, Slots::Filled);
        let first = s.headers(&batch, &[], Slots::Filled).as_ptr();
        assert_eq!(decode(s.headers(&batch, &[], Slots::Filled)).len(), 3);
        assert_eq!(s.headers(&batch, &[], Slots::Filled).as_ptr(), first);
        assert_eq!(
            decode(s.headers(&queue, &[], Slots::Filled)),
            queue.iter().map(|p| p.0).collect::<Vec<_>>()
        );
        s.end_batch();
        // The same records after the batch ended are encoded afresh (another batch may
        // reuse their memory).
        assert_eq!(decode(s.headers(&batch, &[], Slots::Filled)).len(), 3);
        assert_ne!(s.headers(&batch, &[], Slots::Filled).as_ptr(), first);
    }

    #[test]
    fn tcp_flag_byte_is_declaration_order() {
        let mut p = full(0, false, true);
        // TCP_FLAG_BITS lists the flags in declaration order, bit 0 first.
        for (bit, (_, flag)) in crate::parse::packet::TCP_FLAG_BITS.into_iter().enumerate() {
            if let Some(TransportHeader::Tcp(t)) = &mut p.transport {
                t.flags = flag;
            }
            let mut buf = Vec::new();
            encode(&[WirePacket(p)], &[], &mut buf);
            assert_eq!(buf[HEADER_SIZE + 210], 1 << bit);
        }
    }

    /// Every frame of `path` through the parser, then encode and decode; returns (packets,
    /// packets with a DNS question in the slots).
    fn round_trip_file(path: &std::path::Path) -> (usize, usize) {
        let mut reader = capture::FileReader::open(path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let mut arena = Vec::new();
        let mut packets = Vec::new();
        let mut buf = Vec::new();
        let mut total = (0, 0);
        let mut add = |(a, b): (usize, usize)| {
            total.0 += a;
            total.1 += b;
        };
        loop {
            let record = reader.next_packet();
            let Ok(Some(record)) = record else {
                break;
            };
            let (p, _) = crate::parse::packet::parse_into(&record, &mut arena);
            packets.push(WirePacket(p));
            if packets.len() == 256 || arena.len() > 1 << 20 {
                add(check(&packets, &arena, &mut buf));
                packets.clear();
                arena.clear();
            }
        }
        add(check(&packets, &arena, &mut buf));
        total
    }

    /// Encode and decode `packets`; returns (packets, packets with a DNS question in the
    /// slots).
    fn check(packets: &[WirePacket], arena: &[u8], buf: &mut Vec<u8>) -> (usize, usize) {
        encode(packets, arena, buf);
        let back = decode(buf);
        assert_eq!(back.len(), packets.len());
        let mut questions = 0;
        for (i, (a, b)) in packets.iter().zip(&back).enumerate() {
            assert_eq!(&a.0, b);
            let rec = &buf[HEADER_SIZE + i * RECORD_SIZE..HEADER_SIZE + (i + 1) * RECORD_SIZE];
            questions += usize::from(check_dns(&a.0, arena, rec, buf));
        }
        (packets.len(), questions)
    }

    /// The DNS slots of one record against the Rust chef SDK's DNS parser (which the
    /// Python and JS SDK parsers were ported from); `true` when a question is in the slots.
    fn check_dns(p: &Packet, arena: &[u8], rec: &[u8], buf: &[u8]) -> bool {
        use chef_sdk::parse::dns as sdk;
        let r = R(rec);
        let bits = r.u8(dns::AT);
        let ports = match &p.transport {
            Some(TransportHeader::Tcp(h)) => Some((h.source_port, h.destination_port, true)),
            Some(TransportHeader::Udp(h)) => Some((h.source_port, h.destination_port, false)),
            _ => None,
        };
        let Some((sport, dport, tcp)) =
            ports.filter(|&(s, d, _)| [53, 5353].contains(&s) || [53, 5353].contains(&d))
        else {
            assert_eq!(
                rec[dns::AT..],
                [0; RECORD_SIZE - dns::AT],
                "slots off the DNS ports"
            );
            return false;
        };
        assert_eq!(
            bits & dns::bits::CHECKED,
            dns::bits::CHECKED,
            "{sport}->{dport}"
        );
        // The time text: in the tail, reading back as the very double the SDKs compute.
        let (n, at) = (
            r.u16(time_text::AT + 2) as usize,
            r.u32(time_text::AT + 4) as usize,
        );
        assert!(at >= HEADER_SIZE + R(buf).u32(8) as usize * RECORD_SIZE);
        let text = std::str::from_utf8(&buf[at..at + n]).expect("ASCII time text");
        assert_eq!(
            text.parse::<f64>().ok(),
            Some(p.timestamp_ns as f64 / 1e9),
            "{text}"
        );
        let payload = &arena[p.payload.offset as usize..][..p.payload.len as usize];
        let msg = if tcp {
            sdk::strip_tcp_length(payload)
        } else {
            Some(payload)
        }
        .filter(|m| m.len() >= sdk::HEADER_LEN);
        let Some(msg) = msg else {
            assert_eq!(bits, dns::bits::CHECKED);
            return false;
        };
        assert_ne!(bits & dns::bits::MESSAGE, 0);
        let be = |at: usize| u16::from_be_bytes([msg[at], msg[at + 1]]);
        for i in 0..6 {
            assert_eq!(r.u16(dns::AT + 8 + 2 * i), be(2 * i), "header word {i}");
        }
        let (at, len) = (r.u32(dns::AT + 24) as usize, r.u32(dns::AT + 28) as usize);
        assert_eq!(&arena[at..at + len], msg, "message span");
        let question = sdk::question(msg);
        let complete = bits & dns::bits::QUESTIONS_COMPLETE != 0;
        if bits & dns::bits::QUESTION == 0 {
            // No question, or one the slots cannot express (a label with a dot): then
            // the list is left to the SDK.
            assert!(
                question.is_none() || !complete,
                "question {question:?} missing"
            );
            return false;
        }
        let q = question.expect("the slots hold a question the SDK parser refuses");
        let (n, at) = (r.u16(dns::AT + 2) as usize, r.u32(dns::AT + 4) as usize);
        assert!(
            at >= HEADER_SIZE + R(buf).u32(8) as usize * RECORD_SIZE,
            "name in the tail"
        );
        assert_eq!(String::from_utf8_lossy(&buf[at..at + n]), q.name);
        assert_eq!(r.u16(dns::AT + 20), q.qtype);
        assert_eq!(r.u16(dns::AT + 22) & 0x7fff, q.qclass);
        assert_eq!(complete, q.question_count == 1);
        true
    }

    /// The same packet as the Rust chef SDK's WIT record (another bindgen's types).
    fn to_sdk(p: &Packet) -> chef_sdk::wit::Packet {
        use chef_sdk::wit as s;
        let span = |x: Span| s::Span {
            offset: x.offset,
            len: x.len,
        };
        let vlan = |v: &VlanTag| s::VlanTag {
            priority: v.priority,
            drop_eligible: v.drop_eligible,
            id: v.id,
            ether_type: v.ether_type,
        };
        let icmp = |h: &IcmpHeader| s::IcmpHeader {
            icmp_type: h.icmp_type,
            code: h.code,
            rest: h.rest,
        };
        s::Packet {
            timestamp_ns: p.timestamp_ns,
            captured_len: p.captured_len,
            original_len: p.original_len,
            link_type: p.link_type,
            interface_index: p.interface_index,
            frame: span(p.frame),
            ethernet: p.ethernet.map(|e| s::EthernetHeader {
                source: e.source,
                destination: e.destination,
                ether_type: e.ether_type,
            }),
            linux_sll: p.linux_sll.map(|l| s::LinuxSllHeader {
                packet_type: l.packet_type,
                arp_hardware_type: l.arp_hardware_type,
                source: l.source,
                source_len: l.source_len,
                protocol_type: l.protocol_type,
            }),
            vlan_outer: p.vlan_outer.as_ref().map(vlan),
            vlan_inner: p.vlan_inner.as_ref().map(vlan),
            arp: p.arp.map(|a| s::ArpPacket {
                hardware_type: a.hardware_type,
                protocol_type: a.protocol_type,
                operation: a.operation,
                sender_hardware: a.sender_hardware,
                sender_protocol: a.sender_protocol,
                target_hardware: a.target_hardware,
                target_protocol: a.target_protocol,
            }),
            ip: p.ip.map(|ip| match ip {
                IpHeader::V4(h) => s::IpHeader::V4(s::Ipv4Header {
                    source: h.source,
                    destination: h.destination,
                    protocol: h.protocol,
                    ttl: h.ttl,
                    tos: h.tos,
                    header_len: h.header_len,
                    total_len: h.total_len,
                    identification: h.identification,
                    dont_fragment: h.dont_fragment,
                    more_fragments: h.more_fragments,
                    fragment_offset: h.fragment_offset,
                }),
                IpHeader::V6(h) => s::IpHeader::V6(s::Ipv6Header {
                    source: h.source,
                    destination: h.destination,
                    next_header: h.next_header,
                    hop_limit: h.hop_limit,
                    traffic_class: h.traffic_class,
                    flow_label: h.flow_label,
                    payload_len: h.payload_len,
                    fragment: h.fragment.map(|f| s::Ipv6Fragment {
                        offset: f.offset,
                        more_fragments: f.more_fragments,
                        identification: f.identification,
                    }),
                }),
            }),
            transport: p.transport.map(|t| match t {
                TransportHeader::Tcp(h) => s::TransportHeader::Tcp(s::TcpHeader {
                    source_port: h.source_port,
                    destination_port: h.destination_port,
                    sequence: h.sequence,
                    acknowledgment: h.acknowledgment,
                    flags: s::TcpFlags::from_bits_retain(tcp_flag_bits(h.flags)),
                    window: h.window,
                    header_len: h.header_len,
                    urgent_pointer: h.urgent_pointer,
                }),
                TransportHeader::Udp(h) => s::TransportHeader::Udp(s::UdpHeader {
                    source_port: h.source_port,
                    destination_port: h.destination_port,
                    length: h.length,
                }),
                TransportHeader::Icmpv4(h) => s::TransportHeader::Icmpv4(icmp(&h)),
                TransportHeader::Icmpv6(h) => s::TransportHeader::Icmpv6(icmp(&h)),
            }),
            payload: span(p.payload),
            padding: span(p.padding),
            stopped: p.stopped.map(|x| s::ParseStop {
                layer: LAYERS_SDK[layer_code(x.layer) as usize],
                reason: REASONS_SDK[reason_code(x.reason) as usize],
            }),
            flow: p.flow.map(|f| s::FlowRef {
                id: f.id,
                direction: match f.direction {
                    Direction::FromOriginator => s::Direction::FromOriginator,
                    Direction::FromResponder => s::Direction::FromResponder,
                },
            }),
        }
    }

    const LAYERS_SDK: [chef_sdk::wit::Layer; 5] = [
        chef_sdk::wit::Layer::Link,
        chef_sdk::wit::Layer::Vlan,
        chef_sdk::wit::Layer::Network,
        chef_sdk::wit::Layer::IpExtension,
        chef_sdk::wit::Layer::Transport,
    ];
    const REASONS_SDK: [chef_sdk::wit::StopReason; 4] = [
        chef_sdk::wit::StopReason::Truncated,
        chef_sdk::wit::StopReason::Malformed,
        chef_sdk::wit::StopReason::Unsupported,
        chef_sdk::wit::StopReason::Fragment,
    ];

    /// The Rust chef SDK reading the kitchen's packed batch: every accessor of its
    /// `Packet` equals the same packet in record form (`assert_same_packet`), and the SDK's
    /// own encoder (its records form and its test harness) writes the same first 224 bytes
    /// of every record as the kitchen. Returns the packets checked.
    fn sdk_reads(packets: &[WirePacket], arena: &[u8], buf: &mut Vec<u8>) -> usize {
        // With the slots left open (what a Rust chef gets): the same first 224 bytes of
        // every record, the slots zero, no string tail.
        let mut open = Vec::new();
        encode_as(packets, arena, &mut open, Slots::Open);
        encode(packets, arena, buf);
        assert_eq!(open.len(), HEADER_SIZE + packets.len() * RECORD_SIZE);
        for (o, f) in open[HEADER_SIZE..]
            .chunks_exact(RECORD_SIZE)
            .zip(buf[HEADER_SIZE..].chunks_exact(RECORD_SIZE))
        {
            assert_eq!(o[..dns::AT], f[..dns::AT]);
            assert!(o[dns::AT..].iter().all(|&b| b == 0), "open slots are zero");
        }
        let batch = chef_sdk::packed::Batch::parse(buf).expect("the SDK reads the kitchen's batch");
        assert_eq!(batch.len(), packets.len());
        assert_eq!(batch.record_size(), RECORD_SIZE);
        let mut own = [0u8; chef_sdk::packed::RECORD_SIZE];
        for (rec, p) in batch.records().zip(packets) {
            let sdk = to_sdk(&p.0);
            let view = chef_sdk::Packet::from_record(rec, arena);
            chef_sdk::testing::assert_same_packet(&view, &sdk, arena);
            chef_sdk::packed::encode_record(&sdk, &mut own);
            assert_eq!(own, *rec, "the SDK's encoder differs from the kitchen's");
        }
        packets.len()
    }

    #[test]
    fn the_rust_sdk_reads_every_field_the_kitchen_writes() {
        // Synthesized: every optional part, and each part absent in turn.
        let mut packets = Vec::new();
        for i in 0..24 {
            let p = full(i, i.is_multiple_of(2), i % 4 < 2);
            packets.push(WirePacket(p));
            for drop in 0..9 {
                let mut q = p;
                match drop {
                    0 => q.ethernet = None,
                    1 => q.linux_sll = None,
                    2 => q.vlan_outer = None,
                    3 => q.vlan_inner = None,
                    4 => q.arp = None,
                    5 => q.ip = None,
                    6 => q.transport = None,
                    7 => q.stopped = None,
                    _ => q.flow = None,
                }
                packets.push(WirePacket(q));
            }
        }
        let arena: Vec<u8> = (0..2100u32).map(|b| b as u8).collect();
        let mut buf = Vec::new();
        assert_eq!(sdk_reads(&packets, &arena, &mut buf), 240);
        // The parser's output on real captures (every link type the parser decodes).
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let shared = std::env::var_os("ND_SHARED_PCAPS")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| root.join("../shared/pcaps"));
        let mut files = vec![root.join("captures/ndpi__anyconnect-vpn.pcap")];
        match std::fs::read_dir(&shared) {
            Ok(dir) => files.extend(dir.flatten().map(|e| e.path()).filter(|p| {
                matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("pcap" | "pcapng")
                )
            })),
            Err(_) => eprintln!("SKIP shared corpus: {} not found", shared.display()),
        }
        let mut checked = 0;
        for path in &files {
            let Ok(mut reader) = capture::FileReader::open(path) else {
                panic!("cannot read {}", path.display());
            };
            let (mut arena, mut packets) = (Vec::new(), Vec::new());
            while let Ok(Some(record)) = reader.next_packet() {
                let (p, _) = crate::parse::packet::parse_into(&record, &mut arena);
                packets.push(WirePacket(p));
                if packets.len() == 256 || arena.len() > 1 << 20 {
                    checked += sdk_reads(&packets, &arena, &mut buf);
                    packets.clear();
                    arena.clear();
                }
            }
            checked += sdk_reads(&packets, &arena, &mut buf);
        }
        assert!(checked > 10, "too few packets checked ({checked})");
        eprintln!("{checked} packets of {} captures read alike", files.len());
    }

    #[test]
    fn real_frames_round_trip() {
        // The capture in the repo always; the shared corpus (every link type the parser
        // decodes) when it is on this machine.
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let (n, _) = round_trip_file(&root.join("captures/ndpi__anyconnect-vpn.pcap"));
        assert!(n > 10, "too few packets in the repo capture");
        let shared = std::env::var_os("ND_SHARED_PCAPS")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| root.join("../shared/pcaps"));
        let Ok(dir) = std::fs::read_dir(&shared) else {
            eprintln!("SKIP shared corpus: {} not found", shared.display());
            return;
        };
        let mut files = 0;
        let mut questions = 0;
        for entry in dir.flatten() {
            let path = entry.path();
            let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
            if ext == "pcap" || ext == "pcapng" {
                questions += round_trip_file(&path).1;
                files += 1;
            }
        }
        assert!(files > 0, "no captures in {}", shared.display());
        // The corpus holds thousands of DNS messages: the slots must have been exercised.
        assert!(
            questions > 1000,
            "only {questions} DNS questions in the corpus"
        );
    }
}
