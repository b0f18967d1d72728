//! The dispatcher's side of TCP streams ([`crate::parse::stream_stage`]): the stage exists only
//! while some chef's interest asks for `stream-bytes`, is fed each batch's segments after
//! the packet calls, ends the streams of flows that ended, and calls each stream chef's
//! `on-stream` with its chunks (ordering in a batch: flow starts, packets, stream chunks,
//! flow ends; see `wit02-design` in the docs of [`crate::parse::stream_stage`]).
//!
//! Verdicts: a chef exporting `stream-verdicts` names, in its `on-stream` answer, chunks
//! whose direction it is done with (indices into the chunks of that call, so it can name
//! nothing else: no other chef's flows, no flow it was not given, no stale id). Its lane
//! keeps those directions and hands it none of their chunks from then on, at once (the
//! rest of a replay window included); the verdict is this lane's alone. The lanes' new
//! verdicts go to the stage after each step or window (tagged with the batch they
//! answered), which releases a direction once no stream chef wants it, a fixed
//! [`VERDICT_LAG`] batches later ([`crate::parse::stream_stage`]). Bounds: a call adds at
//! most one verdict per chunk it got (the answer's list is read up to the chunk count,
//! duplicates count once), a lane keeps one entry per direction it gave up until the flow
//! ends, and the stage's pending verdicts cover at most [`VERDICT_LAG`] batches of chunks.

use flowtrack::idset::IdSet;
use flowtrack::reassembly::ReassemblyLimits;

use flowtrack::table::{FlowEvent, Transport};

use super::lane::LaneContext;
use super::{Batch, ChefLane, Dispatcher, SinkError};
use crate::chef_host::bindings::{Span, StreamChunk};
use crate::chef_host::packet_answer::{AnswerKind, Part};
use crate::outputs::status::traffic::StreamStatus;
use crate::parse::stream_stage::{
    dir_key, flow_ref_key, StreamFilter, StreamStage, Verdict, VERDICT_LAG,
};

/// The stream directions one lane gave up ([`dir_key`]), until their flows end. An
/// [`IdSet`], not a hash set: the keys are made of flow ids, which come in order, so a
/// verdict, the per-chunk check and the removal at the flow's end touch memory near the
/// recent ones (on the high-cardinality corpus, half a million directions given up).
pub(super) type GivenUp = IdSet;

/// Live: stream bytes one lane shed per direction ([`dir_key`]), owed to the chef as
/// `gap-before` on that direction's next chunk. At most [`MAX_SHED_GAPS`] directions are
/// remembered (past them a shed chunk is only counted: the chef still sees the jump in
/// `offset`).
pub(super) type ShedGaps = std::collections::HashMap<u64, u64>;

/// Most directions a lane remembers shed bytes for.
pub const MAX_SHED_GAPS: usize = 65_536;

/// What became of one `on-stream` call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StreamCall {
    Worked,
    /// Not made: the chef was over its share while the kitchen was behind (live).
    Shed,
    /// Made and failed (or not made: the chef is restarting); the delivery stops.
    Failed,
}

/// Bytes of `chunks`' data.
fn chunk_bytes(chunks: &[StreamChunk]) -> u64 {
    chunks.iter().map(|c| u64::from(c.data.len)).sum()
}

impl Dispatcher {
    /// Memory bounds for reassembly (`--stream-flow-buffer-kib`, `--stream-memory-mib`);
    /// `want` is ignored (the chefs decide it).
    pub fn set_stream_limits(&mut self, limits: ReassemblyLimits) {
        self.stream_limits = limits;
        self.streams = None;
        self.update_stream_stage();
    }

    /// Whether chefs' `stream-verdicts` answers are honoured (on by default; off hands every
    /// stream chef every chunk of its prefix, as kitchens before them did:
    /// `nd-sniff --ignore-stream-verdicts`, for comparisons).
    pub fn set_stream_verdicts(&mut self, on: bool) {
        self.honour_verdicts = on;
        self.update_stream_stage();
    }

