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
//!   on [`Dispatcher::flush`] and, live, when a packet has waited 50 ms. A batch that
//!   such a chef mostly matches, arriving at its empty queue, skips it: the chef is called
//!   with the matching records and the batch's own arena
//!   ([`crate::dispatch::chef_queue::is_dense`]), no frame copied.
//! * Each chef has one lane ([`ChefLane`], [`lane`]): the chef, its interest, its queue
//!   and every counter kept about it; the dispatcher holds the lanes in a fixed order
//!   (sorted by name). A step (a batch, a poke, a flush of the queues, a delivery of flow
//!   events) runs every lane's calls, one after the other or side by side on worker threads
//!   (`--chef-threads`, [`workers`]); each lane touches only itself and keeps its checked,
//!   wrapped dumplings until the step is done, then the dispatcher sends them lane by lane
//!   in chef order. Determinism invariant: what is sent, and in which order, depends only
//!   on the packets, the pokes and the chefs' answers, never on which thread ran a lane or
//!   when; a selective chef's queue is called at points fixed by the packets and pokes
//!   alone (never by the wall clock in a replay). So a replay is byte-for-byte
//!   reproducible, on one thread or many.
//! * A replay does not run each step on every lane in turn: it collects the steps' lane
//!   operations in a window ([`window`]) and every lane runs all of them back to back,
//!   then the dumplings go out step by step, lane by lane in chef order (the same bytes in
//!   the same order). A good chef's calls then no longer start cold after every call of a
//!   slow chef.
//! * Interval pokes follow the capture clock when replaying (t0+p, t0+2p, ..., each fired
//!   before the first packet whose timestamp reaches it, plus a final poke at the last
//!   packet's time) and the wall clock when live (at start, then every p).
//! * Every payload is checked (`LoadedChef::wrap_payload`, size and count caps) as it is
//!   wrapped in its envelope, in the chef's lane (on its worker); bad ones are dropped and
//!   counted against the chef, never forwarded.
//! * Hot reload ([`crate::chefs::reload`]) adds and retires chefs only between batches
//!   ([`Dispatcher::add_chef`], [`Dispatcher::retire_chef`]): the pending batch is flushed
//!   first, so every other chef sees every packet, and a retired chef's final interval
//!   dumplings are sent before it is dropped.
//! * Per-chef counters live in the lanes ([`ChefCounters`], written only by the lane;
//!   [`crate::chef_host::ChefStats`], written only by the chef host); the kitchen status
//!   ([`crate::outputs::status`]), `/metrics` and the exit summary read them through
//!   [`ChefLane::status`]. With the status on, every poke also sends a
//!   `KitchenStatusChef` dumpling.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use capture::PacketRecord;
use dumpling::Driver;

use crate::outputs::crash_capsule::CrashCapsules;
use crate::outputs::status::{StatusDetail, StatusInputs, StatusReport};
pub use crate::parse::batch::{
    Batch, BatchBuilder, ClockMode, Step, UndecodedLinkTypes, MAX_BATCH_BYTES, MAX_BATCH_PACKETS,
    MAX_POKES_PER_GAP,
};
use crate::parse::defrag::{DefragLimits, DefragStats};
use crate::parse::packed_batch::PackedScratch;
use crate::parse::poke_clock::ClockAnomalies;

pub mod chef_queue;
pub mod duty;
mod flow_events;
pub mod interest;
pub mod lane;
mod streams;
pub mod window;
pub mod workers;

pub use crate::outputs::{DumplingSink, SinkError};
pub use interest::InterestMatcher;
use lane::LaneContext;
pub use lane::{ChefCounters, ChefLane, ChefSlot};
pub use streams::{MAX_CHUNKS_PER_CALL, MAX_STREAM_CALL_BYTES};
use window::{LaneOp, StepWindow, WindowContext};
use workers::LaneWorkers;

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
    /// Packets of link types the parser cannot decode, as of the last batch run.
    pub undecoded_link_types: UndecodedLinkTypes,
    /// Wall time, ns, the dispatcher spent running every lane (side by side on the chef
    /// threads when there are several). For benchmarks: in the rest of a replay's time the
    /// dispatcher works alone (stream stage, window building, sending) or waits for the
    /// reader, and the other chef threads wait.
    pub lanes_ns: u64,
    /// Of the rest, wall time, ns, of a replay window's early runs of the lanes that give
    /// stream verdicts (on the dispatcher thread; see
    /// [`crate::parse::stream_stage::VERDICT_LAG`]).
    pub verdict_lanes_ns: u64,
}

