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
//!    an arena of that chef's chunks' bytes alone (the stage's own arena, not copied, when
//!    they are all of it), so a chef is never handed, nor lowered, another chef's bytes;
//! 4. [`StreamStage::end_batch`] empties the output for the next batch.
//!
//! Verdicts (`stream-verdicts`): a chef that exports it names the directions it is done with.
//! Its lane stops handing it their chunks at once (`dispatch::streams`); the stage hears of
//! the verdict [`VERDICT_LAG`] batches after the batch whose chunks it answered
//! ([`StreamStage::add_verdicts`], applied at the start of [`StreamStage::feed`]) and, once
//! every stream chef whose filter takes the direction has given it up or had its whole
//! prefix, stops copying and delivering its bytes
//! ([`flowtrack::reassembly::Reassembler::release`]; its sequence bookkeeping goes on, so
//! every other direction's chunks stay exactly as they were). The lag
//! is fixed in batches, never "when the calls happened to run", so what is reassembled (and
//! so the total memory budget's gaps and every counter) is the same on any number of chef
//! threads and any replay window (`dispatch::window`).

use std::collections::{HashMap, VecDeque};
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

/// Batches between the one whose chunks a chef answered with a verdict and the one before
/// whose segments the stage applies it. A replay window runs each lane's calls of several
/// batches back to back after the stage has reassembled them all, so a verdict is known
/// only when the window has run; a fixed lag keeps the stage's work independent of where
/// windows end. When a replay window holds a batch this old, the lanes that give verdicts
/// run its operations early (the others at the flush, so a window after a slow chef still
/// grows to `MAX_SLOW_WINDOW_PACKETS`; `dispatch::streams`). Bytes delivered on the mixed corpus (default chefs): 301 MB
/// before verdicts, 95 MB with a lag of 1, 136 MB with 2, 252 MB with 8 (an elephant
/// flow's next batches are mostly its own bytes).
pub const VERDICT_LAG: u64 = 2;

/// How many ends ahead [`StreamStage::end_flows`] fetches a flow's state: far enough for the
/// line to arrive before its end needs it (a few hundred nanoseconds), near enough that it
/// is still in cache then.
const END_AHEAD: usize = 8;

/// One direction of one flow as a number (flow id twice, plus 1 for the responder).
pub(crate) fn dir_key(flow: u64, d: TableDirection) -> u64 {
    (flow << 1) | u64::from(d == TableDirection::FromResponder)
}

fn key_parts(key: u64) -> (u64, TableDirection) {
    let d = if key & 1 == 1 {
        TableDirection::FromResponder
    } else {
        TableDirection::FromOriginator
    };
    (key >> 1, d)
}

/// A chef's verdict as the stage keeps it until its turn: the batch it answered, the lane
/// (its serial, `ChefLane::serial`) and the direction ([`dir_key`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// The batch ([`StreamStage::seq`]) whose chunks the chef answered.
    pub seq: u64,
    /// The lane that gave the direction up.
    pub lane: u64,
    /// The direction given up.
    pub key: u64,
}

/// [`dir_key`] of a chunk's `flow-ref`.
pub(crate) fn flow_ref_key(r: &FlowRef) -> u64 {
    let d = match r.direction {
        Direction::FromOriginator => TableDirection::FromOriginator,
        Direction::FromResponder => TableDirection::FromResponder,
    };
    dir_key(r.id, d)
}

impl Verdict {
    /// Lane `lane` gives up the direction `r` in its answer to batch `seq`.
    pub fn new(seq: u64, lane: u64, r: &FlowRef) -> Self {
        Verdict {
            seq,
            lane,
            key: flow_ref_key(r),
        }
    }
}

