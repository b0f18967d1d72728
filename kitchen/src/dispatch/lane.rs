//! One chef's lane: the chef, its interest, its queue and every counter the kitchen keeps
//! about it, in one place.
//!
//! Why one owner: the kitchen used to keep a chef's state in three parallel vectors (the
//! chefs, their queues, their measurements) plus output counters the dispatcher bumped
//! inside the chef host's own statistics, so adding or retiring a chef had to keep four
//! things in step, and nothing could hand one chef's work to another thread. A
//! [`ChefLane`] owns all of it:
//! * [`ChefCounters`]: what the dispatcher observed (packets offered, seen, dropped, shed;
//!   dumplings accepted and refused, bytes, call times, state). The lane is their only
//!   writer.
//! * [`crate::chef_host::ChefStats`] (inside the chef): what the chef host observed of its
//!   own calls (calls, traps, timeouts, memory failures, restarts, busy time). The host is
//!   their only writer.
//!
//! The status report, `/metrics` and the exit summary read both through
//! [`ChefLane::status`] and [`ChefLane::counters`].
//!
//! A lane's calls touch only the lane (and read-only context shared by every lane of a
//! step, [`LaneContext`]), so the dispatcher can run the lanes of one step on several
//! threads. A call's dumplings are checked and wrapped in their envelope by the lane
//! ([`ChefLane::wrap`]) and wait in the lane until the dispatcher sends every lane's
//! dumplings in the fixed chef order ([`ChefLane::take_ready`]): the output does not depend
//! on which thread ran which lane, or when.

use std::sync::Mutex;
use std::time::Instant;

mod merge;

use dumpling::Driver;

use super::chef_queue::{self, ChefQueue};
use super::{wall_ns, ClockMode, InterestMatcher};
use crate::chef_host::bindings::BatchForm;
use crate::chef_host::interval_same::IntervalText;
use crate::chef_host::output_budget::OverBudget;
use crate::chef_host::packet_answer::{AnswerKind, Intake, Part, Verdict};
use crate::chef_host::{CallError, LoadedChef, WirePacket};
use crate::outputs::crash_capsule::CrashCapsules;
use crate::outputs::status::{BatchTiming, ChefRunState, ChefStatus};
use crate::parse::batch::Batch;

/// A loaded chef plus its compiled interest: what is handed to the dispatcher (at start
/// and by hot reload) and what it hands back when a chef is retired.
pub struct ChefSlot {
    /// The chef.
    pub chef: LoadedChef,
    /// Its interest.
    pub matcher: InterestMatcher,
    /// Kept for the hello and `--chef-list`: how the original would name it.
    pub qualified_name: String,
}

/// A chef as the hello names it (a [`ChefSlot`] before the dispatcher runs, a
/// [`ChefLane`] after).
pub trait NamedChef {
    /// The chef.
    fn chef(&self) -> &LoadedChef;
    /// How the original would name it.
    fn qualified_name(&self) -> &str;
}

impl NamedChef for ChefSlot {
    fn chef(&self) -> &LoadedChef {
        &self.chef
    }
    fn qualified_name(&self) -> &str {
        &self.qualified_name
    }
}

impl NamedChef for ChefLane {
    fn chef(&self) -> &LoadedChef {
        &self.chef
    }
    fn qualified_name(&self) -> &str {
        &self.qualified_name
    }
}

/// What the dispatcher measures per chef, beside the host's [`crate::chef_host::ChefStats`].
#[derive(Debug, Default, Clone)]
pub struct ChefCounters {
    /// Packets handed to `on-packets` calls (successful or not).
    pub offered: u64,
    /// Packets handed to `on-packets` calls that worked (the chef saw them).
    pub seen: u64,
    /// Packets of its interest it did not see: calls skipped (restarting) or failed, the
    /// chef quarantined, or batches shed. Capture-level losses are in
    /// [`crate::outputs::status::CaptureCounters`].
    pub dropped: u64,
    /// Of `dropped`: packets in batches shed live because the chef was over its share of
    /// the kitchen's time while the kitchen was behind ([`crate::dispatch::duty`]).
    pub shed: u64,
    /// Interval pokes skipped live for the same reason.
    pub pokes_shed: u64,
    /// Flow events it asked for and did not see: calls shed (live, as batches are) or
    /// failed, the chef quarantined.
    pub flow_events_dropped: u64,
    /// Stream bytes it asked for and did not see (directions it gave up left out): calls
    /// shed (live) or failed, the chef quarantined. A chunk shed live shows on the
    /// direction's next chunk the chef gets as `gap-before`.
    pub stream_bytes_dropped: u64,
    /// Its call time against its share ([`crate::dispatch::duty`]).
    pub duty: crate::dispatch::duty::DutyBucket,
    /// Dumplings accepted (checked, wrapped and handed to the output).
    pub dumplings: u64,
    /// Bytes of the dumplings accepted (encoded JSON).
    pub bytes: u64,
    /// Dumplings dropped by the dispatcher: payload not one JSON value, too deep, or a bad
    /// packet index (the host's own drops are [`crate::chef_host::ChefStats::undecodable`]).
    pub invalid: u64,
    /// Dumplings dropped: payload over the size cap.
    pub oversize: u64,
    /// Dumplings dropped: over the per-call count cap.
    pub over_cap: u64,
    /// Dumplings dropped: over the output byte budget (per call or per second).
    pub over_budget: u64,
    /// Time per `on-packets` batch.
    pub timing: BatchTiming,
    /// From the last call's outcome.
    pub state: ChefRunState,
    /// Times this chef's file was replaced by a new version (hot reload).
    pub reloads: u64,
}

