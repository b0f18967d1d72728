//! The kitchen's core loop: packets in, batches to chefs, dumplings out.
//!
//! * Packets are parsed into a batch of up to [`MAX_BATCH_PACKETS`] WIT records plus one
//!   byte arena (the cheapest shape measured: ~50-80 ns/packet for the call, against
//!   ~150-250 ns for one call per packet; `shared/docs/wasm-host-notes.md` §1.2) by a
//!   [`BatchBuilder`], which also places the interval pokes between batches. The
//!   [`Dispatcher`] runs those [`Step`]s on the chefs, in order: either on the same thread
//!   ([`Dispatcher::push`], live capture: [`crate::run::live`]) or fed from a parsing thread
//!   ([`Dispatcher::run`], replay: see [`crate::run::replay`]).
//! * Each chef gets only the packets matching its `interest`, and only if it uses the
//!   packet driver. A chef interested in everything gets the batch as is (no copy); others
//!   get their packets queued with their own compacted arena ([`crate::dispatch::chef_queue`]), so a
//!   DNS chef neither pays for copying every HTTP payload nor for a wasm call per batch
//!   for its three packets in it: it is called when its queue is full, before each poke,
//!   on [`Dispatcher::flush`] and, live, when a packet has waited 50 ms.
//! * Chefs run in a fixed order (sorted by name), and a selective chef's queue is called
//!   at points fixed by the packets and pokes alone (never by the wall clock in a replay),
//!   so a replay is byte-for-byte reproducible.
//! * Interval pokes follow the capture clock when replaying (t0+p, t0+2p, ..., each fired
//!   before the first packet whose timestamp reaches it, plus a final poke at the last
//!   packet's time) and the wall clock when live (at start, then every p).
//! * Every payload is checked (`dumpling::wrap_payload`, size and count caps) as
//!   it is wrapped in its envelope; bad ones are dropped and counted
//!   against the chef, never forwarded.
//! * Hot reload ([`crate::chefs::reload`]) adds and retires chefs only between batches
//!   ([`Dispatcher::add_chef`], [`Dispatcher::retire_chef`]): the pending batch is flushed
//!   first, so every other chef sees every packet, and a retired chef's final interval
//!   dumplings are sent before it is dropped.
//! * Per-chef measurements for the kitchen status ([`crate::outputs::status`]) are kept beside the
//!   chefs; with the status on, every poke also sends a `KitchenStatusChef` dumpling.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use capture::PacketRecord;
use dumpling::Driver;

use crate::chef_host::bindings::BatchForm;
use crate::chef_host::output_budget::OverBudget;
use crate::chef_host::{LoadedChef, WirePacket};
use crate::outputs::crash_capsule::CrashCapsules;
use crate::outputs::status::{
    ChefRunState, ChefRuntime, ChefStatus, StatusDetail, StatusInputs, StatusReport,
};
pub use crate::parse::batch::{
    Batch, BatchBuilder, ClockMode, Step, MAX_BATCH_BYTES, MAX_BATCH_PACKETS, MAX_POKES_PER_GAP,
};
use crate::parse::defrag::{DefragLimits, DefragStats};
use crate::parse::packed_batch::PackedScratch;
use crate::parse::poke_clock::ClockAnomalies;
use chef_queue::ChefQueue;

pub mod chef_queue;
pub mod duty;
mod flow_events;
pub mod interest;
mod streams;

pub use crate::outputs::{DumplingSink, SinkError};
pub use interest::InterestMatcher;

/// A loaded chef plus its compiled interest.
pub struct ChefSlot {
    /// The chef.
    pub chef: LoadedChef,
    /// Its interest.
    pub matcher: InterestMatcher,
    /// Kept for the hello and `--chef-list`: how the original would name it.
    pub qualified_name: String,
}

/// What every packet call of one batch (or one flush of the queues) shares: the kitchen
/// clock handed to the chefs and each chef's share of the thread ([`crate::dispatch::duty`]),
/// computed once rather than per call.
#[derive(Debug, Clone, Copy)]
struct CallContext {
    now_ns: u64,
    share: f64,
}

