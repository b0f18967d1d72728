//! The kitchen's stream stage: reassembles the TCP streams some chef asked for
//! (`interest.stream-bytes` > 0) and turns them into the `stream-chunk` records a chef's
//! `on-stream` receives.
//!
//! It exists only while a loaded chef wants stream bytes, so a kitchen without such chefs
//! pays nothing. Per batch, after the flow stage has tagged every packet with its flow and
//! direction and the packet chefs have been called:
//! 1. [`StreamStage::feed`] hands each TCP segment of the batch to the reassembler
//!    ([`flowtrack::reassembly`]), which copies deliverable bytes once into its arena;
//! 2. [`StreamStage::end_flow`] for each flow that ended in the batch (its held bytes are
//!    flushed, holes become gaps, and the last chunk is marked);
//! 3. [`StreamStage::chunks_for`] gives each stream chef the chunks within its own prefix
//!    (`stream-bytes` of each direction: the reassembler keeps the largest request, each
//!    chef sees only its own), matching its interest's ports and network; spans point into
//!    one shared arena, so nothing is copied per chef;
//! 4. [`StreamStage::end_batch`] empties the output for the next batch.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use flowtrack::reassembly::{
    Chunk, ChunkBatch, FlowIdHasher, Reassembler, ReassemblyLimits, ReassemblyStats, Segment,
};
use flowtrack::table::Direction as TableDirection;

use crate::chef_host::bindings::{
    Direction, FlowKey, FlowRef, Interest, IpAddress, IpHeader, NetworkProtocol, Span, StreamChunk,
    TcpFlags, TransportHeader, TransportProtocol,
};
use crate::chef_host::WirePacket;

/// Which chunks a chef's interest lets through (streams are TCP; ports and IP version
/// filter as they do for packets, link types do not apply).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamFilter {
    /// Bytes of each direction the chef wants (its `stream-bytes`).
    pub want: u64,
    ports: Vec<u16>,
    ipv4: bool,
    ipv6: bool,
}

impl StreamFilter {
    /// The filter for a chef's interest, or `None` when it wants no stream bytes (or its
    /// transport list excludes TCP).
    pub fn new(interest: &Interest) -> Option<Self> {
        let tcp =
            interest.transport.is_empty() || interest.transport.contains(&TransportProtocol::Tcp);
        if interest.stream_bytes == 0 || !tcp {
            return None;
        }
        let any_net = interest.network.is_empty();
        let mut ports = interest.ports.clone();
        ports.sort_unstable();
        ports.dedup();
        Some(StreamFilter {
            want: u64::from(interest.stream_bytes),
            ports,
            ipv4: any_net || interest.network.contains(&NetworkProtocol::Ipv4),
            ipv6: any_net || interest.network.contains(&NetworkProtocol::Ipv6),
        })
    }

    fn matches(&self, key: &FlowKey) -> bool {
        let net = match key.originator {
            IpAddress::V4(_) => self.ipv4,
            IpAddress::V6(_) => self.ipv6,
        };
        net && (self.ports.is_empty()
            || self.ports.binary_search(&key.originator_port).is_ok()
            || self.ports.binary_search(&key.responder_port).is_ok())
    }
}

/// The stage: reassembler, this batch's chunks, and each stream's 5-tuple.
#[derive(Debug)]
pub struct StreamStage {
    reassembler: Reassembler,
    out: ChunkBatch,
    /// The 5-tuple of each flow with stream state (chunks carry it); dropped when it ends.
    /// Keyed by the kitchen's own flow ids, so the reassembler's cheap hasher serves (a
    /// few lookups per segment and per ended flow).
    keys: HashMap<u64, FlowKey, BuildHasherDefault<FlowIdHasher>>,
    /// Flows ended in this batch: their keys go once their last chunks were delivered.
    ended: Vec<u64>,
    /// Scratch: one chef's chunk records.
    records: Vec<StreamChunk>,
}

fn wit_direction(d: TableDirection) -> Direction {
    match d {
        TableDirection::FromOriginator => Direction::FromOriginator,
        TableDirection::FromResponder => Direction::FromResponder,
    }
}