impl ChefCounters {
    /// The counters a new version of this chef starts with (hot reload): every count goes
    /// on (the chef's totals never go back to zero, so `/metrics` counters stay counters),
    /// `reloads` grows by one, and what describes the running version alone starts afresh
    /// (its share of the kitchen's time, the last call's outcome).
    pub fn for_next_version(self) -> ChefCounters {
        ChefCounters {
            reloads: self.reloads + 1,
            duty: Default::default(),
            state: Default::default(),
            ..self
        }
    }
}

/// What every lane of one step shares, read-only: the kitchen's name and clock mode, the
/// kitchen clock of the calls, each chef's share of the kitchen's time, whether the
/// kitchen is behind, and the crash capsule recorder.
#[derive(Clone, Copy)]
pub struct LaneContext<'a> {
    /// The kitchen's name (the envelope's `kitchen`).
    pub kitchen: &'a str,
    /// Replay or live (dumpling times, output budgets, shedding).
    pub mode: ClockMode,
    /// The kitchen clock handed to the calls.
    pub now_ns: u64,
    /// The interval between pokes, ns.
    pub interval_ns: u64,
    /// Each chef's share of the kitchen's time ([`crate::dispatch::duty`]).
    pub share: f64,
    /// Live and behind: a chef over its share sheds.
    pub behind: bool,
    /// When the step started (live queue age).
    pub started: Instant,
    /// The packed form of the current batch, when some packed chef takes every packet.
    pub packed_batch: Option<&'a [u8]>,
    /// `--chef-crash-dir`.
    pub capsules: Option<&'a Mutex<CrashCapsules>>,
}

impl<'a> LaneContext<'a> {
    /// The kitchen clock for output budgets: capture time in a replay (fixed for the step),
    /// wall time live.
    pub(super) fn clock_ns(&self) -> u64 {
        match self.mode {
            ClockMode::Replay => self.now_ns,
            ClockMode::Live => wall_ns(),
        }
    }

    /// The same context at kitchen time `now_ns` (a merged call's parts, `merge`).
    fn at(&self, now_ns: u64) -> LaneContext<'a> {
        LaneContext {
            now_ns,
            packed_batch: None,
            ..*self
        }
    }

    /// Run `f` on the crash capsule recorder, if capsules are on.
    pub fn capsule(&self, f: impl FnOnce(&mut CrashCapsules)) {
        if let Some(c) = self.capsules {
            // A panic elsewhere while holding the lock leaves the recorder usable.
            let mut c = c.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut c);
        }
    }
}

