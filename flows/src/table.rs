//! The bounded flow table: which connection each packet belongs to, in which direction, and
//! when connections start and end.
//!
//! # Model
//!
//! * **Key**: transport (TCP, UDP, ICMPv4, ICMPv6), both addresses and both ports, stored in
//!   canonical order (lower address/port first) so both directions find the same entry.
//!   ICMP has no ports: the caller passes 0 for both (one ICMP flow per address pair, as
//!   the WIT `flow-key` documents).
//! * **Originator**: the sender of a pure SYN when the first TCP packet seen is one, the
//!   receiver of a SYN-ACK when that is the first one seen, else the sender of the first
//!   packet the table sees. It never changes afterwards (a chef saw the earlier
//!   directions).
//! * **TCP state** from flags only (no sequence numbers): SYN, SYN-ACK, established, a FIN
//!   each way, RST ([`TcpState`]). After both FINs or a RST the flow *lingers* for
//!   [`FlowConfig::close_linger`] so the last ACKs still count into it, then ends with reason
//!   `Fin` / `Rst`; a new pure SYN on a lingering flow (port reuse) ends it at once and
//!   starts a new flow.
//! * **Idle timeouts** per class: TCP answered by both sides ([`FlowConfig::idle_tcp`]), TCP
//!   not answered yet ([`FlowConfig::idle_tcp_new`], so SYN scans do not fill the table for
//!   long), UDP, ICMP. Defaults follow Zeek (5 min TCP, 1 min UDP/ICMP) and Suricata (1 min
//!   for unanswered TCP).
//! * **Bound**: at most [`FlowConfig::max_flows`] entries; a new flow in a full table first
//!   evicts the least recently used one (reason `Evicted`, counted), whichever class.
//! * **Ids**: `u64`, from 1, unique for the table's life (one table per kitchen run).
//!
//! # Cost
//!
//! Every operation is O(1) amortised: entries live in a slab, an index maps keys to slab
//! slots, and each timeout class keeps a doubly linked list in order of last use. Because a
//! list's entries all share one timeout, only its head can have expired: expiry looks at five
//! heads per packet, eviction takes the oldest of those heads. The hash is seeded per
//! process (foldhash), since keys come from the wire.
//!
//! On a big table the cost is cache misses, so the layout is built to touch few lines: a
//! flow is a 64-byte hot half (key, list links, last use, state: all a lookup, the lists and
//! expiry read) and a 64-byte cold half (id, times, counters: only its own packets and its
//! summary); the index (`table/index.rs`) holds a 32-bit tag beside each slot, in buckets
//! of one cache line, so a new flow's lookup reads no slot and one index line, and an ended
//! flow is removed by its stored tag without a key comparison and without moving other
//! entries; [`FlowTable::track_batch`] prefetches, a few packets ahead, each packet's index
//! bucket and, while the table is evicting, the bucket and cold half of the victim to come
//! (`table/prefetch.rs`, the crate's one `unsafe` instruction hint). On high-cardinality
//! traffic the victims come in slot order (a new flow takes its victim's slot), and the
//! coming victims are then found by slot number
//! instead of by walking the recency lists. [`FlowTable::end_all`] reports every flow and
//! then empties the table at once. About 146 bytes per flow with the index
//! (`nd-flow-bench` measures the cost).
//!
//! # Time
//!
//! Timeouts run on the table's own clock, fed by packet times (replay: deterministic) and by
//! [`FlowTable::advance`] (live: the kitchen clock). Capture times are outside input, so
//! the clock behaves like the kitchen's interval clock (`kitchen/src/parse/poke_clock.rs`): it
//! never runs backwards; a small step back is held (the clock waits until time passes its
//! high mark again); a step back larger than [`FlowConfig::back_tolerance`] *restarts* it
//! at the new time without moving the table's ages (counted in
//! [`FlowStats::clock_restarts`]), so the rest of the capture still ages its flows; a jump
//! forward ages every flow by the jump (they expire, as they would have in real time). The
//! table's clock is the sum of the forward steps, so it cannot overflow before 584 years of
//! capture time.

use std::hash::{BuildHasher, Hash};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

/// TCP flag bits as in the TCP header's flags byte (the WIT `tcp-flags` order).
pub mod tcp_flags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// PSH.
    pub const PSH: u8 = 0x08;
    /// ACK.
    pub const ACK: u8 = 0x10;
    /// URG.
    pub const URG: u8 = 0x20;
    /// ECE.
    pub const ECE: u8 = 0x40;
    /// CWR.
    pub const CWR: u8 = 0x80;
}

/// The transport protocols the table tracks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Transport {
    /// TCP.
    Tcp = 0,
    /// UDP.
    Udp = 1,
    /// ICMPv4.
    Icmpv4 = 2,
    /// ICMPv6.
    Icmpv6 = 3,
}

/// Which side of a flow sent a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From the side that opened the flow.
    FromOriginator,
    /// From the other side.
    FromResponder,
}

/// A packet's place in a flow: what the kitchen puts in `packet.flow`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowRef {
    /// The flow's id (unique for the table's life).
    pub id: u64,
    /// Who sent the packet.
    pub direction: Direction,
}

/// A flow's 5-tuple, originator first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// Transport protocol.
    pub transport: Transport,
    /// The originator's address.
    pub originator: IpAddr,
    /// The responder's address.
    pub responder: IpAddr,
    /// The originator's port (ICMP: 0).
    pub originator_port: u16,
    /// The responder's port.
    pub responder_port: u16,
}

