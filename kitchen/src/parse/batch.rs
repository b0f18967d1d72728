//! The first half of the kitchen's core loop: captured packets in, [`Step`]s out.
//!
//! A [`BatchBuilder`] parses each packet into a WIT record (plus one shared byte arena),
//! groups them into batches of up to [`MAX_BATCH_PACKETS`], and turns the poke schedule
//! into pokes placed between the batches: in replay the capture clock drives it (t0+p,
//! t0+2p, ..., each poke placed before the first packet whose timestamp reaches it); live,
//! the wall clock (at start, then every p). The second half, running the chefs on those
//! steps in order, is [`crate::dispatch::Dispatcher`].
//!
//! The split is what lets a replay use two cores ([`crate::run::replay`]): reading and parsing
//! on one thread, chefs on the other, with the steps passed between them in order, so
//! the output is the same as a single-threaded run, byte for byte.

use std::collections::VecDeque;
use std::time::Duration;

use capture::PacketRecord;

use crate::chef_host::WirePacket;
use crate::parse::defrag::{DefragLimits, DefragStats, Defragmenter};
use crate::parse::flow_stage::{FlowBatch, FlowStage};
use crate::parse::packet::{parse_push_reassembling, PacketClass};
use crate::parse::poke_clock::{ClockAnomalies, DuePokes, PokeClock};

/// Packets per chef call.
pub const MAX_BATCH_PACKETS: usize = 256;
/// Arena bytes per batch: a batch is cut early rather than grow past this (by more than one
/// reassembled IP datagram, at most 64 KiB), so a chef's arguments stay small next to its
/// memory cap even with 256 KiB jumbo captures.
pub const MAX_BATCH_BYTES: usize = 1 << 20;
pub use crate::parse::poke_clock::MAX_POKES_PER_GAP;

/// Whose clock the kitchen follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockMode {
    /// Replaying a file: capture timestamps drive pokes and `creation_time`.
    Replay,
    /// Capturing live: wall time.
    Live,
}

/// Parsed packets for one chef call: WIT records whose spans point into one byte arena,
/// and each packet's class for interest matching.
#[derive(Default)]
pub struct Batch {
    pub(crate) packets: Vec<WirePacket>,
    pub(crate) classes: Vec<PacketClass>,
    pub(crate) arena: Vec<u8>,
    /// Flow events of this batch (only while some chef asks for flows).
    pub(crate) flows: FlowBatch,
    /// The builder's IP reassembly counters when this batch was cut, when they changed
    /// since its last batch (boxed: rare, and a `Step` stays small).
    pub(crate) defrag: Option<Box<DefragStats>>,
}

impl Batch {
    /// Number of packets.
    pub fn len(&self) -> usize {
        self.packets.len()
    }

    /// True when the batch holds no packet.
    pub fn is_empty(&self) -> bool {
        self.packets.is_empty()
    }

    /// The builder's IP reassembly counters when this batch was cut, if they changed since
    /// its previous batch (so the dispatcher sees them in step with the packets it ran).
    pub fn defrag_stats(&self) -> Option<&DefragStats> {
        self.defrag.as_deref()
    }

    /// The flow table's counters when this batch was cut (while flows are tracked).
    pub fn flow_counters(&self) -> Option<crate::parse::flow_stage::FlowCounters> {
        self.flows.counters
    }

    /// Capture time of the last packet, ns.
    pub fn last_timestamp_ns(&self) -> Option<u64> {
        self.packets.last().map(|p| p.0.timestamp_ns)
    }

    /// Append one parsed packet (and track its flow when a stage is given).
    fn push(
        &mut self,
        record: &PacketRecord<'_>,
        flows: Option<&mut FlowStage>,
        defrag: &mut Defragmenter,
    ) {
        let class =
            parse_push_reassembling(record, &mut self.arena, &mut self.packets, Some(defrag));
        self.classes.push(class);
        if let Some(stage) = flows {
            stage.note(&mut self.packets, &mut self.flows);
        }
    }

    /// Empty it, keeping the allocations.
    pub(crate) fn clear(&mut self) {
        self.packets.clear();
        self.classes.clear();
        self.arena.clear();
        self.flows.clear();
        self.defrag = None;
    }
}