/// One chef with everything the kitchen keeps about it (see the module docs).
pub struct ChefLane {
    /// The chef.
    pub chef: LoadedChef,
    /// Its interest.
    pub matcher: InterestMatcher,
    /// Kept for the hello and `--chef-list`: how the original would name it.
    pub qualified_name: String,
    /// A selective chef's waiting packets ([`crate::dispatch::chef_queue`]).
    queue: ChefQueue,
    /// Scratch: where a batch's matching packets are in it.
    matched_at: Vec<usize>,
    /// Scratch: their records, for a call against the batch's own arena
    /// ([`chef_queue::is_dense`]).
    picked: Vec<WirePacket>,
    counters: ChefCounters,
    /// Dumplings of this lane's calls, checked and wrapped, waiting to be sent in chef order.
    ready: Vec<String>,
    /// Bytes held in `ready`.
    ready_bytes: usize,
    /// Replay window ([`crate::dispatch::window`]): operations of the current window this
    /// lane has run.
    window_next: usize,
    /// For each operation done and not sent yet, the end of its dumplings in `ready`. An
    /// operation run is done once its dumplings are all made: at once, or for a sparse
    /// chef whose calls are being merged, when the merged call is made ([`merge`]).
    window_marks: Vec<usize>,
    /// Operations of the current window sent (their marks dropped from `window_marks`).
    window_sent: usize,
    /// A sparse chef's calls of this window waiting to be made as one ([`merge`]).
    merge: merge::Merge,
    /// Wall time this lane spent on the current window's operations (sizes the next).
    pub(super) window_ns: u64,
    /// The packed form of this lane's own packet lists (its queue).
    packed: Vec<u8>,
    /// What the chef host needs to decide a call's packet dumplings where they lie, and
    /// what it decided ([`crate::chef_host::packet_answer`]); buffers kept between calls.
    intake: Intake,
    /// This lane's number, unique within the dispatcher (a reloaded chef gets a new one):
    /// how the stream stage tells whose verdicts it holds.
    pub(super) serial: u64,
    /// Stream directions this chef gave up (`stream-verdicts`; see `streams`).
    pub(super) given_up: super::streams::GivenUp,
    /// Live: stream bytes shed per direction ([`crate::parse::stream_stage::dir_key`]), added
    /// to `gap-before` of the next chunk of that direction the chef gets.
    pub(super) shed_gaps: super::streams::ShedGaps,
    /// Stream verdicts made since the dispatcher last took them
    /// (`Dispatcher::collect_verdicts`).
    pub(super) pending_verdicts: Vec<crate::parse::stream_stage::Verdict>,
    /// Scratch: the chunks of a step this chef still wants.
    pub(super) stream_scratch: Vec<crate::chef_host::bindings::StreamChunk>,
    /// The dispatcher honours verdicts (`Dispatcher::set_stream_verdicts`).
    pub(super) honours_verdicts: bool,
}

impl ChefLane {
    /// A lane for `slot`, with the hot-reload count of its file carried over.
    pub fn new(slot: ChefSlot, counters: ChefCounters) -> Self {
        ChefLane {
            chef: slot.chef,
            matcher: slot.matcher,
            qualified_name: slot.qualified_name,
            queue: ChefQueue::default(),
            matched_at: Vec::new(),
            picked: Vec::new(),
            counters,
            ready: Vec::new(),
            ready_bytes: 0,
            window_next: 0,
            window_marks: Vec::new(),
            window_sent: 0,
            merge: merge::Merge::default(),
            window_ns: 0,
            packed: Vec::new(),
            intake: Intake::default(),
            serial: 0,
            given_up: Default::default(),
            shed_gaps: Default::default(),
            pending_verdicts: Vec::new(),
            stream_scratch: Vec::new(),
            honours_verdicts: false,
        }
    }

    /// The chef handed back (retired), with its counters.
    pub fn into_parts(self) -> (ChefSlot, ChefCounters) {
        let slot = ChefSlot {
            chef: self.chef,
            matcher: self.matcher,
            qualified_name: self.qualified_name,
        };
        (slot, self.counters)
    }

    /// What the dispatcher measured of this chef.
    pub fn counters(&self) -> &ChefCounters {
        &self.counters
    }

    /// This chef's line of the status report: the lane's and the host's counters together.
    /// `full` adds the wall-clock timings; `load_failures` comes from hot reload (a failed
    /// load of a new version of its file has no lane of its own).
    pub fn status(&self, full: bool, load_failures: u64) -> ChefStatus {
        let c = &self.chef;
        let st = &c.stats;
        let rt = &self.counters;
        ChefStatus {
            source: c.source().to_string(),
            version: c.description().version.clone(),
            sha256: c.provenance().sha256.clone(),
            key_id: c.provenance().key_id.clone(),
            state: if c.is_quarantined() {
                ChefRunState::Quarantined
            } else {
                rt.state
            },
            packets_offered: rt.offered,
            packets_seen: rt.seen,
            packets_dropped: rt.dropped,
            packets_shed: rt.shed,
            pokes_shed: rt.pokes_shed,
            flow_events_dropped: rt.flow_events_dropped,
            stream_bytes_dropped: rt.stream_bytes_dropped,
            calls: st.packet_calls + st.interval_calls,
            dumplings: rt.dumplings,
            bytes: rt.bytes,
            batches: rt.timing.count(),
            mean_ns: full.then(|| rt.timing.mean_ns()),
            p99_ns: full.then(|| rt.timing.p99_ns()),
            traps: st.traps,
            timeouts: st.timeouts,
            memory_failures: st.memory_limits,
            over_budget: rt.over_budget,
            restarts: st.restarts,
            reloads: rt.reloads,
            state_restored: st.state_restored,
            state_fresh: st.state_fresh,
            load_failures,
        }
    }

    /// True when some packets wait in its queue.
    pub(super) fn has_queued(&self) -> bool {
        !self.queue.is_empty()
    }

