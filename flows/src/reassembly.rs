//! In-order TCP stream reassembly: per (flow id, direction), the payload bytes from stream
//! offset 0 up to a requested byte count, as chunks copied once into an output arena.
//!
//! What it does, and the policies it follows (the kitchen's stream stage feeds it every TCP
//! segment of the flows some chef wants stream bytes of):
//! - **Offset 0** is the byte after the SYN's sequence number when the SYN (or SYN-ACK) was
//!   seen, else the first payload byte seen in that direction (mid-stream pickup). Bytes that
//!   land before offset 0 (a mid-stream pickup that began with a reordered later segment) are
//!   counted in [`ReassemblyStats::before_start_bytes`] and not delivered.
//! - **Sequence numbers** are 32-bit and wrap; offsets are 64-bit, unwrapped relative to the
//!   next expected offset (a segment is placed at the offset closest to it).
//! - **Retransmissions and overlaps: first data wins** (the policy of most stacks' receive
//!   paths and of Suricata's default `stream.reassembly` policy for unknown hosts): a byte
//!   offset keeps the first copy that arrived; later copies count as duplicate bytes, and a
//!   segment whose overlapping bytes differ from the kept ones counts once in
//!   [`ReassemblyStats::conflicting_overlaps`]. Bytes already delivered are not kept, so a
//!   retransmission of delivered bytes is counted as duplicate but not compared.
//! - **Out-of-order segments** are held while they lie within `flow_window` bytes of the next
//!   expected offset (the per-direction buffer), and while all held bytes (plus a fixed
//!   per-segment overhead) stay under `total_memory`. A hole that cannot be filled is given
//!   up and reported as a gap (`gap_before` on the next chunk): when a segment arrives beyond
//!   the window ("data far past the hole"), when the total budget is full, and when the flow
//!   ends (FIN then flow end, RST, idle timeout, eviction, end of capture). The bytes of a
//!   given-up hole are counted in [`ReassemblyStats::gap_bytes`].
//! - **The end** of a direction is marked by `last` on its final chunk (an empty chunk when
//!   nothing is left to deliver): when it reaches the requested byte count, when all bytes
//!   before its FIN were delivered, on RST, and when the flow ends. A direction that never
//!   carried payload gets no chunks at all.
//!
//! Work per segment is one hash lookup plus amortised O(log h) for h held segments (h is 0 on
//! the in-order path); payload bytes are copied once into the output arena (out-of-order bytes
//! once more, into the hold buffer). The state per flow lives until [`Reassembler::end_flow`],
//! which the flow table calls for every flow it ends or evicts, so the number of states is
//! bounded by the flow table's size.

use std::collections::BTreeMap;
use std::hash::Hasher;

use store::FlowStore;

mod store;

pub use crate::table::Direction;

/// Index of a direction's state (0 = originator, 1 = responder).
fn index(d: Direction) -> usize {
    match d {
        Direction::FromOriginator => 0,
        Direction::FromResponder => 1,
    }
}

/// Cost charged per held out-of-order piece on top of its bytes, so that many tiny segments
/// cannot make the process hold more memory than the budget says. A held piece costs its
/// box and B-tree share (~70 bytes) while held, and when it is delivered (a hole given up,
/// the flow's end) it becomes a chunk record in the stage's list and in each stream
/// chef's (~100 bytes each, the chef's copy of the call included): measured on
/// `nd-sniff -r` with the default chefs (two stream chefs) and 1 M one-byte pieces held
/// behind a hole, ~570 bytes per piece at the peak. At 64 bytes, the default 64 MiB budget
/// let such a capture take 580 MB.
pub const HELD_PIECE_OVERHEAD: u64 = 576;

/// How much to reassemble and how much memory it may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReassemblyLimits {
    /// Bytes of each direction wanted from offset 0 (the largest request of any chef);
    /// 0 turns reassembly off.
    pub want: u64,
    /// Out-of-order bytes held per direction: a segment ending further than this past the
    /// next expected offset makes the hole before it a gap.
    pub flow_window: u64,
    /// Held out-of-order bytes (plus [`HELD_PIECE_OVERHEAD`] each) over all flows.
    pub total_memory: u64,
}

impl Default for ReassemblyLimits {
    fn default() -> Self {
        Self {
            want: 0,
            flow_window: 256 * 1024,
            total_memory: 64 * 1024 * 1024,
        }
    }
}

/// One TCP segment of a flow, as the reassembler needs it.
#[derive(Clone, Copy, Debug)]
pub struct Segment<'a> {
    /// The TCP sequence number.
    pub seq: u32,
    /// SYN flag (the segment's sequence number is the initial one; data starts at seq + 1).
    pub syn: bool,
    /// FIN flag (the direction ends after this segment's payload).
    pub fin: bool,
    /// RST flag (both directions end now).
    pub rst: bool,
    /// TCP payload (as captured; a snaplen-cut payload is shorter than on the wire).
    pub payload: &'a [u8],
    /// Capture time, nanoseconds since the Unix epoch.
    pub timestamp_ns: u64,
}

/// In-order bytes of one direction of one flow, in an output [`ChunkBatch`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chunk {
    /// Flow id.
    pub flow: u64,
    /// Which side sent the bytes.
    pub direction: Direction,
    /// Time of the segment (or flow end) that made the bytes deliverable.
    pub timestamp_ns: u64,
    /// Stream offset of the first byte.
    pub offset: u64,
    /// Bytes known missing right before `offset` (given up holes), 0 normally.
    pub gap_before: u64,
    /// Start of the bytes in the batch arena.
    pub start: u32,
    /// Number of bytes (0 for an end marker).
    pub len: u32,
    /// No more chunks follow for this direction.
    pub last: bool,
    /// The direction was released ([`Reassembler::release`]): the chunk only marks where
    /// its bytes would have been (nothing was copied, `start` points at no bytes of it).
    /// Nobody wants it; it is kept so the chunks of every other direction stay exactly as
    /// they were (a chunk extends the previous one only when no other chunk came between).
    pub released: bool,
}

/// Chunks and the arena their bytes were copied into; reused across batches.
#[derive(Debug, Default)]
pub struct ChunkBatch {
    /// Chunks in the order they became deliverable (time order of the segments).
    pub chunks: Vec<Chunk>,
    /// Bytes of all chunks.
    pub arena: Vec<u8>,
}

impl ChunkBatch {
    /// The bytes of `chunk` (empty if the chunk is not from this batch).
    pub fn data(&self, chunk: &Chunk) -> &[u8] {
        let start = chunk.start as usize;
        self.arena
            .get(start..start + chunk.len as usize)
            .unwrap_or(&[])
    }

    /// Empties the batch, keeping its allocations.
    pub fn clear(&mut self) {
        self.chunks.clear();
        self.arena.clear();
    }