/// Why a flow ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EndReason {
    /// Both sides sent FIN (after the linger time, or a new SYN reused the ports).
    Fin,
    /// A side sent RST (after the linger time, or a new SYN reused the ports).
    Rst,
    /// Nothing seen for the class's idle timeout.
    IdleTimeout,
    /// The table was full and this was the least recently used flow.
    Evicted,
    /// The capture ended (or the kitchen stopped).
    EndOfCapture,
}

/// A flow started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowStart {
    /// The new flow's id.
    pub id: u64,
    /// Its 5-tuple, originator first.
    pub key: FlowKey,
    /// Time of its first packet.
    pub timestamp_ns: u64,
}

/// A flow ended: what was seen of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowSummary {
    /// The flow's id.
    pub id: u64,
    /// Its 5-tuple, originator first.
    pub key: FlowKey,
    /// Time of its first packet.
    pub first_ns: u64,
    /// The latest packet time seen in it.
    pub last_ns: u64,
    /// Packets the originator sent.
    pub packets_from_originator: u64,
    /// Packets the responder sent.
    pub packets_from_responder: u64,
    /// Bytes the originator sent (as counted by the caller: the kitchen counts frame
    /// lengths on the wire, like tshark's conversation table).
    pub bytes_from_originator: u64,
    /// Bytes the responder sent.
    pub bytes_from_responder: u64,
    /// Every TCP flag seen in either direction ([`tcp_flags`] bits; 0 for UDP/ICMP).
    pub tcp_flags_seen: u8,
    /// Why it ended.
    pub end_reason: EndReason,
}

/// What chefs that ask for flow events receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowEvent {
    /// A flow started.
    Started(FlowStart),
    /// A flow ended.
    Ended(FlowSummary),
}

/// Where the table puts the events it makes. A `Vec<FlowEvent>` keeps them in the order
/// they happen; [`SplitEvents`] keeps starts and ends in two lists, as the kitchen's batches
/// carry them, so they are written once instead of sorted afterwards (each event is about
/// 100 bytes, and on high-cardinality traffic every packet makes two).
pub trait EventSink {
    /// Whether [`EventSink::started`] keeps what it is given (when not, the table does not
    /// build the event: nobody asked for flow starts).
    fn wants_started(&self) -> bool {
        true
    }
    /// A flow started.
    fn started(&mut self, s: FlowStart);
    /// A flow ended.
    fn ended(&mut self, s: FlowSummary);
    /// Room for `n` more `ended` events (a hint: [`FlowTable::end_all`] knows how many come,
    /// so a full table's ends are written without growing the list on the way).
    fn reserve_ended(&mut self, _n: usize) {}
}

impl EventSink for Vec<FlowEvent> {
    #[inline]
    fn started(&mut self, s: FlowStart) {
        self.push(FlowEvent::Started(s));
    }

    #[inline]
    fn ended(&mut self, s: FlowSummary) {
        self.push(FlowEvent::Ended(s));
    }

    fn reserve_ended(&mut self, n: usize) {
        self.reserve(n);
    }
}

/// Starts and ends in separate lists, each in the order they happen; with `keep_started`
/// false the starts are not even built (the kitchen: no chef asks for flow events, only
/// stream chefs, which need the ends).
pub struct SplitEvents<'a> {
    /// `Started` events are appended here.
    pub started: &'a mut Vec<FlowEvent>,
    /// `Ended` events are appended here.
    pub ended: &'a mut Vec<FlowEvent>,
    /// Whether starts are wanted.
    pub keep_started: bool,
}

impl EventSink for SplitEvents<'_> {
    #[inline]
    fn wants_started(&self) -> bool {
        self.keep_started
    }

    #[inline]
    fn started(&mut self, s: FlowStart) {
        if self.keep_started {
            self.started.push(FlowEvent::Started(s));
        }
    }

    #[inline]
    fn ended(&mut self, s: FlowSummary) {
        self.ended.push(FlowEvent::Ended(s));
    }

    fn reserve_ended(&mut self, n: usize) {
        self.ended.reserve(n);
    }
}

/// Drops every event (a table being emptied that nobody listens to any more).
pub struct Discard;

impl EventSink for Discard {
    fn wants_started(&self) -> bool {
        false
    }

    fn started(&mut self, _: FlowStart) {}

    fn ended(&mut self, _: FlowSummary) {}
}

/// A TCP connection's state, from the flags seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpState {
    /// Only the originator's SYN so far.
    SynSent,
    /// The responder's SYN-ACK was seen.
    SynReceived,
    /// The handshake completed (or, picked up mid-stream, both sides sent).
    Established,
    /// Picked up without a SYN and only one side seen so far.
    MidStream,
    /// One side sent FIN.
    FinOneWay,
    /// Both sides sent FIN (lingering until it ends).
    Closed,
    /// A RST was seen (lingering until it ends).
    Reset,
}

/// The facts of one parsed packet the table needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketMeta {
    /// Capture time.
    pub ts_ns: u64,
    /// Transport protocol.
    pub transport: Transport,
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Source port (ICMP: 0).
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// TCP flags ([`tcp_flags`] bits; 0 otherwise).
    pub tcp_flags: u8,
    /// Bytes this packet counts for (the kitchen: frame length on the wire).
    pub bytes: u32,
}

/// The table's size and timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowConfig {
    /// At most this many flows at once (least recently used evicted first).
    pub max_flows: usize,
    /// Idle timeout of TCP flows both sides have sent in.
    pub idle_tcp: Duration,
    /// Idle timeout of TCP flows only one side has sent in (SYN scans, half-seen flows).
    pub idle_tcp_new: Duration,
    /// Idle timeout of UDP flows.
    pub idle_udp: Duration,
    /// Idle timeout of ICMP flows.
    pub idle_icmp: Duration,
    /// How long a TCP flow stays after both FINs or a RST, so its last ACKs count into it.
    pub close_linger: Duration,
    /// A step back in time larger than this restarts the clock (smaller ones are held).
    pub back_tolerance: Duration,
}