/// Kitchen-wide counters, for the exit summary.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct KitchenStats {
    /// Packets read.
    pub packets: u64,
    /// Batches flushed.
    pub batches: u64,
    /// Interval pokes.
    pub pokes: u64,
    /// Pokes skipped by collapsed gaps ([`MAX_POKES_PER_GAP`], [`crate::parse::poke_clock`]).
    pub pokes_collapsed: u64,
    /// Dumplings handed to the output.
    pub dumplings: u64,
    /// The interval clock's anomalies (odd capture times; see [`crate::parse::poke_clock`]).
    pub clock: ClockAnomalies,
    /// IP reassembly ([`crate::parse::defrag`]), as of the last batch run.
    pub ip_reassembly: DefragStats,
}

/// The dispatcher: owns the chefs and runs [`Step`]s on them; it also has a
/// [`BatchBuilder`] for callers that feed packets on the same thread.
pub struct Dispatcher {
    kitchen: String,
    chefs: Vec<ChefSlot>,
    mode: ClockMode,
    /// Capture time of the last packet handed to the chefs (the replay clock).
    last_packet_ns: Option<u64>,
    builder: BatchBuilder,
    /// Selective chefs' waiting packets, parallel to `chefs` (same index).
    queues: Vec<ChefQueue>,
    sink: Box<dyn DumplingSink>,
    stats: KitchenStats,
    /// Clock anomalies of builders on other threads ([`Dispatcher::add_clock_anomalies`]).
    other_clocks: ClockAnomalies,
    /// Per-chef measurements for the status report, parallel to `chefs` (same index).
    runtime: Vec<ChefRuntime>,
    /// Kitchen-wide status inputs (capture, hub, load failures) and whether to emit it.
    status: StatusInputs,
    /// Live: the capture queue is backing up, so chefs over their share shed batches.
    behind: bool,
    /// TCP reassembly, while some chef asks for stream bytes ([`crate::parse::stream_stage`]).
    streams: Option<crate::parse::stream_stage::StreamStage>,
    /// Memory bounds for reassembly (`--stream-*` flags).
    stream_limits: flowtrack::reassembly::ReassemblyLimits,
    /// IP reassembly bounds of every builder this dispatcher makes.
    defrag_limits: DefragLimits,

    /// Packed batches for chefs whose `batch-form` is `packed` (empty while none is loaded).
    packed: PackedScratch,
    /// Connection tracking, when configured ([`Dispatcher::set_flows`]).
    flows: Option<flow_events::DispatchFlows>,
    /// `--chef-crash-dir`: the input of crashing calls is saved ([`crate::outputs::crash_capsule`]).
    capsules: Option<CrashCapsules>,
}

impl Dispatcher {
    /// A dispatcher for `chefs` (sorted here by name, the fixed call order).
    pub fn new(
        kitchen: impl Into<String>,
        mut chefs: Vec<ChefSlot>,
        poke_interval: Duration,
        mode: ClockMode,
        sink: Box<dyn DumplingSink>,
    ) -> Self {
        chefs.sort_by(|a, b| a.chef.name().cmp(b.chef.name()));
        let runtime = chefs.iter().map(|_| ChefRuntime::default()).collect();
        let queues = chefs.iter().map(|_| ChefQueue::default()).collect();
        let builder = BatchBuilder::new(mode, poke_interval);
        let mut d = Dispatcher {
            runtime,
            status: StatusInputs::default(),
            kitchen: kitchen.into(),
            chefs,
            mode,
            last_packet_ns: None,
            builder,
            queues,
            sink,
            stats: KitchenStats::default(),
            other_clocks: ClockAnomalies::default(),
            behind: false,
            streams: None,
            stream_limits: Default::default(),
            defrag_limits: DefragLimits::default(),

            packed: PackedScratch::default(),
            flows: None,
            capsules: None,
        };
        d.update_stream_stage();
        d
    }