    /// True when the batch holds no chunk.
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }
}

/// Counters since the reassembler was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReassemblyStats {
    /// Segments looked at (payload, SYN, FIN or RST on a flow with stream state).
    pub segments: u64,
    /// Bytes delivered in chunks.
    pub delivered_bytes: u64,
    /// Bytes that arrived again for offsets already delivered or held (retransmissions,
    /// overlaps); the first copy was kept.
    pub duplicate_bytes: u64,
    /// Segments whose bytes overlapping held or in-flight data differed from the kept ones.
    pub conflicting_overlaps: u64,
    /// Out-of-order segments (or their new parts) put in the hold buffer.
    pub held_segments: u64,
    /// Holes given up and reported as gaps.
    pub gaps: u64,
    /// Bytes in given-up holes (lost to the chefs).
    pub gap_bytes: u64,
    /// Of [`Self::gaps`], those forced by the total memory budget being full.
    pub gaps_memory_full: u64,
    /// Of [`Self::gap_bytes`], bytes given up because a segment arrived further than the
    /// per-direction window (`flow_window`) past the hole: dropped for the per-flow budget.
    pub gap_bytes_flow_window: u64,
    /// Of [`Self::gap_bytes`], bytes given up because the total memory budget was full.
    pub gap_bytes_memory_full: u64,
    /// Flows in which a budget (per-flow window or total memory) forced a gap at least once.
    pub flows_over_budget: u64,
    /// Bytes that landed before stream offset 0 (not deliverable).
    pub before_start_bytes: u64,
    /// Largest number of held bytes (with overhead) at any time.
    pub held_peak: u64,
    /// Directions given up before their end because no chef wanted more of them
    /// ([`Reassembler::release`]).
    pub released_directions: u64,
}

/// Multiplicative hasher for flow ids (small sequential integers, not chosen by outsiders:
/// the kitchen assigns them), much cheaper than SipHash on the per-segment path.
#[derive(Default, Clone, Copy)]
pub struct FlowIdHasher(u64);

impl Hasher for FlowIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (n ^ self.0).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// One direction's reassembly state.
#[derive(Debug, Default)]
struct DirState {
    /// Sequence number of stream offset 0.
    base: u32,
    /// `base` is known.
    started: bool,
    /// Next offset to deliver (everything below was delivered or given up).
    next: u64,
    /// Bytes given up right before `next`, to report on the next chunk.
    pending_gap: u64,
    /// Offset of the FIN, when seen.
    fin_at: Option<u64>,
    /// No more chunks for this direction.
    done: bool,
    /// Released: no chef wants its bytes; only its sequence bookkeeping goes on.
    released: bool,
    /// Out-of-order bytes by offset; pieces never overlap and all start after `next`.
    held: BTreeMap<u64, Box<[u8]>>,
    /// Held bytes including overhead.
    held_cost: u64,
}

#[derive(Debug, Default)]
struct FlowStreams<T> {
    dirs: [DirState; 2],
    /// A budget forced a gap in this flow (counted once in `flows_over_budget`).
    over_budget: bool,
    /// The caller's data about the flow ([`Reassembler`]'s `T`), made at its first segment.
    tag: T,
}

impl<T> FlowStreams<T> {
    /// Both directions' streams end here (an RST, or the flow's end): holes still open
    /// become gaps and the rest goes out as their last chunks, the originator's first.
    fn finish_both(
        &mut self,
        emit: &mut Emit<'_>,
        held_total: &mut u64,
        stats: &mut ReassemblyStats,
    ) {
        for (d, direction) in self
            .dirs
            .iter_mut()
            .zip([Direction::FromOriginator, Direction::FromResponder])
        {
            emit.direction = direction;
            d.finish(emit, held_total, stats, true);
        }
    }
}

/// Where a chunk goes, and what the emitting segment carries.
struct Emit<'b> {
    out: &'b mut ChunkBatch,
    flow: u64,
    direction: Direction,
    timestamp_ns: u64,
}

/// Reassembles the TCP streams of many flows (single-threaded; one per kitchen).
///
/// `T` is the caller's own data about each flow (the kitchen keeps its 5-tuple here), made
/// from the flow's first segment ([`Reassembler::segment_tagged`]) and kept with its stream
/// state, so a caller needs no second table keyed by flow id: with a million flows each
/// lookup of such a table is a cache miss.
#[derive(Debug)]
pub struct Reassembler<T = ()> {
    limits: ReassemblyLimits,
    /// Each flow's state, by flow id (a slab and a ring by id, `store`: not a hash map).
    flows: FlowStore<FlowStreams<T>>,
    /// Held bytes (with overhead) over all flows.
    held_total: u64,
    stats: ReassemblyStats,
}

/// Places a 32-bit relative sequence at the 64-bit offset closest to `next` (may be < 0).
fn unwrap_offset(rel: u32, next: u64) -> i64 {
    let delta = i64::from(rel.wrapping_sub(next as u32) as i32);
    next as i64 + delta
}