/// Default of [`FlowConfig::max_flows`]: about 38 MB of table when full (146 bytes a flow).
pub const DEFAULT_MAX_FLOWS: usize = 262_144;
/// Upper bound of [`FlowConfig::max_flows`] (slab slots are `u32`).
pub const MAX_MAX_FLOWS: usize = 1 << 28;

impl Default for FlowConfig {
    fn default() -> Self {
        FlowConfig {
            max_flows: DEFAULT_MAX_FLOWS,
            // Zeek's tcp_inactivity_timeout / udp_inactivity_timeout / icmp_inactivity_timeout.
            idle_tcp: Duration::from_secs(300),
            // Suricata's flow-timeouts.tcp.new.
            idle_tcp_new: Duration::from_secs(60),
            idle_udp: Duration::from_secs(60),
            idle_icmp: Duration::from_secs(60),
            // Zeek's tcp_close_delay and tcp_reset_delay.
            close_linger: Duration::from_secs(5),
            // The interval clock's replay tolerance (poke_clock::REPLAY_BACK_TOLERANCE).
            back_tolerance: Duration::from_secs(3600),
        }
    }
}

/// A configuration the table cannot run with.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FlowConfigError {
    /// `max_flows` is 0 or too large.
    #[error("flow table size {0} is out of range: use 1 to {MAX_MAX_FLOWS} (--flow-table-size)")]
    TableSize(usize),
    /// An idle timeout is zero (the flag that sets it).
    #[error("{0} must be at least 1 second")]
    ZeroTimeout(&'static str),
}

impl FlowConfig {
    /// Checks the bounds (see [`FlowConfigError`]).
    pub fn validate(&self) -> Result<(), FlowConfigError> {
        if self.max_flows == 0 || self.max_flows > MAX_MAX_FLOWS {
            return Err(FlowConfigError::TableSize(self.max_flows));
        }
        for (name, d) in [
            ("--flow-idle-tcp-secs", self.idle_tcp),
            ("--flow-idle-tcp-secs (unanswered TCP)", self.idle_tcp_new),
            ("--flow-idle-udp-secs", self.idle_udp),
            ("--flow-idle-icmp-secs", self.idle_icmp),
        ] {
            if d.is_zero() {
                return Err(FlowConfigError::ZeroTimeout(name));
            }
        }
        Ok(())
    }
}

/// What the table did so far.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FlowStats {
    /// Flows started.
    pub started: u64,
    /// Flows ended after both FINs.
    pub ended_fin: u64,
    /// Flows ended after a RST.
    pub ended_rst: u64,
    /// Flows ended by an idle timeout.
    pub ended_idle: u64,
    /// Flows evicted because the table was full.
    pub evicted: u64,
    /// Flows ended by the end of the capture.
    pub ended_end_of_capture: u64,
    /// Steps back in time beyond the tolerance (the clock restarted).
    pub clock_restarts: u64,
}

/// The canonical (direction-free) key: the lower (address, port) first, as five words
/// (compared and hashed as words; 40 bytes, so a slot's hot half fits one cache line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Key {
    /// The lower address as a number (IPv4 as IPv4-mapped IPv6), low word first.
    lo: [u64; 2],
    /// The higher address.
    hi: [u64; 2],
    /// `lo_port | hi_port << 16 | transport << 32 | v6 << 40`.
    meta: u64,
}

/// An address as a number, and whether it is IPv6.
#[inline]
fn number(a: IpAddr) -> (u128, bool) {
    match a {
        // IPv4-mapped (::ffff:a.b.c.d), so the two families never collide.
        IpAddr::V4(v4) => (0xffff_0000_0000 | u128::from(u32::from(v4)), false),
        IpAddr::V6(v6) => (u128::from(v6), true),
    }
}

#[inline]
fn words(n: u128) -> [u64; 2] {
    [n as u64, (n >> 64) as u64]
}

fn addr_of(w: [u64; 2], v6: bool) -> IpAddr {
    let n = u128::from(w[0]) | u128::from(w[1]) << 64;
    if v6 {
        IpAddr::V6(Ipv6Addr::from(n))
    } else {
        IpAddr::V4(Ipv4Addr::from(n as u32))
    }
}

impl Hash for Key {
    /// Five words instead of field-by-field writes: the hash is computed for every packet.
    #[inline]
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        h.write_u64(self.lo[0]);
        h.write_u64(self.lo[1]);
        h.write_u64(self.hi[0]);
        h.write_u64(self.hi[1]);
        h.write_u64(self.meta);
    }
}

impl Key {
    /// The key of `p` and whether its source is the `lo` side.
    #[inline]
    fn of(p: &PacketMeta) -> (Key, bool) {
        let (s, sv6) = number(p.src);
        let (d, dv6) = number(p.dst);
        // A v4 source with a v6 destination cannot come from one IP header; keep the
        // source's family so such a caller error still gives a stable key.
        let v6 = sv6 || dv6;
        let src_lo = (s, p.src_port) <= (d, p.dst_port);
        let (lo, hi, lo_port, hi_port) = if src_lo {
            (s, d, p.src_port, p.dst_port)
        } else {
            (d, s, p.dst_port, p.src_port)
        };
        let key = Key {
            lo: words(lo),
            hi: words(hi),
            meta: u64::from(lo_port)
                | u64::from(hi_port) << 16
                | (p.transport as u64) << 32
                | u64::from(v6) << 40,
        };
        (key, src_lo)
    }

    fn lo_port(&self) -> u16 {
        self.meta as u16
    }