    /// Save the input of every chef call that traps, times out or runs out of memory
    /// (`--chef-crash-dir`); `None` turns it off.
    pub fn set_crash_capsules(&mut self, capsules: Option<CrashCapsules>) {
        self.capsules = capsules;
    }

    /// The chefs, in call order.
    pub fn chefs(&self) -> &[ChefSlot] {
        &self.chefs
    }

    /// Kitchen-wide counters.
    pub fn stats(&self) -> &KitchenStats {
        &self.stats
    }

    /// A builder with this dispatcher's clock mode and poke interval, for a parsing thread
    /// whose steps come back through [`Dispatcher::run`].
    pub fn new_builder(&self) -> BatchBuilder {
        let mut b = BatchBuilder::new(self.mode, Duration::from_nanos(self.builder.interval_ns()));
        b.set_defrag_limits(self.defrag_limits);
        if let Some(stage) = self.flow_stage_for_builder() {
            b.set_flow_stage(stage);
        }
        b
    }

    /// When the next poke is due (kitchen clock, ns), once the clock has started.
    pub fn next_poke_ns(&self) -> Option<u64> {
        self.builder.next_poke_ns()
    }

    /// Live mode: the first poke, straight away (as the original's poke thread does).
    pub fn start_live(&mut self, now_ns: u64) -> Result<(), SinkError> {
        self.builder.start_live(now_ns);
        self.drain()
    }

    /// Fire every poke due at or before `now_ns` (flushing the batch before each, so
    /// packets before a poke are handled before it).
    pub fn advance_clock(&mut self, now_ns: u64) -> Result<(), SinkError> {
        self.builder.advance_clock(now_ns);
        self.drain()
    }

    /// Take one captured packet.
    pub fn push(&mut self, record: &PacketRecord<'_>) -> Result<(), SinkError> {
        self.builder.push(record);
        if self.builder.ready() > 0 {
            self.drain()?;
        }
        Ok(())
    }

    /// Live: charge chef `i` the time since `started` (its call and its output).
    fn charge_duty(&mut self, i: usize, started: Instant, share: f64) {
        if self.mode == ClockMode::Live {
            let now = Instant::now();
            self.runtime[i]
                .duty
                .charge(now.saturating_duration_since(started), now, share);
        }
    }

    /// Each chef's share of the dispatcher's thread for shedding ([`crate::dispatch::duty`]): an
    /// equal part per chef that is called (not quarantined).
    fn duty_share(&self) -> f64 {
        let called = self
            .chefs
            .iter()
            .filter(|s| !s.chef.is_quarantined())
            .count();
        1.0 / called.max(1) as f64
    }

    /// Live: whether the kitchen is behind (its capture queue holds more than
    /// [`crate::dispatch::duty::BEHIND_PACKETS`]); chefs over their share of the kitchen's time then
    /// shed batches. Ignored in a replay, which never sheds.
    pub fn set_behind(&mut self, behind: bool) {
        self.behind = behind && self.mode == ClockMode::Live;
    }

    /// Packets waiting in the current batch.
    pub fn pending(&self) -> usize {
        self.builder.pending()
    }

    /// End of input: flush, then the final poke (replay: at the last packet's time, so
    /// the output does not depend on when the run ended; live: now).
    pub fn finish(&mut self) -> Result<(), SinkError> {
        // Every flow ends with the input (`end-of-capture`), before the final poke.
        self.builder.end_flows();
        self.flush()?;
        let now = match self.mode {
            ClockMode::Replay => match self.last_packet_ns {
                Some(t) => t,
                // An empty file: nothing happened, so nothing to report.
                None => return Ok(()),
            },
            ClockMode::Live => wall_ns(),
        };
        self.poke(now)
    }

    /// Hand the current batch to every interested packet chef.
    pub fn flush(&mut self) -> Result<(), SinkError> {
        self.builder.cut();
        self.drain()?;
        self.call_all_queued()
    }

    /// Reassemble IP fragments within `limits` (`--ip-reassembly-kib`,
    /// `--ip-reassembly-timeout`), on this dispatcher's builder and every builder it makes
    /// from now on.
    pub fn set_defrag_limits(&mut self, limits: DefragLimits) {
        self.defrag_limits = limits;
        self.builder.set_defrag_limits(limits);
    }