    /// True when `ctx` needs the batch's packed form for this lane (a packed chef that
    /// takes every packet and will be called).
    pub(super) fn wants_packed_batch(&self) -> bool {
        self.chef.description().drivers.packet
            && self.chef.description().batch_form == BatchForm::Packed
            && self.matcher.is_everything()
            && !self.chef.is_quarantined()
    }

    /// True when the chef reads the packed records' DNS slots and time text (an
    /// interpreted SDK's chef; see [`crate::parse::packed_batch::Slots`]).
    pub(super) fn reads_packed_slots(&self) -> bool {
        self.chef.description().packed_slots
    }

    /// The packed form of this lane's own packet list (its queue), in its scratch buffer,
    /// with the DNS slots filled only if the chef reads them.
    pub(super) fn encode_own(&mut self, packets: &[WirePacket], arena: &[u8]) {
        let slots = crate::parse::packed_batch::Slots::filled_if(self.reads_packed_slots());
        crate::parse::packed_batch::encode_as(packets, arena, &mut self.packed, slots);
    }

    /// The chef's name and the dumplings made since the last take, in the order they were
    /// made.
    pub(super) fn take_ready(&mut self) -> (&str, std::vec::Drain<'_, String>) {
        self.ready_bytes = 0;
        (self.chef.name(), self.ready.drain(..))
    }

    /// Operations of the current replay window this lane has done (their dumplings all
    /// made).
    pub(super) fn window_done(&self) -> usize {
        self.window_sent + self.window_marks.len()
    }

    /// Operations of the current replay window this lane has run (done, or waiting for a
    /// merged call).
    pub(super) fn window_next(&self) -> usize {
        self.window_next
    }

    /// Bytes of dumplings made and not sent yet.
    pub(super) fn held_bytes(&self) -> usize {
        self.ready_bytes
    }

    /// One more window operation run: done now (its dumplings end here) unless a merged
    /// call still has to make some of them.
    pub(super) fn finish_op(&mut self) {
        self.window_next += 1;
        if self.merge.is_empty() {
            self.mark_through(self.window_next);
        }
    }

    /// The window's first `ops` operations are done: their dumplings end here.
    fn mark_through(&mut self, ops: usize) {
        while self.window_done() < ops {
            self.window_marks.push(self.ready.len());
        }
    }

    /// The dumplings (indexes into the unsent ones) of the `k`-th unsent operation done.
    pub(super) fn op_dumplings(&self, k: usize) -> std::ops::Range<usize> {
        let start = if k == 0 { 0 } else { self.window_marks[k - 1] };
        start..self.window_marks[k]
    }

    /// Take the unsent dumpling at `i` (the slot is left empty until [`ChefLane::drop_sent`]).
    pub(super) fn take_dumpling(&mut self, i: usize) -> String {
        std::mem::take(&mut self.ready[i])
    }

    /// The first `ops` unsent operations were sent: drop their (taken) dumplings.
    pub(super) fn drop_sent(&mut self, ops: usize) {
        if ops == 0 {
            return;
        }
        let n = self.window_marks[ops - 1];
        self.ready.drain(..n);
        self.window_marks.drain(..ops);
        self.window_sent += ops;
        for m in &mut self.window_marks {
            *m -= n;
        }
        self.ready_bytes = self.ready.iter().map(String::len).sum();
    }

    /// The window is done (every operation sent).
    pub(super) fn reset_window(&mut self) {
        debug_assert!(self.merge.is_empty(), "a merged call left unmade");
        self.window_next = 0;
        self.window_sent = 0;
        self.window_marks.clear();
        self.window_ns = 0;
    }

    /// Live: charge the time since `started` (its call and its output) to its duty.
    fn charge_duty(&mut self, started: Instant, ctx: &LaneContext<'_>) {
        if ctx.mode == ClockMode::Live {
            let now = Instant::now();
            self.counters
                .duty
                .charge(now.saturating_duration_since(started), now, ctx.share);
        }
    }

    /// Record the outcome of a call (its state, and live a failed call's duty).
    pub(super) fn record_call<T>(
        &mut self,
        result: &Result<T, CallError>,
        started: Instant,
        ctx: &LaneContext<'_>,
    ) {
        self.set_state(result);
        if result.is_err() {
            self.charge_duty(started, ctx);
        }
    }

    /// Record the state a call's outcome leaves the chef in.
    pub(super) fn set_state<T>(&mut self, result: &Result<T, CallError>) {
        self.counters.state = run_state(result.is_ok(), self.chef.is_quarantined());
    }

    /// Record a successful call's time in its batch timings (the host's measure of the
    /// call: reading the clock again here cost two more reads per call).
    pub(super) fn time_call(&mut self) {
        self.counters.timing.record(self.chef.last_call_ns());
    }