/// The stage: reassembler, this batch's chunks, and each stream's 5-tuple.
#[derive(Debug)]
pub struct StreamStage {
    /// The reassembler, keeping each flow's 5-tuple with its stream state (made at the
    /// flow's first segment, gone when it ends): one table lookup per segment, not two
    /// (with a million flows every lookup is a cache miss).
    reassembler: Reassembler<FlowKey>,
    out: ChunkBatch,
    /// The 5-tuple of each chunk of this batch's output (`out.chunks[i]` is of the flow
    /// `chunk_keys[i]`): taken when the chunk is made, not looked up again for each stream
    /// chef in [`StreamStage::chunks_for`].
    chunk_keys: Vec<FlowKey>,
    /// Flows with stream state that ended in this batch (their lanes' verdicts go once their
    /// last chunks were delivered).
    ended: Vec<u64>,
    /// Scratch: the flows [`StreamStage::end_flows`] is ending (id, end time).
    ending: Vec<(u64, u64)>,
    /// Scratch: one chef's chunk records.
    records: Vec<StreamChunk>,
    /// Scratch: the bytes of one chef's chunks, when they are not the whole batch's arena.
    lane_arena: Vec<u8>,
    /// Batches fed so far (the last one fed is batch `seq`).
    seq: u64,
    /// Every stream lane (serial, filter), in chef order: who must give a direction up
    /// before it is released.
    lanes: Vec<(u64, StreamFilter)>,
    /// Verdicts not applied yet, oldest batch first.
    pending: VecDeque<Verdict>,
    /// Applied verdicts of directions still delivered: the lanes that gave each up, one bit
    /// per position in `lanes` (a lane past the 64th cannot give a direction up here: it
    /// keeps its directions delivered). Entries go when the direction is released or its
    /// flow ends.
    given_up: HashMap<u64, u64, BuildHasherDefault<FlowIdHasher>>,
    /// Directions given up by some lane in which another lane's prefix just ended: checked
    /// again at the next batch.
    recheck: Vec<u64>,
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
            chunk_keys: Vec::new(),
            ended: Vec::new(),
            ending: Vec::new(),
            records: Vec::new(),
            lane_arena: Vec::new(),
            seq: 0,
            lanes: Vec::new(),
            pending: VecDeque::new(),
            given_up: HashMap::default(),
            recheck: Vec::new(),
        }
    }

    /// The stream lanes changed (a chef loaded or retired): (serial, filter) of each.
    /// Verdicts of a retired lane no longer count; a new lane has given nothing up. The
    /// verdicts already applied are forgotten (their bits name positions in the old list):
    /// those directions stay delivered until their flows end, a cost only, after a reload.
    pub fn set_lanes(&mut self, lanes: Vec<(u64, StreamFilter)>) {
        if lanes.iter().map(|l| l.0).ne(self.lanes.iter().map(|l| l.0)) {
            self.given_up.clear();
            self.recheck.clear();
        }
        self.lanes = lanes;
    }

    /// The batch the next [`Self::feed`] starts (verdicts on its chunks carry it).
    pub fn next_seq(&self) -> u64 {
        self.seq + 1
    }

    /// The last batch fed (its chunks are the current output).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Verdicts the lanes made since the last call, all lanes' at once (each at most once per
    /// lane and direction; the lanes check them against their own chunks). They apply
    /// [`VERDICT_LAG`] batches after their own. Each call's verdicts answer batches after
    /// every earlier call's (a replay window's batches come after the last window's), so
    /// sorting the call's by batch (stably: lane order within a batch) keeps every verdict
    /// in batch order, however the calls were cut.
    pub fn add_verdicts(&mut self, verdicts: &mut Vec<Verdict>) {
        verdicts.sort_by_key(|v| v.seq);
        self.pending.extend(verdicts.drain(..));
    }

    /// Verdicts waiting for their turn.
    pub fn pending_verdicts(&self) -> usize {
        self.pending.len()
    }

    /// Apply the verdicts whose turn has come before batch `self.seq` is fed.
    fn apply_verdicts(&mut self) {
        while let Some(v) = self.pending.front().copied() {
            if v.seq + VERDICT_LAG > self.seq {
                break;
            }
            self.pending.pop_front();
            // A retired lane's, or one past the 64th: nothing to record.
            let Some(pos) = self.lanes.iter().position(|l| l.0 == v.lane) else {
                continue;
            };
            let Some(bit) = 1u64.checked_shl(pos as u32) else {
                continue;
            };
            let had = self.given_up.get(&v.key).copied();
            let given = had.unwrap_or(0) | bit;
            // Kept while the direction is delivered and some lane still wants it.
            match (self.try_release(v.key, given), had) {
                (true, Some(_)) => {
                    self.given_up.remove(&v.key);
                }
                (true, None) => {}
                (false, _) => {
                    self.given_up.insert(v.key, given);
                }
            }
        }
        for key in std::mem::take(&mut self.recheck) {
            if let Some(&given) = self.given_up.get(&key) {
                if self.try_release(key, given) {
                    self.given_up.remove(&key);
                }
            }
        }
    }

    /// Release direction `key` if every lane whose filter takes it gave it up (`given`: bits
    /// by lane position) or had its whole prefix. True when there is nothing left to wait
    /// for: released now, or no longer delivered (ended, finished, released).
    fn try_release(&mut self, key: u64, given: u64) -> bool {
        let (flow, d) = key_parts(key);
        let lanes = &self.lanes;
        let nobody_wants = |next: u64, fk: &FlowKey| {
            lanes.iter().enumerate().all(|(i, (_, f))| {
                !f.matches(fk)
                    || f.want <= next
                    || 1u64.checked_shl(i as u32).is_some_and(|b| given & b != 0)
            })
        };
        self.reassembler
            .release_if(flow, d, nobody_wants)
            .is_none_or(|released| released)
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

    /// Feeds the TCP segments of a batch whose packets carry their flow (`packet.flow`),
    /// after applying the verdicts whose turn has come.
    pub fn feed(&mut self, packets: &[WirePacket], arena: &[u8]) {
        self.seq += 1;
        if !self.pending.is_empty() || !self.recheck.is_empty() {
            self.apply_verdicts();
        }
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
            let make_key = || {
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
            };
            let seg = Segment {
                seq: tcp.sequence,
                syn,
                fin,
                rst,
                payload,
                timestamp_ns: p.timestamp_ns,
            };
            // A segment emits chunks of its own flow only (none when it was ignored).
            if let Some(key) =
                self.reassembler
                    .segment_tagged(flow.id, direction, &seg, &mut self.out, make_key)
            {
                self.chunk_keys.resize(self.out.chunks.len(), key);
            }
        }
    }

    /// Flow `id` ended at `timestamp_ns` (FIN/RST both done, idle, evicted, end of
    /// capture): its last chunks join this batch's output.
    pub fn end_flow(&mut self, id: u64, timestamp_ns: u64) {
        // Its last chunks, all of this flow (none when it had no stream state).
        if let Some(key) = self.reassembler.end_flow(id, timestamp_ns, &mut self.out) {
            self.ended.push(id);
            self.chunk_keys.resize(self.out.chunks.len(), key);
        }
    }

    /// [`Self::end_flow`] for each of `ends` (flow id, end time), in order, each flow's
    /// state fetched [`END_AHEAD`] ends ahead: a batch's ended flows are mostly old ones
    /// whose states are cache misses, and this way the misses overlap.
    pub fn end_flows(&mut self, ends: impl Iterator<Item = (u64, u64)>) {
        let mut ending = std::mem::take(&mut self.ending);
        ending.clear();
        ending.extend(ends);
        for &(id, _) in ending.iter().take(END_AHEAD) {
            self.reassembler.prefetch_flow(id);
        }
        for (i, &(id, timestamp_ns)) in ending.iter().enumerate() {
            if let Some(&(ahead, _)) = ending.get(i + END_AHEAD) {
                self.reassembler.prefetch_flow(ahead);
            }
            self.end_flow(id, timestamp_ns);
        }
        self.ending = ending;
    }

    /// Whether this batch produced any chunk.
    pub fn has_chunks(&self) -> bool {
        !self.out.is_empty()
    }

    /// The chunks of this batch one chef gets (its prefix of each direction, matching its
    /// filter), and the arena their spans point into.
    pub fn chunks_for(&mut self, filter: &StreamFilter) -> (&[StreamChunk], &[u8]) {
        self.select(filter);
        compact(&mut self.records, &self.out.arena, &mut self.lane_arena)
    }

    /// [`StreamStage::chunks_for`] for a caller that keeps the bytes (a replay window, one
    /// copy per lane): this chef's chunks' bytes are appended to `dest`, once, and the
    /// records' spans count from where they start there.
    pub fn chunks_into(&mut self, filter: &StreamFilter, dest: &mut Vec<u8>) -> &[StreamChunk] {
        self.select(filter);
        let base = dest.len();
        repoint(&mut self.records, &self.out.arena, dest, base);
        &self.records
    }

    /// This batch's chunks one chef gets, in `records` (spans into the stage's arena).
    fn select(&mut self, filter: &StreamFilter) {
        self.records.clear();
        debug_assert_eq!(self.chunk_keys.len(), self.out.chunks.len());
        for (c, key) in self.out.chunks.iter().zip(&self.chunk_keys) {
            if c.released {
                continue; // nobody wants it (it only keeps the others' chunks as they were)
            }
            if !filter.matches(key) {
                continue;
            }
            if let Some(record) = trim(c, filter.want, key) {
                if record.last && !c.last && !self.given_up.is_empty() {
                    // This lane's prefix ended here: a direction others gave up may be
                    // nobody's now.
                    let k = dir_key(c.flow, c.direction);
                    if self.given_up.contains_key(&k) {
                        self.recheck.push(k);
                    }
                }
                self.records.push(record);
            }
        }
    }

    /// Flows with stream state that ended in this batch (their lanes forget their verdicts).
    pub fn ended(&self) -> &[u64] {
        &self.ended
    }

    /// The batch was delivered: empty the output, forget the verdicts of ended flows.
    pub fn end_batch(&mut self) {
        self.out.clear();
        self.chunk_keys.clear();
        for id in self.ended.drain(..) {
            if !self.given_up.is_empty() {
                self.given_up
                    .remove(&dir_key(id, TableDirection::FromOriginator));
                self.given_up
                    .remove(&dir_key(id, TableDirection::FromResponder));
            }
        }
    }
}

