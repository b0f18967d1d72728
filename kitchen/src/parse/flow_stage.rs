//! The flow stage: connection tracking between parsing and the chefs, paid for only when a
//! loaded chef asks for flows or streams.
//!
//! It runs where packets are parsed ([`crate::parse::batch::BatchBuilder`]: a replay's reading
//! thread, or the live dispatcher thread), so a replay spreads its cost over both cores.
//! For each packet it looks up the flow in a [`flowtrack::table::FlowTable`] (bounded,
//! idle timeouts, least recently used evicted first; see that crate), and collects the
//! `started` / `ended` events into the batch ([`FlowBatch`]) for the dispatcher to deliver.
//!
//! Whether it runs is one shared switch ([`FlowShared::set_wanted`]) the dispatcher sets
//! when its chef set changes. Off (no chef wants flows), a packet costs one relaxed atomic
//! load. Turned off after being on, every tracked flow is dropped (no chef is left to tell);
//! turned on again, tracking starts afresh, with ids still unique for the kitchen run.
//!
//! Timeouts follow packet time (replay: deterministic) and, live, the kitchen clock
//! ([`FlowStage::advance`]); the end of the input ends every flow ([`FlowStage::end_all`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use flowtrack::table::{
    Direction, Discard, EndReason, FlowConfig, FlowConfigError, FlowEvent, FlowKey, FlowRef,
    FlowStats, FlowTable, PacketMeta, SplitEvents, Transport, DEFAULT_MAX_FLOWS,
};

use crate::chef_host::bindings::{
    Direction as WitDirection, FlowEndReason, FlowEvent as WitFlowEvent, FlowKey as WitFlowKey,
    FlowRef as WitFlowRef, FlowStart, FlowSummary, IpAddress, IpHeader, Packet, TransportHeader,
    TransportProtocol,
};
use crate::chef_host::WirePacket;
use crate::parse::packet::{tcp_flag_bits, tcp_flags};

/// Set (to anything) in `nd-sniff`'s environment, the kitchen runs without a flow stage, as
/// before flows existed: the baseline of `tools/bench-flow-overhead.sh`. Not a user
/// setting (chefs asking for flows or streams then get none).
pub const BYPASS_ENV: &str = "ND_BENCH_NO_FLOW_STAGE";

/// The flow table's flags (`nd-sniff --help`, "Flows").
#[derive(Debug, Clone, clap::Args)]
pub struct FlowArgs {
    /// Flows tracked at once when a chef asks for flows or streams; a new flow in a full
    /// table ends the least recently used one (reason `evicted`, counted). Memory per
    /// tracked flow (measured on a full table): about 300 bytes when chefs take only flow
    /// events, about 1 KB with one stream chef, about 1.6 KB with the default chefs (two
    /// stream chefs: 434 MB at 262144 flows); the table itself is 146 bytes of it.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_FLOWS, help_heading = "Flows")]
    pub flow_table_size: usize,
    /// A TCP flow both sides have sent in ends after this long without a packet (a TCP
    /// flow only one side has sent in: 60 s or this, whichever is shorter; after both
    /// FINs or a RST: 5 s).
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 300,
        help_heading = "Flows"
    )]
    pub flow_idle_tcp_secs: u64,
    /// A UDP flow ends after this long without a packet.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 60,
        help_heading = "Flows"
    )]
    pub flow_idle_udp_secs: u64,
    /// An ICMP flow (one per address pair) ends after this long without a packet.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 60,
        help_heading = "Flows"
    )]
    pub flow_idle_icmp_secs: u64,
}

impl Default for FlowArgs {
    fn default() -> Self {
        let c = FlowConfig::default();
        FlowArgs {
            flow_table_size: c.max_flows,
            flow_idle_tcp_secs: c.idle_tcp.as_secs(),
            flow_idle_udp_secs: c.idle_udp.as_secs(),
            flow_idle_icmp_secs: c.idle_icmp.as_secs(),
        }
    }
}

impl FlowArgs {
    /// The table configuration, checked (errors name the flag).
    pub fn config(&self) -> Result<FlowConfig, FlowConfigError> {
        let tcp = Duration::from_secs(self.flow_idle_tcp_secs);
        let c = FlowConfig {
            max_flows: self.flow_table_size,
            idle_tcp: tcp,
            idle_tcp_new: tcp.min(FlowConfig::default().idle_tcp_new),
            idle_udp: Duration::from_secs(self.flow_idle_udp_secs),
            idle_icmp: Duration::from_secs(self.flow_idle_icmp_secs),
            ..FlowConfig::default()
        };
        c.validate()?;
        Ok(c)
    }
}