    fn hi_port(&self) -> u16 {
        (self.meta >> 16) as u16
    }

    fn transport(&self) -> Transport {
        match (self.meta >> 32) as u8 {
            0 => Transport::Tcp,
            1 => Transport::Udp,
            2 => Transport::Icmpv4,
            _ => Transport::Icmpv6,
        }
    }

    fn v6(&self) -> bool {
        (self.meta >> 40) & 1 != 0
    }
}

/// Timeout classes; each has its own recency list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Class {
    TcpNew = 0,
    TcpOpen = 1,
    TcpClosing = 2,
    Udp = 3,
    Icmp = 4,
}
const CLASSES: usize = 5;

/// How many packets ahead [`FlowTable::track_batch`] prefetches: far enough that a line
/// from memory arrives before its packet's turn, near enough that the lines stay in L1.
const AHEAD: usize = 8;

/// Below this many flows the table's lines mostly stay in cache and
/// [`FlowTable::track_batch`]'s prefetching only costs (measured with `nd-flow-bench
/// --flow-table-size 4096` on the high-cardinality corpus: 87 ns per packet with it, 78
/// without); at 65 536 flows about even, at 262 144 (the default) 83 against 102.
const PREFETCH_MIN_FLOWS: usize = 32_768;

/// "No slot": the end of a list.
const NIL: u32 = u32::MAX;

/// One class's recency list: oldest first. The oldest entry's last-use time is kept here
/// too, so the per-packet expiry check reads no flow (no cache miss per class).
#[derive(Clone, Copy)]
struct List {
    head: u32,
    tail: u32,
    /// `touched` of `head` (`u64::MAX` when empty).
    head_touched: u64,
}

const EMPTY_LIST: List = List {
    head: NIL,
    tail: NIL,
    head_touched: u64::MAX,
};

/// Index into per-direction arrays: 0 = originator, 1 = responder.
const ORIG: usize = 0;
const RESP: usize = 1;

/// Per-flow TCP facts (bits).
const T_SYN: u8 = 1;
const T_SYNACK: u8 = 2;
const T_ESTABLISHED: u8 = 4;
const T_FIN_ORIG: u8 = 8;
const T_FIN_RESP: u8 = 16;
const T_RST: u8 = 32;
/// The responder has sent (any transport): decides a TCP flow's class without reading
/// its counters.
const T_RESP_SEEN: u8 = 64;

/// What a lookup, the recency lists and expiry read of a flow: one cache line.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Hot {
    key: Key,
    /// The table clock when last used (orders the class list).
    touched: u64,
    prev: u32,
    next: u32,
    /// The key's index tag (the index removes by tag and slot).
    tag: u32,
    /// The originator is the key's `lo` side.
    orig_is_lo: bool,
    class: Class,
    tcp: u8,
    live: bool,
}

/// What only the flow's own packets and its summary need: the other cache line.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Cold {
    id: u64,
    first_ns: u64,
    last_ns: u64,
    packets: [u64; 2],
    bytes: [u64; 2],
    flags_seen: u8,
}

/// One packet's key, prepared by the first pass of [`FlowTable::track_batch`].
#[derive(Clone, Copy)]
struct Prepared {
    key: Key,
    tag: u32,
    src_lo: bool,
}

