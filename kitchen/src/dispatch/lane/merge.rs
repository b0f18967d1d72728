//! A sparse chef's calls merged across a replay window's operations.
//!
//! Why: a selective chef whose packets are rare (ARP, DHCP) was called with its queue
//! before every interval poke, so on the mixed corpus most of its calls carried one or two
//! packets and cost it ~1.5 µs per packet offered, almost all of it the fixed cost of a
//! call (`nd-kitchen-bench --call-cost`: ~0.9-2 µs per call whatever it holds).
//!
//! When nothing the chef can observe separates two of those calls, they can be one. A chef
//! that only takes packets (no `interval` driver: a poke is a call of its own and would
//! see packets called late; no flow events and no stream bytes, which are delivered
//! between its packets) sees nothing but its packets, in capture order: `on-packets` has
//! no clock. So in a replay window ([`crate::dispatch::window`]) such a lane keeps its
//! queue where the dispatcher would have called it, notes there where that call would have
//! ended (a segment: the packets, the operation, the kitchen clock), and makes one call
//! for every segment so far when its queue is full, when [`MAX_MERGED_CALLS`] segments
//! wait, and when it stops running the window. The answer's dumplings name their packets
//! (`packet-index`), so each goes back to its segment, in the chef's order, and is sent
//! with that segment's operation: the replay's output is byte-identical to calling each
//! segment on its own (for a chef whose answer for a packet does not depend on which
//! call carried it: one that counts its calls can tell).
//!
//! The rules for what merging changes, chosen so that a chef that works keeps every
//! dumpling and every limit keeps its force:
//! * Size: a merged call holds at most one batch (the queue's bound, as any call), made
//!   of whole segments; packets queued after the last segment stay queued.
//! * Deadline: a merged call of `n` segments gets `n` times the per-call deadline
//!   ([`crate::chef_host::LoadedChef::set_merged_calls`]), the sum its calls had, so a chef
//!   whose every call fit does not time out because they were merged; [`MAX_MERGED_CALLS`]
//!   bounds one call's time at 16 deadlines (a chef that loops forever is stopped after
//!   at most that, then restarts and is quarantined as before).
//! * Output budget and the per-call dumpling cap: applied to each segment's dumplings as
//!   if it were its own call (the per-call budget starts again for each, the per-second
//!   budget is taken at the segment's kitchen clock), so the same dumplings pass.
//! * Failure (a trap, a timeout, a memory limit): it is one failed call, counted once
//!   toward restart and quarantine. Every packet of the merged call counts as offered and
//!   dropped, the crash capsule holds all of them, and no segment's dumplings are sent:
//!   a chef that traps loses up to [`MAX_MERGED_CALLS`] calls' packets instead of one
//!   (its state is lost with the instance anyway; unmerged, the segments after the trap
//!   would have gone to a fresh instance).
//! * Counters: packets offered, seen and dropped are exact once the window is done (the
//!   kitchen status closes the window first); call counts and per-call timings count
//!   merged calls.

use super::{ChefLane, LaneContext};
use crate::chef_host::bindings::BatchForm;
use crate::chef_host::packet_answer::{AnswerKind, Part};
use crate::dispatch::chef_queue;
use crate::dispatch::flow_events;
use crate::parse::batch::{Batch, MAX_BATCH_PACKETS};

/// Most calls merged into one: bounds a merged call's deadline (and the packets a trap
/// loses) to this many calls' worth.
pub const MAX_MERGED_CALLS: usize = 16;

/// The segments of a lane's queue waiting for their merged call.
#[derive(Default)]
pub(in crate::dispatch) struct Merge {
    segments: Vec<Segment>,
}

impl Merge {
    /// True when no segment waits.
    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }
}

/// One call the unmerged dispatcher would have made: the queue's packets up to `end`
/// (frames up to `arena_end`) since the previous segment, at window operation `op` and
/// kitchen time `now_ns`.
#[derive(Debug, Clone, Copy)]
struct Segment {
    end: usize,
    arena_end: usize,
    op: usize,
    now_ns: u64,
}

impl ChefLane {
    /// True when this chef's calls may be merged in a replay window (see the module docs):
    /// a selective packet chef with no `interval` driver, no flow events and no streams.
    pub(in crate::dispatch) fn merges(&self) -> bool {
        let d = self.chef.description();
        d.drivers.packet
            && !d.drivers.interval
            && !self.matcher.is_everything()
            && !flow_events::wants_events(&self.chef)
    }