/// What the dispatcher and the stage (possibly on another thread) share: the on/off
/// switch, and whether `started` events are wanted. (The table's counters travel with the
/// batches instead, [`FlowBatch::counters`], so the dispatcher reads them in step with the
/// packets it has run.)
#[derive(Debug, Default)]
pub struct FlowShared {
    wanted: AtomicBool,
    /// No loaded chef asks for flow events (only stream chefs, which need the ends):
    /// `started` events are not made. False by default: every event is made.
    skip_starts: AtomicBool,
}

impl FlowShared {
    /// Turns tracking on (some loaded chef asks for flows or streams) or off.
    pub fn set_wanted(&self, on: bool) {
        self.wanted.store(on, Ordering::Relaxed);
    }

    /// Whether tracking is on.
    pub fn wanted(&self) -> bool {
        self.wanted.load(Ordering::Relaxed)
    }

    /// Whether `started` events are made (some loaded chef asks for flow events; the
    /// default). A chef that asks for them after it was off hears of the flows that start
    /// from then on, as a chef loaded later always did.
    pub fn set_starts_wanted(&self, on: bool) {
        self.skip_starts.store(!on, Ordering::Relaxed);
    }

    /// Whether `started` events are made.
    pub fn starts_wanted(&self) -> bool {
        !self.skip_starts.load(Ordering::Relaxed)
    }
}

/// The flow table's counters (owned by the table, [`FlowStats`]) as of the end of a batch,
/// and the flows tracked then.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlowCounters {
    /// Started, ended by reason, evicted, clock restarts.
    pub stats: FlowStats,
    /// Flows in the table.
    pub active: u64,
}

/// The flow events of one batch, in the order the dispatcher delivers them: `started`
/// before the batch's packets, `ended` after them (and after its stream chunks).
#[derive(Debug, Default)]
pub struct FlowBatch {
    /// Flows started by this batch's packets.
    pub started: Vec<FlowEvent>,
    /// Flows ended while this batch was built (FIN/RST linger over, idle timeout,
    /// eviction, end of capture).
    pub ended: Vec<FlowEvent>,
    /// The table's counters when the batch was cut (`None` until it tracked a flow).
    pub counters: Option<FlowCounters>,
}

impl FlowBatch {
    /// True when there is no event to deliver.
    pub fn no_events(&self) -> bool {
        self.started.is_empty() && self.ended.is_empty()
    }

    /// Empty it, keeping the allocations.
    pub fn clear(&mut self) {
        self.started.clear();
        self.ended.clear();
        self.counters = None;
    }
}

/// The flow table and the switch, as the batch builder holds them.
pub struct FlowStage {
    table: FlowTable,
    shared: Arc<FlowShared>,
    /// Whether the table holds flows of an "on" period (dropped when switched off).
    tracking: bool,
    /// Packets of the batch being built that wait to be tracked: their 5-tuples, and
    /// where they sit in the batch. Tracking a whole batch at once lets the table overlap
    /// its cache misses ([`FlowTable::track_batch`]).
    pending: Vec<PacketMeta>,
    pending_at: Vec<u32>,
    refs: Vec<FlowRef>,
    /// Capture times at which to evict the least recently used flow (`--capsule-evict-ns`),
    /// latest first, so the next is at the end.
    evict_at: Vec<u64>,
    /// The next of them (`u64::MAX`: none), so a packet costs one comparison.
    next_evict_ns: u64,
}

impl FlowStage {
    /// A stage with an empty table, switched by `shared`.
    pub fn new(config: FlowConfig, shared: Arc<FlowShared>) -> Result<Self, FlowConfigError> {
        Ok(FlowStage {
            table: FlowTable::new(config)?,
            shared,
            tracking: false,
            pending: Vec::new(),
            pending_at: Vec::new(),
            refs: Vec::new(),
            evict_at: Vec::new(),
            next_evict_ns: u64::MAX,
        })
    }