impl StreamStage {
    /// A stage reassembling `limits.want` bytes of each direction (the largest request).
    pub fn new(limits: ReassemblyLimits) -> Self {
        StreamStage {
            reassembler: Reassembler::new(limits),
            out: ChunkBatch::default(),
            keys: HashMap::default(),
            ended: Vec::new(),
            records: Vec::new(),
        }
    }

    /// Chefs were loaded or retired: the largest request changed.
    pub fn set_want(&mut self, want: u64) {
        self.reassembler.set_want(want);
    }

    /// Reassembly counters.
    pub fn stats(&self) -> ReassemblyStats {
        self.reassembler.stats()
    }

    /// Held out-of-order bytes now.
    pub fn held_bytes(&self) -> u64 {
        self.reassembler.held_bytes()
    }

    /// Feeds the TCP segments of a batch whose packets carry their flow (`packet.flow`).
    pub fn feed(&mut self, packets: &[WirePacket], arena: &[u8]) {
        for WirePacket(p) in packets {
            let (Some(flow), Some(TransportHeader::Tcp(tcp)), Some(ip)) =
                (p.flow, p.transport, p.ip)
            else {
                continue;
            };
            let start = p.payload.offset as usize;
            let payload = arena
                .get(start..start + p.payload.len as usize)
                .unwrap_or(&[]);
            let syn = tcp.flags.contains(TcpFlags::SYN);
            let fin = tcp.flags.contains(TcpFlags::FIN);
            let rst = tcp.flags.contains(TcpFlags::RST);
            if payload.is_empty() && !syn && !fin && !rst {
                continue; // a pure ACK: nothing for the streams
            }
            let direction = match flow.direction {
                Direction::FromOriginator => TableDirection::FromOriginator,
                Direction::FromResponder => TableDirection::FromResponder,
            };
            self.keys.entry(flow.id).or_insert_with(|| {
                let (src, dst) = match ip {
                    IpHeader::V4(h) => (IpAddress::V4(h.source), IpAddress::V4(h.destination)),
                    IpHeader::V6(h) => (IpAddress::V6(h.source), IpAddress::V6(h.destination)),
                };
                let (sport, dport) = (tcp.source_port, tcp.destination_port);
                let (originator, responder, originator_port, responder_port) = match direction {
                    TableDirection::FromOriginator => (src, dst, sport, dport),
                    TableDirection::FromResponder => (dst, src, dport, sport),
                };
                FlowKey {
                    transport: TransportProtocol::Tcp,
                    originator,
                    responder,
                    originator_port,
                    responder_port,
                }
            });
            let seg = Segment {
                seq: tcp.sequence,
                syn,
                fin,
                rst,
                payload,
                timestamp_ns: p.timestamp_ns,
            };
            self.reassembler
                .segment(flow.id, direction, &seg, &mut self.out);
        }
    }

    /// Flow `id` ended at `timestamp_ns` (FIN/RST both done, idle, evicted, end of
    /// capture): its last chunks join this batch's output.
    pub fn end_flow(&mut self, id: u64, timestamp_ns: u64) {
        self.reassembler.end_flow(id, timestamp_ns, &mut self.out);
        if self.keys.contains_key(&id) {
            self.ended.push(id);
        }
    }

    /// Whether this batch produced any chunk.
    pub fn has_chunks(&self) -> bool {
        !self.out.is_empty()
    }

    /// The chunks of this batch one chef gets (its prefix of each direction, matching its
    /// filter), and the arena their spans point into.
    pub fn chunks_for(&mut self, filter: &StreamFilter) -> (&[StreamChunk], &[u8]) {
        self.records.clear();
        for c in &self.out.chunks {
            let Some(key) = self.keys.get(&c.flow) else {
                continue;
            };
            if !filter.matches(key) {
                continue;
            }
            if let Some(record) = trim(c, filter.want, key) {
                self.records.push(record);
            }
        }
        (&self.records, &self.out.arena)
    }

    /// The batch was delivered: empty the output, forget the keys of ended flows.
    pub fn end_batch(&mut self) {
        self.out.clear();
        for id in self.ended.drain(..) {
            self.keys.remove(&id);
        }
    }
}