/// Most removed chefs whose counts a dispatcher keeps ([`Dispatcher::remove_chef`]).
pub const MAX_REMOVED_CHEFS: usize = 1024;

/// What is kept of a chef whose file was removed while it ran.
#[derive(Debug, Clone)]
pub struct RemovedChef {
    /// Where it came from (its file, escaped).
    pub source: String,
    /// The dispatcher's counters of it.
    pub counters: ChefCounters,
    /// The host's counters of it.
    pub stats: crate::chef_host::ChefStats,
}

/// The dispatcher: owns the chefs and runs [`Step`]s on them; it also has a
/// [`BatchBuilder`] for callers that feed packets on the same thread.
pub struct Dispatcher {
    kitchen: String,
    /// One lane per chef, in call order (sorted by name): the chef, its queue, its counters.
    lanes: Vec<ChefLane>,
    mode: ClockMode,
    /// Capture time of the last packet handed to the chefs (the replay clock).
    last_packet_ns: Option<u64>,
    builder: BatchBuilder,
    sink: Box<dyn DumplingSink>,
    stats: KitchenStats,
    /// Clock anomalies of builders on other threads ([`Dispatcher::add_clock_anomalies`]).
    other_clocks: ClockAnomalies,
    /// Kitchen-wide status inputs (capture, hub, load failures) and whether to emit it.
    status: StatusInputs,
    /// Live: the capture queue is backing up, so chefs over their share shed batches.
    behind: bool,
    /// TCP reassembly, while some chef asks for stream bytes ([`crate::parse::stream_stage`]).
    streams: Option<crate::parse::stream_stage::StreamStage>,
    /// A chef was retired and the stream stage and flow switch not yet updated for it
    /// ([`Dispatcher::retire_chef`]): done by the next add or step.
    chef_set_stale: bool,
    /// Memory bounds for reassembly (`--stream-*` flags).
    stream_limits: flowtrack::reassembly::ReassemblyLimits,
    /// Some lane's chef exports `stream-verdicts` and they are honoured (`streams`).
    stream_verdicts: bool,
    /// Honour `stream-verdicts` answers ([`Dispatcher::set_stream_verdicts`]).
    honour_verdicts: bool,
    /// The next lane's serial ([`ChefLane`]'s, for the stream stage's verdicts).
    next_lane_serial: u64,
    /// Chefs whose file was removed while running, by name: their counts, for the exit
    /// summary and for a chef of the same name added again, which goes on from them.
    removed: std::collections::BTreeMap<String, RemovedChef>,
    /// IP reassembly bounds of every builder this dispatcher makes.
    defrag_limits: DefragLimits,