    /// The same stage, evicting the least recently used flow at each of `times` (capture
    /// times, ns): between the packets before and after it, or at the end of the input
    /// before every flow ends. A crash capsule's replay line asks for it
    /// (`--capsule-evict-ns`) to end flows by eviction as the failing call saw them end.
    pub fn with_evictions(mut self, times: &[u64]) -> Self {
        self.evict_at = times.to_vec();
        self.evict_at.sort_unstable_by(|a, b| b.cmp(a));
        self.next_evict_ns = self.evict_at.last().copied().unwrap_or(u64::MAX);
        self
    }

    /// Evict at every eviction time up to `now_ns` (all of them with `u64::MAX`), after
    /// tracking the noted packets.
    #[cold]
    fn evict_until(&mut self, now_ns: u64, packets: &mut [WirePacket], out: &mut FlowBatch) {
        self.flush(packets, out);
        while let Some(&at) = self.evict_at.last().filter(|&&at| at <= now_ns) {
            self.evict_at.pop();
            if self.on() {
                let mut sink = self.sink(out);
                self.table.evict_lru(at, &mut sink);
            }
        }
        self.next_evict_ns = self.evict_at.last().copied().unwrap_or(u64::MAX);
    }

    /// Whether tracking is on now (drops the table's flows when it was just turned off).
    /// Call only with nothing pending ([`FlowStage::flush`] first).
    #[inline]
    fn on(&mut self) -> bool {
        let wanted = self.shared.wanted();
        if wanted != self.tracking {
            if self.tracking {
                // No chef wants these any more: end them silently.
                self.table.end_all(&mut Discard);
            }
            self.tracking = wanted;
        }
        wanted
    }

    /// Notes the batch's last packet (just parsed) for tracking, when tracking is on and
    /// it has a flow. Its `flow` field is filled, and the events it causes added to `out`,
    /// by the next [`FlowStage::flush`], which the batch builder calls before the batch
    /// leaves it and before the clock moves. The result is the same as tracking each
    /// packet as it comes: the switch is read per packet, and a change of the switch
    /// first tracks what was noted before it.
    #[inline]
    pub fn note(&mut self, packets: &mut [WirePacket], out: &mut FlowBatch) {
        if self.shared.wanted() != self.tracking {
            self.flush(packets, out);
        }
        if !self.on() {
            return;
        }
        let Some(last) = packets.len().checked_sub(1) else {
            return;
        };
        let now_ns = packets[last].0.timestamp_ns;
        if now_ns >= self.next_evict_ns {
            // Evictions due before this packet (not noted yet, so tracked after them).
            self.evict_until(now_ns, packets, out);
        }
        if let Some(m) = meta_of(&packets[last].0) {
            self.pending.push(m);
            self.pending_at.push(last as u32);
        }
    }

    /// Tracks the noted packets of `packets` (the batch being built), in order.
    pub fn flush(&mut self, packets: &mut [WirePacket], out: &mut FlowBatch) {
        if self.pending.is_empty() {
            return;
        }
        self.refs.clear();
        let mut sink = self.sink(out);
        self.table
            .track_batch(&self.pending, &mut self.refs, &mut sink);
        for (&at, &r) in self.pending_at.iter().zip(&self.refs) {
            if let Some(WirePacket(p)) = packets.get_mut(at as usize) {
                p.flow = Some(wit_ref(r));
            }
        }
        self.pending.clear();
        self.pending_at.clear();
    }

    /// Where the table's events go: straight into the batch's two lists.
    #[inline]
    fn sink<'a>(&self, out: &'a mut FlowBatch) -> SplitEvents<'a> {
        SplitEvents {
            started: &mut out.started,
            ended: &mut out.ended,
            keep_started: self.shared.starts_wanted(),
        }
    }

    /// Live: move the table's clock to the kitchen clock `now_ns`, ending what timed out
    /// (after tracking the noted packets of `packets`).
    pub fn advance(&mut self, now_ns: u64, packets: &mut [WirePacket], out: &mut FlowBatch) {
        self.flush(packets, out);
        if !self.on() {
            return;
        }
        let mut sink = self.sink(out);
        self.table.advance(now_ns, &mut sink);
    }

    /// End of the input (or the kitchen stopping): end every flow (`end-of-capture`),
    /// after tracking the noted packets of `packets`.
    pub fn end_all(&mut self, packets: &mut [WirePacket], out: &mut FlowBatch) {
        self.evict_until(u64::MAX, packets, out);
        if !self.on() {
            return;
        }
        let mut sink = self.sink(out);
        self.table.end_all(&mut sink);
    }

    /// Stamp the table's counters on a batch being cut (once per batch). Only a stage that
    /// tracked something stamps: a replay's dispatcher keeps an idle builder (and stage)
    /// beside the reading thread's, whose zeros must not replace the real counts.
    pub fn stamp(&self, out: &mut FlowBatch) {
        let stats = self.table.stats();
        if stats.started > 0 {
            out.counters = Some(FlowCounters {
                stats,
                active: self.table.len() as u64,
            });
        }
    }
}