/// `c` cut to a chef's prefix of `want` bytes: `None` when it lies wholly past it (the chef
/// already had its last chunk), an empty last chunk when a gap crosses the prefix's end.
fn trim(c: &Chunk, want: u64, key: &FlowKey) -> Option<StreamChunk> {
    let gap_start = c.offset - c.gap_before;
    if c.offset >= want && gap_start >= want {
        return None;
    }
    let (offset, gap_before, len, last) = if c.offset >= want {
        (want, want - gap_start, 0, true)
    } else {
        let len = u64::from(c.len).min(want - c.offset);
        (
            c.offset,
            c.gap_before,
            len,
            c.last || c.offset + len >= want,
        )
    };
    Some(StreamChunk {
        flow: FlowRef {
            id: c.flow,
            direction: wit_direction(c.direction),
        },
        key: *key,
        timestamp_ns: c.timestamp_ns,
        offset,
        gap_before,
        data: Span {
            offset: c.start,
            len: len as u32,
        },
        last,
    })
}

/// The reassembly memory flags (`nd-sniff --help`, "TCP streams").
#[derive(Debug, Clone, clap::Args)]
pub struct StreamArgs {
    /// Out-of-order bytes held per direction of a TCP connection while a chef asks for
    /// stream bytes: a segment arriving further than this past a hole makes the hole a gap
    /// (reported to the chef as `gap-before`, counted). 0 = hold nothing.
    #[arg(
        long,
        value_name = "KIB",
        default_value_t = 256,
        help_heading = "TCP streams"
    )]
    pub stream_flow_buffer_kib: u64,
    /// Out-of-order bytes held over all connections: when full, the hole of the connection
    /// that needs more becomes a gap.
    #[arg(
        long,
        value_name = "MIB",
        default_value_t = 64,
        help_heading = "TCP streams"
    )]
    pub stream_memory_mib: u64,
}

impl Default for StreamArgs {
    fn default() -> Self {
        StreamArgs {
            stream_flow_buffer_kib: 256,
            stream_memory_mib: 64,
        }
    }
}

/// A reassembly flag out of range.
#[derive(Debug, thiserror::Error)]
#[error("{flag} {value} is too large (at most {max})")]
pub struct StreamArgsError {
    flag: &'static str,
    value: u64,
    max: u64,
}