/// One unit of work for the chefs, in capture order.
pub enum Step {
    /// Hand these packets to every interested packet chef.
    Packets(Batch),
    /// Poke every interval chef at this kitchen time (ns since the Unix epoch).
    Poke {
        /// Kitchen clock of the poke.
        at_ns: u64,
        /// Grid points skipped just before this one (a collapsed gap, see [`crate::parse::poke_clock`]).
        collapsed: u64,
    },
}

/// Builds [`Step`]s from captured packets and the clock.
pub struct BatchBuilder {
    mode: ClockMode,
    clock: PokeClock,
    batch: Batch,
    /// Emptied batches handed back by the chef side, reused to avoid allocating.
    spare: Vec<Batch>,
    ready: VecDeque<Step>,
    /// Connection tracking, when the kitchen may need it ([`crate::parse::flow_stage`]).
    flows: Option<FlowStage>,
    /// IP reassembly ([`crate::parse::defrag`]), on by default.
    defrag: Defragmenter,
    /// Its counters as the last batch carried them.
    defrag_sent: DefragStats,
}

impl BatchBuilder {
    /// A builder poking every `poke_interval` on `mode`'s clock.
    pub fn new(mode: ClockMode, poke_interval: Duration) -> Self {
        let clock = match mode {
            ClockMode::Replay => PokeClock::replay(poke_interval),
            ClockMode::Live => PokeClock::live(poke_interval),
        };
        BatchBuilder {
            mode,
            clock,
            batch: Batch::default(),
            spare: Vec::new(),
            ready: VecDeque::new(),
            flows: None,
            defrag: Defragmenter::new(DefragLimits::default()),
            defrag_sent: DefragStats::default(),
        }
    }

    /// Reassemble IP fragments within `limits` (`max_bytes` 0: off).
    pub fn set_defrag_limits(&mut self, limits: DefragLimits) {
        self.defrag = Defragmenter::new(limits);
    }

    /// Track flows on this builder's packets (while the stage's switch is on).
    pub fn set_flow_stage(&mut self, stage: FlowStage) {
        self.flows = Some(stage);
    }

    /// End of input: end every tracked flow (`end-of-capture`) and queue the batch.
    pub fn end_flows(&mut self) {
        if let Some(f) = self.flows.as_mut() {
            f.end_all(&mut self.batch.packets, &mut self.batch.flows);
        }
        self.cut();
    }

    /// The poke interval, ns.
    pub fn interval_ns(&self) -> u64 {
        self.clock.interval_ns()
    }

    /// When the next poke is due (kitchen clock, ns), once the clock has started.
    pub fn next_poke_ns(&self) -> Option<u64> {
        self.clock.next_ns()
    }

    /// The interval clock's anomalies so far (gaps collapsed, restarts, ...).
    pub fn clock_anomalies(&self) -> ClockAnomalies {
        self.clock.anomalies()
    }

    /// Packets in the batch being built.
    pub fn pending(&self) -> usize {
        self.batch.len()
    }

    /// Live mode: the first poke, straight away (as the original's poke thread does).
    pub fn start_live(&mut self, now_ns: u64) {
        self.cut();
        self.ready.push_back(Step::Poke {
            at_ns: now_ns,
            collapsed: 0,
        });
        self.clock.start(now_ns);
    }

    /// Take one captured packet (replay: first places the pokes due before it).
    pub fn push(&mut self, record: &PacketRecord<'_>) {
        if self.mode == ClockMode::Replay {
            let due = self.clock.packet(record.timestamp_ns);
            self.queue_pokes(due);
        }
        if !self.batch.is_empty() && self.batch.arena.len() + record.data.len() > MAX_BATCH_BYTES {
            self.cut();
        }
        self.batch
            .push(record, self.flows.as_mut(), &mut self.defrag);
        if self.batch.len() >= MAX_BATCH_PACKETS {
            self.cut();
        }
    }

    /// Queue every poke due at or before `now_ns` (each after the packets before it).
    pub fn advance_clock(&mut self, now_ns: u64) {
        if let Some(f) = self.flows.as_mut() {
            f.advance(now_ns, &mut self.batch.packets, &mut self.batch.flows);
        }
        let due = self.clock.advance(now_ns);
        self.queue_pokes(due);
    }