/// The table's view of a parsed packet: `None` unless it has an IP header and a TCP, UDP
/// or ICMP header (ARP, non-IP frames and non-first IP fragments have no flow).
#[inline]
pub fn meta_of(p: &Packet) -> Option<PacketMeta> {
    let (src, dst) = match p.ip.as_ref()? {
        IpHeader::V4(h) => (
            IpAddr::V4(Ipv4Addr::from(h.source)),
            IpAddr::V4(Ipv4Addr::from(h.destination)),
        ),
        IpHeader::V6(h) => (v6(h.source), v6(h.destination)),
    };
    let (transport, src_port, dst_port, tcp_flags) = match p.transport.as_ref()? {
        TransportHeader::Tcp(t) => (
            Transport::Tcp,
            t.source_port,
            t.destination_port,
            tcp_flag_bits(t.flags),
        ),
        TransportHeader::Udp(u) => (Transport::Udp, u.source_port, u.destination_port, 0),
        // One ICMP flow per address pair (the WIT `flow-key`: ports 0 for ICMP).
        TransportHeader::Icmpv4(_) => (Transport::Icmpv4, 0, 0, 0),
        TransportHeader::Icmpv6(_) => (Transport::Icmpv6, 0, 0, 0),
    };
    Some(PacketMeta {
        ts_ns: p.timestamp_ns,
        transport,
        src,
        dst,
        src_port,
        dst_port,
        tcp_flags,
        // Frame length on the wire, as tshark's conversation table counts bytes.
        bytes: p.original_len,
    })
}

fn v6((hi, lo): (u64, u64)) -> IpAddr {
    IpAddr::V6(Ipv6Addr::from((u128::from(hi) << 64) | u128::from(lo)))
}

/// A packet's flow as the WIT record.
#[inline]
pub fn wit_ref(r: FlowRef) -> WitFlowRef {
    WitFlowRef {
        id: r.id,
        direction: match r.direction {
            Direction::FromOriginator => WitDirection::FromOriginator,
            Direction::FromResponder => WitDirection::FromResponder,
        },
    }
}

/// A flow event as the WIT record.
pub fn wit_event(e: &FlowEvent) -> WitFlowEvent {
    match e {
        FlowEvent::Started(s) => WitFlowEvent::Started(FlowStart {
            id: s.id,
            key: wit_key(&s.key),
            timestamp_ns: s.timestamp_ns,
        }),
        FlowEvent::Ended(s) => WitFlowEvent::Ended(FlowSummary {
            id: s.id,
            key: wit_key(&s.key),
            first_ns: s.first_ns,
            last_ns: s.last_ns,
            packets_from_originator: s.packets_from_originator,
            packets_from_responder: s.packets_from_responder,
            bytes_from_originator: s.bytes_from_originator,
            bytes_from_responder: s.bytes_from_responder,
            tcp_flags_seen: tcp_flags(s.tcp_flags_seen),
            end_reason: match s.end_reason {
                EndReason::Fin => FlowEndReason::Fin,
                EndReason::Rst => FlowEndReason::Rst,
                EndReason::IdleTimeout => FlowEndReason::IdleTimeout,
                EndReason::Evicted => FlowEndReason::Evicted,
                EndReason::EndOfCapture => FlowEndReason::EndOfCapture,
            },
        }),
    }
}

/// The time of an event's dumplings: a start's first packet, an end's last packet.
pub fn event_time_ns(e: &FlowEvent) -> u64 {
    match e {
        FlowEvent::Started(s) => s.timestamp_ns,
        FlowEvent::Ended(s) => s.last_ns,
    }
}