    /// Where the open segment (packets queued since the last segment) starts: (packet,
    /// arena byte).
    fn open_start(&self) -> (usize, usize) {
        self.merge
            .segments
            .last()
            .map_or((0, 0), |s| (s.end, s.arena_end))
    }

    /// [`ChefLane::offer`] for a merging lane at window operation `op`: matching packets
    /// are queued; where the unmerged lane would call the chef, the open segment ends
    /// instead, and the merged call is made only when the queue itself is full.
    pub(in crate::dispatch) fn offer_merging(
        &mut self,
        batch: &Batch,
        op: usize,
        ctx: &LaneContext<'_>,
    ) {
        if self.chef.is_quarantined() {
            self.call_merged(ctx);
            self.offer(batch, ctx);
            return;
        }
        for at in 0..batch.len() {
            if !self.matcher.matches(&batch.classes[at]) {
                continue;
            }
            let frame_len = chef_queue::packet_bytes(&batch.packets[at].0);
            let (from, from_bytes) = self.open_start();
            if self.queue.segment_cannot_take(from, from_bytes, frame_len) {
                self.end_call(op, ctx);
            }
            if self.queue.cannot_take(frame_len) {
                self.call_merged(ctx);
            }
            self.queue.push(batch, at, ctx.started);
        }
        if self.queue.len() - self.open_start().0 >= MAX_BATCH_PACKETS {
            self.end_call(op, ctx);
        }
        if self.queue.is_full() {
            self.call_merged(ctx);
        }
    }

    /// The unmerged lane would call the chef with its queue here (window operation `op`,
    /// `ctx.now_ns`): the open segment, if it holds packets, ends.
    pub(in crate::dispatch) fn end_call(&mut self, op: usize, ctx: &LaneContext<'_>) {
        if self.queue.len() == self.open_start().0 {
            return;
        }
        self.merge.segments.push(Segment {
            end: self.queue.len(),
            arena_end: self.queue.arena.len(),
            op,
            now_ns: ctx.now_ns,
        });
        if self.merge.segments.len() >= MAX_MERGED_CALLS {
            self.call_merged(ctx);
        }
    }

    /// Make one call for every waiting segment, send each segment's dumplings with its
    /// operation, and mark every operation run so far done. Packets queued after the last
    /// segment stay queued.
    pub(in crate::dispatch) fn call_merged(&mut self, ctx: &LaneContext<'_>) {
        let Some(last) = self.merge.segments.last().copied() else {
            return;
        };
        let segments = std::mem::take(&mut self.merge.segments);
        // Taken out for the call, so the chef and the lane can be borrowed meanwhile.
        let mut queue = std::mem::take(&mut self.queue);
        let packets = &queue.packets[..last.end];
        let arena = &queue.arena[..last.arena_end];
        if self.chef.is_quarantined() {
            // Quarantined since the packets were queued: counted, not called.
            self.counters.dropped += packets.len() as u64;
        } else {
            // The call happens where the last segment's call would have (its clock).
            let call_ctx = ctx.at(last.now_ns);
            self.chef.set_merged_calls(segments.len() as u32);
            let packed = (self.chef.description().batch_form == BatchForm::Packed).then(|| {
                self.encode_own(packets, arena);
                std::mem::take(&mut self.packed)
            });
            let started = Self::call_clock(&call_ctx);
            // Each segment's dumplings are decided as its own call's: a fresh per-call
            // budget, the budgets at its clock, its packets indexed from its first (see
            // `packet_answer::Intake`, merged).
            let parts: Vec<Part> = segments
                .iter()
                .map(|s| Part {
                    end: s.end,
                    clock_ns: call_ctx.at(s.now_ns).clock_ns(),
                })
                .collect();
            let times = |t: &mut Vec<u64>| t.extend(packets.iter().map(|p| p.0.timestamp_ns));
            self.prepare_intake(AnswerKind::Packets, &times, &parts, true, &call_ctx);
            let ok = self.invoke_packets(packets, arena, packed.as_deref(), &call_ctx, started);
            if let Some(p) = packed {
                self.packed = p;
            }
            if ok {
                // Each segment's dumplings go with its operation: the operations before
                // each segment are marked done where its dumplings start.
                self.apply_verdicts(
                    "packet dumplings from one call",
                    |n| format!("the batch of {n}"),
                    &times,
                    |lane, k| lane.mark_through(segments[k].op),
                );
            }
        }
        queue.remove_front(last.end, last.arena_end);
        self.queue = queue;
        self.mark_through(self.window_next);
    }
}