    /// When a call starts, for the live duty: the clock live, the step's start in a replay
    /// (no duty; a clock read saved per call).
    pub(super) fn call_clock(ctx: &LaneContext<'_>) -> Instant {
        match ctx.mode {
            ClockMode::Live => Instant::now(),
            ClockMode::Replay => ctx.started,
        }
    }

    /// Live and behind: whether this chef is over its share of the kitchen's time, so the
    /// call starting at `started` is shed ([`crate::dispatch::duty`]).
    pub(super) fn over_share(&mut self, started: Instant, ctx: &LaneContext<'_>) -> bool {
        ctx.behind && self.counters.duty.over(started, ctx.share)
    }

    /// Count `n` flow events it asked for and did not see.
    pub(super) fn flow_events_missed(&mut self, n: usize) {
        self.counters.flow_events_dropped += n as u64;
    }

    /// Count `bytes` of stream it asked for and did not see.
    pub(super) fn stream_bytes_missed(&mut self, bytes: u64) {
        self.counters.stream_bytes_dropped += bytes;
    }

    /// Charge a finished call and its output to the duty (live).
    pub(super) fn finish_call(&mut self, started: Instant, ctx: &LaneContext<'_>) {
        // Checking and encoding its dumplings is the chef's time too (a flood of them
        // costs the kitchen as much as a slow call).
        self.charge_duty(started, ctx);
    }

    /// Offer `batch` to this chef (a packet chef): a chef interested in everything gets it
    /// as it is; a selective chef gets its matching packets queued and is called when its
    /// queue is full (live: or old).
    pub(super) fn offer(&mut self, batch: &Batch, ctx: &LaneContext<'_>) {
        if !self.chef.description().drivers.packet {
            return;
        }
        let everything = self.matcher.is_everything();
        if self.chef.is_quarantined() {
            // Not called, but counted: every packet is offered or counted as dropped.
            let n = if everything {
                batch.len()
            } else {
                chef_queue::matching(batch, &self.matcher).count()
            };
            self.counters.dropped += n as u64;
            return;
        }
        if everything {
            self.call_packets(&batch.packets, &batch.arena, ctx.packed_batch, ctx);
            return;
        }
        let mut at = std::mem::take(&mut self.matched_at);
        at.clear();
        at.extend(chef_queue::matching(batch, &self.matcher));
        if self.queue.is_empty() && chef_queue::is_dense(at.len(), batch.len()) {
            // Most of the batch: called with the batch's own arena and just the matching
            // records, no frame copied (see `chef_queue::is_dense`).
            let mut picked = std::mem::take(&mut self.picked);
            picked.clear();
            picked.extend(at.iter().map(|&i| batch.packets[i]));
            self.call_packets(&picked, &batch.arena, None, ctx);
            self.picked = picked;
            self.matched_at = at;
            return;
        }
        for &i in &at {
            let frame_len = chef_queue::packet_bytes(&batch.packets[i].0);
            if self.queue.cannot_take(frame_len) {
                self.call_queued(ctx);
            }
            self.queue.push(batch, i, ctx.started);
        }
        self.matched_at = at;
        let live = ctx.mode == ClockMode::Live;
        if self.queue.is_full()
            || (live
                && self
                    .queue
                    .older_than(chef_queue::MAX_QUEUE_AGE, ctx.started))
        {
            self.call_queued(ctx);
        }
    }

    /// Call the chef with its queued packets, then empty its queue.
    pub(super) fn call_queued(&mut self, ctx: &LaneContext<'_>) {
        // Taken out for the call, so the chef and the lane can be borrowed meanwhile.
        let mut queue = std::mem::take(&mut self.queue);
        if self.chef.is_quarantined() {
            // Quarantined since the packets were queued: counted, not called.
            self.counters.dropped += queue.len() as u64;
        } else {
            self.call_packets(&queue.packets, &queue.arena, None, ctx);
        }
        queue.clear();
        self.queue = queue;
    }

    /// Call `on-packets` with `packets` (spans into `arena`; `packed` is their packed form
    /// when already encoded) and wrap what it made; live and behind, a chef over its share
    /// sheds the call instead.
    fn call_packets(
        &mut self,
        packets: &[WirePacket],
        arena: &[u8],
        packed: Option<&[u8]>,
        ctx: &LaneContext<'_>,
    ) {
        let started = Self::call_clock(ctx);
        let times = |t: &mut Vec<u64>| t.extend(packets.iter().map(|p| p.0.timestamp_ns));
        let part = Part {
            end: packets.len(),
            clock_ns: ctx.clock_ns(),
        };
        self.prepare_intake(AnswerKind::Packets, &times, &[part], false, ctx);
        if !self.invoke_packets(packets, arena, packed, ctx, started) {
            return;
        }
        self.apply_verdicts(
            "packet dumplings from one call",
            |n| format!("the batch of {n}"),
            &times,
            |_, _| {},
        );
        self.finish_call(started, ctx);
    }