    /// Queue `due` pokes after the batch being built (at most `MAX_POKES_PER_GAP`).
    fn queue_pokes(&mut self, due: Option<DuePokes>) {
        let Some(due) = due else { return };
        self.cut();
        let mut collapsed = due.collapsed;
        for at_ns in due.times() {
            self.ready.push_back(Step::Poke { at_ns, collapsed });
            collapsed = 0;
        }
    }

    /// Queue the batch being built (if it has packets), e.g. when the input goes quiet.
    pub fn cut(&mut self) {
        if let Some(f) = self.flows.as_mut() {
            // The batch leaves: its noted packets get their flows now.
            f.flush(&mut self.batch.packets, &mut self.batch.flows);
            f.stamp(&mut self.batch.flows);
        }
        if self.batch.is_empty() && self.batch.flows.no_events() {
            return;
        }
        let defrag = self.defrag.stats();
        if defrag != self.defrag_sent {
            self.defrag_sent = defrag;
            self.batch.defrag = Some(Box::new(defrag));
        }
        let fresh = self.spare.pop().unwrap_or_default();
        self.ready
            .push_back(Step::Packets(std::mem::replace(&mut self.batch, fresh)));
    }

    /// The next step ready for the chefs, oldest first.
    pub fn next_step(&mut self) -> Option<Step> {
        self.ready.pop_front()
    }

    /// Steps queued and not yet taken.
    pub fn ready(&self) -> usize {
        self.ready.len()
    }

    /// Give back a batch the chefs are done with, for reuse.
    pub fn recycle(&mut self, mut batch: Batch) {
        // A few spares cover the batches in flight; more would only hold memory.
        if self.spare.len() < 8 {
            batch.clear();
            self.spare.push(batch);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(ts: u64, data: &[u8]) -> PacketRecord<'_> {
        PacketRecord {
            timestamp_ns: ts,
            link_type: 9999,
            interface_index: 0,
            original_len: data.len() as u32,
            data,
        }
    }

    /// (packets per batch | poke time) in order.
    fn drain(b: &mut BatchBuilder) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(s) = b.next_step() {
            out.push(match s {
                Step::Packets(batch) => {
                    let n = batch.len();
                    b.recycle(batch);
                    format!("{n}p")
                }
                Step::Poke { at_ns, collapsed } => format!("poke@{at_ns}+{collapsed}"),
            });
        }
        out
    }

    #[test]
    fn replay_pokes_sit_between_the_packets_around_them() {
        let mut b = BatchBuilder::new(ClockMode::Replay, Duration::from_nanos(10));
        for ts in [0, 3, 9, 10, 25] {
            b.push(&record(ts, b"x"));
        }
        b.cut();
        assert_eq!(drain(&mut b), ["3p", "poke@10+0", "1p", "poke@20+0", "1p"]);
        assert_eq!(b.next_poke_ns(), Some(30));
    }

    #[test]
    fn batches_are_cut_at_the_packet_and_byte_caps() {
        let mut b = BatchBuilder::new(ClockMode::Live, Duration::from_secs(1));
        for _ in 0..MAX_BATCH_PACKETS + 1 {
            b.push(&record(0, b"x"));
        }
        assert_eq!(b.pending(), 1);
        let big = vec![0u8; MAX_BATCH_BYTES / 2 + 1];
        b.push(&record(0, &big));
        b.push(&record(0, &big));
        b.cut();
        let steps = drain(&mut b);
        assert_eq!(
            steps,
            [format!("{MAX_BATCH_PACKETS}p"), "2p".into(), "1p".into()]
        );
    }

    #[test]
    fn a_long_gap_collapses_into_one_poke() {
        let mut b = BatchBuilder::new(ClockMode::Replay, Duration::from_nanos(1));
        b.push(&record(0, b"x"));
        b.push(&record(5000, b"x"));
        let steps = drain(&mut b);
        assert_eq!(steps[0], "1p");
        assert_eq!(steps[1], "poke@5000+4999");
        assert_eq!(steps.len(), 2, "{steps:?}");
    }
}