    /// The packed form of the current batch, for packed chefs that take every packet
    /// (encoded once per batch, before the lanes run).
    packed: PackedScratch,
    /// Connection tracking, when configured ([`Dispatcher::set_flows`]).
    flows: Option<flow_events::DispatchFlows>,
    /// `--chef-crash-dir`: the input of crashing calls is saved ([`crate::outputs::crash_capsule`]).
    capsules: Option<Mutex<CrashCapsules>>,
    /// `--chef-threads` above 1: the workers that run the lanes of a step side by side.
    workers: Option<LaneWorkers>,
    /// Replay: lane operations not run yet; each lane runs them back to back ([`window`]).
    window: StepWindow,
    /// Merge a sparse chef's calls in a replay window (`lane::merge`; on unless a test or
    /// benchmark compares with unmerged calls, [`Dispatcher::set_merge_calls`]).
    merge_calls: bool,
    /// The default `--chef-threads`: the machine's cores, and the pool follows the chef
    /// count on hot reload ([`Dispatcher::follow_chef_count`]); `None`: a fixed count.
    follow_cores: Option<usize>,
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
        let lanes: Vec<ChefLane> = chefs
            .into_iter()
            .enumerate()
            .map(|(i, s)| {
                let mut lane = ChefLane::new(s, ChefCounters::default());
                lane.serial = i as u64;
                lane
            })
            .collect();
        let next_lane_serial = lanes.len() as u64;
        let builder = BatchBuilder::new(mode, poke_interval);
        let mut d = Dispatcher {
            status: StatusInputs::default(),
            kitchen: kitchen.into(),
            lanes,
            mode,
            last_packet_ns: None,
            builder,
            sink,
            stats: KitchenStats::default(),
            other_clocks: ClockAnomalies::default(),
            behind: false,
            streams: None,
            chef_set_stale: false,
            stream_limits: Default::default(),
            stream_verdicts: false,
            honour_verdicts: true,
            next_lane_serial,
            removed: Default::default(),
            defrag_limits: DefragLimits::default(),

            packed: PackedScratch::default(),
            flows: None,
            capsules: None,
            workers: None,
            window: StepWindow::default(),
            merge_calls: true,
            follow_cores: None,
        };
        d.update_stream_stage();
        d
    }

    /// Save the input of every chef call that traps, times out or runs out of memory
    /// (`--chef-crash-dir`); `None` turns it off.
    pub fn set_crash_capsules(&mut self, capsules: Option<CrashCapsules>) {
        self.capsules = capsules.map(Mutex::new);
    }

    /// Run the chefs of each step on `threads` threads, the dispatcher's own included
    /// (`--chef-threads`; 1, the default, runs them one after the other on the
    /// dispatcher's thread). The output is the same either way ([`crate::dispatch::workers`]).
    pub fn set_chef_threads(&mut self, threads: usize) -> std::io::Result<()> {
        self.follow_cores = None;
        self.start_chef_threads(threads)
    }

    fn start_chef_threads(&mut self, threads: usize) -> std::io::Result<()> {
        self.workers = match threads {
            0 | 1 => None,
            n => Some(LaneWorkers::new(n)?),
        };
        Ok(())
    }

    /// The `--chef-threads` default on a machine with `cores` cores: live, one thread per
    /// core but one ([`workers::default_threads`]); replaying, one per core
    /// ([`workers::default_replay_threads_for`]); at most one per chef, now and again after
    /// every hot reload that adds or retires a chef ([`Dispatcher::fit_chef_threads`]), so
    /// a kitchen started with 0 or 1 chefs does not stay on one thread.
    pub fn follow_chef_count(&mut self, cores: usize) -> std::io::Result<()> {
        self.follow_cores = Some(cores);
        self.fit_chef_threads()
    }

    /// Following the chef count ([`Dispatcher::follow_chef_count`]): start or stop chef
    /// threads so their number fits the chefs now loaded. Between steps only.
    pub fn fit_chef_threads(&mut self) -> std::io::Result<()> {
        let Some(cores) = self.follow_cores else {
            return Ok(());
        };
        let want = match self.mode {
            ClockMode::Live => workers::default_threads_for(cores, self.lanes.len()),
            ClockMode::Replay => workers::default_replay_threads_for(cores, self.lanes.len()),
        };
        if want != self.chef_threads() {
            self.start_chef_threads(want)?;
        }
        Ok(())
    }

    /// Threads running the chefs' calls (the dispatcher's own included).
    pub fn chef_threads(&self) -> usize {
        self.workers.as_ref().map_or(1, LaneWorkers::threads)
    }

    /// Whether a replay window merges a sparse chef's calls (on by default; the output is
    /// the same either way, see `dispatch/lane/merge.rs`): off, to compare with unmerged
    /// calls in a test or benchmark.
    pub fn set_merge_calls(&mut self, on: bool) {
        self.merge_calls = on;
    }

    /// The chefs' lanes, in call order (each lane's `chef`, `matcher`, counters).
    pub fn chefs(&self) -> &[ChefLane] {
        &self.lanes
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

    /// Each chef's share of the kitchen's time for shedding ([`crate::dispatch::duty`]): the
    /// max-min fair share ([`duty::fair_share`]) of [`duty::SHARED_FRACTION`] of the
    /// dispatcher's thread, or of its workers' threads, among the chefs that are called
    /// (not quarantined), by their recent use; never less than an equal part each. Only
    /// live: a replay never sheds.
    fn duty_share(&self) -> f64 {
        if self.mode != ClockMode::Live {
            return 1.0;
        }
        let now = Instant::now();
        let mut usage: Vec<f64> = self
            .lanes
            .iter()
            .filter(|s| !s.chef.is_quarantined())
            .map(|s| s.counters().duty.usage(now))
            .collect();
        // With workers, the kitchen has that many threads' time to share out (a chef
        // never gets more than one thread).
        let threads = self.workers.as_ref().map_or(1, LaneWorkers::threads) as f64;
        let equal = (threads / usage.len().max(1) as f64).min(1.0);
        duty::fair_share(threads * duty::SHARED_FRACTION, &mut usage).max(equal)
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

    /// Write out what the outputs still buffer (end of a run; see
    /// [`DumplingSink::flush_output`]).
    pub fn flush_output(&mut self) -> Result<(), SinkError> {
        self.sink.flush_output()
    }

    /// Hand the current batch to every interested packet chef.
    pub fn flush(&mut self) -> Result<(), SinkError> {
        self.builder.cut();
        self.drain()?;
        self.call_all_queued()?;
        self.flush_window()
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
            for batch in self.take_spare_batches() {
                self.builder.recycle(batch);
            }
        }
        Ok(())
    }

    /// Batches a replay window has finished with, emptied, for [`BatchBuilder::recycle`]
    /// (a windowed [`Dispatcher::run`] keeps its batch until the window has run).
    pub fn take_spare_batches(&mut self) -> Vec<Batch> {
        std::mem::take(&mut self.window.spares)
    }

    /// True when steps go through the replay window ([`window`]): in a replay.
    fn windowed(&self) -> bool {
        self.mode == ClockMode::Replay
    }

    /// Run the replay window's operations on every lane (each lane all of them back to
    /// back, lanes side by side on the workers), then send their dumplings operation by
    /// operation, lane by lane in chef order: the order of running each step on every lane
    /// in turn. A lane holding [`window::MAX_LANE_HELD_BYTES`] of unsent dumplings stops;
    /// what every lane has done is sent and the lanes go on.
    fn flush_window(&mut self) -> Result<(), SinkError> {
        if self.window.is_empty() {
            return Ok(());
        }
        let share = self.duty_share();
        let interval_ns = self.builder.interval_ns();
        let n = self.window.ops.len();
        loop {
            let wc = WindowContext {
                kitchen: &self.kitchen,
                interval_ns,
                share,
                capsules: self.capsules.as_ref(),
                merge_calls: self.merge_calls,
            };
            let w = &self.window;
            let started = Instant::now();
            match &self.workers {
                Some(workers) if self.lanes.len() > 1 => {
                    workers.run(&mut self.lanes, &|i, lane| lane.run_window(i, w, &wc))
                }
                _ => {
                    for (i, lane) in self.lanes.iter_mut().enumerate() {
                        lane.run_window(i, w, &wc);
                    }
                }
            }
            self.stats.lanes_ns += elapsed_ns(started);
            let done = self
                .lanes
                .iter()
                .map(ChefLane::window_done)
                .min()
                .unwrap_or(n);
            self.send_window_ops(done)?;
            if done >= n {
                break;
            }
        }
        // One lane slower than all the others together: the replay goes at its pace, so
        // the next window may hold more ([`window::MAX_SLOW_WINDOW_PACKETS`]).
        let total: u64 = self.lanes.iter().map(|l| l.window_ns).sum();
        let slowest = self.lanes.iter().map(|l| l.window_ns).max().unwrap_or(0);
        self.window.limit_packets = if self.lanes.len() > 1 && slowest > total - slowest {
            window::MAX_SLOW_WINDOW_PACKETS
        } else {
            window::MAX_WINDOW_PACKETS
        };
        for lane in &mut self.lanes {
            lane.reset_window();
        }
        self.window.clear();
        self.collect_verdicts();
        Ok(())
    }

    /// Send the dumplings of the window's operations up to `upto` (every lane has done
    /// them): operation by operation, lane by lane in chef order.
    fn send_window_ops(&mut self, upto: usize) -> Result<(), SinkError> {
        let count = upto.saturating_sub(self.window.sent);
        for k in 0..count {
            for lane in &mut self.lanes {
                for i in lane.op_dumplings(k) {
                    let json = lane.take_dumpling(i);
                    self.stats.dumplings += 1;
                    self.sink.send(lane.chef.name(), json)?;
                }
            }
        }
        for lane in &mut self.lanes {
            lane.drop_sent(count);
        }
        self.window.sent = upto;
        Ok(())
    }

    /// Replay, windowed: the dispatcher's part of [`Dispatcher::run_batch`] now (counters,
    /// clock, flow counters, stream reassembly), the lanes' part (flow events, the offer,
    /// stream chunks, in that order) as operations of the window.
    fn window_batch(&mut self, batch: Batch) -> Result<(), SinkError> {
        self.note_flow_counters(&batch);
        // Flow events go to the chefs only with tracking on and some chef asking for them
        // (as `deliver_flow_events`).
        let events = self.flows.is_some()
            && self
                .lanes
                .iter()
                .any(|l| flow_events::wants_events(&l.chef));
        let wit = |ev: &[flowtrack::table::FlowEvent]| -> Vec<_> {
            if events {
                ev.iter().map(crate::parse::flow_stage::wit_event).collect()
            } else {
                Vec::new()
            }
        };
        let flow_wit = (wit(&batch.flows.started), wit(&batch.flows.ended));
        // Started events get the clock before this batch (as in `run_batch`).
        let before_ns = self.clock_ns();
        let last_ns = batch.last_timestamp_ns();
        let mut packed = None;
        if let Some(last_ns) = last_ns {
            self.stats.packets += batch.len() as u64;
            self.stats.batches += 1;
            self.last_packet_ns = Some(last_ns);
            // Encoded once per batch for the packed chefs that take every packet, as
            // `with_lanes` does for a step.
            if let Some(slots) = self.packed_batch_slots() {
                let mut buf = self.window.packed_buffer();
                crate::parse::packed_batch::encode_as(
                    &batch.packets,
                    &batch.arena,
                    &mut buf,
                    slots,
                );
                packed = Some(buf);
            }
        }
        let now_ns = self.clock_ns();
        self.window_before_streams()?;
        let streams = self.window_streams(&batch);
        let has_streams = streams.is_some();
        let chunks = |n: usize| n.div_ceil(flow_events::MAX_EVENTS_PER_CALL);
        let (started, ended) = (chunks(flow_wit.0.len()), chunks(flow_wit.1.len()));
        let i = self.window.push_batch(batch, packed, flow_wit, streams);
        self.window.push_flow_ops(i, false, started, before_ns);
        if last_ns.is_some() {
            self.window.push_op(LaneOp::Offer(i), now_ns);
        }
        if has_streams {
            self.window.push_op(LaneOp::Streams(i), now_ns);
        }
        self.window.push_flow_ops(i, true, ended, now_ns);
        if self.window.is_full() {
            self.flush_window()?;
        }
        Ok(())
    }

    /// Replay, windowed: add a lane operation at the current kitchen clock.
    fn window_op(&mut self, op: LaneOp) -> Result<(), SinkError> {
        let now_ns = self.clock_ns();
        self.window.push_op(op, now_ns);
        if self.window.is_full() {
            self.flush_window()?;
        }
        Ok(())
    }

    /// Run one step (from [`BatchBuilder::next_step`], possibly on another thread; steps
    /// must come in the order the builder made them). A packet batch is handed back,
    /// emptied, for [`BatchBuilder::recycle`].
    pub fn run(&mut self, step: Step) -> Result<Option<Batch>, SinkError> {
        if self.chef_set_stale {
            self.chef_set_changed();
        }
        match step {
            Step::Packets(mut batch) => {
                if let Some(s) = batch.defrag_stats() {
                    self.stats.ip_reassembly = *s;
                }
                if let Some(u) = batch.undecoded_link_types() {
                    self.stats.undecoded_link_types.clone_from(u);
                }
                if self.windowed() {
                    return self.window_batch(batch).map(|()| None);
                }
                self.flush_window()?;
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
        self.offer_batch(batch)?;
        self.run_streams(batch)?;
        self.flows_ended(batch)
    }

    /// Every lane takes `batch` ([`ChefLane::offer`]), then every lane's dumplings are sent
    /// in chef order.
    fn offer_batch(&mut self, batch: &Batch) -> Result<(), SinkError> {
        self.run_lanes(Some(batch), |_, lane, ctx| lane.offer(batch, ctx))
    }

    /// Run `f` on every lane (`batch`: the step's batch, whose packed form is encoded once
    /// first when some packed chef takes it whole), then send every lane's dumplings in
    /// chef order.
    fn run_lanes(
        &mut self,
        batch: Option<&Batch>,
        f: impl Fn(usize, &mut ChefLane, &LaneContext<'_>) + Sync,
    ) -> Result<(), SinkError> {
        let started = Instant::now();
        self.with_lanes(batch, |lanes, ctx, workers| match workers {
            Some(w) if lanes.len() > 1 => w.run(lanes, &|i, lane| f(i, lane, ctx)),
            _ => {
                for (i, lane) in lanes.iter_mut().enumerate() {
                    f(i, lane, ctx);
                }
            }
        });
        self.stats.lanes_ns += elapsed_ns(started);
        self.send_ready()
    }

    /// Whether a batch needs its packed form (some packed chef takes every packet), and
    /// then whether its DNS slots are filled (some such chef reads them; see
    /// [`crate::parse::packed_batch::Slots`]). Encoded once for all of them.
    fn packed_batch_slots(&self) -> Option<crate::parse::packed_batch::Slots> {
        let mut lanes = self
            .lanes
            .iter()
            .filter(|l| l.wants_packed_batch())
            .peekable();
        lanes.peek()?;
        let filled = lanes.any(ChefLane::reads_packed_slots);
        Some(crate::parse::packed_batch::Slots::filled_if(filled))
    }

    /// Hand the lanes, in chef order, and the context of this step's calls to `f` (the
    /// one place that context is made).
    fn with_lanes<R>(
        &mut self,
        batch: Option<&Batch>,
        f: impl FnOnce(&mut [ChefLane], &LaneContext<'_>, Option<&LaneWorkers>) -> R,
    ) -> R {
        let share = self.duty_share();
        let packed_batch = match (batch, self.packed_batch_slots()) {
            (Some(b), Some(slots)) => {
                self.packed.begin_batch(&b.packets, slots);
                Some(self.packed.headers(&b.packets, &b.arena, slots))
            }
            _ => None,
        };
        let ctx = LaneContext {
            kitchen: &self.kitchen,
            mode: self.mode,
            now_ns: clock_ns(self.mode, self.last_packet_ns),
            interval_ns: self.builder.interval_ns(),
            share,
            behind: self.behind,
            started: Instant::now(),
            packed_batch,
            capsules: self.capsules.as_ref(),
        };
        let r = f(&mut self.lanes, &ctx, self.workers.as_ref());
        self.packed.end_batch();
        r
    }

    /// Send every lane's waiting dumplings, lane by lane in chef order.
    pub(super) fn send_ready(&mut self) -> Result<(), SinkError> {
        for lane in &mut self.lanes {
            let (name, ready) = lane.take_ready();
            for json in ready {
                self.stats.dumplings += 1;
                self.sink.send(name, json)?;
            }
        }
        Ok(())
    }

    /// Call every chef whose queue holds packets (before a poke, at the end, around a
    /// reload, and live when the capture goes quiet).
    fn call_all_queued(&mut self) -> Result<(), SinkError> {
        if self.windowed() {
            // The lanes' queues are as of the window's last run: each lane checks its own.
            return self.window_op(LaneOp::CallQueued);
        }
        self.flush_window()?;
        if !self.lanes.iter().any(ChefLane::has_queued) {
            return Ok(());
        }
        self.run_lanes(None, |_, lane, ctx| {
            if lane.has_queued() {
                lane.call_queued(ctx);
            }
        })
    }

    /// Poke every interval chef (after flushing pending packets).
    pub fn poke(&mut self, now_ns: u64) -> Result<(), SinkError> {
        self.flush()?;
        self.poke_chefs(now_ns)?;
        self.flush_window()
    }

    /// Poke every interval chef, then send the kitchen status if it is on.
    fn poke_chefs(&mut self, now_ns: u64) -> Result<(), SinkError> {
        // Every packet before the poke is handled before it (and counted in the status).
        self.call_all_queued()?;
        self.stats.pokes += 1;
        if self.windowed() {
            self.window_op(LaneOp::Poke(now_ns))?;
            if self.status.emit {
                // The status reads every lane's counters as of this poke.
                self.flush_window()?;
            }
        } else {
            self.run_lanes(None, |_, lane, ctx| lane.poke(now_ns, ctx))?;
        }
        if self.status.emit {
            self.emit_status(now_ns)?;
        }
        Ok(())
    }

    /// Add a chef between batches (hot reload): the pending batch is flushed first, so the
    /// new chef sees packets from the next batch on; it is placed in name order.
    pub fn add_chef(&mut self, slot: ChefSlot) -> Result<(), SinkError> {
        self.add_reloaded_chef(slot, None)
    }

    /// [`Dispatcher::add_chef`] for a new version of a chef, taking over the counters of
    /// the version it replaces (hot reload: [`ChefCounters::for_next_version`]).
    pub fn add_reloaded_chef(
        &mut self,
        slot: ChefSlot,
        counters: Option<ChefCounters>,
    ) -> Result<(), SinkError> {
        self.flush()?;
        let mut slot = slot;
        // A chef removed earlier and now back (under any file) goes on from its counts.
        let counters = match (counters, self.removed.remove(slot.chef.name())) {
            (Some(c), _) => c,
            (None, Some(gone)) => {
                slot.chef.stats = gone.stats;
                gone.counters.for_next_version()
            }
            (None, None) => ChefCounters::default(),
        };
        let at = self
            .lanes
            .partition_point(|s| s.chef.name() < slot.chef.name());
        let mut lane = ChefLane::new(slot, counters);
        lane.serial = self.next_lane_serial;
        self.next_lane_serial += 1;
        self.lanes.insert(at, lane);
        self.chef_set_changed();
        Ok(())
    }

    /// The chefs changed: the stream stage and the flow switch follow what they ask for.
    fn chef_set_changed(&mut self) {
        self.chef_set_stale = false;
        self.update_stream_stage();
        self.update_flow_switch();
    }

    /// [`Dispatcher::retire_chef`] for a chef that stops for good (its file removed): its
    /// counts are kept by name ([`Dispatcher::removed_chefs`]), and a chef of that name
    /// added later goes on from them, so the totals never lose what it saw. At most
    /// [`MAX_REMOVED_CHEFS`] names are kept.
    pub fn remove_chef(&mut self, i: usize) -> Result<ChefSlot, SinkError> {
        let (slot, counters) = self.retire_chef(i)?;
        self.chef_set_changed();
        let name = slot.chef.name().to_owned();
        if self.removed.len() < MAX_REMOVED_CHEFS || self.removed.contains_key(&name) {
            let removed = RemovedChef {
                source: slot.chef.source().to_string(),
                counters,
                stats: slot.chef.stats.clone(),
            };
            self.removed.insert(name, removed);
        }
        Ok(slot)
    }

    /// Chefs removed while running and not added again, by name.
    pub fn removed_chefs(&self) -> impl Iterator<Item = (&str, &RemovedChef)> {
        self.removed.iter().map(|(n, r)| (n.as_str(), r))
    }

    /// Take chef `i` out between batches (hot reload): the pending batch is flushed (so it
    /// sees every packet pushed so far), then it gets a final `on-interval` poke (if it is
    /// an interval chef and not quarantined) whose dumplings are sent before it is removed.
    /// Returns the chef and its counters.
    ///
    /// The stream stage and the flow switch are updated by the next
    /// [`Dispatcher::add_reloaded_chef`] or step, not here: a chef replaced by its new
    /// version (retire, then add) must not turn them off in between, as that drops every
    /// tracked flow and reassembled stream (the reading thread may parse a packet in that
    /// moment), so the new version would meet its connections picked up mid-stream, or with
    /// client and server swapped.
    pub fn retire_chef(&mut self, i: usize) -> Result<(ChefSlot, ChefCounters), SinkError> {
        self.flush()?;
        if self.lanes[i].is_poked() {
            let now = self.clock_ns();
            self.run_lanes(None, |j, lane, ctx| {
                if j == i {
                    lane.poke_one(now, ctx);
                }
            })?;
        }
        let out = self.lanes.remove(i).into_parts();
        self.chef_set_stale = true;
        Ok(out)
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
            .lanes
            .iter()
            .map(|lane| {
                let source = lane.chef.source().to_string();
                let load_failures = self
                    .status
                    .load_failures
                    .get(&source)
                    .map_or(0, |f| f.count);
                (
                    lane.chef.name().to_owned(),
                    lane.status(full, load_failures),
                )
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
            undecoded_link_types: crate::outputs::status::traffic::undecoded_link_types(
                &self.stats.undecoded_link_types,
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

    /// The kitchen's clock: capture time when replaying, wall time when live.
    pub fn clock_ns(&self) -> u64 {
        clock_ns(self.mode, self.last_packet_ns)
    }
}

/// The kitchen's clock in `mode`: the last packet's capture time when replaying (0 before
/// the first), wall time when live.
fn clock_ns(mode: ClockMode, last_packet_ns: Option<u64>) -> u64 {
    match mode {
        ClockMode::Replay => last_packet_ns.unwrap_or(0),
        ClockMode::Live => wall_ns(),
    }
}

/// Wall time, ns since the Unix epoch.
pub fn wall_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Nanoseconds since `started` (saturating; for the lane timings of [`KitchenStats`] and
/// the replay's reader waits).
pub(crate) fn elapsed_ns(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX)
}