    /// Whether some loaded chef wants stream bytes (the flow stage must then tag packets).
    pub fn wants_streams(&self) -> bool {
        self.streams.is_some()
    }

    /// Reassembly counters and held bytes for the status report, while the stage exists.
    pub fn stream_status(&self) -> Option<StreamStatus> {
        let stage = self.streams.as_ref()?;
        Some(StreamStatus::new(stage.stats(), stage.held_bytes()))
    }

    /// Creates, resizes or drops the stage after the chefs changed: it reassembles the
    /// largest `stream-bytes` any chef asks for, and does not exist when none asks.
    pub(super) fn update_stream_stage(&mut self) {
        let want = self
            .lanes
            .iter()
            .filter_map(|s| StreamFilter::new(&s.chef.description().interest))
            .map(|f| f.want)
            .max()
            .unwrap_or(0);
        match (&mut self.streams, want) {
            (_, 0) => self.streams = None,
            (Some(stage), w) => stage.set_want(w),
            (None, w) => {
                self.streams = Some(StreamStage::new(ReassemblyLimits {
                    want: w,
                    ..self.stream_limits
                }))
            }
        }
        self.stream_verdicts =
            self.honour_verdicts && self.lanes.iter().any(ChefLane::gives_verdicts);
        for lane in &mut self.lanes {
            lane.honours_verdicts = self.stream_verdicts;
        }
        if let Some(stage) = &mut self.streams {
            stage.set_lanes(
                self.lanes
                    .iter()
                    .filter_map(|l| {
                        StreamFilter::new(&l.chef.description().interest).map(|f| (l.serial, f))
                    })
                    .collect(),
            );
        }
    }

    /// Hand the lanes' new verdicts to the stage (after a step or a replay window: in chef
    /// order, each lane's in the order it made them).
    pub(super) fn collect_verdicts(&mut self) {
        let Some(stage) = self.streams.as_mut() else {
            return;
        };
        // All lanes' verdicts at once, so the stage orders them by batch across lanes (a
        // window's verdicts come lane by lane, each lane's in batch order).
        let mut all = Vec::new();
        for lane in &mut self.lanes {
            all.append(&mut lane.pending_verdicts);
        }
        if !all.is_empty() {
            stage.add_verdicts(&mut all);
        }
    }

    /// Replay window: the stage is about to get its next batch; if the window still holds
    /// the chunks of a batch whose verdicts that batch must see ([`VERDICT_LAG`]), the lanes
    /// run it first.
    ///
    /// Only the lanes that give verdicts need to have run: they run the window's operations
    /// now (back to back, as they would at the flush; their dumplings wait in the lane), the
    /// others later, when the window is flushed. So a slow chef that gives no verdicts does
    /// not make the window end early (its size is what keeps the good chefs' calls warm next
    /// to it, `dispatch::window`). When a verdict lane cannot run it all now (its unsent
    /// dumplings are over their bound, or it merges calls), the whole window is flushed.
    pub(super) fn window_before_streams(&mut self) -> Result<(), SinkError> {
        let (Some(first), Some(stage)) = (self.window.first_stream_seq, &self.streams) else {
            return Ok(());
        };
        if !self.stream_verdicts || first + VERDICT_LAG > stage.next_seq() {
            return Ok(());
        }
        if self.run_verdict_lanes() {
            self.collect_verdicts();
            self.window.first_stream_seq = None;
            return Ok(());
        }
        self.flush_window()
    }

    /// Run the lanes that give stream verdicts through the window's operations; true when
    /// each of them has run them all.
    fn run_verdict_lanes(&mut self) -> bool {
        let n = self.window.ops.len();
        let wc = super::window::WindowContext {
            kitchen: &self.kitchen,
            interval_ns: self.builder.interval_ns(),
            share: self.duty_share(),
            capsules: self.capsules.as_ref(),
            merge_calls: self.merge_calls,
        };
        let w = &self.window;
        let started = std::time::Instant::now();
        let mut all_done = true;
        for (i, lane) in self.lanes.iter_mut().enumerate() {
            if !lane.gives_verdicts() {
                continue;
            }
            if wc.merge_calls && lane.merges() {
                return false;
            }
            lane.run_window(i, w, &wc);
            all_done &= lane.window_next() == n;
        }
        self.stats.verdict_lanes_ns += super::elapsed_ns(started);
        all_done
    }