/// The bounded flow table (see the module docs).
pub struct FlowTable {
    config: FlowConfig,
    hasher: foldhash::fast::RandomState,
    index: Index,
    /// Slab of flows, hot halves (`slots[i]` and `cold[i]` are one flow).
    slots: Vec<Hot>,
    cold: Vec<Cold>,
    /// Slots of ended flows, the last freed reused first (its lines are the likeliest to
    /// be in cache).
    free: Vec<u32>,
    /// Per class: the recency list.
    lists: [List; CLASSES],
    timeouts: [u64; CLASSES],
    next_id: u64,
    /// The table clock (sum of forward steps of time).
    clock: u64,
    /// The highest time seen since the last restart.
    high_ns: Option<u64>,
    back_tolerance_ns: u64,
    stats: FlowStats,
    /// [`FlowTable::track_batch`]'s keys, kept to reuse the allocation.
    prepared: Vec<Prepared>,
    /// Flows the last batch evicted: how many victims the next batch prefetches.
    last_evictions: usize,
    /// [`FlowTable::track_batch`]'s predicted victims (tag, slot), kept likewise.
    victims: Vec<(u32, u32)>,
    /// The slot of the last flow evicted.
    last_victim: u32,
    /// Evictions so far whose victim was the slot after the previous one's (see
    /// [`FlowTable::track_batch`]: while nearly all are, the coming victims are guessed by
    /// slot number instead of walked).
    in_order_evictions: u64,
    /// Whether the last batch's victims were (nearly all) in slot order.
    last_in_order: bool,
    /// [`FlowTable::track_batch`] prefetches only while the table holds at least this many
    /// flows ([`PREFETCH_MIN_FLOWS`]; tests lower it to exercise both paths).
    prefetch_from: usize,
}

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl FlowTable {
    /// An empty table; `config` is checked first.
    pub fn new(config: FlowConfig) -> Result<Self, FlowConfigError> {
        config.validate()?;
        let mut timeouts = [0; CLASSES];
        timeouts[Class::TcpNew as usize] = ns(config.idle_tcp_new);
        timeouts[Class::TcpOpen as usize] = ns(config.idle_tcp);
        timeouts[Class::TcpClosing as usize] = ns(config.close_linger);
        timeouts[Class::Udp as usize] = ns(config.idle_udp);
        timeouts[Class::Icmp as usize] = ns(config.idle_icmp);
        Ok(FlowTable {
            config,
            hasher: foldhash::fast::RandomState::default(),
            // Sized for a busy table up front (growing rehashes every entry, though from
            // the index alone); a huge --flow-table-size still starts small.
            index: Index::with_capacity(config.max_flows.min(1 << 18)),
            // Reserved, not touched: pages are only used as flows arrive, and the slab never
            // moves (no copy of a full table when it grows).
            slots: Vec::with_capacity(config.max_flows.min(1 << 18)),
            cold: Vec::with_capacity(config.max_flows.min(1 << 18)),
            free: Vec::new(),
            lists: [EMPTY_LIST; CLASSES],
            timeouts,
            next_id: 1,
            clock: 0,
            high_ns: None,
            back_tolerance_ns: ns(config.back_tolerance),
            stats: FlowStats::default(),
            prepared: Vec::new(),
            last_evictions: 0,
            victims: Vec::new(),
            last_victim: NIL,
            in_order_evictions: 0,
            last_in_order: false,
            prefetch_from: PREFETCH_MIN_FLOWS,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &FlowConfig {
        &self.config
    }

    /// Flows in the table now.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.index.len() == 0
    }

    /// Counters since creation.
    pub fn stats(&self) -> FlowStats {
        self.stats
    }

    /// The index tag of a key (a per-process seeded hash, folded to 32 bits).
    #[inline]
    fn tag(&self, key: &Key) -> u32 {
        let h = self.hasher.hash_one(key);
        (h ^ (h >> 32)) as u32
    }

    /// Tracks one packet: ends what timed out by its time, finds or starts its flow
    /// (evicting when full), and updates the flow. `Started`/`Ended` events are appended to
    /// `events` in the order they happen.
    pub fn track(&mut self, p: &PacketMeta, events: &mut impl EventSink) -> FlowRef {
        let (key, src_lo) = Key::of(p);
        let tag = self.tag(&key);
        self.track_prepared(p, Prepared { key, tag, src_lo }, events)
    }

    /// Tracks `packets` in order, appending each one's [`FlowRef`] to `refs` and the events
    /// to `events`: exactly what calling [`FlowTable::track`] on each would do, faster on a
    /// big table (from `PREFETCH_MIN_FLOWS` flows on; a smaller one tracks each packet as
    /// it comes). A first pass computes every key; then, while each packet is tracked in
    /// order, the index bucket of the packet `AHEAD` (8) places later is prefetched, and so
    /// are the bucket and cold half of the flow eviction will take then. Those victims are
    /// the next least recently used flows: while the previous batch's victims came in slot
    /// order (at least 7 in 8 of them), they are guessed by slot number, one per packet;
    /// else the recency lists are walked once per batch, as many as the previous batch
    /// evicted (a table that is not evicting walks none). The misses of a new flow and of
    /// its victim so overlap with the work on the packets before it instead of stalling
    /// each packet. Only hints depend on these guesses, never a result.
    pub fn track_batch(
        &mut self,
        packets: &[PacketMeta],
        refs: &mut Vec<FlowRef>,
        events: &mut impl EventSink,
    ) {
        if self.index.len() < self.prefetch_from {
            // A small table stays in cache: prefetching would only cost.
            refs.reserve(packets.len());
            for p in packets {
                refs.push(self.track(p, events));
            }
            self.last_evictions = 0;
            return;
        }
        let mut prepared = std::mem::take(&mut self.prepared);
        prepared.clear();
        for p in packets {
            let (key, src_lo) = Key::of(p);
            let tag = self.tag(&key);
            prepared.push(Prepared { key, tag, src_lo });
        }
        let evicted_before = self.stats.evicted;
        let in_order_before = self.in_order_evictions;
        refs.reserve(packets.len());
        if self.last_evictions > 0 && self.last_in_order {
            // Victims in slot order: guess the coming ones by slot number (no walk).
            for k in 0..AHEAD {
                if let Some(q) = prepared.get(k) {
                    self.index.prefetch(q.tag);
                }
            }
            for (k, (p, q)) in packets.iter().zip(&prepared).enumerate() {
                if let Some(q) = prepared.get(k + AHEAD) {
                    self.index.prefetch(q.tag);
                }
                self.prefetch_guessed_victims();
                refs.push(self.track_prepared(p, *q, events));
            }
        } else {
            let mut victims = std::mem::take(&mut self.victims);
            victims.clear();
            self.next_victims(self.last_evictions.min(packets.len()), &mut victims);
            for k in 0..AHEAD {
                self.prefetch_for(&prepared, &victims, k);
            }
            for (k, (p, q)) in packets.iter().zip(&prepared).enumerate() {
                self.prefetch_for(&prepared, &victims, k + AHEAD);
                refs.push(self.track_prepared(p, *q, events));
            }
            self.victims = victims;
        }
        self.prepared = prepared;
        let evicted = self.stats.evicted - evicted_before;
        self.last_evictions = evicted as usize;
        // "In order": at least 7 of 8 of the batch's victims followed the previous one.
        self.last_in_order = (self.in_order_evictions - in_order_before) * 8 >= evicted * 7;
    }

    /// While victims come in slot order (high-cardinality traffic: every flow is used once,
    /// so the least recently used is the oldest, and a new flow takes its victim's slot,
    /// keeping the order), the victim `AHEAD` evictions on is the slot `AHEAD` after the
    /// last one: prefetch its index bucket and cold half, and the hot half (whose tag names
    /// the bucket) of the one `2 * AHEAD` on, so that tag is in cache when it is read here
    /// later. A wrong guess only costs the hints.
    #[inline]
    fn prefetch_guessed_victims(&self) {
        let n = self.slots.len();
        if self.last_victim == NIL || n <= 2 * AHEAD {
            return;
        }
        let wrap = |i: usize| if i >= n { i - n } else { i };
        let base = self.last_victim as usize;
        prefetch::prefetch(&self.slots[wrap(base + 2 * AHEAD)]);
        let g = wrap(base + AHEAD);
        self.index.prefetch(self.slots[g].tag);
        prefetch::prefetch(&self.cold[g]);
    }

    /// Prefetches what the `k`th packet of a batch will read: its index bucket, and the
    /// `k`th predicted victim's bucket and cold half.
    #[inline]
    fn prefetch_for(&self, prepared: &[Prepared], victims: &[(u32, u32)], k: usize) {
        if let Some(q) = prepared.get(k) {
            self.index.prefetch(q.tag);
        }
        if let Some(&(tag, slot)) = victims.get(k) {
            self.index.prefetch(tag);
            prefetch::prefetch(&self.cold[slot as usize]);
        }
    }

    /// Appends the next `n` least recently used flows (tag, slot) in the order eviction
    /// will take them: the class lists merged by last use, as [`FlowTable::evict`] picks.
    /// (A flow that is used again before its turn is only prefetched for nothing.)
    fn next_victims(&self, n: usize, out: &mut Vec<(u32, u32)>) {
        let mut cur = [NIL; CLASSES];
        let mut at = [u64::MAX; CLASSES];
        for (c, l) in self.lists.iter().enumerate() {
            cur[c] = l.head;
            at[c] = l.head_touched;
        }
        for _ in 0..n {
            let mut pick = CLASSES;
            let mut oldest = u64::MAX;
            for c in 0..CLASSES {
                if cur[c] != NIL && at[c] <= oldest {
                    oldest = at[c];
                    pick = c;
                }
            }
            if pick == CLASSES {
                return;
            }
            let i = cur[pick];
            let f = &self.slots[i as usize];
            out.push((f.tag, i));
            cur[pick] = f.next;
            at[pick] = if f.next == NIL {
                u64::MAX
            } else {
                self.slots[f.next as usize].touched
            };
        }
    }

    fn track_prepared(
        &mut self,
        p: &PacketMeta,
        q: Prepared,
        events: &mut impl EventSink,
    ) -> FlowRef {
        self.tick(p.ts_ns);
        self.expire(events);
        let Prepared { key, tag, src_lo } = q;
        let is_tcp = p.transport == Transport::Tcp;
        let pure_syn = is_tcp && p.tcp_flags & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN;
        let slot = match self.find(tag, &key) {
            Some(i) if pure_syn && self.slots[i as usize].class == Class::TcpClosing => {
                // Port reuse: the old connection is over; this SYN opens a new one.
                self.end(i, None, events);
                self.create(key, tag, src_lo, p, events)
            }
            Some(i) => i,
            None => self.create(key, tag, src_lo, p, events),
        };
        self.update(slot, src_lo, p);
        let f = &self.slots[slot as usize];
        FlowRef {
            id: self.cold[slot as usize].id,
            direction: if src_lo == f.orig_is_lo {
                Direction::FromOriginator
            } else {
                Direction::FromResponder
            },
        }
    }

    /// Moves the clock to `now_ns` (live: the kitchen clock between packets) and ends the
    /// flows that timed out, appending their `Ended` events.
    pub fn advance(&mut self, now_ns: u64, events: &mut impl EventSink) {
        self.tick(now_ns);
        self.expire(events);
    }

    /// Moves the clock to `now_ns` and ends what timed out, then ends the least recently
    /// used flow as `evicted`, as a full table does to make room for a new flow. Crash
    /// capsules replay a call's evictions with it (`nd-sniff --capsule-evict-ns`). Does
    /// nothing more on an empty table.
    pub fn evict_lru(&mut self, now_ns: u64, events: &mut impl EventSink) {
        self.advance(now_ns, events);
        self.evict(events);
    }

    /// Ends every flow (end of capture, or the kitchen stopping), oldest id first. Flows
    /// already closed by FIN/RST keep that reason.
    ///
    /// The flows are reported in id order and the table is then emptied at once (lists,
    /// index and slab reset), instead of unlinking each flow and removing it from the index:
    /// on a full table those removals were one cache miss per flow.
    pub fn end_all(&mut self, events: &mut impl EventSink) {
        let live = self.live_by_id();
        events.reserve_ended(live.len());
        for i in live {
            self.report_end(i, Some(EndReason::EndOfCapture), events);
        }
        self.lists = [EMPTY_LIST; CLASSES];
        self.index.clear();
        self.slots.clear();
        self.cold.clear();
        self.free.clear();
        self.last_victim = NIL;
        self.last_evictions = 0;
    }

    /// The live flows' slots, oldest id first. Ids only grow, so the live ones usually
    /// span a range not much wider than their count: then they are placed by id in one
    /// pass (no sort); else sorted.
    fn live_by_id(&self) -> Vec<u32> {
        let ids = self
            .slots
            .iter()
            .zip(&self.cold)
            .enumerate()
            .filter(|(_, (f, _))| f.live)
            .map(|(i, (_, c))| (c.id, i as u32));
        let n = self.index.len();
        let (lo, hi) = ids
            .clone()
            .fold((u64::MAX, 0), |(lo, hi), (id, _)| (lo.min(id), hi.max(id)));
        if n == 0 {
            return Vec::new();
        }
        let span = hi - lo + 1;
        if span <= 4 * n as u64 {
            let mut at = vec![NIL; span as usize];
            for (id, i) in ids {
                at[(id - lo) as usize] = i;
            }
            at.retain(|&i| i != NIL);
            at
        } else {
            let mut v: Vec<(u64, u32)> = ids.collect();
            v.sort_unstable();
            v.into_iter().map(|(_, i)| i).collect()
        }
    }

    /// The TCP state of the flow `p` belongs to, if it is in the table (for diagnostics and
    /// tests; does not touch the flow).
    pub fn tcp_state(&self, p: &PacketMeta) -> Option<TcpState> {
        let (key, _) = Key::of(p);
        let i = self.find(self.tag(&key), &key)?;
        let f = &self.slots[i as usize];
        (key.transport() == Transport::Tcp).then(|| state_of(f))
    }

    fn tick(&mut self, t: u64) {
        match self.high_ns {
            None => self.high_ns = Some(t),
            Some(high) if t > high => {
                self.clock = self.clock.saturating_add(t - high);
                self.high_ns = Some(t);
            }
            Some(high) if high - t > self.back_tolerance_ns => {
                self.stats.clock_restarts += 1;
                self.high_ns = Some(t);
            }
            // A small step back: held.
            Some(_) => {}
        }
    }

    #[inline]
    fn expire(&mut self, events: &mut impl EventSink) {
        for class in 0..CLASSES {
            let timeout = self.timeouts[class];
            // `head_touched` is u64::MAX for an empty list: never expired.
            while self.clock.saturating_sub(self.lists[class].head_touched) > timeout {
                let head = self.lists[class].head;
                let reason = if class == Class::TcpClosing as usize {
                    None
                } else {
                    Some(EndReason::IdleTimeout)
                };
                self.end(head, reason, events);
            }
        }
    }

    #[inline]
    fn find(&self, tag: u32, key: &Key) -> Option<u32> {
        let slots = &self.slots;
        self.index.find(tag, |i| slots[i as usize].key == *key)
    }

    fn create(
        &mut self,
        key: Key,
        tag: u32,
        src_lo: bool,
        p: &PacketMeta,
        events: &mut impl EventSink,
    ) -> u32 {
        if self.index.len() >= self.config.max_flows {
            self.evict(events);
        }
        // A SYN-ACK seen first: its receiver sent the SYN we missed.
        let synack = p.transport == Transport::Tcp
            && p.tcp_flags & (tcp_flags::SYN | tcp_flags::ACK) == (tcp_flags::SYN | tcp_flags::ACK);
        let orig_is_lo = src_lo != synack;
        let id = self.next_id;
        self.next_id += 1;
        let class = match p.transport {
            Transport::Tcp => Class::TcpNew,
            Transport::Udp => Class::Udp,
            Transport::Icmpv4 | Transport::Icmpv6 => Class::Icmp,
        };
        let hot = Hot {
            key,
            touched: self.clock,
            prev: NIL,
            next: NIL,
            tag,
            orig_is_lo,
            class,
            tcp: 0,
            live: true,
        };
        let cold = Cold {
            id,
            first_ns: p.ts_ns,
            last_ns: p.ts_ns,
            packets: [0; 2],
            bytes: [0; 2],
            flags_seen: 0,
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = hot;
                self.cold[i as usize] = cold;
                i
            }
            None => {
                self.slots.push(hot);
                self.cold.push(cold);
                (self.slots.len() - 1) as u32
            }
        };
        self.index.insert(tag, i);
        self.push_newest(i);
        self.stats.started += 1;
        if events.wants_started() {
            events.started(FlowStart {
                id,
                key: oriented(&key, orig_is_lo),
                timestamp_ns: p.ts_ns,
            });
        }
        i
    }

    /// Evicts the least recently used flow of any class.
    fn evict(&mut self, events: &mut impl EventSink) {
        let mut victim = NIL;
        let mut oldest = u64::MAX;
        for l in &self.lists {
            if l.head != NIL && l.head_touched <= oldest {
                oldest = l.head_touched;
                victim = l.head;
            }
        }
        if victim != NIL {
            let n = self.slots.len() as u32;
            let follows = if self.last_victim == NIL {
                false
            } else if self.last_victim + 1 == n {
                victim == 0
            } else {
                victim == self.last_victim + 1
            };
            self.in_order_evictions += u64::from(follows);
            self.last_victim = victim;
            // A closed flow that lingers had ended anyway: it keeps its FIN/RST reason.
            let reason = if self.slots[victim as usize].class == Class::TcpClosing {
                None
            } else {
                Some(EndReason::Evicted)
            };
            self.end(victim, reason, events);
        }
    }

    #[inline]
    fn update(&mut self, i: u32, src_lo: bool, p: &PacketMeta) {
        let clock = self.clock;
        let f = &mut self.slots[i as usize];
        let c = &mut self.cold[i as usize];
        let dir = if src_lo == f.orig_is_lo { ORIG } else { RESP };
        c.packets[dir] += 1;
        c.bytes[dir] += u64::from(p.bytes);
        c.last_ns = c.last_ns.max(p.ts_ns);
        f.touched = clock;
        if dir == RESP {
            f.tcp |= T_RESP_SEEN;
        }
        let mut class = f.class;
        if p.transport == Transport::Tcp {
            let fl = p.tcp_flags;
            c.flags_seen |= fl;
            let syn = fl & tcp_flags::SYN != 0;
            let ack = fl & tcp_flags::ACK != 0;
            if syn && !ack {
                f.tcp |= T_SYN;
            } else if syn {
                f.tcp |= T_SYNACK;
            } else if dir == ORIG && f.tcp & T_SYNACK != 0 {
                f.tcp |= T_ESTABLISHED;
            }
            if fl & tcp_flags::FIN != 0 {
                f.tcp |= if dir == ORIG { T_FIN_ORIG } else { T_FIN_RESP };
            }
            if fl & tcp_flags::RST != 0 {
                f.tcp |= T_RST;
            }
            class = if f.tcp & T_RST != 0
                || f.tcp & (T_FIN_ORIG | T_FIN_RESP) == (T_FIN_ORIG | T_FIN_RESP)
            {
                Class::TcpClosing
            } else if f.tcp & T_RESP_SEEN != 0 {
                Class::TcpOpen
            } else {
                Class::TcpNew
            };
        }
        // Move to the newest end of its (possibly new) class list; a flow already there
        // (the same flow's packets in a row) stays, only its time changes.
        let old = f.class as usize;
        if class as usize == old && self.lists[old].tail == i {
            if self.lists[old].head == i {
                self.lists[old].head_touched = clock;
            }
            return;
        }
        self.unlink(i);
        self.slots[i as usize].class = class;
        self.push_newest(i);
    }

    /// Ends flow `i` with `reason` (`None`: its TCP close reason), appending the event.
    fn end(&mut self, i: u32, reason: Option<EndReason>, events: &mut impl EventSink) {
        self.unlink(i);
        let tag = self.slots[i as usize].tag;
        // By the stored tag and slot: no key comparison, no other slot read.
        self.index.remove(tag, i);
        self.free.push(i);
        self.report_end(i, reason, events);
    }

    /// Marks flow `i` ended, counts it and appends its `Ended` event (the caller takes it
    /// out of the lists and the index).
    #[inline]
    fn report_end(&mut self, i: u32, reason: Option<EndReason>, events: &mut impl EventSink) {
        let f = &mut self.slots[i as usize];
        f.live = false;
        let closed = if f.tcp & T_RST != 0 {
            Some(EndReason::Rst)
        } else if f.tcp & (T_FIN_ORIG | T_FIN_RESP) == (T_FIN_ORIG | T_FIN_RESP) {
            Some(EndReason::Fin)
        } else {
            None
        };
        let reason = match (reason, closed) {
            // A closed flow reported at the end of a capture or on eviction keeps its
            // FIN/RST reason: nothing was cut short.
            (Some(EndReason::EndOfCapture | EndReason::Evicted), Some(c)) | (None, Some(c)) => c,
            (Some(r), _) => r,
            // Unreachable by construction (only closing flows are ended with `None`);
            // an idle timeout is the honest fallback.
            (None, None) => EndReason::IdleTimeout,
        };
        match reason {
            EndReason::Fin => self.stats.ended_fin += 1,
            EndReason::Rst => self.stats.ended_rst += 1,
            EndReason::IdleTimeout => self.stats.ended_idle += 1,
            EndReason::Evicted => self.stats.evicted += 1,
            EndReason::EndOfCapture => self.stats.ended_end_of_capture += 1,
        }
        let c = &self.cold[i as usize];
        events.ended(FlowSummary {
            id: c.id,
            key: oriented(&f.key, f.orig_is_lo),
            first_ns: c.first_ns,
            last_ns: c.last_ns,
            packets_from_originator: c.packets[ORIG],
            packets_from_responder: c.packets[RESP],
            bytes_from_originator: c.bytes[ORIG],
            bytes_from_responder: c.bytes[RESP],
            tcp_flags_seen: c.flags_seen,
            end_reason: reason,
        });
    }

    fn unlink(&mut self, i: u32) {
        let (prev, next, class) = {
            let f = &self.slots[i as usize];
            (f.prev, f.next, f.class as usize)
        };
        if prev == NIL {
            self.lists[class].head = next;
            self.lists[class].head_touched = if next == NIL {
                u64::MAX
            } else {
                self.slots[next as usize].touched
            };
        } else {
            self.slots[prev as usize].next = next;
        }
        if next == NIL {
            self.lists[class].tail = prev;
        } else {
            self.slots[next as usize].prev = prev;
        }
        let f = &mut self.slots[i as usize];
        f.prev = NIL;
        f.next = NIL;
    }

    fn push_newest(&mut self, i: u32) {
        let class = self.slots[i as usize].class as usize;
        let tail = self.lists[class].tail;
        let touched = {
            let f = &mut self.slots[i as usize];
            f.prev = tail;
            f.next = NIL;
            f.touched
        };
        if tail == NIL {
            self.lists[class].head = i;
            self.lists[class].head_touched = touched;
        } else {
            self.slots[tail as usize].next = i;
        }
        self.lists[class].tail = i;
    }
}

fn state_of(f: &Hot) -> TcpState {
    let t = f.tcp;
    if t & T_RST != 0 {
        TcpState::Reset
    } else if t & (T_FIN_ORIG | T_FIN_RESP) == (T_FIN_ORIG | T_FIN_RESP) {
        TcpState::Closed
    } else if t & (T_FIN_ORIG | T_FIN_RESP) != 0 {
        TcpState::FinOneWay
    } else if t & T_ESTABLISHED != 0 {
        TcpState::Established
    } else if t & T_SYNACK != 0 {
        TcpState::SynReceived
    } else if t & T_SYN != 0 {
        TcpState::SynSent
    } else if t & T_RESP_SEEN != 0 {
        TcpState::Established
    } else {
        TcpState::MidStream
    }
}

fn oriented(key: &Key, orig_is_lo: bool) -> FlowKey {
    let lo = addr_of(key.lo, key.v6());
    let hi = addr_of(key.hi, key.v6());
    let transport = key.transport();
    if orig_is_lo {
        FlowKey {
            transport,
            originator: lo,
            responder: hi,
            originator_port: key.lo_port(),
            responder_port: key.hi_port(),
        }
    } else {
        FlowKey {
            transport,
            originator: hi,
            responder: lo,
            originator_port: key.hi_port(),
            responder_port: key.lo_port(),
        }
    }
}

mod index;
pub(crate) mod prefetch;
use index::Index;

#[cfg(test)]
mod tests;
