//! Replay: each lane runs a window of steps on its own, one lane after the other, instead
//! of every lane taking each step in turn.
//!
//! Why: next to a chef that takes long per call (a legal 20 ms spin, a flood of dumplings
//! or log lines), the good chefs' own CPU time per packet rose about 3x in a replay
//! (`nd-isolation-bench`, good CPU ns/p ratio 0.34-0.49 on 1 and 2 threads). Their calls
//! were the same in number and size; what changed is the time between one good call and
//! the next. Measured with no hostile chef at all, by pausing the bench's thread after
//! every batch outside any chef (`nd-isolation-bench --host-pause`, load 8 on 2 cores):
//! 0.2 ms made the good chefs' calls 1.14x as dear, 2 ms 1.9x, 20 ms 3.2x (spin or sleep
//! alike; 1.11x and 2.1x for 2 and 20 ms under SCHED_FIFO, so most of it is other
//! processes taking the core, the rest caches and TLB the rest of the machine evicts
//! meanwhile). Each good call started cold. Nothing the chef host does per call (epoch
//! deadline, fuel, log limiter, dumpling checks, capsules, status) was involved.
//!
//! So a replay, which waits for every chef anyway, batches the waiting: the dispatcher
//! collects up to [`MAX_WINDOW_OPS`] lane operations (a batch offered, the queues handed
//! over, a poke) and then every lane runs all of them back to back, warm, on one thread
//! (lanes still side by side on `--chef-threads` workers). The dumplings are then sent
//! operation by operation, and within one operation lane by lane in chef order: exactly
//! the order of running each step on every lane in turn, since a lane's calls depend only
//! on its own inputs. A replay's output stays byte-identical.
//!
//! Bounds: a window holds at most [`MAX_WINDOW_PACKETS`] packets (what a replay's reader
//! works ahead), [`MAX_WINDOW_BATCHES`] batches and [`MAX_WINDOW_BYTES`] of packet bytes; a lane stops early when its unsent dumplings
//! pass [`MAX_LANE_HELD_BYTES`] (one call may add its per-call budget on top), the
//! operations every lane has done are sent, and the lanes go on from where each stopped.
//! Steps that need every lane at the same point are never windowed: flow events and
//! stream chunks (some chef asks for them), the kitchen status (read at a poke), hot
//! reload and the end of input flush the window first. Live capture never windows (a
//! live chef over its share sheds instead, [`crate::dispatch::duty`]).
//!
//! Within a window a sparse chef's calls are merged (`lane/merge.rs`): an operation
//! of such a lane is done only once the merged call that makes its dumplings is made, so
//! the dispatcher sends what every lane has *done* ([`ChefLane::window_done`]), and a lane
//! makes its waiting merged call before it stops running a window.

use std::time::Instant;

use super::flow_events::MAX_EVENTS_PER_CALL;
use super::lane::LaneContext;
use super::ChefLane;
use crate::chef_host::bindings::{FlowEvent as WitFlowEvent, StreamChunk};
use crate::parse::batch::Batch;

/// Most lane operations in one window.
pub const MAX_WINDOW_OPS: usize = 4096;
/// Most packet batches held by one window.
pub const MAX_WINDOW_BATCHES: usize = 128;
/// Most packets held by one window: a replay's reading thread works ahead by one
/// 512-packet message (`run::replay`), so a window no larger keeps both threads busy.
/// With 128 batches the chef thread ran a window while the reader waited, then waited for
/// the reader: the mixed corpus replayed at 0.69x the packets/s for the same CPU.
pub const MAX_WINDOW_PACKETS: usize = 512;
/// Most packets held by one window while one lane takes longer than all the others
/// together (a slow chef): the replay then goes at that chef's pace whatever the reader
/// does, and the good chefs' calls stay warm over more steps. Window boundaries never
/// change the output, so this may follow the wall clock. Measured (`nd-isolation-bench`,
/// 2 threads): with 512 packets the good chefs kept 0.73-0.79 of their CPU per packet
/// next to a slow or flooding chef, with 128 batches 0.95-0.98.
pub const MAX_SLOW_WINDOW_PACKETS: usize = 32_768;
/// Most packet bytes (arenas) held by one window.
pub const MAX_WINDOW_BYTES: usize = 8 << 20;
/// A lane stops running its window's operations once its unsent dumplings hold this many
/// bytes; they are sent before it goes on.
pub const MAX_LANE_HELD_BYTES: usize = 4 << 20;

/// One lane operation of a step.
#[derive(Debug, Clone, Copy)]
pub(super) enum LaneOp {
    /// Offer the window's batch `i` ([`ChefLane::offer`]).
    Offer(usize),
    /// Deliver one chunk (of at most [`super::flow_events::MAX_EVENTS_PER_CALL`]) of batch
    /// `batch`'s `started` or `ended` flow events.
    FlowEvents {
        batch: usize,
        ended: bool,
        chunk: usize,
    },
    /// Deliver batch `i`'s stream chunks.
    Streams(usize),
    /// Hand over the lane's queued packets, if any ([`ChefLane::call_queued`]).
    CallQueued,
    /// Poke the lane at this kitchen time ([`ChefLane::poke`]).
    Poke(u64),
}

