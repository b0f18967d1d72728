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
use crate::parse::packet::{dlt, parse_push_reassembling, PacketClass};
use crate::parse::poke_clock::{ClockAnomalies, DuePokes, PokeClock};

/// Packets per chef call.
pub const MAX_BATCH_PACKETS: usize = 256;
/// Arena bytes per batch: a batch is cut early rather than grow past this (by more than one
/// reassembled IP datagram, at most 64 KiB), so a chef's arguments stay small next to its
/// memory cap even with 256 KiB jumbo captures.
pub const MAX_BATCH_BYTES: usize = 1 << 20;
pub use crate::parse::poke_clock::MAX_POKES_PER_GAP;

/// Emptied batches a builder keeps for reuse, at most: a replay holds up to
/// [`crate::dispatch::window::MAX_WINDOW_BATCHES`] batches in its window (a slow lane's
/// window, cut into small batches by pokes), plus the ones in the reader's outbox and the
/// channel. With 8 kept, the rest were dropped and the reader grew fresh ones from empty,
/// packet by packet (mixed corpus: 10 290 of 16 185 batches made new; `realloc` under
/// `parse_push_reassembling` 2.8 % of the run's samples).
pub const MAX_SPARE_BATCHES: usize = 160;
/// Bytes the kept batches may hold on to together (arena and records capacity,
/// [`Batch::kept_bytes`]): the spares never hold more than this, however many batches a
/// window held.
pub const MAX_SPARE_BYTES: usize = 16 << 20;
/// Arena bytes one kept batch may hold on to: what a batch can reach (a batch is cut at
/// [`MAX_BATCH_BYTES`], exceeded by at most one frame and one reassembled datagram), so a
/// reused batch never grows again; [`MAX_SPARE_BYTES`] bounds the spares together.
pub const MAX_KEPT_ARENA_BYTES: usize = 2 << 20;
/// Flow events a kept batch's event lists may hold on to (a batch that ended many idle
/// flows at once gives the rest back).
pub const MAX_KEPT_FLOW_EVENTS: usize = 1024;

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
    /// The builder's counts of packets of undecoded link types when this batch was cut,
    /// when a packet of one came since its last batch (boxed, as `defrag`).
    pub(crate) undecoded: Option<Box<UndecodedLinkTypes>>,
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

    /// The builder's counts of packets of undecoded link types when this batch was cut, if
    /// they changed since its previous batch.
    pub fn undecoded_link_types(&self) -> Option<&UndecodedLinkTypes> {
        self.undecoded.as_deref()
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
        self.undecoded = None;
    }

    /// Empty it for reuse: its allocations are kept up to [`MAX_KEPT_ARENA_BYTES`] of
    /// arena, [`MAX_BATCH_PACKETS`] records and [`MAX_KEPT_FLOW_EVENTS`] flow events, so a
    /// spare never keeps an outsized batch's memory.
    pub(crate) fn clear_for_reuse(&mut self) {
        self.clear();
        self.arena.shrink_to(MAX_KEPT_ARENA_BYTES);
        // Records: a batch is cut at MAX_BATCH_PACKETS, so this only trims what doubling
        // left over.
        self.packets.shrink_to(MAX_BATCH_PACKETS);
        self.classes.shrink_to(MAX_BATCH_PACKETS);
        self.flows.started.shrink_to(MAX_KEPT_FLOW_EVENTS);
        self.flows.ended.shrink_to(MAX_KEPT_FLOW_EVENTS);
    }

    /// Give this empty batch room for `packets` records and `arena` bytes (within the kept
    /// caps) where it has less: a new allocation, not `realloc`, which would copy the old
    /// capacity's bytes although none is in use.
    fn make_room(&mut self, packets: usize, arena: usize) {
        debug_assert!(self.is_empty() && self.arena.is_empty());
        let packets = packets.min(MAX_BATCH_PACKETS);
        let arena = arena.min(MAX_KEPT_ARENA_BYTES);
        if self.arena.capacity() < arena {
            self.arena = Vec::with_capacity(arena);
        }
        if self.packets.capacity() < packets {
            self.packets = Vec::with_capacity(packets);
            self.classes = Vec::with_capacity(packets);
        }
    }

    /// Heap bytes this batch holds (arena, records and classes capacity): what keeping it
    /// as a spare costs.
    pub(crate) fn kept_bytes(&self) -> usize {
        self.arena.capacity()
            + self.packets.capacity() * std::mem::size_of::<WirePacket>()
            + self.classes.capacity() * std::mem::size_of::<PacketClass>()
            + (self.flows.started.capacity() + self.flows.ended.capacity())
                * std::mem::size_of::<flowtrack::table::FlowEvent>()
    }

    /// An empty batch with room for `packets` records and `arena` bytes (each at most what
    /// a kept batch may hold), so that it does not grow by doubling from nothing.
    fn with_capacity(packets: usize, arena: usize) -> Self {
        Batch {
            packets: Vec::with_capacity(packets.min(MAX_BATCH_PACKETS)),
            classes: Vec::with_capacity(packets.min(MAX_BATCH_PACKETS)),
            arena: Vec::with_capacity(arena.min(MAX_KEPT_ARENA_BYTES)),
            ..Batch::default()
        }
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
    /// Their [`Batch::kept_bytes`], together (at most [`MAX_SPARE_BYTES`]).
    spare_bytes: usize,
    ready: VecDeque<Step>,
    /// Connection tracking, when the kitchen may need it ([`crate::parse::flow_stage`]).
    flows: Option<FlowStage>,
    /// IP reassembly ([`crate::parse::defrag`]), on by default.
    defrag: Defragmenter,
    /// Its counters as the last batch carried them.
    defrag_sent: DefragStats,
    /// Records and arena bytes of the recent batches cut (the largest, decaying by 1/16 a
    /// batch, so a poke's tiny batch does not size the next ones): a batch starts with that
    /// much room.
    size_hint: (usize, usize),
    /// Packets of link types the parser cannot decode, per type.
    undecoded: UndecodedLinkTypes,
    /// Whether a packet of one came since the last batch was cut.
    undecoded_changed: bool,
}