    /// After a batch's packet calls: feeds its TCP segments (tagged with their flow by the
    /// flow stage), ends the streams of the flows that ended in it (held bytes flushed,
    /// holes become gaps) and calls every stream chef's `on-stream` with its part of the
    /// chunks, before the batch's `ended` flow events are delivered.
    /// Replay window ([`crate::dispatch::window`]): feed `batch` to the stage as
    /// [`Dispatcher::run_streams`] does, and copy out each lane's chunks for later.
    pub(super) fn window_streams(&mut self, batch: &Batch) -> Option<super::window::BatchStreams> {
        let stage = self.streams.as_mut()?;
        feed_batch(stage, batch);
        let verdicts = self.stream_verdicts;
        let out = if stage.has_chunks() || (verdicts && !stage.ended().is_empty()) {
            // Each lane's chunks with their own bytes, copied once into one arena after the
            // other (`StreamStage::chunks_into`).
            let mut arena = Vec::new();
            let per_lane = self
                .lanes
                .iter()
                .map(|lane| {
                    let filter = StreamFilter::new(&lane.chef.description().interest)?;
                    let start = arena.len();
                    let chunks = stage.chunks_into(&filter, &mut arena).to_vec();
                    Some((chunks, start..arena.len()))
                })
                .collect();
            let ended = if verdicts {
                stage.ended().to_vec()
            } else {
                Vec::new()
            };
            Some(super::window::BatchStreams {
                arena,
                per_lane,
                seq: stage.seq(),
                ended,
            })
        } else {
            None
        };
        stage.end_batch();
        out
    }

    pub(super) fn run_streams(&mut self, batch: &Batch) -> Result<(), SinkError> {
        // Taken out for the calls, so the chefs and the output can be borrowed meanwhile.
        let Some(mut stage) = self.streams.take() else {
            return Ok(());
        };
        feed_batch(&mut stage, batch);
        let result = self.deliver_chunks(&mut stage);
        stage.end_batch();
        self.streams = Some(stage);
        self.collect_verdicts();
        result
    }

    fn deliver_chunks(&mut self, stage: &mut StreamStage) -> Result<(), SinkError> {
        // Nothing to deliver, and no lane verdicts to forget on ended flows.
        let prune = self.stream_verdicts && !stage.ended().is_empty();
        if !stage.has_chunks() && !prune {
            return Ok(());
        }
        let seq = stage.seq();
        let ended = if self.stream_verdicts {
            stage.ended().to_vec()
        } else {
            Vec::new()
        };
        // One chef after the other: each chef's chunks are gathered in the stage's scratch.
        self.with_lanes(None, |lanes, ctx, _| {
            for lane in lanes {
                let Some(filter) = StreamFilter::new(&lane.chef.description().interest) else {
                    continue;
                };
                if lane.chef.is_quarantined() {
                    lane.deliver_stream(&[], &[], seq, &ended, ctx);
                    continue;
                }
                let (chunks, arena) = stage.chunks_for(&filter);
                lane.deliver_stream(chunks, arena, seq, &ended, ctx);
            }
        });
        self.send_ready()
    }
}

/// Feeds `batch`'s TCP segments to the stage and ends the streams of its ended TCP flows: one
/// step's stage work, the same for a single step ([`Dispatcher::run_streams`]) and a replay
/// window ([`Dispatcher::window_streams`]).
fn feed_batch(stage: &mut StreamStage, batch: &Batch) {
    stage.feed(&batch.packets, &batch.arena);
    // Only TCP flows have streams (`feed` takes TCP segments alone): the others would cost
    // a lookup of an absent id each (on the high-cardinality corpus, most of a million
    // ended flows).
    stage.end_flows(batch.flows.ended.iter().filter_map(|e| match e {
        FlowEvent::Ended(s) if s.key.transport == Transport::Tcp => Some((s.id, s.last_ns)),
        _ => None,
    }));
}