/// A 5-tuple as the WIT record.
pub fn wit_key(k: &FlowKey) -> WitFlowKey {
    WitFlowKey {
        transport: match k.transport {
            Transport::Tcp => TransportProtocol::Tcp,
            Transport::Udp => TransportProtocol::Udp,
            Transport::Icmpv4 => TransportProtocol::Icmpv4,
            Transport::Icmpv6 => TransportProtocol::Icmpv6,
        },
        originator: wit_addr(k.originator),
        responder: wit_addr(k.responder),
        originator_port: k.originator_port,
        responder_port: k.responder_port,
    }
}

fn wit_addr(a: IpAddr) -> IpAddress {
    match a {
        IpAddr::V4(v4) => IpAddress::V4(u32::from(v4)),
        IpAddr::V6(v6) => {
            let n = u128::from(v6);
            IpAddress::V6(((n >> 64) as u64, n as u64))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chef_host::bindings::TcpFlags;
    use crate::parse::batch::{BatchBuilder, ClockMode, Step};
    use capture::PacketRecord;

    /// A raw IPv4 packet (DLT_RAW) with a TCP (`flags` = Some) or UDP header.
    fn ipv4(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, tcp: Option<u8>) -> Vec<u8> {
        let l4 = if tcp.is_some() { 20 } else { 8 };
        let mut p = vec![0x45, 0, 0, (20 + l4) as u8, 0, 0, 0x40, 0, 64];
        p.push(if tcp.is_some() { 6 } else { 17 });
        p.extend_from_slice(&[0, 0]);
        p.extend_from_slice(&src);
        p.extend_from_slice(&dst);
        p.extend_from_slice(&sport.to_be_bytes());
        p.extend_from_slice(&dport.to_be_bytes());
        match tcp {
            Some(flags) => {
                p.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
            }
            None => p.extend_from_slice(&[0, 8, 0, 0]),
        }
        p
    }

    fn push(b: &mut BatchBuilder, ts: u64, frame: &[u8]) {
        b.push(&PacketRecord {
            timestamp_ns: ts,
            link_type: crate::parse::packet::dlt::RAW,
            interface_index: 0,
            original_len: frame.len() as u32,
            data: frame,
        });
    }

    /// Every packet's flow, the batch events and the last counters stamped on a batch.
    #[allow(clippy::type_complexity)]
    fn drain(
        b: &mut BatchBuilder,
    ) -> (
        Vec<Option<WitFlowRef>>,
        Vec<FlowEvent>,
        Vec<FlowEvent>,
        Option<FlowCounters>,
    ) {
        b.cut();
        let (mut refs, mut started, mut ended) = (Vec::new(), Vec::new(), Vec::new());
        let mut counters = None;
        while let Some(step) = b.next_step() {
            if let Step::Packets(batch) = step {
                refs.extend(batch.packets.iter().map(|p| p.0.flow));
                started.extend(batch.flows.started.iter().copied());
                ended.extend(batch.flows.ended.iter().copied());
                counters = batch.flows.counters.or(counters);
            }
        }
        (refs, started, ended, counters)
    }

    const A: [u8; 4] = [10, 0, 0, 1];
    const B: [u8; 4] = [10, 0, 0, 2];

    #[test]
    fn packets_carry_their_flow_only_while_switched_on() {
        let shared = Arc::new(FlowShared::default());
        let mut b = BatchBuilder::new(ClockMode::Replay, Duration::from_secs(5));
        b.set_flow_stage(FlowStage::new(FlowConfig::default(), shared.clone()).expect("valid"));
        // Off: nothing tracked, nothing filled.
        push(&mut b, 1, &ipv4(A, B, 1000, 80, Some(0x02)));
        let (refs, started, _, counters) = drain(&mut b);
        assert_eq!(counters, None, "nothing tracked, nothing stamped");
        assert_eq!(refs, vec![None]);
        assert!(started.is_empty());
        shared.set_wanted(true);
        push(&mut b, 2, &ipv4(A, B, 1000, 80, Some(0x02)));
        push(&mut b, 3, &ipv4(B, A, 80, 1000, Some(0x12)));
        push(&mut b, 4, &ipv4(A, B, 1000, 80, Some(0x10)));
        push(&mut b, 5, &ipv4(A, B, 53, 53, None));
        push(&mut b, 6, b"\x60not an ip packet");
        let (refs, started, ended, counters) = drain(&mut b);
        let dirs: Vec<_> = refs
            .iter()
            .map(|r| r.map(|r| (r.id, matches!(r.direction, WitDirection::FromOriginator))))
            .collect();
        assert_eq!(
            dirs,
            vec![
                Some((1, true)),
                Some((1, false)),
                Some((1, true)),
                Some((2, true)),
                None
            ]
        );
        assert_eq!(started.len(), 2);
        assert!(ended.is_empty());
        let counters = counters.expect("the batch carries the table's counters");
        assert_eq!(
            (counters.stats.started, counters.active),
            (2, 2),
            "two flows tracked"
        );
        // End of input: both end, in id order.
        b.end_flows();
        let (_, _, ended, _) = drain(&mut b);
        let ids: Vec<_> = ended
            .iter()
            .map(|e| match e {
                FlowEvent::Ended(s) => (s.id, s.end_reason),
                FlowEvent::Started(s) => (s.id, EndReason::Evicted),
            })
            .collect();
        assert_eq!(
            ids,
            vec![(1, EndReason::EndOfCapture), (2, EndReason::EndOfCapture)]
        );
        // The WIT form of a summary keeps the counts and flags.
        let WitFlowEvent::Ended(s) = wit_event(&ended[0]) else {
            panic!("an end");
        };
        assert_eq!(
            (s.packets_from_originator, s.packets_from_responder),
            (2, 1)
        );
        assert_eq!(s.bytes_from_originator, 80);
        assert_eq!(s.tcp_flags_seen, TcpFlags::SYN | TcpFlags::ACK);
        assert_eq!(s.key.originator, IpAddress::V4(0x0a00_0001));
        assert_eq!(s.key.responder_port, 80);
        // Off again, then on: the table starts afresh, ids keep counting.
        shared.set_wanted(false);
        push(&mut b, 7, &ipv4(A, B, 1000, 80, Some(0x10)));
        shared.set_wanted(true);
        push(&mut b, 8, &ipv4(A, B, 1000, 80, Some(0x10)));
        let (refs, _, _, _) = drain(&mut b);
        assert_eq!(refs[0], None);
        assert_eq!(refs[1].map(|r| r.id), Some(3));
    }

    #[test]
    fn without_event_chefs_starts_are_skipped_and_ends_still_come() {
        // Only stream chefs loaded: they need every packet's flow and the ends (to close
        // their streams), not the starts.
        let shared = Arc::new(FlowShared::default());
        assert!(shared.starts_wanted(), "every event is made by default");
        shared.set_wanted(true);
        shared.set_starts_wanted(false);
        let mut b = BatchBuilder::new(ClockMode::Replay, Duration::from_secs(5));
        b.set_flow_stage(FlowStage::new(FlowConfig::default(), shared.clone()).expect("valid"));
        push(&mut b, 1, &ipv4(A, B, 1000, 80, Some(0x02)));
        push(&mut b, 2, &ipv4(B, A, 80, 1000, Some(0x12)));
        push(&mut b, 3, &ipv4(A, B, 53, 53, None));
        b.end_flows();
        let (refs, started, ended, counters) = drain(&mut b);
        let ids: Vec<_> = refs.iter().map(|r| r.map(|r| r.id)).collect();
        assert_eq!(ids, vec![Some(1), Some(1), Some(2)]);
        assert!(started.is_empty(), "no chef asked for starts");
        assert_eq!(ended.len(), 2, "ends still come");
        assert_eq!(counters.map(|c| c.stats.started), Some(2), "still counted");
        // An event chef arrives: starts are made again, for the flows that start now.
        shared.set_starts_wanted(true);
        push(&mut b, 4, &ipv4(A, B, 2000, 80, Some(0x02)));
        let (_, started, _, _) = drain(&mut b);
        assert_eq!(started.len(), 1);
    }

    #[test]
    fn flag_bits_round_trip() {
        for bits in 0..=255u8 {
            assert_eq!(tcp_flag_bits(tcp_flags(bits)), bits);
        }
    }

    #[test]
    fn args_make_a_checked_config() {
        let c = FlowArgs::default().config().expect("defaults are valid");
        assert_eq!(c, FlowConfig::default());
        let short = FlowArgs {
            flow_idle_tcp_secs: 10,
            ..FlowArgs::default()
        };
        assert_eq!(
            short.config().expect("valid").idle_tcp_new,
            Duration::from_secs(10)
        );
        let bad = FlowArgs {
            flow_idle_icmp_secs: 0,
            ..FlowArgs::default()
        };
        assert!(bad
            .config()
            .is_err_and(|e| e.to_string().contains("--flow-idle-icmp-secs")));
    }
}