/// `c` cut to a chef's prefix of `want` bytes: `None` when it lies wholly past it (the chef
/// already had its last chunk), an empty last chunk when a gap crosses the prefix's end.
/// `records` (spans into `arena`) with the arena a chef gets with them: `arena` itself when
/// they cover it whole, in order (no copy), else their bytes alone, back to back in
/// `scratch`, the spans re-pointed. Why: the stage's arena holds every stream chef's
/// chunks, so each chef was lowered all of them (the HTTP chef the TLS bytes and the
/// reverse, and the bytes past its own `stream-bytes` prefix): wasm memory copies of bytes
/// no call could read, and bytes outside the chef's interest.
fn compact<'a>(
    records: &'a mut [StreamChunk],
    arena: &'a [u8],
    scratch: &'a mut Vec<u8>,
) -> (&'a [StreamChunk], &'a [u8]) {
    let mut next = 0u64;
    let whole = records.iter().all(|r| {
        let at = u64::from(r.data.offset);
        let ok = at == next;
        next = at + u64::from(r.data.len);
        ok
    }) && next == arena.len() as u64;
    if whole {
        return (records, arena);
    }
    scratch.clear();
    repoint(records, arena, scratch, 0);
    (records, scratch)
}

/// Appends the bytes of `records` (spans into `arena`) to `dest`, back to back, and points
/// their spans at them, counted from `base` in `dest`.
fn repoint(records: &mut [StreamChunk], arena: &[u8], dest: &mut Vec<u8>, base: usize) {
    for r in records.iter_mut() {
        let start = r.data.offset as usize;
        // The stage's own spans: always inside its arena (an empty slice otherwise).
        let bytes = arena
            .get(start..start + r.data.len as usize)
            .unwrap_or_default();
        // Spans of a u32-addressed arena: the copy is no larger.
        r.data = Span {
            offset: u32::try_from(dest.len() - base).unwrap_or(u32::MAX),
            len: r.data.len.min(bytes.len() as u32),
        };
        dest.extend_from_slice(bytes);
    }
}

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
    /// Hand every stream chef every chunk of its prefix, ignoring the directions it says it
    /// is done with (`stream-verdicts`), and reassemble them all, as kitchens before
    /// verdicts did. For comparisons: the chefs' output must be the same either way.
    #[arg(long, help_heading = "TCP streams")]
    pub ignore_stream_verdicts: bool,
}