/// Packets of link types the parser cannot decode, counted per link type, each type logged
/// once when its first packet comes (live and replay: every packet goes through
/// [`BatchBuilder::push`]). Without it, a capture of 802.11 or PPP frames gave the protocol
/// chefs nothing and no line said why. At most [`UndecodedLinkTypes::MAX`] types are told
/// apart (a pcapng file may name a new link type per interface); packets of further ones
/// are counted together in [`UndecodedLinkTypes::others`], and one line says so. The
/// counts reach the status report (`undecoded_link_types`), `/metrics` and the exit
/// summary, carried by the batches as the IP reassembly counters are.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct UndecodedLinkTypes {
    /// (link type, packets), in the order their first packets came.
    counts: Vec<(u32, u64)>,
    /// Packets of link types past the first [`UndecodedLinkTypes::MAX`].
    others: u64,
}

impl UndecodedLinkTypes {
    /// Most link types counted apart (and logged).
    pub const MAX: usize = 32;

    /// Note a packet of `link_type`; true when it is one the parser cannot decode.
    #[inline]
    pub fn note(&mut self, link_type: u32) -> bool {
        if dlt::decoded(link_type) {
            return false;
        }
        self.note_undecoded(link_type);
        true
    }

    #[cold]
    fn note_undecoded(&mut self, link_type: u32) {
        if let Some((_, n)) = self.counts.iter_mut().find(|(t, _)| *t == link_type) {
            *n += 1;
            return;
        }
        if self.counts.len() >= Self::MAX {
            if self.others == 0 {
                tracing::warn!(
                    "packets of more than {} link types the parser cannot decode; further ones \
                     are counted together and not logged",
                    Self::MAX
                );
            }
            self.others += 1;
            return;
        }
        self.counts.push((link_type, 1));
        let name = dlt::name(link_type).map_or_else(String::new, |n| format!(" (DLT_{n})"));
        tracing::warn!(
            link_type,
            "link type {link_type}{name} is not decoded: its packets reach the chefs as \
             undecoded frames (link layer `unsupported`, class other), so only chefs taking \
             every packet or this link type see them, no protocol chef (logged once per link \
             type; counted in the status and the exit summary)"
        );
    }