    /// Count the clock anomalies of a builder made by [`Dispatcher::new_builder`] (a replay's
    /// reading thread), for [`KitchenStats::clock`].
    pub fn add_clock_anomalies(&mut self, a: &ClockAnomalies) {
        self.other_clocks = self.other_clocks.plus(a);
        self.stats.clock = self.builder.clock_anomalies().plus(&self.other_clocks);
    }

    /// Run every step the own builder has ready.
    fn drain(&mut self) -> Result<(), SinkError> {
        self.stats.clock = self.builder.clock_anomalies().plus(&self.other_clocks);
        while let Some(step) = self.builder.next_step() {
            if let Some(batch) = self.run(step)? {
                self.builder.recycle(batch);
            }
        }
        Ok(())
    }

    /// Run one step (from [`BatchBuilder::next_step`], possibly on another thread; steps
    /// must come in the order the builder made them). A packet batch is handed back,
    /// emptied, for [`BatchBuilder::recycle`].
    pub fn run(&mut self, step: Step) -> Result<Option<Batch>, SinkError> {
        match step {
            Step::Packets(mut batch) => {
                if let Some(s) = batch.defrag_stats() {
                    self.stats.ip_reassembly = *s;
                }
                let result = self.run_batch(&batch);
                batch.clear();
                result.map(|()| Some(batch))
            }
            Step::Poke { at_ns, collapsed } => {
                self.stats.pokes_collapsed += collapsed;
                self.poke_chefs(at_ns).map(|()| None)
            }
        }
    }

    /// Hand `batch` to every interested packet chef: a chef interested in everything gets
    /// it as it is; a selective chef gets its matching packets queued
    /// ([`crate::dispatch::chef_queue`]) and is called when its queue is full (live: or old).
    fn run_batch(&mut self, batch: &Batch) -> Result<(), SinkError> {
        self.flows_started(batch)?;
        let Some(last_ns) = batch.last_timestamp_ns() else {
            self.run_streams(batch)?;
            return self.flows_ended(batch);
        };
        self.stats.packets += batch.len() as u64;
        self.stats.batches += 1;
        self.last_packet_ns = Some(last_ns);
        let live = self.mode == ClockMode::Live;
        let now = Instant::now();
        // Once per batch: the kitchen clock and each chef's share of the thread.
        let call = self.call_context();
        self.packed.begin_batch(&batch.packets);
        let result = self.offer_batch(batch, call, live, now);
        self.packed.end_batch();
        result
    }

    /// The chef loop of [`Dispatcher::run_batch`].
    fn offer_batch(
        &mut self,
        batch: &Batch,
        call: CallContext,
        live: bool,
        now: Instant,
    ) -> Result<(), SinkError> {
        for i in 0..self.chefs.len() {
            let slot = &self.chefs[i];
            if !slot.chef.description().drivers.packet {
                continue;
            }
            let everything = slot.matcher.is_everything();
            if slot.chef.is_quarantined() {
                // Not called, but counted: every packet is offered or counted as dropped.
                let n = if everything {
                    batch.len()
                } else {
                    chef_queue::matching(batch, &slot.matcher).count()
                };
                self.runtime[i].dropped += n as u64;
                continue;
            }
            if everything {
                self.call_packets(i, &batch.packets, &batch.arena, call)?;
                continue;
            }
            for at in 0..batch.len() {
                if !self.chefs[i].matcher.matches(&batch.classes[at]) {
                    continue;
                }
                let frame_len = chef_queue::packet_bytes(&batch.packets[at].0);
                if self.queues[i].cannot_take(frame_len) {
                    self.call_queued(i, call)?;
                }
                self.queues[i].push(batch, at);
            }
            let queue = &self.queues[i];
            if queue.is_full() || (live && queue.older_than(chef_queue::MAX_QUEUE_AGE, now)) {
                self.call_queued(i, call)?;
            }
        }
        self.run_streams(batch)?;
        self.flows_ended(batch)
    }