/// One windowed operation and the kitchen clock its calls get.
#[derive(Debug, Clone, Copy)]
pub(super) struct WindowOp {
    pub op: LaneOp,
    pub now_ns: u64,
}

/// The operations waiting for the lanes, and the batches they name.
#[derive(Default)]
pub(super) struct StepWindow {
    pub ops: Vec<WindowOp>,
    /// The batches of `LaneOp::Offer`, by index.
    pub batches: Vec<Batch>,
    /// Each batch's packed form, when some packed chef takes every packet.
    pub packed: Vec<Option<Vec<u8>>>,
    /// Each batch's `started` and `ended` flow events as the chefs get them.
    pub flow_wit: Vec<(Vec<WitFlowEvent>, Vec<WitFlowEvent>)>,
    /// Each batch's stream chunks, when it made some.
    pub streams: Vec<Option<BatchStreams>>,
    /// The oldest stream batch ([`BatchStreams::seq`]) whose chunks the verdict lanes have
    /// not run yet: they run before the stage gets a batch that should already know their
    /// verdicts ([`crate::parse::stream_stage::VERDICT_LAG`]).
    pub first_stream_seq: Option<u64>,
    /// Packet bytes held in `batches`.
    pub bytes: usize,
    /// Packets held in `batches`.
    pub packets: usize,
    /// This window's packet limit ([`MAX_WINDOW_PACKETS`], or [`MAX_SLOW_WINDOW_PACKETS`]
    /// after a window where one lane took longer than all the others together).
    pub limit_packets: usize,
    /// Operations already sent (every lane has done them).
    pub sent: usize,
    /// Emptied batches, for the builder to reuse ([`super::Dispatcher::take_spare_batches`]).
    pub spares: Vec<Batch>,
    /// Emptied packed buffers, reused.
    pub packed_spare: Vec<Vec<u8>>,
}

impl StepWindow {
    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// True when the window must be run before it takes more.
    pub fn is_full(&self) -> bool {
        self.ops.len() >= MAX_WINDOW_OPS
            || self.batches.len() >= MAX_WINDOW_BATCHES
            || self.bytes >= MAX_WINDOW_BYTES
            || self.packets >= self.packet_limit()
    }

    /// This window's packet limit (0, unset: [`MAX_WINDOW_PACKETS`]).
    fn packet_limit(&self) -> usize {
        match self.limit_packets {
            0 => MAX_WINDOW_PACKETS,
            n => n,
        }
    }

    /// Hold `batch` with what its operations need (the operations are added by the
    /// caller, naming it by the index returned).
    pub fn push_batch(
        &mut self,
        batch: Batch,
        packed: Option<Vec<u8>>,
        flow_wit: (Vec<WitFlowEvent>, Vec<WitFlowEvent>),
        streams: Option<BatchStreams>,
    ) -> usize {
        self.bytes += batch.arena.len()
            + batch.len() * std::mem::size_of::<crate::chef_host::WirePacket>()
            + streams.as_ref().map_or(0, |s| s.arena.len());
        if let Some(s) = &streams {
            self.first_stream_seq.get_or_insert(s.seq);
        }
        self.packets += batch.len();
        self.batches.push(batch);
        self.packed.push(packed);
        self.flow_wit.push(flow_wit);
        self.streams.push(streams);
        self.batches.len() - 1
    }

    /// Add an operation at kitchen time `now_ns`.
    pub fn push_op(&mut self, op: LaneOp, now_ns: u64) {
        self.ops.push(WindowOp { op, now_ns });
    }

    /// Add the `chunks` flow-event deliveries of batch `batch`'s `started` or `ended`
    /// events, at kitchen time `now_ns`.
    pub fn push_flow_ops(&mut self, batch: usize, ended: bool, chunks: usize, now_ns: u64) {
        for chunk in 0..chunks {
            self.push_op(
                LaneOp::FlowEvents {
                    batch,
                    ended,
                    chunk,
                },
                now_ns,
            );
        }
    }

    /// A buffer for a batch's packed form.
    pub fn packed_buffer(&mut self) -> Vec<u8> {
        self.packed_spare.pop().unwrap_or_default()
    }

    /// Every operation sent: empty the window, keeping its buffers.
    pub fn clear(&mut self) {
        self.ops.clear();
        self.sent = 0;
        self.bytes = 0;
        self.packets = 0;
        for mut b in self.batches.drain(..) {
            // The builder keeps at most this many (`BatchBuilder::recycle`).
            if self.spares.len() < crate::parse::batch::MAX_SPARE_BATCHES {
                b.clear();
                self.spares.push(b);
            }
        }
        for p in self.packed.drain(..).flatten() {
            if self.packed_spare.len() < 4 {
                self.packed_spare.push(p);
            }
        }
        self.flow_wit.clear();
        self.streams.clear();
        self.first_stream_seq = None;
    }
}