    /// The call of [`ChefLane::call_packets`] and its counters, its answer decided into
    /// the lane's intake (prepared by the caller): false when the call was shed, skipped
    /// or failed. `started` is the caller's [`ChefLane::call_clock`] (read once per call).
    fn invoke_packets(
        &mut self,
        packets: &[WirePacket],
        arena: &[u8],
        packed: Option<&[u8]>,
        ctx: &LaneContext<'_>,
        started: Instant,
    ) -> bool {
        let n = packets.len() as u64;
        if n == 0 {
            self.return_intake();
            return false;
        }
        let now_ns = ctx.now_ns;
        if self.over_share(started, ctx) {
            self.counters.dropped += n;
            self.counters.shed += n;
            self.return_intake();
            return false;
        }
        let mut intake = self.take_intake();
        let result = if self.chef.description().batch_form == BatchForm::Packed {
            let headers = match packed {
                Some(h) => h,
                None => {
                    // Encoding a chef's own list is timed as its work.
                    self.encode_own(packets, arena);
                    &self.packed
                }
            };
            self.chef
                .take_packed(headers, arena, packets.len(), now_ns, &mut intake)
        } else {
            self.chef.take_packets(packets, arena, now_ns, &mut intake)
        };
        self.put_intake(intake);
        if let Err(e) = &result {
            ctx.capsule(|c| c.packets_failed(&self.chef, e, packets, arena, now_ns));
        }
        self.counters.offered += n;
        if result.is_ok() {
            self.counters.seen += n;
            // Failed calls are not timed: a skipped call (backoff) takes no time and a
            // timed-out one is bounded by the deadline; both would blur the histogram.
            self.time_call();
        } else {
            self.counters.dropped += n;
        }
        self.record_call(&result, started, ctx);
        result.is_ok()
    }

    /// Ready the lane's intake for a call whose answer names items in `parts` (one unless
    /// `merged`, a replay window's merged call): the chef's caps, and its output budget
    /// and envelope head lent until [`ChefLane::return_intake`]. `times` appends the
    /// items' capture times; they are gathered before the call only in a replay and only
    /// when the chef's recent answers of this `kind` were not all empty (see
    /// `packet_answer::Intake::answered`).
    pub(super) fn prepare_intake(
        &mut self,
        kind: AnswerKind,
        times: &dyn Fn(&mut Vec<u64>),
        parts: &[Part],
        merged: bool,
        ctx: &LaneContext<'_>,
    ) {
        let intake = &mut self.intake;
        let limits = self.chef.limits();
        intake.cap = limits.max_dumplings_per_call;
        intake.max_bytes = limits.max_dumpling_bytes;
        intake.live = ctx.mode == ClockMode::Live;
        intake.merged = merged;
        intake.parts.clear();
        intake.parts.extend_from_slice(parts);
        intake.times.clear();
        // Live, dumpling times are the wall clock's: none to gather.
        intake.kind = kind;
        intake.has_times = intake.live || intake.answered_recently();
        if intake.has_times && !intake.live {
            times(&mut intake.times);
        }
        intake.verdicts.clear();
        intake.budget = Some(self.chef.output_budget.clone());
        intake.head = Some(self.chef.take_envelope_head(Some(ctx.kitchen)));
    }

    /// The prepared intake, taken out for the call (so the chef and the lane can be
    /// borrowed meanwhile); [`ChefLane::put_intake`] after it.
    pub(super) fn take_intake(&mut self) -> Intake {
        std::mem::take(&mut self.intake)
    }

    /// The intake back after the call, and the chef's output budget and envelope head
    /// back from it, unless an answer wasmtime lifted still waits for them
    /// ([`ChefLane::apply_verdicts`] decides it and gives them back).
    pub(super) fn put_intake(&mut self, intake: Intake) {
        let waiting = intake.lifted.is_some();
        self.intake = intake;
        if !waiting {
            self.return_intake();
        }
    }

    /// The chef's output budget and envelope head back from the intake.
    pub(super) fn return_intake(&mut self) {
        if let Some(budget) = self.intake.budget.take() {
            self.chef.output_budget = budget;
        }
        if let Some(head) = self.intake.head.take() {
            self.chef.return_envelope_head(head);
        }
    }