    /// The clock and time share for the packet calls about to be made.
    fn call_context(&self) -> CallContext {
        CallContext {
            now_ns: self.clock_ns(),
            share: self.duty_share(),
        }
    }

    /// Call every chef whose queue holds packets (before a poke, at the end, around a
    /// reload, and live when the capture goes quiet).
    fn call_all_queued(&mut self) -> Result<(), SinkError> {
        let call = self.call_context();
        for i in 0..self.chefs.len() {
            if !self.queues[i].is_empty() {
                self.call_queued(i, call)?;
            }
        }
        Ok(())
    }

    /// Call chef `i` with its queued packets, then empty its queue.
    fn call_queued(&mut self, i: usize, call: CallContext) -> Result<(), SinkError> {
        // Taken out for the call, so the chef and the output can be borrowed meanwhile.
        let mut queue = std::mem::take(&mut self.queues[i]);
        let result = if self.chefs[i].chef.is_quarantined() {
            // Quarantined since the packets were queued: counted, not called.
            self.runtime[i].dropped += queue.len() as u64;
            Ok(())
        } else {
            self.call_packets(i, &queue.packets, &queue.arena, call)
        };
        queue.clear();
        self.queues[i] = queue;
        result
    }

    /// Call chef `i`'s `on-packets` with `packets` (spans into `arena`) and send what it
    /// made; live and behind, a chef over its share sheds the call instead.
    fn call_packets(
        &mut self,
        i: usize,
        packets: &[WirePacket],
        arena: &[u8],
        call: CallContext,
    ) -> Result<(), SinkError> {
        let n = packets.len() as u64;
        if n == 0 {
            return Ok(());
        }
        let CallContext { now_ns, share } = call;
        let started = Instant::now();
        if self.behind && self.runtime[i].duty.over(started, share) {
            let rt = &mut self.runtime[i];
            rt.dropped += n;
            rt.shed += n;
            return Ok(());
        }
        let slot = &mut self.chefs[i];
        let result = if slot.chef.description().batch_form == BatchForm::Packed {
            // Encoding is timed as this chef's work (the first packed chef of a batch pays it).
            let headers = self.packed.headers(packets, arena);
            slot.chef.on_packed(headers, arena, packets.len(), now_ns)
        } else {
            slot.chef.on_packets(packets, arena, now_ns)
        };
        if let (Err(e), Some(c)) = (&result, self.capsules.as_mut()) {
            c.packets_failed(&slot.chef, e, packets, arena, now_ns);
        }
        let rt = &mut self.runtime[i];
        rt.offered += n;
        if result.is_ok() {
            rt.seen += n;
            // Failed calls are not timed: a skipped call (backoff) takes no time and a
            // timed-out one is bounded by the deadline; both would blur the histogram.
            rt.timing.record(started.elapsed().as_nanos() as u64);
        } else {
            rt.dropped += n;
        }
        rt.state = run_state(result.is_ok(), slot.chef.is_quarantined());
        let Ok(out) = result else {
            self.charge_duty(i, started, share);
            return Ok(());
        };
        let cap = count_over_cap(&mut slot.chef, out.len(), "packet dumplings from one call");
        for d in out.into_iter().take(cap) {
            let idx = d.packet_index as usize;
            let Some(WirePacket(p)) = packets.get(idx) else {
                let slot = &mut self.chefs[i];
                slot.chef.stats.invalid += 1;
                slot.chef.warn_output(
                    "bad-index",
                    1,
                    &format!(
                        "packet-index {idx} is outside the batch of {}; dropped",
                        packets.len()
                    ),
                );
                continue;
            };
            self.emit(i, Driver::Packet, p.timestamp_ns, &d.payload)?;
        }
        // Checking and encoding its dumplings is the chef's time too (a flood of them
        // costs the thread as much as a slow call).
        self.charge_duty(i, started, share);
        Ok(())
    }