    /// (link type, packets) for each link type told apart, in the order their first
    /// packets came.
    pub fn counts(&self) -> &[(u32, u64)] {
        &self.counts
    }

    /// Packets of the link types past the first [`UndecodedLinkTypes::MAX`].
    pub fn others(&self) -> u64 {
        self.others
    }

    /// Packets of undecoded link types, all together.
    pub fn total(&self) -> u64 {
        self.counts
            .iter()
            .map(|(_, n)| n)
            .fold(self.others, |a, &n| a.saturating_add(n))
    }
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
            spare_bytes: 0,
            ready: VecDeque::new(),
            flows: None,
            defrag: Defragmenter::new(DefragLimits::default()),
            defrag_sent: DefragStats::default(),
            size_hint: (0, 0),
            undecoded: UndecodedLinkTypes::default(),
            undecoded_changed: false,
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
        if self.undecoded.note(record.link_type) {
            self.undecoded_changed = true;
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
        if self.undecoded_changed {
            self.undecoded_changed = false;
            self.batch.undecoded = Some(Box::new(self.undecoded.clone()));
        }
        let decay = |hint: usize, len: usize| len.max(hint - hint / 16);
        self.size_hint = (
            decay(self.size_hint.0, self.batch.packets.len()),
            decay(self.size_hint.1, self.batch.arena.len()),
        );
        let fresh = match self.spare.pop() {
            Some(mut b) => {
                self.spare_bytes -= b.kept_bytes();
                b.make_room(self.size_hint.0, self.size_hint.1);
                b
            }
            None => Batch::with_capacity(self.size_hint.0, self.size_hint.1),
        };
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
        // Enough spares cover the batches in flight; more would only hold memory.
        if self.spare.len() >= MAX_SPARE_BATCHES {
            return;
        }
        batch.clear_for_reuse();
        let bytes = batch.kept_bytes();
        if self.spare_bytes + bytes <= MAX_SPARE_BYTES {
            self.spare_bytes += bytes;
            self.spare.push(batch);
        }
    }