impl ChefLane {
    /// Give this lane its stream chunks of one step (batch `seq` of the stage), less those
    /// of directions it gave up, unless none are left or it is quarantined; then forget its
    /// verdicts on the flows that `ended` in that batch. One step's delivery, and one
    /// operation of a replay window ([`super::window`]).
    pub(super) fn deliver_stream(
        &mut self,
        chunks: &[StreamChunk],
        arena: &[u8],
        seq: u64,
        ended: &[u64],
        ctx: &LaneContext<'_>,
    ) {
        if !chunks.is_empty() && self.chef.is_quarantined() {
            let missed = chunks
                .iter()
                .filter(|c| !self.given_up.contains(flow_ref_key(&c.flow)));
            self.stream_bytes_missed(missed.map(|c| u64::from(c.data.len)).sum::<u64>());
        } else if !chunks.is_empty() {
            if self.given_up.is_empty() {
                self.call_stream(chunks, arena, seq, ctx);
            } else {
                let mut wanted = std::mem::take(&mut self.stream_scratch);
                wanted.clear();
                wanted.extend(
                    chunks
                        .iter()
                        .filter(|c| !self.given_up.contains(flow_ref_key(&c.flow))),
                );
                if !wanted.is_empty() {
                    self.call_stream(&wanted, arena, seq, ctx);
                }
                self.stream_scratch = wanted;
            }
        }
        if !self.shed_gaps.is_empty() {
            for &id in ended {
                self.shed_gaps
                    .remove(&dir_key(id, flowtrack::table::Direction::FromOriginator));
                self.shed_gaps
                    .remove(&dir_key(id, flowtrack::table::Direction::FromResponder));
            }
        }
        if !self.given_up.is_empty() {
            for &id in ended {
                self.given_up
                    .remove(dir_key(id, flowtrack::table::Direction::FromOriginator));
                self.given_up
                    .remove(dir_key(id, flowtrack::table::Direction::FromResponder));
            }
        }
    }

    /// Call `on-stream` with `chunks` (spans into `arena`; batch `seq` of the stage), in
    /// calls of at most [`MAX_CHUNKS_PER_CALL`] chunks and about [`MAX_STREAM_CALL_BYTES`]
    /// of their bytes ([`stream_calls`]), as flow events are: one batch can end a whole
    /// table of streams at once (a port scan's flows timing out together handed one chef
    /// 262 144 chunks in one call, which ran past its deadline, lost the chef's state and
    /// made the replay's output depend on the machine's speed). Stops at a failed call:
    /// the chef is restarting, and the rest of this delivery is its loss, as a batch's is.
    pub(super) fn call_stream(
        &mut self,
        chunks: &[StreamChunk],
        arena: &[u8],
        seq: u64,
        ctx: &LaneContext<'_>,
    ) {
        // The usual delivery (a batch's worth) is one call, with no list of calls made.
        if chunks.len() <= MAX_CHUNKS_PER_CALL && arena.len() <= MAX_STREAM_CALL_BYTES {
            self.call_stream_once(chunks, arena, seq, ctx);
            return;
        }
        let mut rebased = Vec::new();
        let calls = stream_calls(chunks);
        for (i, range) in calls.iter().enumerate() {
            let (part, bytes) = rebase_chunks(&chunks[range.clone()], arena, &mut rebased);
            if self.call_stream_once(part, bytes, seq, ctx) == StreamCall::Failed {
                // The rest of the delivery is the chef's loss too.
                let rest = calls.get(i + 1).map_or(chunks.len(), |r| r.start);
                self.stream_bytes_missed(chunk_bytes(&chunks[rest..]));
                return;
            }
        }
    }