    /// Poke every interval chef (after flushing pending packets).
    pub fn poke(&mut self, now_ns: u64) -> Result<(), SinkError> {
        self.flush()?;
        self.poke_chefs(now_ns)
    }

    /// Poke every interval chef, then send the kitchen status if it is on.
    fn poke_chefs(&mut self, now_ns: u64) -> Result<(), SinkError> {
        // Every packet before the poke is handled before it (and counted in the status).
        self.call_all_queued()?;
        self.stats.pokes += 1;
        let share = self.duty_share();
        for i in 0..self.chefs.len() {
            let slot = &mut self.chefs[i];
            if !slot.chef.description().drivers.interval || slot.chef.is_quarantined() {
                continue;
            }
            // Live and behind: a chef over its share of the thread skips this poke too.
            if self.behind && self.runtime[i].duty.over(Instant::now(), share) {
                self.runtime[i].pokes_shed += 1;
                continue;
            }
            let started = Instant::now();
            self.poke_one(i, now_ns)?;
            self.charge_duty(i, started, share);
        }
        if self.status.emit {
            self.emit_status(now_ns)?;
        }
        Ok(())
    }

    /// Call chef `i`'s `on-interval` and send what it made.
    fn poke_one(&mut self, i: usize, now_ns: u64) -> Result<(), SinkError> {
        let slot = &mut self.chefs[i];
        let result = slot.chef.on_interval(now_ns, self.builder.interval_ns());
        if let (Err(e), Some(c)) = (&result, self.capsules.as_mut()) {
            c.interval_failed(&slot.chef, e, now_ns, self.builder.interval_ns());
        }
        self.runtime[i].state = run_state(result.is_ok(), slot.chef.is_quarantined());
        let Ok(out) = result else {
            return Ok(());
        };
        let cap = count_over_cap(
            &mut slot.chef,
            out.len(),
            "interval dumplings from one poke",
        );
        for payload in out.into_iter().take(cap) {
            self.emit(i, Driver::Interval, now_ns, &payload)?;
        }
        Ok(())
    }

    /// Add a chef between batches (hot reload): the pending batch is flushed first, so the
    /// new chef sees packets from the next batch on; it is placed in name order.
    pub fn add_chef(&mut self, slot: ChefSlot) -> Result<(), SinkError> {
        self.add_reloaded_chef(slot, 0)
    }

    /// [`Dispatcher::add_chef`] for a new version of a chef that has been swapped in
    /// `reloads` times (hot reload carries the count in the chef's measurements).
    pub fn add_reloaded_chef(&mut self, slot: ChefSlot, reloads: u64) -> Result<(), SinkError> {
        self.flush()?;
        let at = self
            .chefs
            .partition_point(|s| s.chef.name() < slot.chef.name());
        self.chefs.insert(at, slot);
        self.runtime.insert(
            at,
            ChefRuntime {
                reloads,
                ..ChefRuntime::default()
            },
        );
        self.queues.insert(at, ChefQueue::default());
        self.update_stream_stage();
        self.update_flow_switch();
        Ok(())
    }

    /// Take chef `i` out between batches (hot reload): the pending batch is flushed (so it
    /// sees every packet pushed so far), then it gets a final `on-interval` poke (if it is
    /// an interval chef and not quarantined) whose dumplings are sent before it is removed.
    /// Returns the chef and its measurements.
    pub fn retire_chef(&mut self, i: usize) -> Result<(ChefSlot, ChefRuntime), SinkError> {
        self.flush()?;
        let slot = &self.chefs[i];
        if slot.chef.description().drivers.interval && !slot.chef.is_quarantined() {
            let now = self.clock_ns();
            self.poke_one(i, now)?;
        }
        self.queues.remove(i);
        let out = (self.chefs.remove(i), self.runtime.remove(i));
        self.update_stream_stage();
        self.update_flow_switch();
        Ok(out)
    }

    /// Measurements of every chef (same order as [`Dispatcher::chefs`]).
    pub fn runtimes(&self) -> &[ChefRuntime] {
        &self.runtime
    }