/// One batch's stream chunks: each lane's (by lane index; `None` for a lane that asks for
/// no stream bytes) with the range of `arena` holding that lane's bytes, which its spans
/// point into (`StreamStage::chunks_for`: only its chunks' bytes).
pub(super) struct BatchStreams {
    pub arena: Vec<u8>,
    pub per_lane: Vec<Option<(Vec<StreamChunk>, std::ops::Range<usize>)>>,
    /// The stage's batch number (verdicts on these chunks carry it).
    pub seq: u64,
    /// Flows with stream state that ended in this batch (lanes forget their verdicts on
    /// them); filled only while some lane can give verdicts.
    pub ended: Vec<u64>,
}

/// What every lane of a window shares, read-only (the parts of [`LaneContext`] that do not
/// change from one operation to the next).
pub(super) struct WindowContext<'a> {
    pub kitchen: &'a str,
    pub interval_ns: u64,
    pub share: f64,
    pub capsules: Option<&'a std::sync::Mutex<crate::outputs::crash_capsule::CrashCapsules>>,
    /// Merge sparse chefs' calls ([`super::Dispatcher::set_merge_calls`]).
    pub merge_calls: bool,
}

impl ChefLane {
    /// Run the window's operations from where this lane stopped, until all are done or its
    /// unsent dumplings pass [`MAX_LANE_HELD_BYTES`].
    /// `me` is this lane's index (its stream chunks in the window).
    pub(super) fn run_window(&mut self, me: usize, w: &StepWindow, wc: &WindowContext<'_>) {
        let started = Instant::now();
        self.run_window_ops(me, w, wc, started);
        self.window_ns += started.elapsed().as_nanos() as u64;
    }

    /// `started`: when this run started (the calls' context reads no clock per operation;
    /// a replay has no duty and no queue age).
    fn run_window_ops(
        &mut self,
        me: usize,
        w: &StepWindow,
        wc: &WindowContext<'_>,
        started: Instant,
    ) {
        // A sparse chef's calls are merged across the window's operations
        // (`lane::merge`): nothing it can observe separates them.
        let merging = wc.merge_calls && self.merges();
        while self.window_next() < w.ops.len() && self.held_bytes() < MAX_LANE_HELD_BYTES {
            let k = self.window_next();
            let WindowOp { op, now_ns } = w.ops[k];
            let packed = match op {
                LaneOp::Offer(i) => w.packed[i].as_deref(),
                _ => None,
            };
            let ctx = wc.lane_context(now_ns, packed, started);
            match op {
                LaneOp::Offer(i) if merging => self.offer_merging(&w.batches[i], k, &ctx),
                LaneOp::Offer(i) => self.offer(&w.batches[i], &ctx),
                LaneOp::CallQueued if merging => self.end_call(k, &ctx),
                LaneOp::CallQueued => {
                    if self.has_queued() {
                        self.call_queued(&ctx);
                    }
                }
                LaneOp::Poke(at_ns) => self.poke(at_ns, &ctx),
                LaneOp::FlowEvents {
                    batch,
                    ended,
                    chunk,
                } => {
                    let b = &w.batches[batch];
                    let (events, wit) = if ended {
                        (&b.flows.ended, &w.flow_wit[batch].1)
                    } else {
                        (&b.flows.started, &w.flow_wit[batch].0)
                    };
                    let from = chunk * MAX_EVENTS_PER_CALL;
                    let to = (from + MAX_EVENTS_PER_CALL).min(events.len());
                    self.deliver_flow_events(&wit[from..to], &events[from..to], ended, &ctx);
                }
                LaneOp::Streams(batch) => {
                    if let Some(s) = &w.streams[batch] {
                        let (chunks, arena) = match s.per_lane.get(me) {
                            Some(Some((chunks, bytes))) => {
                                (chunks.as_slice(), s.arena.get(bytes.clone()).unwrap_or(&[]))
                            }
                            _ => (&[][..], &[][..]),
                        };
                        self.deliver_stream(chunks, arena, s.seq, &s.ended, &ctx);
                    }
                }
            }
            self.finish_op();
        }
        // Whatever this lane stops at, every operation it ran is done before the
        // dispatcher sends them.
        let last_ns = w.ops[..self.window_next()].last().map_or(0, |o| o.now_ns);
        self.call_merged(&wc.lane_context(last_ns, None, started));
    }
}

impl WindowContext<'_> {
    /// The context of a window operation's calls at kitchen time `now_ns`.
    fn lane_context<'b>(
        &'b self,
        now_ns: u64,
        packed: Option<&'b [u8]>,
        started: Instant,
    ) -> LaneContext<'b> {
        LaneContext {
            kitchen: self.kitchen,
            mode: super::ClockMode::Replay,
            now_ns,
            interval_ns: self.interval_ns,
            share: self.share,
            behind: false,
            started,
            packed_batch: packed,
            capsules: self.capsules,
        }
    }
}