    /// Live: shed this call's chunks (counted), owing their bytes to each direction's next
    /// chunk as `gap-before` (a shed last chunk owes nothing: no chunk follows).
    fn shed_stream(&mut self, chunks: &[StreamChunk]) {
        for c in chunks {
            let bytes = u64::from(c.data.len);
            self.stream_bytes_missed(bytes);
            let key = flow_ref_key(&c.flow);
            if c.last {
                self.shed_gaps.remove(&key);
            } else if let Some(owed) = self.shed_gaps.get_mut(&key) {
                *owed += c.gap_before + bytes;
            } else if self.shed_gaps.len() < MAX_SHED_GAPS {
                self.shed_gaps.insert(key, c.gap_before + bytes);
            }
        }
    }

    /// `chunks` with the bytes shed before them added to their `gap-before` (the owed
    /// entries paid), in `out`; `None` when nothing is owed to any of them.
    fn with_shed_gaps<'c>(
        &mut self,
        chunks: &'c [StreamChunk],
        out: &'c mut Vec<StreamChunk>,
    ) -> Option<&'c [StreamChunk]> {
        if !chunks
            .iter()
            .any(|c| self.shed_gaps.contains_key(&flow_ref_key(&c.flow)))
        {
            return None;
        }
        out.clear();
        out.extend(chunks.iter().map(|c| {
            let mut c = *c;
            if let Some(owed) = self.shed_gaps.remove(&flow_ref_key(&c.flow)) {
                c.gap_before += owed;
            }
            c
        }));
        Some(out)
    }

    /// One `on-stream` call (see [`Self::call_stream`]): its time charged to the chef's
    /// duty, shed (live) while it is over its share and the kitchen is behind.
    fn call_stream_once(
        &mut self,
        chunks: &[StreamChunk],
        arena: &[u8],
        seq: u64,
        ctx: &LaneContext<'_>,
    ) -> StreamCall {
        let started = Self::call_clock(ctx);
        if self.over_share(started, ctx) {
            self.shed_stream(chunks);
            return StreamCall::Shed;
        }
        let mut owed = Vec::new();
        let chunks = if self.shed_gaps.is_empty() {
            chunks
        } else {
            match self.with_shed_gaps(chunks, &mut owed) {
                Some(c) => c,
                None => chunks,
            }
        };
        let now_ns = ctx.now_ns;
        let part = Part {
            end: chunks.len(),
            clock_ns: ctx.clock_ns(),
        };
        let times = |t: &mut Vec<u64>| t.extend(chunks.iter().map(|c| c.timestamp_ns));
        self.prepare_intake(AnswerKind::Stream, &times, &[part], false, ctx);
        let mut intake = self.take_intake();
        let result = self.chef.take_stream(chunks, arena, now_ns, &mut intake);
        self.put_intake(intake);
        if let Ok(done) = &result {
            if self.honours_verdicts {
                self.take_verdicts(chunks, done, seq);
            }
        }
        if let Err(e) = &result {
            ctx.capsule(|c| c.stream_failed(&self.chef, e, chunks, arena, now_ns));
        }
        if result.is_ok() {
            self.time_call();
        }
        self.record_call(&result, started, ctx);
        if result.is_err() {
            self.stream_bytes_missed(chunk_bytes(chunks));
            return StreamCall::Failed;
        }
        self.apply_verdicts(
            "stream dumplings from one call",
            |n| format!("the {n} stream chunks"),
            &times,
            |_, _| {},
        );
        self.finish_call(started, ctx);
        StreamCall::Worked
    }
}

/// Stream chunks per `on-stream` call at most (as many as a batch has packets, the bound
/// flow events have too: [`super::flow_events::MAX_EVENTS_PER_CALL`]).
pub const MAX_CHUNKS_PER_CALL: usize = crate::parse::batch::MAX_BATCH_PACKETS;

/// Stream bytes per `on-stream` call, about: a call ends before the chunk that would take
/// it past this, unless that chunk is its first (a batch of frames is at most 2 MiB).
pub const MAX_STREAM_CALL_BYTES: usize = 2 << 20;