    /// Status inputs: turn the `KitchenStatusChef` dumpling on, feed capture counters, a
    /// hub probe and load failures.
    pub fn status_inputs(&mut self) -> &mut StatusInputs {
        &mut self.status
    }

    /// The current status (the `KitchenStatusChef` payload and the exit summary's data).
    pub fn status_report(&mut self, detail: StatusDetail) -> StatusReport {
        let full = detail == StatusDetail::Full;
        let chefs = self
            .chefs
            .iter()
            .zip(&self.runtime)
            .map(|(slot, rt)| {
                let c = &slot.chef;
                let st = &c.stats;
                let source = c.source().to_string();
                let load_failures = self
                    .status
                    .load_failures
                    .get(&source)
                    .map_or(0, |f| f.count);
                let status = ChefStatus {
                    source,
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
                    calls: st.packet_calls + st.interval_calls,
                    dumplings: st.dumplings,
                    bytes: rt.bytes,
                    batches: rt.timing.count(),
                    mean_ns: full.then(|| rt.timing.mean_ns()),
                    p99_ns: full.then(|| rt.timing.p99_ns()),
                    traps: st.traps,
                    timeouts: st.timeouts,
                    memory_failures: st.memory_limits,
                    over_budget: st.over_budget,
                    restarts: st.restarts,
                    reloads: rt.reloads,
                    state_restored: st.state_restored,
                    state_fresh: st.state_fresh,
                    load_failures,
                };
                (c.name().to_owned(), status)
            })
            .collect();
        let capture = self
            .status
            .capture
            .unwrap_or(crate::outputs::status::CaptureCounters {
                packets: self.stats.packets,
                ..Default::default()
            });
        let hub = if full {
            self.status.hub.as_mut().map(|probe| probe())
        } else {
            None
        };
        StatusReport {
            chefs,
            capture,
            hub,
            flows: self.flow_counters().map(Into::into),
            streams: self.stream_status(),
            ip_reassembly: crate::outputs::status::traffic::ip_reassembly(
                &self.stats.ip_reassembly,
            ),
            load_failures: self.status.load_failures.clone(),
            chefs_omitted: 0,
            load_failures_omitted: 0,
        }
    }

    /// Send the `KitchenStatusChef` interval dumpling (replay: only deterministic fields).
    fn emit_status(&mut self, now_ns: u64) -> Result<(), SinkError> {
        let detail = match self.mode {
            ClockMode::Replay => StatusDetail::Deterministic,
            ClockMode::Live => StatusDetail::Full,
        };
        let report = self.status_report(detail);
        // Room for the envelope (chef, kitchen name <= a few hundred bytes, time, driver).
        let room = dumpling::MAX_MESSAGE_BYTES - 1024 - self.kitchen.len();
        let (payload, fitted) = report.fit(room);
        if fitted.chefs_omitted + fitted.load_failures_omitted > 0 {
            tracing::warn!(
                chefs_omitted = fitted.chefs_omitted,
                load_failures_omitted = fitted.load_failures_omitted,
                "KitchenStatusChef report cut to fit one hub message"
            );
        }
        let Ok(raw) = dumpling::validate_payload(&payload) else {
            return Ok(());
        };
        let creation_time = match self.mode {
            ClockMode::Replay => dumpling::epoch_seconds_from_nanos(now_ns),
            ClockMode::Live => dumpling::epoch_seconds_from_nanos(wall_ns()),
        };
        let json = dumpling::encode_dumpling(
            dumpling::KITCHEN_STATUS_CHEF,
            Some(&self.kitchen),
            creation_time,
            Driver::Interval,
            &raw,
        );
        self.stats.dumplings += 1;
        self.sink.send(dumpling::KITCHEN_STATUS_CHEF, json)
    }