    /// Apply the intake's verdicts in order (after deciding an answer wasmtime lifted,
    /// with the items' `times`): count and report the refused dumplings (as `what`, e.g.
    /// "packet dumplings from one call"; `outside` names the items of a bad index) and keep
    /// the wrapped ones. `on_part` runs where each part of a merged call starts (its
    /// number).
    pub(super) fn apply_verdicts(
        &mut self,
        what: &str,
        outside: impl Fn(usize) -> String,
        times: &dyn Fn(&mut Vec<u64>),
        mut on_part: impl FnMut(&mut Self, usize),
    ) {
        let mut intake = std::mem::take(&mut self.intake);
        // An answer wasmtime lifted is decided now (budget and head still lent).
        intake.settle(times);
        let mut part = 0;
        for verdict in intake.verdicts.drain(..) {
            match verdict {
                Verdict::Part => {
                    on_part(self, part);
                    part += 1;
                }
                Verdict::OverCap { made, cap } => self.over_cap(made, cap, what),
                Verdict::BadIndex { index, items } => self.bad_index(index, &outside(items)),
                Verdict::Oversize(len) => self.refuse_oversize(Driver::Packet, len),
                Verdict::OverBudget(which, len) => {
                    self.refuse_over_budget(Driver::Packet, which, len)
                }
                Verdict::Wrapped(wrapped) => self.keep_wrapped(Driver::Packet, wrapped),
            }
        }
        self.intake = intake;
        self.return_intake();
    }

    /// Live and behind: whether this chef sheds the coming poke (counted).
    pub(super) fn sheds_poke(&mut self, ctx: &LaneContext<'_>) -> bool {
        if self.over_share(Instant::now(), ctx) {
            self.counters.pokes_shed += 1;
            return true;
        }
        false
    }

    /// Whether this chef takes interval pokes now (an interval chef, not quarantined).
    pub(super) fn is_poked(&self) -> bool {
        self.chef.description().drivers.interval && !self.chef.is_quarantined()
    }

    /// Poke this interval chef at `now_ns` as part of a kitchen poke (the dispatcher has
    /// handed every queued packet over first); a chef over its share sheds it (live,
    /// behind).
    pub(super) fn poke(&mut self, now_ns: u64, ctx: &LaneContext<'_>) {
        if !self.is_poked() || self.sheds_poke(ctx) {
            return;
        }
        let started = Self::call_clock(ctx);
        self.poke_one(now_ns, ctx);
        self.charge_duty(started, ctx);
    }

    /// Call `on-interval` at `now_ns` and wrap what it made.
    pub(super) fn poke_one(&mut self, now_ns: u64, ctx: &LaneContext<'_>) {
        let result = self.chef.on_interval_payloads(now_ns, ctx.interval_ns);
        if let Err(e) = &result {
            ctx.capsule(|c| c.interval_failed(&self.chef, e, now_ns, ctx.interval_ns));
        }
        self.set_state(&result);
        let Ok(out) = result else {
            return;
        };
        let cap = self.count_over_cap(out.len(), "interval dumplings from one poke");
        for (k, payload) in out.into_iter().take(cap).enumerate() {
            // A `same` that named nothing was counted by the host.
            if !matches!(payload, IntervalText::Unresolved) {
                self.wrap_interval(k, now_ns, payload, ctx);
            }
        }
        self.chef.finish_interval();
    }

    /// A dumpling naming `idx`, outside the items of its call (`outside` names them, e.g.
    /// "the batch of 3"): dropped and counted as invalid.
    pub(super) fn bad_index(&mut self, idx: usize, outside: &str) {
        self.counters.invalid += 1;
        self.chef.warn_output(
            "bad-index",
            1,
            format_args!("packet-index {idx} is outside {outside}; dropped"),
        );
    }

    /// The number of a call's `made` dumplings the chef may send (its per-call cap); the
    /// rest are counted and reported (`what` names them, e.g. "packet dumplings from one
    /// call").
    pub(super) fn count_over_cap(&mut self, made: usize, what: &str) -> usize {
        let cap = self.chef.limits().max_dumplings_per_call;
        if made > cap {
            self.over_cap(made, cap, what);
        }
        cap
    }

    /// `made` dumplings, over the per-call cap `cap`: the rest counted and reported.
    fn over_cap(&mut self, made: usize, cap: usize, what: &str) {
        let over = made.saturating_sub(cap) as u64;
        self.counters.over_cap += over;
        self.chef.warn_output(
            "over-cap",
            over,
            format_args!("{made} {what}: over the cap of {cap}; {over} dropped"),
        );
    }