/// How one delivery of `chunks` is cut into calls: ranges of at most
/// [`MAX_CHUNKS_PER_CALL`] chunks whose bytes stay under [`MAX_STREAM_CALL_BYTES`] (a
/// chunk larger than that goes alone). Never empty when `chunks` is not.
fn stream_calls(chunks: &[StreamChunk]) -> Vec<std::ops::Range<usize>> {
    let mut calls = Vec::new();
    let mut start = 0;
    let mut bytes = 0usize;
    for (i, c) in chunks.iter().enumerate() {
        let len = c.data.len as usize;
        let full =
            i - start == MAX_CHUNKS_PER_CALL || bytes.saturating_add(len) > MAX_STREAM_CALL_BYTES;
        if i > start && full {
            calls.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes = bytes.saturating_add(len);
    }
    if start < chunks.len() || chunks.is_empty() {
        calls.push(start..chunks.len());
    }
    calls
}

/// `part`'s bytes as one slice of `arena` (from its lowest span to its highest end) and
/// its chunks, copied into `scratch`, with their spans made relative to that slice: so a
/// call of a few chunks copies their bytes into the chef, not the whole delivery's arena.
/// Spans outside `arena` (never made by the stage) are handed over empty.
fn rebase_chunks<'a>(
    part: &[StreamChunk],
    arena: &'a [u8],
    scratch: &'a mut Vec<StreamChunk>,
) -> (&'a [StreamChunk], &'a [u8]) {
    let in_arena = |c: &StreamChunk| {
        let start = c.data.offset as usize;
        let end = start.checked_add(c.data.len as usize)?;
        (end <= arena.len() && c.data.len > 0).then_some((start, end))
    };
    let lo = part
        .iter()
        .filter_map(in_arena)
        .map(|(s, _)| s)
        .min()
        .unwrap_or(0);
    let hi = part
        .iter()
        .filter_map(in_arena)
        .map(|(_, e)| e)
        .max()
        .unwrap_or(lo);
    scratch.clear();
    scratch.extend(part.iter().map(|c| {
        let mut c = *c;
        c.data = match in_arena(&c) {
            // `lo` is at most `start`, and the slice is at most 4 GiB as the arena is.
            Some((start, _)) => Span {
                offset: (start - lo) as u32,
                len: c.data.len,
            },
            None => Span { offset: 0, len: 0 },
        };
        c
    }));
    (scratch.as_slice(), &arena[lo..hi])
}

/// The chunks a `stream-verdicts` answer names: those at `done` (indices into `chunks`),
/// reading at most `chunks.len()` of its entries and ignoring indices past the end.
/// Repeats are the caller's to drop.
fn named_directions<'a>(
    chunks: &'a [StreamChunk],
    done: &'a [u32],
) -> impl Iterator<Item = &'a StreamChunk> {
    done.iter()
        .take(chunks.len())
        .filter_map(|&i| chunks.get(i as usize))
}

impl ChefLane {
    /// Its chef asks for stream bytes and exports `stream-verdicts` (every Rust SDK chef
    /// exports it, whatever it asks for).
    pub(super) fn gives_verdicts(&self) -> bool {
        let d = self.chef.description();
        d.stream_verdicts && StreamFilter::new(&d.interest).is_some()
    }