    /// Validate, wrap and send one payload of chef `i`.
    fn emit(
        &mut self,
        i: usize,
        driver: Driver,
        at_ns: u64,
        payload: &str,
    ) -> Result<(), SinkError> {
        let clock = self.clock_ns();
        let slot = &mut self.chefs[i];
        let chef = &mut slot.chef;
        if payload.len() > chef.limits().max_dumpling_bytes {
            chef.stats.oversize += 1;
            let message = format!(
                "refused a {}-byte {driver} dumpling: over the {}-byte limit",
                payload.len(),
                chef.limits().max_dumpling_bytes
            );
            chef.warn_output("oversize", 1, &message);
            return Ok(());
        }
        // Budgets count only payloads under the size cap (an oversize one costs nothing).
        if let Err(which) = chef.output_budget.take(payload.len() as u64, clock) {
            chef.stats.over_budget += 1;
            let message = match which {
                OverBudget::PerCall => format!(
                    "dropped a {}-byte {driver} dumpling: over the output budget of {} bytes \
                     per call (--chef-output-bytes-per-call)",
                    payload.len(),
                    chef.limits().max_output_bytes_per_call
                ),
                OverBudget::PerSecond => format!(
                    "dropped a {}-byte {driver} dumpling: over the output budget of {} bytes \
                     per second (--chef-output-bytes-per-sec)",
                    payload.len(),
                    chef.limits().max_output_bytes_per_sec
                ),
            };
            chef.warn_output("over-budget", 1, &message);
            return Ok(());
        }
        let creation_time = match self.mode {
            ClockMode::Replay => dumpling::epoch_seconds_from_nanos(at_ns),
            ClockMode::Live => dumpling::epoch_seconds_from_nanos(wall_ns()),
        };
        // Checked and compacted straight into the envelope (one copy of the payload), then
        // the hub's own check (`dumpling::check_message_limits`, envelope included), so
        // what the kitchen sends is exactly what the hub accepts.
        let json = match chef.wrap_payload(Some(&self.kitchen), creation_time, driver, payload) {
            Ok(json) => json,
            Err(dumpling::WrapError::Invalid(e)) => {
                chef.stats.invalid += 1;
                chef.warn_output(
                    "invalid",
                    1,
                    &format!("dropped a {driver} payload that is not one JSON value: {e}"),
                );
                return Ok(());
            }
            Err(dumpling::WrapError::Limit(e @ dumpling::LimitError::TooBig { .. })) => {
                chef.stats.oversize += 1;
                chef.warn_output("oversize", 1, &format!("refused a {driver} dumpling: {e}"));
                return Ok(());
            }
            Err(dumpling::WrapError::Limit(e @ dumpling::LimitError::TooDeep { .. })) => {
                chef.stats.invalid += 1;
                chef.warn_output("invalid", 1, &format!("refused a {driver} dumpling: {e}"));
                return Ok(());
            }
        };
        chef.stats.dumplings += 1;
        self.stats.dumplings += 1;
        self.runtime[i].bytes += json.len() as u64;
        self.sink.send(chef.name(), json)
    }

    /// The kitchen's clock: capture time when replaying, wall time when live.
    pub fn clock_ns(&self) -> u64 {
        match self.mode {
            ClockMode::Replay => self.last_packet_ns.unwrap_or(0),
            ClockMode::Live => wall_ns(),
        }
    }
}

/// The number of a call's `made` dumplings chef may send (its per-call cap); the rest are
/// counted and reported (`what` names them, e.g. "packet dumplings from one call").
fn count_over_cap(chef: &mut LoadedChef, made: usize, what: &str) -> usize {
    let cap = chef.limits().max_dumplings_per_call;
    if made > cap {
        let over = (made - cap) as u64;
        chef.stats.over_cap += over;
        chef.warn_output(
            "over-cap",
            over,
            &format!("{made} {what}: over the cap of {cap}; {over} dropped"),
        );
    }
    cap
}

/// A chef's state after a call: quarantined, running (the call worked) or restarting (any
/// failed or skipped call means its instance is gone until the backoff passes).
fn run_state(ok: bool, quarantined: bool) -> ChefRunState {
    if quarantined {
        ChefRunState::Quarantined
    } else if ok {
        ChefRunState::Running
    } else {
        ChefRunState::Restarting
    }
}

/// Wall time, ns since the Unix epoch.
pub fn wall_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}