    /// Emptied batches kept for reuse, and the bytes they hold.
    pub fn spares(&self) -> (usize, usize) {
        (self.spare.len(), self.spare_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undecoded_link_types_are_counted_apart_and_boundedly() {
        let mut w = UndecodedLinkTypes::default();
        for _ in 0..3 {
            for lt in [1, 105, 9, 105, 0, 113, 127] {
                w.note(lt);
            }
        }
        assert_eq!(w.counts(), [(105, 6), (9, 3), (127, 3)]);
        assert_eq!((w.others(), w.total()), (0, 12));
        // A file naming a new link type per interface: told apart up to MAX, then together.
        for lt in 1000..100_000 {
            w.note(lt);
        }
        assert_eq!(w.counts().len(), UndecodedLinkTypes::MAX);
        let apart = (UndecodedLinkTypes::MAX - 3) as u64;
        assert_eq!(w.others(), 99_000 - apart);
        assert_eq!(w.total(), 12 + 99_000);
    }

    #[test]
    fn batches_carry_the_undecoded_counts_when_they_changed() {
        let mut b = BatchBuilder::new(ClockMode::Replay, Duration::from_secs(3600));
        let frame = [0u8; 60];
        let mut seen = Vec::new();
        for i in 0..(2 * MAX_BATCH_PACKETS as u64) {
            // The second batch has one packet of an undecoded type (9999), the first none.
            let mut r = record(1_000 + i, &frame);
            r.link_type = if i == MAX_BATCH_PACKETS as u64 + 7 {
                9999
            } else {
                1
            };
            b.push(&r);
        }
        b.cut();
        while let Some(step) = b.next_step() {
            if let Step::Packets(batch) = step {
                seen.push(batch.undecoded_link_types().map(|u| u.counts().to_vec()));
            }
        }
        assert_eq!(seen, [None, Some(vec![(9999, 1)])]);
    }

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

    #[test]
    fn a_kept_batch_gives_back_an_outsized_arena() {
        let mut b = BatchBuilder::new(ClockMode::Live, Duration::from_secs(1));
        // A batch's first frame may be anything a capture holds (64 MiB records).
        let huge = vec![0u8; 3 * MAX_KEPT_ARENA_BYTES / 2];
        b.push(&record(0, &huge));
        b.cut();
        let Some(Step::Packets(batch)) = b.next_step() else {
            panic!("no batch")
        };
        assert!(batch.arena.capacity() > MAX_KEPT_ARENA_BYTES);
        b.recycle(batch);
        let kept = b.spare.last().expect("kept");
        assert!(kept.is_empty() && kept.arena.is_empty());
        assert!(
            kept.arena.capacity() <= MAX_KEPT_ARENA_BYTES,
            "{}",
            kept.arena.capacity()
        );
        assert!(kept.packets.capacity() <= MAX_BATCH_PACKETS);
        assert_eq!(b.spares(), (1, kept.kept_bytes()));
        // The hint that sizes new batches is capped the same way.
        assert!(b.batch.arena.capacity() <= MAX_KEPT_ARENA_BYTES);
    }

    #[test]
    fn spares_are_kept_up_to_the_cap() {
        let mut b = BatchBuilder::new(ClockMode::Live, Duration::from_secs(1));
        for _ in 0..MAX_SPARE_BATCHES + 5 {
            b.recycle(Batch::default());
        }
        assert_eq!(b.spares(), (MAX_SPARE_BATCHES, 0));
        // Each cut takes one spare back.
        b.push(&record(0, b"x"));
        b.cut();
        assert_eq!(b.spares().0, MAX_SPARE_BATCHES - 1);
    }

    #[test]
    fn spares_hold_at_most_the_byte_budget() {
        let mut b = BatchBuilder::new(ClockMode::Live, Duration::from_secs(1));
        let full = || Batch::with_capacity(MAX_BATCH_PACKETS, MAX_KEPT_ARENA_BYTES);
        let each = full().kept_bytes();
        for _ in 0..MAX_SPARE_BATCHES {
            b.recycle(full());
        }
        let (n, bytes) = b.spares();
        assert_eq!(n, MAX_SPARE_BYTES / each);
        assert_eq!(bytes, n * each);
        assert!(bytes <= MAX_SPARE_BYTES);
        // Taking spares out gives their bytes back to the budget.
        for _ in 0..3 {
            b.push(&record(0, b"x"));
            b.cut();
        }
        assert_eq!(b.spares(), (n - 3, (n - 3) * each));
        b.recycle(full());
        assert_eq!(b.spares(), (n - 2, (n - 2) * each));
    }

    #[test]
    fn a_new_batch_starts_with_the_last_ones_room() {
        let mut b = BatchBuilder::new(ClockMode::Live, Duration::from_secs(1));
        let frame = [1u8; 1000];
        for _ in 0..100 {
            b.push(&record(0, &frame));
        }
        b.cut();
        // No spare: the batch now being built was made with the cut one's size.
        assert_eq!(b.spares(), (0, 0));
        assert!(b.batch.arena.capacity() >= 100 * 1000);
        assert!(b.batch.packets.capacity() >= 100);
        assert!(b.batch.classes.capacity() >= 100);
        assert!(b.batch.is_empty());
        // A spare smaller than the recent batches is given their room when it is taken,
        // and a poke's tiny batch does not shrink that room at once.
        b.recycle(Batch::default());
        b.push(&record(1, b"tiny"));
        b.cut();
        assert_eq!(b.spares(), (0, 0));
        assert!(b.batch.arena.capacity() >= 100 * 1000 * 15 / 16);
        assert!(b.batch.packets.capacity() >= 100 * 15 / 16);
        let tiny = drain(&mut b);
        assert_eq!(tiny, ["100p", "1p"]);
        // And it builds the same packets as a batch grown from nothing.
        b.push(&record(5, b"abc"));
        b.cut();
        let steps = drain(&mut b);
        assert_eq!(steps, ["1p"]);
    }
}