    /// This chef gave up the directions `done` names (see [`named_directions`]); each one
    /// counts once. A chunk marked `last` needs no verdict: its direction has ended (on a
    /// corpus of short connections, most verdicts would be such).
    fn take_verdicts(&mut self, chunks: &[StreamChunk], done: &[u32], seq: u64) {
        for c in named_directions(chunks, done) {
            if !c.last && self.given_up.insert(flow_ref_key(&c.flow)) {
                self.pending_verdicts
                    .push(Verdict::new(seq, self.serial, &c.flow));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chef_host::bindings::{
        Direction, FlowKey, FlowRef, IpAddress, Span, TransportProtocol,
    };

    fn chunk(id: u64, direction: Direction) -> StreamChunk {
        StreamChunk {
            flow: FlowRef { id, direction },
            key: FlowKey {
                transport: TransportProtocol::Tcp,
                originator: IpAddress::V4(1),
                responder: IpAddress::V4(2),
                originator_port: 1,
                responder_port: 2,
            },
            timestamp_ns: 0,
            offset: 0,
            gap_before: 0,
            data: Span { offset: 0, len: 0 },
            last: false,
        }
    }

    fn sized(id: u64, offset: u32, len: u32) -> StreamChunk {
        let mut c = chunk(id, Direction::FromOriginator);
        c.data = Span { offset, len };
        c
    }

    #[test]
    fn a_delivery_is_cut_into_calls_bounded_in_chunks_and_bytes() {
        assert_eq!(stream_calls(&[]), vec![0..0]);
        // Chunks: a whole table of flows ending at once.
        let many: Vec<StreamChunk> = (0..1000).map(|i| sized(i, 0, 0)).collect();
        let calls = stream_calls(&many);
        assert_eq!(calls.len(), 1000usize.div_ceil(MAX_CHUNKS_PER_CALL));
        assert!(calls.iter().all(|r| r.len() <= MAX_CHUNKS_PER_CALL));
        assert_eq!(calls.first().map(|r| r.start), Some(0));
        assert_eq!(calls.last().map(|r| r.end), Some(1000));
        assert!(calls.windows(2).all(|w| w[0].end == w[1].start));
        // Bytes: four chunks of 1 MiB go two by two; one larger than the bound goes alone.
        let mib = 1 << 20;
        let big: Vec<StreamChunk> = (0..4).map(|i| sized(i, i as u32 * mib, mib)).collect();
        assert_eq!(stream_calls(&big), [0..2, 2..4]);
        let huge = [sized(0, 0, 1), sized(1, 1, 3 * mib), sized(2, 0, 1)];
        assert_eq!(stream_calls(&huge), [0..1, 1..2, 2..3]);
    }

    #[test]
    fn a_calls_chunks_point_into_its_own_slice_of_the_arena() {
        let arena: Vec<u8> = (0..100u8).collect();
        // In the middle of the arena, with an empty chunk and one pointing past its end.
        let part = [
            sized(1, 40, 5),
            sized(2, 0, 0),
            sized(3, 50, 10),
            sized(4, 95, 10),
        ];
        let mut scratch = Vec::new();
        let (chunks, bytes) = rebase_chunks(&part, &arena, &mut scratch);
        assert_eq!(bytes, &arena[40..60]);
        let data = |c: &StreamChunk| {
            let s = c.data.offset as usize;
            &bytes[s..s + c.data.len as usize]
        };
        assert_eq!(data(&chunks[0]), &arena[40..45]);
        assert_eq!(data(&chunks[1]), b"");
        assert_eq!(data(&chunks[2]), &arena[50..60]);
        assert_eq!((chunks[3].data.offset, chunks[3].data.len), (0, 0));
        let ids: Vec<u64> = chunks.iter().map(|c| c.flow.id).collect();
        assert_eq!(ids, [1, 2, 3, 4]);
        // Nothing but empty chunks: an empty slice.
        let (_, none) = rebase_chunks(&[sized(5, 7, 0)], &arena, &mut scratch);
        assert!(none.is_empty());
    }

    #[test]
    fn a_verdict_names_only_chunks_of_its_own_call_and_is_read_up_to_their_count() {
        let o = Direction::FromOriginator;
        let r = Direction::FromResponder;
        let chunks = [chunk(7, o), chunk(7, r), chunk(9, o)];
        let named = |done: &[u32]| -> Vec<(u64, Direction)> {
            named_directions(&chunks, done)
                .map(|c| (c.flow.id, c.flow.direction))
                .collect()
        };
        assert_eq!(named(&[2, 0]), [(9, o), (7, o)]);
        // Past the end, or a huge index: ignored.
        assert_eq!(named(&[3, u32::MAX, 1]), [(7, r)]);
        // Read no further than the chunk count: a long tail costs nothing.
        let mut long = vec![0u32; 3];
        long.extend(std::iter::repeat_n(2, 1_000_000));
        assert_eq!(named(&long), [(7, o), (7, o), (7, o)]);
        assert!(named(&[]).is_empty());
        assert!(named_directions(&[], &[0, 1, 2]).next().is_none());
    }
}