impl<T: Copy> Reassembler<T> {
    /// A reassembler with the given limits.
    pub fn new(limits: ReassemblyLimits) -> Self {
        Self {
            limits,
            flows: FlowStore::default(),
            held_total: 0,
            stats: ReassemblyStats::default(),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> ReassemblyLimits {
        self.limits
    }

    /// Changes how many bytes per direction are wanted (chefs loaded or reloaded); streams
    /// that already reached the old count stay finished.
    pub fn set_want(&mut self, want: u64) {
        self.limits.want = want;
    }

    /// Counters so far.
    pub fn stats(&self) -> ReassemblyStats {
        self.stats
    }

    /// Held out-of-order bytes (with overhead) now.
    pub fn held_bytes(&self) -> u64 {
        self.held_total
    }

    /// Flows with stream state now.
    pub fn flow_count(&self) -> usize {
        self.flows.len()
    }

    /// The next offset `flow`'s `direction` will deliver, while its bytes are delivered
    /// (`None`: no state, finished or released).
    pub fn next_offset(&self, flow: u64, direction: Direction) -> Option<u64> {
        let d = &self.flows.get(flow)?.dirs[index(direction)];
        (!d.done && !d.released).then_some(d.next)
    }

    /// [`Self::release`] when `nobody_wants(next offset, the flow's tag)` says so, with one
    /// lookup: `None` when the direction is not being delivered (unknown flow, finished,
    /// released), else whether it was released now.
    pub fn release_if(
        &mut self,
        flow: u64,
        direction: Direction,
        nobody_wants: impl FnOnce(u64, &T) -> bool,
    ) -> Option<bool> {
        let streams = self.flows.get_mut(flow)?;
        let d = &mut streams.dirs[index(direction)];
        if d.done || d.released {
            return None;
        }
        if !nobody_wants(d.next, &streams.tag) {
            return Some(false);
        }
        d.released = true;
        self.stats.released_directions += 1;
        Some(true)
    }

    /// Nobody wants more bytes of `flow`'s `direction`: copy none of them from now on and
    /// deliver none (its chunks come out flagged [`Chunk::released`], without bytes).
    ///
    /// Its sequence bookkeeping goes on unchanged (in-order offsets, holes, held pieces,
    /// FIN, budgets): where a chunk of another direction ends, and whether a hole of
    /// another flow fits the total budget, depend on it (a chunk extends the previous one
    /// only when no other chunk came between), and those must not change for the chefs
    /// that still read the other directions. Returns true when the direction was being
    /// delivered (counted in [`ReassemblyStats::released_directions`]); false for an
    /// unknown flow, a direction already finished or already released.
    pub fn release(&mut self, flow: u64, direction: Direction) -> bool {
        let Some(streams) = self.flows.get_mut(flow) else {
            return false;
        };
        let d = &mut streams.dirs[index(direction)];
        if d.done || d.released {
            return false;
        }
        d.released = true;
        self.stats.released_directions += 1;
        true
    }

    /// Feeds one segment of `flow` sent by `direction`; deliverable bytes go to `out`.
    ///
    /// `tag` makes the flow's [`Reassembler`] `T` when this is its first segment with stream
    /// state. Returns the flow's tag when it has stream state (every chunk this call emitted
    /// is of this flow), `None` when the segment was ignored (nothing wanted, an empty
    /// segment, a FIN or RST of a flow never seen).
    pub fn segment_tagged(
        &mut self,
        flow: u64,
        direction: Direction,
        seg: &Segment<'_>,
        out: &mut ChunkBatch,
        tag: impl FnOnce() -> T,
    ) -> Option<T> {
        let want = self.limits.want;
        if want == 0 || (seg.payload.is_empty() && !seg.syn && !seg.fin && !seg.rst) {
            return None;
        }
        let Self {
            limits,
            flows,
            held_total,
            stats,
        } = self;
        if seg.payload.is_empty() && !seg.syn && !flows.contains(flow) {
            // A FIN or RST of a flow that never carried payload here: nothing to end.
            return None;
        }
        let streams = flows.get_or_insert_with(flow, || FlowStreams {
            dirs: Default::default(),
            over_budget: false,
            tag: tag(),
        });
        let flow_tag = streams.tag;
        stats.segments += 1;
        let mut emit = Emit {
            out,
            flow,
            direction,
            timestamp_ns: seg.timestamp_ns,
        };
        if seg.rst {
            streams.finish_both(&mut emit, held_total, stats);
            return Some(flow_tag);
        }
        let d = &mut streams.dirs[index(direction)];
        if d.done {
            return Some(flow_tag);
        }
        let data_seq = if seg.syn {
            if !d.started {
                d.base = seg.seq.wrapping_add(1);
                d.started = true;
            }
            seg.seq.wrapping_add(1)
        } else {
            seg.seq
        };
        if !d.started {
            if seg.payload.is_empty() {
                return Some(flow_tag);
            }
            d.base = data_seq;
            d.started = true;
        }
        let off = unwrap_offset(data_seq.wrapping_sub(d.base), d.next);
        let over_budget = !seg.payload.is_empty()
            && d.accept(off, seg.payload, limits, &mut emit, held_total, stats);
        if seg.fin && !d.done {
            let fin_at = off + seg.payload.len() as i64;
            if fin_at >= 0 {
                d.fin_at = Some(fin_at as u64);
            }
        }
        if let Some(fin_at) = d.fin_at {
            if !d.done && d.next >= fin_at && d.held.is_empty() {
                d.finish(&mut emit, held_total, stats, false);
            }
        }
        if over_budget && !streams.over_budget {
            streams.over_budget = true;
            stats.flows_over_budget += 1;
        }
        Some(flow_tag)
    }

    /// Ends both directions of `flow` (FIN seen both ways, idle timeout, eviction, end of
    /// capture): holes still open become gaps, the rest is delivered with `last`, and the
    /// flow's state is dropped. Returns the flow's tag, `None` when it had no stream state
    /// (then nothing was emitted).
    pub fn end_flow(&mut self, flow: u64, timestamp_ns: u64, out: &mut ChunkBatch) -> Option<T> {
        let Self {
            flows,
            held_total,
            stats,
            ..
        } = self;
        // Finished in place (`finish` empties the held pieces), then its slot is free.
        flows.remove_with(flow, |streams| {
            let mut emit = Emit {
                out,
                flow,
                direction: Direction::FromOriginator,
                timestamp_ns,
            };
            streams.finish_both(&mut emit, held_total, stats);
            for d in &mut streams.dirs {
                // Pieces a finished direction still held (none, unless `set_want` cut the
                // stream short) go with the flow, as when its state was dropped.
                drop(std::mem::take(&mut d.held));
            }
            streams.tag
        })
    }

    /// Asks the processor to fetch `flow`'s state ahead of an [`Self::end_flow`] (a caller
    /// ending many flows names them a few ends ahead, so their cache misses overlap); no
    /// effect on results.
    #[inline]
    pub fn prefetch_flow(&self, flow: u64) {
        self.flows.prefetch(flow);
    }
}

impl Reassembler<()> {
    /// [`Reassembler::segment_tagged`] for a reassembler without tags.
    pub fn segment(
        &mut self,
        flow: u64,
        direction: Direction,
        seg: &Segment<'_>,
        out: &mut ChunkBatch,
    ) {
        self.segment_tagged(flow, direction, seg, out, || ());
    }
}

impl DirState {
    /// Places payload bytes starting at stream offset `off`; true when a budget (window or
    /// total memory) made a hole a gap.
    fn accept(
        &mut self,
        off: i64,
        payload: &[u8],
        limits: &ReassemblyLimits,
        emit: &mut Emit<'_>,
        held_total: &mut u64,
        stats: &mut ReassemblyStats,
    ) -> bool {
        let mut data = payload;
        let mut start = off;
        let end = off + data.len() as i64;
        if end <= 0 {
            stats.before_start_bytes += data.len() as u64;
            return false;
        }
        if start < 0 {
            let cut = (-start) as usize;
            stats.before_start_bytes += cut as u64;
            data = &data[cut..];
            start = 0;
        }
        let start = start as u64;
        if start >= limits.want {
            return false;
        }
        if start + data.len() as u64 > limits.want {
            data = &data[..(limits.want - start) as usize];
        }
        let end = start + data.len() as u64;
        if end <= self.next {
            stats.duplicate_bytes += data.len() as u64;
            return false;
        }
        let mut over_budget = false;
        loop {
            if start <= self.next {
                self.deliver_merge(start, data, limits, emit, held_total, stats);
                return over_budget;
            }
            let cost = data.len() as u64 + HELD_PIECE_OVERHEAD;
            let fits_window = end - self.next <= limits.flow_window;
            let fits_memory = *held_total + cost <= limits.total_memory;
            if fits_window && fits_memory {
                self.hold(start, data, held_total, stats);
                return over_budget;
            }
            // The hole before this segment cannot be waited for: give it up.
            over_budget = true;
            if !fits_memory {
                stats.gaps_memory_full += 1;
            }
            let before = stats.gap_bytes;
            match self.held.first_key_value().map(|(k, _)| *k) {
                Some(first) if first < start => {
                    self.skip_to(first, stats);
                    self.drain(limits, emit, held_total, stats);
                }
                _ => self.skip_to(start, stats),
            }
            let dropped = stats.gap_bytes - before;
            if fits_memory {
                stats.gap_bytes_flow_window += dropped;
            } else {
                stats.gap_bytes_memory_full += dropped;
            }
            if self.done {
                return over_budget;
            }
        }
    }

    /// Gives up the hole `[next, to)`.
    fn skip_to(&mut self, to: u64, stats: &mut ReassemblyStats) {
        if to > self.next {
            stats.gaps += 1;
            stats.gap_bytes += to - self.next;
            self.pending_gap += to - self.next;
            self.next = to;
        }
    }

    /// Delivers `data` at `start` (`start <= next < start + len`), interleaved with held
    /// pieces, which win where they overlap it (they arrived first).
    fn deliver_merge(
        &mut self,
        start: u64,
        data: &[u8],
        limits: &ReassemblyLimits,
        emit: &mut Emit<'_>,
        held_total: &mut u64,
        stats: &mut ReassemblyStats,
    ) {
        let end = start + data.len() as u64;
        stats.duplicate_bytes += self.next - start;
        if self.held.is_empty() {
            // The common in-order path.
            let from = (self.next - start) as usize;
            self.emit(&data[from..], limits, emit, stats);
            return;
        }
        let mut conflict = false;
        while self.next < end && !self.done {
            let first = self.held.first_key_value().map(|(k, v)| (*k, v.len()));
            match first {
                Some((hs, hlen)) if hs <= self.next => {
                    let hend = hs + hlen as u64;
                    let Some(piece) = self.held.remove(&hs) else {
                        break;
                    };
                    self.release(hlen, held_total);
                    // New bytes under the held piece: compare, keep the held ones.
                    let ov_from = self.next.max(hs);
                    let ov_to = hend.min(end);
                    if ov_to > ov_from {
                        stats.duplicate_bytes += ov_to - ov_from;
                        let a = &piece[(ov_from - hs) as usize..(ov_to - hs) as usize];
                        let b = &data[(ov_from - start) as usize..(ov_to - start) as usize];
                        conflict |= a != b;
                    }
                    let from = (self.next.max(hs) - hs) as usize;
                    self.emit(&piece[from..], limits, emit, stats);
                }
                other => {
                    let lim = other.map_or(end, |(hs, _)| hs.min(end));
                    let a = (self.next - start) as usize;
                    let b = (lim - start) as usize;
                    self.emit(&data[a..b], limits, emit, stats);
                }
            }
        }
        if conflict {
            stats.conflicting_overlaps += 1;
        }
        self.drain(limits, emit, held_total, stats);
    }

    /// Delivers held pieces that now continue the stream.
    fn drain(
        &mut self,
        limits: &ReassemblyLimits,
        emit: &mut Emit<'_>,
        held_total: &mut u64,
        stats: &mut ReassemblyStats,
    ) {
        while !self.done {
            let Some(entry) = self.held.first_entry() else {
                break;
            };
            if *entry.key() > self.next {
                break;
            }
            let hs = *entry.key();
            let piece = entry.remove();
            self.release(piece.len(), held_total);
            let hend = hs + piece.len() as u64;
            if hend > self.next {
                let from = (self.next - hs) as usize;
                self.emit(&piece[from..], limits, emit, stats);
            }
        }
    }

    /// Holds the parts of `data` at `start` not already held (first data wins).
    fn hold(&mut self, start: u64, data: &[u8], held_total: &mut u64, stats: &mut ReassemblyStats) {
        let end = start + data.len() as u64;
        let mut cur = start;
        let mut conflict = false;
        let mut fresh: Vec<(u64, u64)> = Vec::new();
        // The piece starting at or before `start` may reach into it; later ones start inside.
        let before = self
            .held
            .range(..=start)
            .next_back()
            .map(|(k, v)| (*k, v.len()));
        let overlapping = before
            .into_iter()
            .chain(self.held.range(start + 1..end).map(|(k, v)| (*k, v.len())))
            .collect::<Vec<_>>();
        for (hs, hlen) in overlapping {
            let hend = hs + hlen as u64;
            if hend <= cur {
                continue;
            }
            if hs > cur {
                fresh.push((cur, hs));
            }
            let ov_from = cur.max(hs);
            let ov_to = hend.min(end);
            if ov_to > ov_from {
                stats.duplicate_bytes += ov_to - ov_from;
                if let Some(piece) = self.held.get(&hs) {
                    let a = &piece[(ov_from - hs) as usize..(ov_to - hs) as usize];
                    let b = &data[(ov_from - start) as usize..(ov_to - start) as usize];
                    conflict |= a != b;
                }
            }
            cur = cur.max(hend);
            if cur >= end {
                break;
            }
        }
        if cur < end {
            fresh.push((cur, end));
        }
        if conflict {
            stats.conflicting_overlaps += 1;
        }
        for (from, to) in fresh {
            let bytes: Box<[u8]> = data[(from - start) as usize..(to - start) as usize].into();
            let cost = bytes.len() as u64 + HELD_PIECE_OVERHEAD;
            self.held_cost += cost;
            *held_total += cost;
            stats.held_segments += 1;
            self.held.insert(from, bytes);
        }
        stats.held_peak = stats.held_peak.max(*held_total);
    }

    /// Forgets the cost of a held piece of `len` bytes.
    fn release(&mut self, len: usize, held_total: &mut u64) {
        let cost = len as u64 + HELD_PIECE_OVERHEAD;
        self.held_cost -= cost;
        *held_total -= cost;
    }

    /// Appends in-order bytes at `next` to the output (extending the previous chunk when it
    /// is this stream's and contiguous), and ends the direction when `want` is reached.
    fn emit(
        &mut self,
        bytes: &[u8],
        limits: &ReassemblyLimits,
        emit: &mut Emit<'_>,
        stats: &mut ReassemblyStats,
    ) {
        if bytes.is_empty() {
            return;
        }
        if self.released {
            self.emit_released(bytes.len() as u64, limits, emit);
            return;
        }
        let out = &mut *emit.out;
        let extend = self.pending_gap == 0
            && out.chunks.last().is_some_and(|c| {
                c.flow == emit.flow
                    && c.direction == emit.direction
                    && !c.last
                    && c.offset + u64::from(c.len) == self.next
                    && c.start as usize + c.len as usize == out.arena.len()
                    && u64::from(c.len) + bytes.len() as u64 <= u64::from(u32::MAX)
            });
        let start = out.arena.len() as u32;
        out.arena.extend_from_slice(bytes);
        let len = bytes.len() as u32;
        match out.chunks.last_mut() {
            Some(c) if extend => {
                c.len += len;
                c.timestamp_ns = c.timestamp_ns.max(emit.timestamp_ns);
            }
            _ => out.chunks.push(Chunk {
                flow: emit.flow,
                direction: emit.direction,
                timestamp_ns: emit.timestamp_ns,
                offset: self.next,
                gap_before: std::mem::take(&mut self.pending_gap),
                start,
                len,
                last: false,
                released: false,
            }),
        }
        self.next += bytes.len() as u64;
        stats.delivered_bytes += bytes.len() as u64;
        if self.next >= limits.want {
            self.done = true;
            if let Some(c) = out.chunks.last_mut() {
                c.last = true;
            }
        }
    }

    /// [`Self::emit`] for a released direction: the same chunk boundaries as far as any other
    /// direction can tell (its chunk is the last one), no bytes copied, none counted as
    /// delivered.
    fn emit_released(&mut self, len: u64, limits: &ReassemblyLimits, emit: &mut Emit<'_>) {
        let out = &mut *emit.out;
        let extend = self.pending_gap == 0
            && out.chunks.last().is_some_and(|c| {
                c.flow == emit.flow
                    && c.direction == emit.direction
                    && c.released
                    && !c.last
                    && c.offset + u64::from(c.len) == self.next
                    && u64::from(c.len) + len <= u64::from(u32::MAX)
            });
        match out.chunks.last_mut() {
            Some(c) if extend => {
                c.len += len as u32;
                c.timestamp_ns = c.timestamp_ns.max(emit.timestamp_ns);
            }
            _ => out.chunks.push(Chunk {
                flow: emit.flow,
                direction: emit.direction,
                timestamp_ns: emit.timestamp_ns,
                offset: self.next,
                gap_before: std::mem::take(&mut self.pending_gap),
                start: out.arena.len() as u32,
                len: len.min(u64::from(u32::MAX)) as u32,
                last: false,
                released: true,
            }),
        }
        self.next += len;
        if self.next >= limits.want {
            self.done = true;
            if let Some(c) = out.chunks.last_mut() {
                c.last = true;
            }
        }
    }

    /// Ends the direction: with `flush`, open holes become gaps and held bytes are delivered;
    /// marks the last chunk (or adds an empty one) unless the direction never started.
    fn finish(
        &mut self,
        emit: &mut Emit<'_>,
        held_total: &mut u64,
        stats: &mut ReassemblyStats,
        flush: bool,
    ) {
        if self.done {
            return;
        }
        if flush {
            let unlimited = ReassemblyLimits {
                want: u64::MAX,
                ..ReassemblyLimits::default()
            };
            while let Some(first) = self.held.first_key_value().map(|(k, _)| *k) {
                self.skip_to(first, stats);
                self.drain(&unlimited, emit, held_total, stats);
            }
            if let Some(fin_at) = self.fin_at {
                // Bytes lost right before the FIN: reported on the end marker.
                self.skip_to(fin_at, stats);
            }
        }
        for (_, piece) in std::mem::take(&mut self.held) {
            self.release(piece.len(), held_total);
        }
        self.done = true;
        if !self.started {
            return;
        }
        let out = &mut *emit.out;
        match out.chunks.last_mut() {
            Some(c)
                if c.flow == emit.flow
                    && c.direction == emit.direction
                    && self.pending_gap == 0 =>
            {
                c.last = true;
            }
            _ => out.chunks.push(Chunk {
                flow: emit.flow,
                direction: emit.direction,
                timestamp_ns: emit.timestamp_ns,
                offset: self.next,
                gap_before: std::mem::take(&mut self.pending_gap),
                start: out.arena.len() as u32,
                len: 0,
                last: true,
                released: self.released,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const O: Direction = Direction::FromOriginator;
    const R: Direction = Direction::FromResponder;

    fn limits(want: u64) -> ReassemblyLimits {
        ReassemblyLimits {
            want,
            flow_window: 64 * 1024,
            total_memory: 1024 * 1024,
        }
    }

    /// Deterministic bytes (xorshift), so overlaps with different data really differ.
    fn bytes(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    fn seg(seq: u32, payload: &[u8]) -> Segment<'_> {
        Segment {
            seq,
            syn: false,
            fin: false,
            rst: false,
            payload,
            timestamp_ns: 1,
        }
    }

    fn syn(seq: u32) -> Segment<'static> {
        Segment {
            syn: true,
            ..seg(seq, &[])
        }
    }

    #[test]
    fn a_flow_tag_is_made_once_kept_with_the_flow_and_given_back_at_its_end() {
        let mut r: Reassembler<u32> = Reassembler::new(limits(100));
        let mut out = ChunkBatch::default();
        let mut made = 0;
        // A FIN of a flow never seen makes no state and no tag.
        let fin = Segment {
            fin: true,
            ..seg(5, &[])
        };
        assert_eq!(r.segment_tagged(1, O, &fin, &mut out, || 7), None);
        assert_eq!(r.flow_count(), 0);
        let mut tagged = |r: &mut Reassembler<u32>, s: &Segment<'_>, out: &mut ChunkBatch| {
            r.segment_tagged(9, O, s, out, || {
                made += 1;
                40 + made
            })
        };
        assert_eq!(tagged(&mut r, &syn(100), &mut out), Some(41));
        let data = bytes(10, 3);
        assert_eq!(tagged(&mut r, &seg(101, &data), &mut out), Some(41));
        assert_eq!(tagged(&mut r, &seg(111, &data), &mut out), Some(41));
        assert_eq!(made, 1, "the tag is made at the flow's first segment only");
        assert!(out.chunks.iter().all(|c| c.flow == 9));
        assert_eq!(r.release_if(9, O, |_, tag| *tag == 41), Some(true));
        assert_eq!(r.end_flow(9, 2, &mut out), Some(41));
        assert_eq!(
            r.end_flow(9, 3, &mut out),
            None,
            "the state went with the end"
        );
        assert_eq!(r.flow_count(), 0);
    }

    /// What one direction received: bytes (gaps filled with nothing), gaps, last seen.
    #[derive(Debug, Default, PartialEq)]
    struct Got {
        data: Vec<u8>,
        gaps: Vec<(u64, u64)>,
        last: bool,
    }

    /// Checks chunk invariants (contiguous offsets, nothing after last) and collects.
    fn collect(out: &ChunkBatch, flow: u64, dir: Direction) -> Got {
        let mut got = Got::default();
        let mut next = 0u64;
        for c in out
            .chunks
            .iter()
            .filter(|c| c.flow == flow && c.direction == dir)
        {
            assert!(!got.last, "chunk after last: {c:?}");
            assert_eq!(c.offset, next + c.gap_before, "offsets contiguous: {c:?}");
            if c.gap_before > 0 {
                got.gaps.push((next, c.gap_before));
            }
            got.data.extend_from_slice(out.data(c));
            next = c.offset + u64::from(c.len);
            got.last |= c.last;
        }
        got
    }

    #[test]
    fn every_split_of_a_client_hello_sized_buffer_in_order_and_reversed() {
        let hello = bytes(1900, 7);
        for isn in [1000u32, u32::MAX - 700] {
            for split in 1..hello.len() {
                for reversed in [false, true] {
                    let mut r = Reassembler::new(limits(16 * 1024));
                    let mut out = ChunkBatch::default();
                    r.segment(1, O, &syn(isn), &mut out);
                    let first = seg(isn.wrapping_add(1), &hello[..split]);
                    let second = seg(isn.wrapping_add(1 + split as u32), &hello[split..]);
                    let order = if reversed {
                        [second, first]
                    } else {
                        [first, second]
                    };
                    for s in &order {
                        r.segment(1, O, s, &mut out);
                    }
                    let got = collect(&out, 1, O);
                    assert_eq!(got.data, hello, "split {split} reversed {reversed}");
                    assert!(got.gaps.is_empty());
                    assert_eq!(r.held_bytes(), 0);
                    assert_eq!(r.stats().delivered_bytes, hello.len() as u64);
                }
            }
        }
    }

    #[test]
    fn duplicates_and_retransmissions_are_delivered_once() {
        let data = bytes(3000, 3);
        let mut r = Reassembler::new(limits(1 << 20));
        let mut out = ChunkBatch::default();
        r.segment(9, O, &syn(50), &mut out);
        for (a, b) in [
            (0, 1000),
            (0, 1000),
            (500, 1500),
            (2000, 3000),
            (2000, 3000),
            (1000, 2000),
        ] {
            r.segment(9, O, &seg(51 + a as u32, &data[a..b]), &mut out);
        }
        let got = collect(&out, 9, O);
        assert_eq!(got.data, data);
        let s = r.stats();
        assert_eq!(s.duplicate_bytes, 1000 + 500 + 1000 + 500);
        assert_eq!(s.conflicting_overlaps, 0);
    }

    #[test]
    fn overlapping_different_data_first_wins_and_is_counted() {
        let a = bytes(2000, 11);
        let b = bytes(2000, 12);
        // Held first: b's [1000, 2000) arrives out of order, then a's [0, 1500).
        let mut r = Reassembler::new(limits(1 << 20));
        let mut out = ChunkBatch::default();
        r.segment(1, O, &syn(0), &mut out);
        r.segment(1, O, &seg(1001, &b[1000..2000]), &mut out);
        r.segment(1, O, &seg(1, &a[..1500]), &mut out);
        let got = collect(&out, 1, O);
        let mut want = a[..1000].to_vec();
        want.extend_from_slice(&b[1000..2000]);
        assert_eq!(got.data, want);
        assert_eq!(r.stats().conflicting_overlaps, 1);
        // Both held: a later out-of-order copy with other bytes loses to the held one.
        let mut r = Reassembler::new(limits(1 << 20));
        let mut out = ChunkBatch::default();
        r.segment(1, O, &syn(0), &mut out);
        r.segment(1, O, &seg(501, &a[500..1000]), &mut out);
        r.segment(1, O, &seg(301, &b[300..1200]), &mut out);
        r.segment(1, O, &seg(1, &a[..300]), &mut out);
        let got = collect(&out, 1, O);
        let mut want = a[..300].to_vec();
        want.extend_from_slice(&b[300..500]);
        want.extend_from_slice(&a[500..1000]);
        want.extend_from_slice(&b[1000..1200]);
        assert_eq!(got.data, want);
        assert_eq!(r.stats().conflicting_overlaps, 1);
        // Same bytes again are not a conflict.
        r.segment(1, O, &seg(1201, &a[1200..1300]), &mut out);
        r.segment(1, O, &seg(1201, &a[1200..1300]), &mut out);
        assert_eq!(r.stats().conflicting_overlaps, 1);
    }

    #[test]
    fn missing_segment_is_a_gap_at_flow_end() {
        let data = bytes(4000, 5);
        let mut r = Reassembler::new(limits(1 << 20));
        let mut out = ChunkBatch::default();
        r.segment(3, O, &syn(7), &mut out);
        r.segment(3, O, &seg(8, &data[..1000]), &mut out);
        r.segment(3, O, &seg(8 + 2000, &data[2000..3000]), &mut out);
        r.segment(3, O, &seg(8 + 3000, &data[3000..]), &mut out);
        assert_eq!(collect(&out, 3, O).data, data[..1000]);
        assert_eq!(r.held_bytes(), 2000 + 2 * HELD_PIECE_OVERHEAD);
        r.end_flow(3, 99, &mut out);
        let got = collect(&out, 3, O);
        assert_eq!(got.gaps, vec![(1000, 1000)]);
        let mut want = data[..1000].to_vec();
        want.extend_from_slice(&data[2000..]);
        assert_eq!(got.data, want);
        assert!(got.last);
        assert_eq!(r.held_bytes(), 0);
        assert_eq!(r.stats().gap_bytes, 1000);
        assert_eq!(r.flow_count(), 0);
    }

    #[test]
    fn data_far_past_a_hole_gives_the_hole_up() {
        let data = bytes(10_000, 9);
        let mut r = Reassembler::new(ReassemblyLimits {
            want: 1 << 20,
            flow_window: 3000,
            total_memory: 1 << 20,
        });
        let mut out = ChunkBatch::default();
        r.segment(1, O, &seg(100, &data[..1000]), &mut out); // mid-stream pickup
        for a in (2000..10_000).step_by(1000) {
            r.segment(1, O, &seg(100 + a as u32, &data[a..a + 1000]), &mut out);
        }
        let got = collect(&out, 1, O);
        assert_eq!(got.gaps, vec![(1000, 1000)]);
        assert_eq!(got.data.len(), 9000);
        assert!(r.held_bytes() == 0);
        // The late retransmission of the given-up hole is ignored.
        r.segment(1, O, &seg(1100, &data[1000..2000]), &mut out);
        assert_eq!(collect(&out, 1, O).data.len(), 9000);
    }

    #[test]
    fn a_full_memory_budget_gives_holes_up() {
        let data = bytes(4000, 2);
        let mut r = Reassembler::new(ReassemblyLimits {
            want: 1 << 20,
            flow_window: 1 << 20,
            total_memory: 2000,
        });
        let mut out = ChunkBatch::default();
        r.segment(1, O, &seg(0, &data[..1000]), &mut out);
        r.segment(2, O, &seg(0, &data[..1000]), &mut out);
        r.segment(1, O, &seg(2000, &data[2000..3000]), &mut out); // held (1000 + 576)
        r.segment(2, O, &seg(2000, &data[2000..3000]), &mut out); // no room: gap
        assert_eq!(collect(&out, 2, O).gaps, vec![(1000, 1000)]);
        assert_eq!(collect(&out, 1, O).data.len(), 1000);
        assert_eq!(r.stats().gaps_memory_full, 1);
        assert_eq!(r.stats().gap_bytes_memory_full, 1000);
        assert_eq!(r.stats().gap_bytes_flow_window, 0);
        assert_eq!(r.stats().flows_over_budget, 1);
        assert!(r.held_bytes() <= 2000);
        assert!(r.stats().held_peak <= 2000);
    }

    #[test]
    fn want_limits_bytes_and_marks_last() {
        let data = bytes(5000, 4);
        let mut r = Reassembler::new(limits(1234));
        let mut out = ChunkBatch::default();
        r.segment(1, O, &syn(0), &mut out);
        r.segment(1, O, &seg(1, &data[..1000]), &mut out);
        r.segment(1, O, &seg(1001, &data[1000..2000]), &mut out);
        r.segment(1, O, &seg(2001, &data[2000..3000]), &mut out);
        let got = collect(&out, 1, O);
        assert_eq!(got.data, data[..1234]);
        assert!(got.last);
        r.end_flow(1, 5, &mut out);
        assert_eq!(collect(&out, 1, O).data.len(), 1234);
    }

    #[test]
    fn fin_ends_a_direction_after_its_bytes_and_rst_ends_both() {
        let data = bytes(3000, 8);
        let mut r = Reassembler::new(limits(1 << 20));
        let mut out = ChunkBatch::default();
        r.segment(1, O, &syn(10), &mut out);
        r.segment(1, R, &syn(5000), &mut out);
        // FIN on the second half arrives before the first half.
        let fin = Segment {
            fin: true,
            ..seg(11 + 1500, &data[1500..])
        };
        r.segment(1, O, &fin, &mut out);
        assert!(!collect(&out, 1, O).last);
        r.segment(1, O, &seg(11, &data[..1500]), &mut out);
        let got = collect(&out, 1, O);
        assert_eq!(got.data, data);
        assert!(got.last);
        r.segment(1, R, &seg(5001, &data[..100]), &mut out);
        let rst = Segment {
            rst: true,
            ..seg(5101, &[])
        };
        r.segment(1, R, &rst, &mut out);
        let got = collect(&out, 1, R);
        assert_eq!(got.data, data[..100]);
        assert!(got.last);
        // After RST nothing more comes for the flow.
        let n = out.chunks.len();
        r.segment(1, R, &seg(5101, &data[..100]), &mut out);
        assert_eq!(out.chunks.len(), n);
    }

    #[test]
    fn bytes_lost_before_a_fin_are_reported_on_the_end_marker() {
        let data = bytes(2000, 1);
        let mut r = Reassembler::new(limits(1 << 20));
        let mut out = ChunkBatch::default();
        r.segment(1, O, &syn(0), &mut out);
        r.segment(1, O, &seg(1, &data[..1000]), &mut out);
        let fin = Segment {
            fin: true,
            ..seg(2001, &[])
        };
        r.segment(1, O, &fin, &mut out);
        r.end_flow(1, 3, &mut out);
        let got = collect(&out, 1, O);
        assert_eq!(got.gaps, vec![(1000, 1000)]);
        assert!(got.last);
    }

    #[test]
    fn sequence_wraparound_in_a_long_stream() {
        let data = bytes(100_000, 6);
        let mut r = Reassembler::new(limits(1 << 20));
        let mut out = ChunkBatch::default();
        let isn = u32::MAX - 30_000;
        r.segment(1, O, &syn(isn), &mut out);
        // Pairs swapped, so half of the segments are held across the wrap.
        let mut segs: Vec<(usize, usize)> = (0..100).map(|i| (i * 1000, i * 1000 + 1000)).collect();
        for pair in segs.chunks_mut(2) {
            pair.swap(0, 1);
        }
        for (a, b) in segs {
            let s = seg(isn.wrapping_add(1).wrapping_add(a as u32), &data[a..b]);
            r.segment(1, O, &s, &mut out);
        }
        assert_eq!(collect(&out, 1, O).data, data);
    }

    #[test]
    fn mid_stream_pickup_and_bytes_before_start() {
        let data = bytes(3000, 10);
        let mut r = Reassembler::new(limits(1 << 20));
        let mut out = ChunkBatch::default();
        r.segment(4, R, &seg(70_000, &data[1000..2000]), &mut out);
        r.segment(4, R, &seg(69_000, &data[..1000]), &mut out);
        r.segment(4, R, &seg(70_500, &data[1500..3000]), &mut out);
        let got = collect(&out, 4, R);
        assert_eq!(got.data, data[1000..3000]);
        assert_eq!(r.stats().before_start_bytes, 1000);
        // Pure ACKs and FINs of unknown flows make no state.
        r.segment(5, O, &seg(1, &[]), &mut out);
        let fin = Segment {
            fin: true,
            ..seg(1, &[])
        };
        r.segment(6, O, &fin, &mut out);
        assert_eq!(r.flow_count(), 1);
    }

    #[test]
    fn interleaved_flows_and_directions_keep_their_own_bytes() {
        let a = bytes(5000, 20);
        let b = bytes(5000, 21);
        let mut r = Reassembler::new(limits(1 << 20));
        let mut out = ChunkBatch::default();
        for i in (0..5).rev() {
            let (x, y) = (i * 1000, i * 1000 + 1000);
            r.segment(1, O, &seg(x as u32, &a[x..y]), &mut out);
            r.segment(1, R, &seg(x as u32 + 9, &b[x..y]), &mut out);
            r.segment(2, O, &seg(x as u32 + 3, &b[x..y]), &mut out);
        }
        // Offset 0 was set by the first (highest) segment: everything earlier is before it.
        assert_eq!(collect(&out, 1, O).data, a[4000..]);
        let mut r = Reassembler::new(limits(1 << 20));
        let mut out = ChunkBatch::default();
        r.segment(1, O, &syn(u32::MAX), &mut out);
        r.segment(1, R, &syn(8), &mut out);
        r.segment(2, O, &syn(2), &mut out);
        for i in [1usize, 0, 3, 2, 4] {
            let (x, y) = (i * 1000, i * 1000 + 1000);
            r.segment(1, O, &seg(x as u32, &a[x..y]), &mut out);
            r.segment(1, R, &seg(x as u32 + 9, &b[x..y]), &mut out);
            r.segment(2, O, &seg(x as u32 + 3, &b[x..y]), &mut out);
        }
        assert_eq!(collect(&out, 1, O).data, a);
        assert_eq!(collect(&out, 1, R).data, b);
        assert_eq!(collect(&out, 2, O).data, b);
    }

    /// Random segmentations, reorderings and duplicates of one stream, with and without a
    /// lost segment: the output is always the stream (minus reported gaps), in order.
    #[test]
    fn random_segmentation_reordering_and_loss() {
        let data = bytes(20_000, 40);
        let mut x = 0x1234_5678_9abc_def1u64;
        let mut rnd = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        for round in 0..300 {
            let mut cuts = vec![0usize];
            while *cuts.last().unwrap_or(&0) < data.len() {
                let step = 1 + rnd(1600) as usize;
                cuts.push((cuts[cuts.len() - 1] + step).min(data.len()));
            }
            let mut segs: Vec<(usize, usize)> = cuts.windows(2).map(|w| (w[0], w[1])).collect();
            for _ in 0..rnd(6) {
                let i = rnd(segs.len() as u64) as usize;
                segs.push(segs[i]);
            }
            for _ in 0..segs.len() / 3 {
                let i = rnd(segs.len() as u64) as usize;
                let j = (i + rnd(4) as usize).min(segs.len() - 1);
                segs.swap(i, j);
            }
            // Never lose the first segment: it fixes offset 0 (a SYN does too, but not here).
            let lose = round % 2 == 1;
            let lost = if lose && segs.len() > 2 {
                let i = 1 + rnd(segs.len() as u64 - 1) as usize;
                let l = segs[i];
                segs.retain(|s| *s != l);
                Some(l)
            } else {
                None
            };
            let isn = rnd(u64::from(u32::MAX)) as u32;
            let mut r = Reassembler::new(limits(1 << 20));
            let mut out = ChunkBatch::default();
            r.segment(1, O, &syn(isn), &mut out);
            for (a, b) in &segs {
                let s = seg(isn.wrapping_add(1 + *a as u32), &data[*a..*b]);
                r.segment(1, O, &s, &mut out);
            }
            r.end_flow(1, 2, &mut out);
            let got = collect(&out, 1, O);
            assert!(got.last);
            match lost {
                None => assert_eq!(got.data, data, "round {round}"),
                Some((a, b)) => {
                    // The hole may be smaller (an overlapping neighbour covers part of it).
                    let gap: u64 = got.gaps.iter().map(|g| g.1).sum();
                    assert!(gap <= (b - a) as u64, "round {round}");
                    // A lost tail is not known to exist (no FIN here): the stream just ends.
                    let total = if b == data.len() { a } else { data.len() };
                    assert_eq!(got.data.len() as u64 + gap, total as u64, "round {round}");
                    let mut want = Vec::new();
                    let mut pos = 0u64;
                    for (at, len) in &got.gaps {
                        want.extend_from_slice(&data[pos as usize..*at as usize]);
                        pos = at + len;
                    }
                    want.extend_from_slice(&data[pos as usize..total]);
                    assert_eq!(got.data, want, "round {round}");
                }
            }
            assert_eq!(r.held_bytes(), 0);
        }
    }

    #[test]
    fn a_released_direction_keeps_its_chunk_boundaries_and_copies_nothing() {
        let mut r = Reassembler::new(limits(1 << 20));
        let mut out = ChunkBatch::default();
        let data = bytes(3000, 9);
        r.segment(1, O, &syn(99), &mut out);
        r.segment(1, R, &syn(499), &mut out);
        r.segment(1, O, &seg(100, &data[..1000]), &mut out);
        // Out of order: held.
        r.segment(1, O, &seg(2100, &data[2000..]), &mut out);
        r.segment(1, R, &seg(500, b"hello"), &mut out);
        assert_eq!(r.held_bytes(), 1000 + HELD_PIECE_OVERHEAD);
        assert_eq!(r.next_offset(1, O), Some(1000));
        assert!(r.release(1, O));
        assert!(!r.release(1, O), "released once");
        assert!(!r.release(2, O), "unknown flow");
        assert_eq!(r.next_offset(1, O), None);
        assert_eq!(r.stats().released_directions, 1);
        let delivered = r.stats().delivered_bytes;
        // The hole is filled: the released direction's chunks mark where its bytes went
        // (same boundaries, so the responder's chunks around them are split as before) but
        // carry and copy none; the other direction goes on.
        r.segment(1, O, &seg(1100, &data[1000..2000]), &mut out);
        r.segment(1, R, &seg(505, b" world"), &mut out);
        r.segment(1, O, &seg(3100, b"x"), &mut out);
        r.end_flow(1, 5, &mut out);
        assert_eq!(r.held_bytes(), 0);
        assert_eq!(
            out.arena.len(),
            1000 + 11,
            "no byte of the released direction copied"
        );
        assert_eq!(r.stats().delivered_bytes - delivered, 6);
        let released: Vec<(u64, u32, bool)> = out
            .chunks
            .iter()
            .filter(|c| c.direction == O && c.released)
            .map(|c| (c.offset, c.len, c.last))
            .collect();
        assert_eq!(released, [(1000, 2000, false), (3000, 1, true)]);
        let got = collect(&out, 1, R);
        assert_eq!((got.data.as_slice(), got.last), (&b"hello world"[..], true));
        assert_eq!(r.flow_count(), 0);
    }

    #[test]
    fn zero_window_turns_every_reorder_into_a_gap() {
        let data = bytes(3000, 30);
        let mut r = Reassembler::new(ReassemblyLimits {
            want: 1 << 20,
            flow_window: 0,
            total_memory: 1 << 20,
        });
        let mut out = ChunkBatch::default();
        r.segment(1, O, &seg(0, &data[..1000]), &mut out);
        r.segment(1, O, &seg(2000, &data[2000..]), &mut out);
        r.segment(1, O, &seg(1000, &data[1000..2000]), &mut out);
        let got = collect(&out, 1, O);
        assert_eq!(got.gaps, vec![(1000, 1000)]);
        assert_eq!(r.held_bytes(), 0);
        // The bytes were dropped for the per-flow budget, once per flow.
        r.segment(1, O, &seg(4000, &data[..100]), &mut out);
        let s = r.stats();
        assert_eq!(s.gap_bytes, 2000);
        assert_eq!(s.gap_bytes_flow_window, 2000);
        assert_eq!(s.gap_bytes_memory_full, 0);
        assert_eq!(s.flows_over_budget, 1);
    }
}