impl StreamArgs {
    /// The limits (`want` 0: the chefs decide it), checked.
    pub fn limits(&self) -> Result<ReassemblyLimits, StreamArgsError> {
        // Bounds that keep the byte counts far from overflow and the defaults sane.
        const MAX_KIB: u64 = 1 << 30;
        const MAX_MIB: u64 = 1 << 20;
        if self.stream_flow_buffer_kib > MAX_KIB {
            return Err(StreamArgsError {
                flag: "--stream-flow-buffer-kib",
                value: self.stream_flow_buffer_kib,
                max: MAX_KIB,
            });
        }
        if self.stream_memory_mib > MAX_MIB {
            return Err(StreamArgsError {
                flag: "--stream-memory-mib",
                value: self.stream_memory_mib,
                max: MAX_MIB,
            });
        }
        Ok(ReassemblyLimits {
            want: 0,
            flow_window: self.stream_flow_buffer_kib << 10,
            total_memory: self.stream_memory_mib << 20,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interest(stream_bytes: u32, ports: &[u16]) -> Interest {
        Interest {
            link_types: vec![],
            network: vec![],
            transport: vec![TransportProtocol::Tcp],
            ports: ports.to_vec(),
            flow_events: false,
            stream_bytes,
        }
    }

    /// A TCP packet of flow 7 between 10.0.0.1:40000 (originator) and 10.0.0.2:443, as
    /// the parser makes it from an Ethernet frame, tagged with its flow.
    fn packet(
        arena: &mut Vec<u8>,
        direction: Direction,
        seq: u32,
        flags: u8,
        payload: &[u8],
    ) -> WirePacket {
        let (src, dst, sport, dport): ([u8; 4], [u8; 4], u16, u16) = match direction {
            Direction::FromOriginator => ([10, 0, 0, 1], [10, 0, 0, 2], 40000, 443),
            Direction::FromResponder => ([10, 0, 0, 2], [10, 0, 0, 1], 443, 40000),
        };
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 8, 0];
        let total = (40 + payload.len()) as u16;
        f.extend_from_slice(&[0x45, 0]);
        f.extend_from_slice(&total.to_be_bytes());
        f.extend_from_slice(&[0, 0, 0x40, 0, 64, 6, 0, 0]);
        f.extend_from_slice(&src);
        f.extend_from_slice(&dst);
        f.extend_from_slice(&sport.to_be_bytes());
        f.extend_from_slice(&dport.to_be_bytes());
        f.extend_from_slice(&seq.to_be_bytes());
        f.extend_from_slice(&[0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
        f.extend_from_slice(payload);
        let record = capture::PacketRecord {
            timestamp_ns: u64::from(seq),
            link_type: 1,
            interface_index: 0,
            original_len: f.len() as u32,
            data: &f,
        };
        let (mut p, _) = crate::parse::packet::parse_into(&record, arena);
        assert_eq!(p.payload.len as usize, payload.len());
        p.flow = Some(FlowRef { id: 7, direction });
        WirePacket(p)
    }

    #[test]
    fn chefs_get_their_own_prefix_and_ports() {
        let mut stage = StreamStage::new(ReassemblyLimits {
            want: 1000,
            ..ReassemblyLimits::default()
        });
        let mut arena = Vec::new();
        let data: Vec<u8> = (0..1500u32).map(|i| i as u8).collect();
        let packets = vec![
            packet(&mut arena, Direction::FromOriginator, 99, 0x02, &[]),
            // Out of order: the second half first.
            packet(
                &mut arena,
                Direction::FromOriginator,
                600,
                0x10,
                &data[500..],
            ),
            packet(
                &mut arena,
                Direction::FromOriginator,
                100,
                0x10,
                &data[..500],
            ),
            packet(&mut arena, Direction::FromResponder, 5000, 0x10, b"hi"),
        ];
        stage.feed(&packets, &arena);
        let small = StreamFilter::new(&interest(100, &[])).expect("wants streams");
        let (chunks, out) = stage.chunks_for(&small);
        let mine: Vec<_> = chunks
            .iter()
            .filter(|c| c.flow.direction == Direction::FromOriginator)
            .collect();
        assert_eq!(mine.len(), 1);
        assert_eq!(
            (mine[0].offset, mine[0].data.len, mine[0].last),
            (0, 100, true)
        );
        let at = mine[0].data.offset as usize;
        assert_eq!(&out[at..at + 100], &data[..100]);
        assert_eq!(mine[0].key.originator_port, 40000);
        assert_eq!(mine[0].key.responder_port, 443);
        let big = StreamFilter::new(&interest(1000, &[443])).expect("wants streams");
        let (chunks, _) = stage.chunks_for(&big);
        let total: u32 = chunks
            .iter()
            .filter(|c| c.flow.direction == Direction::FromOriginator)
            .map(|c| c.data.len)
            .sum();
        assert_eq!(total, 1000);
        let other_port = StreamFilter::new(&interest(1000, &[80])).expect("wants streams");
        assert!(stage.chunks_for(&other_port).0.is_empty());
        assert!(StreamFilter::new(&interest(0, &[])).is_none());
        stage.end_batch();
        assert!(!stage.has_chunks());
        stage.end_flow(7, 1);
        let (chunks, _) = stage.chunks_for(&big);
        // The responder's direction gets its end marker; the originator's was already last.
        assert_eq!(chunks.len(), 1);
        assert!(chunks[0].last && chunks[0].flow.direction == Direction::FromResponder);
        stage.end_batch();
        assert!(stage.keys.is_empty());
    }

    #[test]
    fn limits_from_flags() {
        let l = StreamArgs::default().limits().expect("defaults are valid");
        assert_eq!((l.flow_window, l.total_memory), (256 << 10, 64 << 20));
        let bad = StreamArgs {
            stream_memory_mib: u64::MAX,
            ..StreamArgs::default()
        };
        assert!(bad
            .limits()
            .unwrap_err()
            .to_string()
            .contains("--stream-memory-mib"));
    }
}