impl Default for StreamArgs {
    fn default() -> Self {
        StreamArgs {
            stream_flow_buffer_kib: 256,
            stream_memory_mib: 64,
            ignore_stream_verdicts: false,
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
    fn ending_many_flows_at_once_is_ending_them_one_by_one() {
        let make = || {
            StreamStage::new(ReassemblyLimits {
                want: 100,
                ..ReassemblyLimits::default()
            })
        };
        let (mut one, mut many) = (make(), make());
        let mut arena = Vec::new();
        let packets: Vec<WirePacket> = (1..=40u64)
            .map(|id| {
                let mut p = packet(
                    &mut arena,
                    Direction::FromOriginator,
                    1000 + id as u32,
                    0x10,
                    &[id as u8; 5],
                );
                p.0.flow = Some(FlowRef {
                    id,
                    direction: Direction::FromOriginator,
                });
                p
            })
            .collect();
        for stage in [&mut one, &mut many] {
            stage.feed(&packets, &arena);
            stage.end_batch();
        }
        // Ends in an order that is not the ids': 41-50 never had stream state, and ten
        // flows end twice (the second time finds nothing).
        let ends: Vec<(u64, u64)> = (0..60u64).map(|i| ((i * 7) % 50 + 1, 5000 + i)).collect();
        for &(id, t) in &ends {
            one.end_flow(id, t);
        }
        many.end_flows(ends.iter().copied());
        assert_eq!(many.out.chunks, one.out.chunks);
        assert_eq!(many.out.chunks.len(), 40, "one end marker per flow");
        assert!(many.out.chunks.iter().all(|c| c.last && c.len == 0));
        assert_eq!(many.ended, one.ended);
        assert_eq!(many.chunk_keys, one.chunk_keys);
        assert_eq!(many.stats(), one.stats());
        assert_eq!(many.reassembler.flow_count(), 0);
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
        assert_eq!(stage.reassembler.flow_count(), 0);
    }

    #[test]
    fn a_chef_gets_only_its_own_chunks_bytes() {
        let mut stage = StreamStage::new(ReassemblyLimits {
            want: 1000,
            ..ReassemblyLimits::default()
        });
        let mut arena = Vec::new();
        let data: Vec<u8> = (0..800u32).map(|i| (i % 251) as u8).collect();
        let packets = vec![
            packet(&mut arena, Direction::FromOriginator, 99, 0x02, &[]),
            packet(&mut arena, Direction::FromOriginator, 100, 0x10, &data),
            packet(&mut arena, Direction::FromResponder, 5000, 0x10, b"secret"),
        ];
        stage.feed(&packets, &arena);
        let everything: usize = {
            let all = StreamFilter::new(&interest(1000, &[])).expect("wants streams");
            let (chunks, out) = stage.chunks_for(&all);
            // Every chunk whole: the stage's arena as it is, each span where it was.
            let sum: u32 = chunks.iter().map(|c| c.data.len).sum();
            assert_eq!(sum as usize, out.len());
            out.len()
        };
        assert_eq!(everything, 800 + 6);
        // A 100-byte prefix: its arena is those bytes and the responder's, nothing past.
        let small = StreamFilter::new(&interest(100, &[])).expect("wants streams");
        let (chunks, out) = stage.chunks_for(&small);
        let sum: u32 = chunks.iter().map(|c| c.data.len).sum();
        assert_eq!(out.len(), sum as usize);
        assert_eq!(out.len(), 100 + 6);
        for c in chunks {
            let at = c.data.offset as usize;
            let bytes = &out[at..at + c.data.len as usize];
            match c.flow.direction {
                Direction::FromOriginator => assert_eq!(bytes, &data[..100]),
                Direction::FromResponder => assert_eq!(bytes, b"secret"),
            }
        }
        // Another port: nothing at all.
        let other = StreamFilter::new(&interest(1000, &[80])).expect("wants streams");
        let (chunks, out) = stage.chunks_for(&other);
        assert!(chunks.is_empty() && out.is_empty());
    }

    /// Chunks of flow 7's originator in `stage`'s output, as (offset, len, last), for
    /// `filter`.
    fn originator_chunks(stage: &mut StreamStage, filter: &StreamFilter) -> Vec<(u64, u32, bool)> {
        let (chunks, _) = stage.chunks_for(filter);
        chunks
            .iter()
            .filter(|c| c.flow.direction == Direction::FromOriginator)
            .map(|c| (c.offset, c.data.len, c.last))
            .collect()
    }

    #[test]
    fn a_direction_is_released_when_every_lane_gave_it_up_after_the_lag() {
        let big = StreamFilter::new(&interest(1000, &[])).expect("wants streams");
        let small = StreamFilter::new(&interest(100, &[])).expect("wants streams");
        let other_port = StreamFilter::new(&interest(1000, &[80])).expect("wants streams");
        let mut stage = StreamStage::new(ReassemblyLimits {
            want: 1000,
            ..ReassemblyLimits::default()
        });
        // Lanes 1 and 2 read everything; lane 3 a 100-byte prefix; lane 4 another port.
        stage.set_lanes(vec![
            (1, big.clone()),
            (2, big.clone()),
            (3, small.clone()),
            (4, other_port),
        ]);
        let mut seq = 100;
        let mut next_batch = |stage: &mut StreamStage| {
            let mut arena = Vec::new();
            let p = packet(&mut arena, Direction::FromOriginator, seq, 0x10, &[7; 50]);
            seq += 50;
            stage.end_batch();
            stage.feed(&[p], &arena);
        };
        let mut arena = Vec::new();
        let syn = packet(&mut arena, Direction::FromOriginator, 99, 0x02, &[]);
        stage.feed(&[syn], &arena);
        next_batch(&mut stage);
        assert_eq!(stage.seq(), 2);
        let fr = FlowRef {
            id: 7,
            direction: Direction::FromOriginator,
        };
        // Lane 1 gives it up in its answer to batch 2: lane 2 still wants it.
        stage.add_verdicts(&mut vec![Verdict::new(2, 1, &fr)]);
        for _ in 0..VERDICT_LAG + 1 {
            next_batch(&mut stage);
        }
        assert_eq!(stage.stats().released_directions, 0);
        assert_eq!(originator_chunks(&mut stage, &big).len(), 1);
        // Lane 2 gives it up in its answer to batch 5; lane 3 has had its prefix (100
        // bytes), lane 4 never wanted it; a stale verdict (flow 8) and a retired lane's are
        // harmless.
        let stale = FlowRef { id: 8, ..fr };
        stage.add_verdicts(&mut vec![
            Verdict::new(5, 2, &fr),
            Verdict::new(5, 2, &stale),
            Verdict::new(5, 9, &fr),
        ]);
        assert_eq!(stage.pending_verdicts(), 3);
        for _ in 0..VERDICT_LAG - 1 {
            next_batch(&mut stage);
            assert_eq!(stage.stats().released_directions, 0, "not before the lag");
        }
        let before = stage.stats().delivered_bytes;
        next_batch(&mut stage);
        assert_eq!(stage.stats().released_directions, 1);
        assert_eq!(stage.pending_verdicts(), 0);
        // Released: nothing more is delivered to anyone, nor counted.
        assert!(originator_chunks(&mut stage, &big).is_empty());
        assert!(originator_chunks(&mut stage, &small).is_empty());
        assert_eq!(stage.stats().delivered_bytes, before);
        next_batch(&mut stage);
        assert!(originator_chunks(&mut stage, &big).is_empty());
        // The flow ends: its verdicts are forgotten with its key.
        stage.end_batch();
        stage.end_flow(7, 1);
        stage.end_batch();
        assert!(stage.reassembler.flow_count() == 0 && stage.given_up.is_empty());
    }

    #[test]
    fn verdicts_apply_at_their_batch_whatever_order_the_lanes_hand_them_over() {
        let big = StreamFilter::new(&interest(1000, &[])).expect("wants streams");
        let mut stage = StreamStage::new(ReassemblyLimits {
            want: 1000,
            ..ReassemblyLimits::default()
        });
        stage.set_lanes(vec![(1, big.clone()), (2, big.clone())]);
        let fr = FlowRef {
            id: 7,
            direction: Direction::FromOriginator,
        };
        let other = FlowRef {
            direction: Direction::FromResponder,
            ..fr
        };
        let mut seq = 100;
        let mut feed = |stage: &mut StreamStage| {
            let mut arena = Vec::new();
            let ps = vec![
                packet(&mut arena, Direction::FromOriginator, seq, 0x10, &[1; 10]),
                packet(
                    &mut arena,
                    Direction::FromResponder,
                    5000 + seq,
                    0x10,
                    &[2; 10],
                ),
            ];
            seq += 10;
            stage.end_batch();
            stage.feed(&ps, &arena);
        };
        feed(&mut stage);
        feed(&mut stage);
        // One window's verdicts, lane by lane: lane 1's of batches 1 and 2, then lane 2's of
        // batch 1. Lane 2's must not wait behind lane 1's later one.
        stage.add_verdicts(&mut vec![
            Verdict::new(1, 1, &fr),
            Verdict::new(2, 1, &other),
            Verdict::new(1, 2, &fr),
        ]);
        while stage.seq() < VERDICT_LAG {
            feed(&mut stage);
        }
        assert_eq!(stage.stats().released_directions, 0);
        feed(&mut stage);
        assert_eq!(stage.seq(), 1 + VERDICT_LAG);
        assert_eq!(stage.stats().released_directions, 1);
        assert_eq!(stage.pending_verdicts(), 1);
    }

    #[test]
    fn a_lane_whose_prefix_ends_later_releases_what_the_others_gave_up() {
        let big = StreamFilter::new(&interest(1000, &[])).expect("wants streams");
        let small = StreamFilter::new(&interest(120, &[])).expect("wants streams");
        let mut stage = StreamStage::new(ReassemblyLimits {
            want: 1000,
            ..ReassemblyLimits::default()
        });
        stage.set_lanes(vec![(1, big.clone()), (2, small.clone())]);
        let mut arena = Vec::new();
        let first = packet(&mut arena, Direction::FromOriginator, 100, 0x10, &[1; 50]);
        stage.feed(&[first], &arena);
        let fr = FlowRef {
            id: 7,
            direction: Direction::FromOriginator,
        };
        // Lane 1 (no prefix limit short of 1000) gives up; lane 2 still wants 70 bytes.
        stage.add_verdicts(&mut vec![Verdict::new(1, 1, &fr)]);
        let mut seq = 150;
        for _ in 0..VERDICT_LAG {
            stage.end_batch();
            let mut arena = Vec::new();
            let p = packet(&mut arena, Direction::FromOriginator, seq, 0x10, &[2; 10]);
            seq += 10;
            stage.feed(&[p], &arena);
        }
        assert_eq!(stage.stats().released_directions, 0);
        // Lane 2's prefix ends in this batch: its last chunk is marked, and the direction
        // is nobody's from the next batch on.
        stage.end_batch();
        let mut arena = Vec::new();
        let p = packet(&mut arena, Direction::FromOriginator, seq, 0x10, &[3; 100]);
        seq += 100;
        stage.feed(&[p], &arena);
        let mine = originator_chunks(&mut stage, &small);
        assert_eq!(mine.last().map(|c| c.2), Some(true), "{mine:?}");
        stage.end_batch();
        let mut arena = Vec::new();
        let p = packet(&mut arena, Direction::FromOriginator, seq, 0x10, &[4; 10]);
        stage.feed(&[p], &arena);
        assert_eq!(stage.stats().released_directions, 1);
        assert!(originator_chunks(&mut stage, &big).is_empty());
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