    /// Check the payload at position `k` of a poke's answer (size cap, output budget, one
    /// JSON value, the hub's limits), wrap it in its envelope and keep it for sending; a
    /// refused one is counted and warned about, never sent. The same checks, budgets and
    /// counters whether the chef sent the text or a `same` naming a payload it sent before
    /// (`interval-same`); the host keeps what came of it for the chef's next answer.
    fn wrap_interval(
        &mut self,
        k: usize,
        at_ns: u64,
        payload: IntervalText,
        ctx: &LaneContext<'_>,
    ) {
        let driver = Driver::Interval;
        match self.admit(driver, payload.len(), at_ns, ctx) {
            Ok(creation_time) => {
                // Checked and compacted straight into the envelope (one copy of the
                // payload), then the hub's own check (`dumpling::check_message_limits`,
                // envelope included), so what the kitchen sends is what the hub accepts.
                let wrapped = self
                    .chef
                    .wrap_interval(k, Some(ctx.kitchen), creation_time, payload);
                self.keep_wrapped(driver, wrapped);
            }
            Err(budget) => self.chef.refuse_interval(k, payload, budget),
        }
    }

    /// A payload of `len` bytes made at `at_ns` against the size cap and the output
    /// budgets (refusals counted and reported): its dumpling's creation time when
    /// admitted, else whether an output budget (not the size cap) refused it.
    fn admit(
        &mut self,
        driver: Driver,
        len: usize,
        at_ns: u64,
        ctx: &LaneContext<'_>,
    ) -> Result<f64, bool> {
        if len > self.chef.limits().max_dumpling_bytes {
            self.refuse_oversize(driver, len);
            return Err(false);
        }
        // Budgets count only payloads under the size cap (an oversize one costs nothing).
        if let Err(which) = self.chef.output_budget.take(len as u64, ctx.clock_ns()) {
            self.refuse_over_budget(driver, which, len);
            return Err(true);
        }
        Ok(match ctx.mode {
            ClockMode::Replay => dumpling::epoch_seconds_from_nanos(at_ns),
            ClockMode::Live => dumpling::epoch_seconds_from_nanos(wall_ns()),
        })
    }

    /// A `len`-byte payload over the size cap: counted and reported.
    fn refuse_oversize(&mut self, driver: Driver, len: usize) {
        self.counters.oversize += 1;
        let limit = self.chef.limits().max_dumpling_bytes;
        self.chef.warn_output(
            "oversize",
            1,
            format_args!("refused a {len}-byte {driver} dumpling: over the {limit}-byte limit"),
        );
    }

    /// A `len`-byte payload over the `which` output budget: counted and reported.
    fn refuse_over_budget(&mut self, driver: Driver, which: OverBudget, len: usize) {
        let chef = &mut self.chef;
        self.counters.over_budget += 1;
        // A chef over its budget may refuse hundreds of thousands of dumplings a
        // second: the message is formatted only when a line is written.
        let (budget, per, flag) = match which {
            OverBudget::PerCall => (
                chef.limits().max_output_bytes_per_call,
                "call",
                "--chef-output-bytes-per-call",
            ),
            OverBudget::PerSecond => (
                chef.limits().max_output_bytes_per_sec,
                "second",
                "--chef-output-bytes-per-sec",
            ),
        };
        chef.warn_output(
            "over-budget",
            1,
            format_args!(
                "dropped a {len}-byte {driver} dumpling: over the output budget of {budget} \
                 bytes per {per} ({flag})"
            ),
        );
    }

    /// A payload checked and wrapped: kept for sending, or counted and reported when the
    /// check refused it.
    fn keep_wrapped(&mut self, driver: Driver, wrapped: Result<String, dumpling::WrapError>) {
        let chef = &mut self.chef;
        let counters = &mut self.counters;
        let json = match wrapped {
            Ok(json) => json,
            Err(dumpling::WrapError::Invalid(e)) => {
                counters.invalid += 1;
                chef.warn_output(
                    "invalid",
                    1,
                    format_args!("dropped a {driver} payload that is not one JSON value: {e}"),
                );
                return;
            }
            Err(dumpling::WrapError::Limit(e @ dumpling::LimitError::TooBig { .. })) => {
                counters.oversize += 1;
                chef.warn_output(
                    "oversize",
                    1,
                    format_args!("refused a {driver} dumpling: {e}"),
                );
                return;
            }
            Err(dumpling::WrapError::Limit(e @ dumpling::LimitError::TooDeep { .. })) => {
                counters.invalid += 1;
                chef.warn_output(
                    "invalid",
                    1,
                    format_args!("refused a {driver} dumpling: {e}"),
                );
                return;
            }
        };
        counters.dumplings += 1;
        counters.bytes += json.len() as u64;
        self.ready_bytes += json.len();
        self.ready.push(json);
    }
}

/// A chef's state after a call: quarantined, running (the call worked) or restarting (any
/// failed or skipped call means its instance is gone until the backoff passes).
pub(super) fn run_state(ok: bool, quarantined: bool) -> ChefRunState {
    if quarantined {
        ChefRunState::Quarantined
    } else if ok {
        ChefRunState::Running
    } else {
        ChefRunState::Restarting
    }
}
