//! Synthesized packets for the crash capsules of calls whose input is not packets
//! (`on-stream`, `on-flow-events`): the kitchen keeps neither the segments behind a
//! reassembled stream nor the packets behind a flow summary, so the capsule holds packets
//! made up to give the same input when replayed through the kitchen's flow table and
//! reassembly (raw IP frames, DLT 101, checksums right, written by `etherparse`).
//!
//! * **Stream chunks.** Per flow of the call: a handshake (SYN, SYN-ACK, ACK) at the time
//!   of its first chunk, so stream offset 0 is anchored, then one segment per chunk at
//!   sequence `ISN + 1 + offset` carrying exactly the chunk's bytes, in the call's order;
//!   a chunk marked `last` carries FIN (an empty one is a bare FIN). Holes (a `gap-before`)
//!   are sequence jumps: reassembly holds what follows the hole and reports the hole as a
//!   gap when the replayed flow ends, so the chef gets the same bytes at the same offsets,
//!   but such chunks arrive at the end of the replay. The bytes a stream delivered in
//!   earlier calls (the kitchen does not keep them) are stood in for by zeros, two poke
//!   intervals before the call's first chunk, so the replay delivers them in an earlier
//!   call and this call's chunks come with the same offsets and gaps (at most half of
//!   [`MAX_SYNTH_BYTES`] of zeros; past that the stream starts with a gap, counted).
//! * **Flow events.** Per flow of the call: for a `started` event, the flow's first packet
//!   (TCP SYN, UDP datagram, ICMP echo request); for an `ended` event, packets that give
//!   the same summary: the same key and originator, first and last times, packets each way
//!   (every packet while the call's flows fit in [`MAX_SYNTH_BYTES`] as header-only
//!   frames, about 17 000 packets; beyond that each direction is folded into fewer, longer
//!   packets, at least [`MIN_FOLDED_PACKETS_PER_DIRECTION`], and the note says so), bytes
//!   each way (frames are cut after their headers and carry the wire length, as a snaplen
//!   would), TCP flags, and FIN / RST for those end reasons. A flow that ended by idle
//!   timeout ends so again: a last "clock" packet (an ICMP echo between 192.0.2.1 and
//!   192.0.2.2, a flow of its own) comes just after its timeout ran out, and the replay
//!   line carries the kitchen's `--flow-idle-*` flags. An evicted flow is evicted again:
//!   the replay line asks for an eviction of the least recently used flow just after its
//!   last packet (`--capsule-evict-ns`), and every other flow of the call that is open then
//!   gets a packet between the two, as in the kitchen it had one (else it, not the evicted
//!   flow, would have been the least recently used).
//!
//! **Checked.** What is made for flow events is replayed here through a flow table with
//! the kitchen's settings, and the note says whether every flow the call ended came out
//! with the same summary (`ends_checked_same`); when the evictions do not, the capsule is
//! made without them (evicted flows then end at the end of the replay, counted).
//!
//! Bounded: at most [`MAX_SYNTH_BYTES`] of frames; what does not fit is left out and
//! counted in the note's input summary.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::{
    IpFragOffset, IpNumber, Ipv4Header, Ipv6FragmentHeader, Ipv6Header, PacketBuilder,
};
use flowtrack::table::{
    tcp_flags, EndReason, FlowConfig, FlowEvent, FlowKey, FlowSummary, Transport,
};
use serde_json::{json, Value};

use super::CapsuleFrame;
use crate::chef_host::bindings::{Direction, IpAddress, StreamChunk, TransportProtocol};
use crate::parse::defrag::{FragKey, Fragment};

/// Link type of synthesized frames: raw IP (LINKTYPE_RAW).
pub const LINK_TYPE: u32 = crate::parse::packet::dlt::RAW;
/// Most bytes of synthesized frames in one capsule (one batch's worth, as for packets).
pub const MAX_SYNTH_BYTES: usize = crate::parse::batch::MAX_BATCH_BYTES;
/// Fewest packets made per direction of one ended flow when a call's flows carry more
/// packets than [`MAX_SYNTH_BYTES`] can hold (below that, every packet is made).
pub const MIN_FOLDED_PACKETS_PER_DIRECTION: u64 = 64;
/// The largest header-only frame a flow summary is replayed with (IPv6 + TCP), which sizes
/// how many packets fit in [`MAX_SYNTH_BYTES`].
const LARGEST_SUMMARY_FRAME: u64 = 60;
/// Largest payload per synthesized TCP segment (a longer chunk is split).
const MAX_SEGMENT: usize = 60_000;
/// Initial sequence numbers of the two sides (any value works; these make the offsets
/// easy to read in Wireshark without relative sequence numbers).
const ISN: [u32; 2] = [1_000_000, 2_000_000];
/// ACK, PSH, SYN, FIN, RST as the TCP flags byte.
const ACK: u8 = tcp_flags::ACK;
const PSH: u8 = tcp_flags::PSH;
const SYN: u8 = tcp_flags::SYN;
const FIN: u8 = tcp_flags::FIN;
const RST: u8 = tcp_flags::RST;

/// Frames being made, within [`MAX_SYNTH_BYTES`].
#[derive(Default)]
pub struct Frames {
    /// The frames.
    pub frames: Vec<CapsuleFrame>,
    /// Their bytes.
    pub data: Vec<u8>,
    /// Frames left out for the bound.
    pub left_out: u64,
}

impl Frames {
    /// The frames as capture records (interface 0), in order.
    pub fn records(&self) -> impl Iterator<Item = capture::PacketRecord<'_>> {
        self.frames.iter().map(|f| capture::PacketRecord {
            timestamp_ns: f.timestamp_ns,
            link_type: f.link_type,
            interface_index: 0,
            original_len: f.original_len,
            data: &self.data[f.offset..f.offset + f.len],
        })
    }

    /// Add one frame (`original_len`: bytes on the wire, at least its length).
    fn push(&mut self, timestamp_ns: u64, original_len: u64, frame: &[u8]) {
        if self.data.len() + frame.len() > MAX_SYNTH_BYTES {
            self.left_out += 1;
            return;
        }
        self.frames.push(CapsuleFrame {
            timestamp_ns,
            link_type: LINK_TYPE,
            original_len: u32::try_from(original_len.max(frame.len() as u64)).unwrap_or(u32::MAX),
            offset: self.data.len(),
            len: frame.len(),
        });
        self.data.extend_from_slice(frame);
    }
}

/// A flow's 5-tuple as the synthesizer needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Conn {
    transport: Transport,
    originator: IpAddr,
    responder: IpAddr,
    originator_port: u16,
    responder_port: u16,
}

impl Conn {
    fn from_native(k: &FlowKey) -> Conn {
        Conn {
            transport: k.transport,
            originator: k.originator,
            responder: k.responder,
            originator_port: k.originator_port,
            responder_port: k.responder_port,
        }
    }

    fn from_wit(k: &crate::chef_host::bindings::FlowKey) -> Conn {
        let addr = |a: &IpAddress| match *a {
            IpAddress::V4(v4) => IpAddr::V4(Ipv4Addr::from(v4)),
            IpAddress::V6((hi, lo)) => {
                IpAddr::V6(Ipv6Addr::from((u128::from(hi) << 64) | u128::from(lo)))
            }
        };
        Conn {
            transport: match k.transport {
                TransportProtocol::Tcp => Transport::Tcp,
                TransportProtocol::Udp => Transport::Udp,
                TransportProtocol::Icmpv4 => Transport::Icmpv4,
                TransportProtocol::Icmpv6 => Transport::Icmpv6,
            },
            originator: addr(&k.originator),
            responder: addr(&k.responder),
            originator_port: k.originator_port,
            responder_port: k.responder_port,
        }
    }

    /// The frame `side` (0 = originator, 1 = responder) sends: TCP with `flags`, `seq`,
    /// `ack` and `payload`; UDP or ICMP echo with `payload`. `None` when the two
    /// addresses are of different families (cannot happen for a tracked flow).
    fn frame(&self, side: usize, flags: u8, seq: u32, ack: u32, payload: &[u8]) -> Option<Vec<u8>> {
        let (src, dst, sport, dport) = if side == 0 {
            (
                self.originator,
                self.responder,
                self.originator_port,
                self.responder_port,
            )
        } else {
            (
                self.responder,
                self.originator,
                self.responder_port,
                self.originator_port,
            )
        };
        let ip = match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => PacketBuilder::ipv4(s.octets(), d.octets(), 64),
            (IpAddr::V6(s), IpAddr::V6(d)) => PacketBuilder::ipv6(s.octets(), d.octets(), 64),
            _ => return None,
        };
        let mut out = Vec::with_capacity(80 + payload.len());
        let written = match self.transport {
            Transport::Tcp => {
                let mut b = ip.tcp(sport, dport, seq, 65535);
                if flags & SYN != 0 {
                    b = b.syn();
                }
                if flags & FIN != 0 {
                    b = b.fin();
                }
                if flags & RST != 0 {
                    b = b.rst();
                }
                if flags & PSH != 0 {
                    b = b.psh();
                }
                if flags & ACK != 0 {
                    b = b.ack(ack);
                }
                if flags & tcp_flags::URG != 0 {
                    b = b.urg(0);
                }
                if flags & tcp_flags::ECE != 0 {
                    b = b.ece();
                }
                if flags & tcp_flags::CWR != 0 {
                    b = b.cwr();
                }
                b.write(&mut out, payload).is_ok()
            }
            Transport::Udp => ip.udp(sport, dport).write(&mut out, payload).is_ok(),
            // Echo request one way, reply the other (one ICMP flow per address pair).
            Transport::Icmpv4 if side == 0 => ip
                .icmpv4_echo_request(1, 1)
                .write(&mut out, payload)
                .is_ok(),
            Transport::Icmpv4 => ip.icmpv4_echo_reply(1, 1).write(&mut out, payload).is_ok(),
            Transport::Icmpv6 if side == 0 => ip
                .icmpv6_echo_request(1, 1)
                .write(&mut out, payload)
                .is_ok(),
            Transport::Icmpv6 => ip.icmpv6_echo_reply(1, 1).write(&mut out, payload).is_ok(),
        };
        written.then_some(out)
    }
}

fn side_of(d: Direction) -> usize {
    match d {
        Direction::FromOriginator => 0,
        Direction::FromResponder => 1,
    }
}

/// Packets that make reassembly hand a chef `chunks` (spans into `arena`) again, and a
/// summary of what was made for the note. `poke_interval_ns` is the replay's poke interval:
/// the stand-in for the bytes a stream delivered before this call comes two intervals
/// before the call's first chunk, so a poke cuts the replay's batch between the two.
pub fn stream_packets(
    chunks: &[StreamChunk],
    arena: &[u8],
    poke_interval_ns: u64,
) -> (Frames, Value) {
    let mut out = Frames::default();
    let mut flows: Vec<u64> = Vec::new();
    let mut chunk_bytes = 0u64;
    let handshake = |conn: &Conn, ts: u64, out: &mut Frames| {
        let [o, r] = ISN;
        for (s, flags, seq, ack) in [
            (0, SYN, o, 0),
            (1, SYN | ACK, r, o.wrapping_add(1)),
            (0, ACK, o.wrapping_add(1), r.wrapping_add(1)),
        ] {
            if let Some(f) = conn.frame(s, flags, seq, ack, &[]) {
                out.push(ts, 0, &f);
            }
        }
    };
    // Bytes a direction delivered in earlier calls: zeros in an earlier batch, so this
    // call's chunks come at the same offsets with the same gaps.
    // `None` when the capture's clock starts too close to zero for a poke to fit before.
    let earlier_at = chunks
        .iter()
        .map(|c| c.timestamp_ns)
        .min()
        .and_then(|t| t.checked_sub(poke_interval_ns.saturating_mul(2)));
    let mut sides_seen: Vec<(u64, usize)> = Vec::new();
    let mut stand_in_bytes = 0u64;
    let mut not_stood_in = 0u64;
    for c in chunks {
        let side = side_of(c.flow.direction);
        if sides_seen.contains(&(c.flow.id, side)) {
            continue;
        }
        sides_seen.push((c.flow.id, side));
        let earlier = c.offset.saturating_sub(c.gap_before);
        if earlier == 0 {
            continue;
        }
        let Some(earlier_at) =
            earlier_at.filter(|_| out.data.len() as u64 + earlier <= MAX_SYNTH_BYTES as u64 / 2)
        else {
            not_stood_in += 1;
            continue;
        };
        let conn = Conn::from_wit(&c.key);
        if !flows.contains(&c.flow.id) {
            flows.push(c.flow.id);
            handshake(&conn, earlier_at, &mut out);
        }
        let zeros = vec![0u8; earlier as usize];
        let ack = ISN[1 - side].wrapping_add(1);
        let mut offset = 0u64;
        for piece in zeros.chunks(MAX_SEGMENT) {
            let seq = ISN[side].wrapping_add(1).wrapping_add(offset as u32);
            if let Some(f) = conn.frame(side, ACK | PSH, seq, ack, piece) {
                out.push(earlier_at, 0, &f);
            }
            offset += piece.len() as u64;
        }
        stand_in_bytes += earlier;
    }
    for c in chunks {
        let conn = Conn::from_wit(&c.key);
        let side = side_of(c.flow.direction);
        if !flows.contains(&c.flow.id) {
            flows.push(c.flow.id);
            handshake(&conn, c.timestamp_ns, &mut out);
        }
        let start = c.data.offset as usize;
        let data = arena
            .get(start..start.saturating_add(c.data.len as usize))
            .unwrap_or(&[]);
        chunk_bytes += data.len() as u64;
        // Offsets are 64-bit, sequence numbers wrap at 32: `as u32` is the wrap.
        let seq_of = |offset: u64| ISN[side].wrapping_add(1).wrapping_add(offset as u32);
        let ack = ISN[1 - side].wrapping_add(1);
        let pieces: Vec<&[u8]> = if data.is_empty() {
            vec![&[][..]]
        } else {
            data.chunks(MAX_SEGMENT).collect()
        };
        let n = pieces.len();
        let mut offset = c.offset;
        for (i, piece) in pieces.into_iter().enumerate() {
            let mut flags = ACK;
            if !piece.is_empty() {
                flags |= PSH;
            }
            if c.last && i + 1 == n {
                flags |= FIN;
            }
            if let Some(f) = conn.frame(side, flags, seq_of(offset), ack, piece) {
                out.push(c.timestamp_ns, 0, &f);
            }
            offset += piece.len() as u64;
        }
    }
    let summary = json!({
        "chunks": chunks.len(),
        "chunk_bytes": chunk_bytes,
        "flows": flows.len(),
        "first_chunks": chunks.iter().take(16).map(|c| json!({
            "flow": c.flow.id,
            "direction": if side_of(c.flow.direction) == 0 { "from-originator" } else { "from-responder" },
            "offset": c.offset,
            "gap_before": c.gap_before,
            "len": c.data.len,
            "last": c.last,
        })).collect::<Vec<_>>(),
        "packets": out.frames.len(),
        "earlier_bytes_as_zeros": stand_in_bytes,
        "earlier_bytes_not_replayed_directions": not_stood_in,
        "packets_left_out": out.left_out,
        "synthesized": "a handshake per flow, then one segment per chunk at its stream offset \
                        (holes as sequence jumps: reported as gaps when the replayed flow \
                        ends); bytes a stream delivered before this call as zeros, two poke \
                        intervals before it, so they come in an earlier call",
    });
    (out, summary)
}

/// The idle timeout that ended `s` under `config` (the table's class for the flow).
fn idle_timeout_ns(s: &FlowSummary, config: &FlowConfig) -> u64 {
    let t = match s.key.transport {
        Transport::Tcp if s.packets_from_responder > 0 => config.idle_tcp,
        Transport::Tcp => config.idle_tcp_new,
        Transport::Udp => config.idle_udp,
        Transport::Icmpv4 | Transport::Icmpv6 => config.idle_icmp,
    };
    u64::try_from(t.as_nanos()).unwrap_or(u64::MAX)
}

/// The clock packet's flow: an ICMP echo between two TEST-NET-1 addresses (RFC 5737), so it
/// cannot be mistaken for real traffic.
const CLOCK_CONN: Conn = Conn {
    transport: Transport::Icmpv4,
    originator: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
    responder: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)),
    originator_port: 0,
    responder_port: 0,
};

/// Packets that make the flow table produce `events` again (see the module docs), a
/// summary for the note, and the capture times at which the replay must evict
/// (`--capsule-evict-ns`; empty when no flow ended by eviction or that could not be
/// replayed). With the kitchen's flow `config`, flows that ended by idle timeout end so
/// again: a last "clock" packet (an ICMP echo between 192.0.2.1 and 192.0.2.2, a flow of
/// its own) comes just after their timeouts ran out. What was made is replayed through a
/// flow table here, and the note says whether every ended flow came out the same.
pub fn flow_packets(
    events: &[FlowEvent],
    config: Option<&FlowConfig>,
) -> (Frames, Value, Vec<u64>) {
    let per_direction = packets_per_direction(events);
    let plan = config.and_then(|c| eviction_plan(events, c));
    let evicted = plan.as_ref().map_or(0, |p| p.evict_ns.len() as u64);
    // With the plan, or (when that does not replay the same ends) without it.
    let mut attempts = plan.into_iter().map(Some).chain([None]).peekable();
    loop {
        let Some(plan) = attempts.next() else {
            unreachable!("the attempt without a plan is always last")
        };
        let made = made_for(events, config, per_direction, plan.as_ref());
        let same = config.map(|c| replays_the_same_ends(&made.frames, &made.evict_ns, events, c));
        if same == Some(false) && attempts.peek().is_some() {
            continue;
        }
        let planned = plan.is_some();
        let summary = json!({
            "events": events.len(),
            "started": events.iter().filter(|e| matches!(e, FlowEvent::Started(_))).count(),
            "ended": events.iter().filter(|e| matches!(e, FlowEvent::Ended(_))).count(),
            "flows": made.flows,
            "packets": made.frames.frames.len(),
            "packets_left_out": made.frames.left_out,
            "packets_per_direction_folded_to":
                (per_direction != u64::MAX).then_some(per_direction),
            "clock_packet_ns": made.clock_ns,
            "evict_ns": made.evict_ns,
            "evictions_replayed": planned,
            "ends_not_replayed": made.not_replayed + if planned { 0 } else { evicted },
            "ends_checked_same": same,
            "synthesized": "per flow, packets with the same key, times, packet and byte counts \
                            each way (when they do not all fit in a capsule, each direction is \
                            folded into packets_per_direction_folded_to longer packets), TCP \
                            flags and FIN/RST ending; idle timeouts by a last ICMP packet \
                            between 192.0.2.1 and 192.0.2.2 after they ran out (replayed with \
                            the same --flow-idle-* flags); evictions by --capsule-evict-ns at \
                            evict_ns, every other flow of the call given a packet just after \
                            each evicted flow's last, so it is not the least recently used; \
                            ends_checked_same: replayed through a flow table, this gave every \
                            ended flow of the call the same summary",
        });
        return (made.frames, summary, made.evict_ns);
    }
}

/// The packets of one attempt of [`flow_packets`].
struct FlowCapsule {
    frames: Frames,
    evict_ns: Vec<u64>,
    clock_ns: Option<u64>,
    flows: usize,
    not_replayed: u64,
}

/// The packets for `events`, with the evictions of `plan` (see [`flow_packets`]).
fn made_for(
    events: &[FlowEvent],
    config: Option<&FlowConfig>,
    per_direction: u64,
    plan: Option<&EvictionPlan>,
) -> FlowCapsule {
    let anchors: &[u64] = plan.map_or(&[], |p| &p.anchors);
    let mut out = Frames::default();
    let mut made: Vec<u64> = Vec::new();
    let mut not_replayed = 0u64;
    let mut clock_at: Option<u64> = None;
    for e in events {
        let (id, conn) = match e {
            FlowEvent::Started(s) => (s.id, Conn::from_native(&s.key)),
            FlowEvent::Ended(s) => (s.id, Conn::from_native(&s.key)),
        };
        if made.contains(&id) {
            continue;
        }
        made.push(id);
        // The flow's whole summary when the call ends it, else only its start.
        let ended = events.iter().find_map(|e| match e {
            FlowEvent::Ended(s) if s.id == id => Some(s),
            _ => None,
        });
        match (ended, e) {
            (Some(s), _) => {
                match (s.end_reason, config) {
                    (EndReason::IdleTimeout, Some(c)) => {
                        let at = s
                            .last_ns
                            .saturating_add(idle_timeout_ns(s, c))
                            .saturating_add(1_000_000);
                        clock_at = clock_at.max(Some(at));
                    }
                    (EndReason::IdleTimeout, None) => not_replayed += 1,
                    _ => {}
                }
                summary_packets(&conn, s, per_direction, anchors, &mut out);
            }
            (None, FlowEvent::Started(s)) => {
                let tcp = conn.transport == Transport::Tcp;
                if let Some(f) = conn.frame(0, if tcp { SYN } else { 0 }, ISN[0], 0, &[]) {
                    out.push(s.timestamp_ns, 0, &f);
                }
                // In the kitchen it was not the least recently used at an eviction (it
                // would have been evicted): a packet after each evicted flow's last.
                let again = if tcp { ACK } else { 0 };
                let (seq, ack) = (ISN[0].wrapping_add(1), ISN[1].wrapping_add(1));
                for &at in anchors.iter().filter(|&&at| at > s.timestamp_ns) {
                    if let Some(f) = conn.frame(0, again, seq, ack, &[]) {
                        out.push(at, 0, &f);
                    }
                }
            }
            (None, FlowEvent::Ended(_)) => {}
        }
    }
    let evict_ns = plan.map_or_else(Vec::new, |p| p.evict_ns.clone());
    // With evictions, the last one moves the clock past every idle timeout a clock packet
    // before it would serve, and a clock flow older than an evicted one would be evicted
    // in its place.
    let clock_ns = clock_at.filter(|&at| evict_ns.last().is_none_or(|&last| at > last));
    if let Some(at) = clock_ns {
        if let Some(f) = CLOCK_CONN.frame(0, 0, 0, 0, &[]) {
            out.push(at, 0, &f);
        }
    }
    // Frames of several flows must be in time order for the flow table's clock.
    let mut order: Vec<usize> = (0..out.frames.len()).collect();
    order.sort_by_key(|&i| out.frames[i].timestamp_ns);
    let mut sorted = Frames {
        left_out: out.left_out,
        ..Frames::default()
    };
    for i in order {
        let f = out.frames[i];
        sorted.push(
            f.timestamp_ns,
            u64::from(f.original_len),
            &out.data[f.offset..f.offset + f.len],
        );
    }
    FlowCapsule {
        frames: sorted,
        evict_ns,
        clock_ns,
        flows: made.len(),
        not_replayed,
    }
}

/// The summaries of the flows `events` ended, in order.
fn ended_summaries(events: &[FlowEvent]) -> impl Iterator<Item = &FlowSummary> {
    events.iter().filter_map(|e| match e {
        FlowEvent::Ended(s) => Some(s),
        FlowEvent::Started(_) => None,
    })
}

/// How a replay ends a call's evicted flows by eviction again.
struct EvictionPlan {
    /// When the table evicts its least recently used flow, ascending.
    evict_ns: Vec<u64>,
    /// Just after each evicted flow's last packet (ascending): every other flow of the
    /// call that is open then gets a packet at this time, as in the kitchen it had one
    /// between that flow's last packet and its eviction (else it would have been evicted).
    anchors: Vec<u64>,
}

/// The eviction plan for the `Evicted` ends of `events` (`None` without any). Each evicted
/// flow is evicted just after its last packet, but not before the flows of the call that
/// were older and ended otherwise had gone (idle timeout, or the linger after FIN/RST):
/// in the kitchen the evicted flow was the least recently used one, so those were gone.
fn eviction_plan(events: &[FlowEvent], config: &FlowConfig) -> Option<EvictionPlan> {
    let ended: Vec<&FlowSummary> = ended_summaries(events).collect();
    let mut evicted: Vec<&FlowSummary> = ended
        .iter()
        .copied()
        .filter(|s| s.end_reason == EndReason::Evicted)
        .collect();
    if evicted.is_empty() {
        return None;
    }
    evicted.sort_by_key(|s| s.last_ns);
    let linger = u64::try_from(config.close_linger.as_nanos()).unwrap_or(u64::MAX);
    let mut evict_ns: Vec<u64> = Vec::with_capacity(evicted.len());
    let mut anchors: Vec<u64> = Vec::with_capacity(evicted.len());
    for e in &evicted {
        let anchor = e.last_ns.saturating_add(1);
        let mut at = anchor.saturating_add(1);
        for f in &ended {
            if f.last_ns >= e.last_ns {
                continue;
            }
            let gone = match f.end_reason {
                EndReason::IdleTimeout => idle_timeout_ns(f, config),
                EndReason::Fin | EndReason::Rst => linger,
                _ => continue,
            };
            at = at.max(f.last_ns.saturating_add(gone).saturating_add(1));
        }
        if let Some(&before) = evict_ns.last() {
            at = at.max(before.saturating_add(1));
        }
        if anchors.last() != Some(&anchor) {
            anchors.push(anchor);
        }
        evict_ns.push(at);
    }
    Some(EvictionPlan { evict_ns, anchors })
}

/// Whether replaying `made` through a flow table with `config`, evicting at `evict_ns`, ends
/// every flow that `events` ended with the same summary (key, times, counts each way,
/// flags, reason); ids and the ends of flows the call did not end are not compared.
fn replays_the_same_ends(
    made: &Frames,
    evict_ns: &[u64],
    events: &[FlowEvent],
    config: &FlowConfig,
) -> bool {
    // A table as large as the capsule's flows can fill behaves as the kitchen's larger one.
    let small = FlowConfig {
        max_flows: config.max_flows.min(events.len() + 2 + made.frames.len()),
        ..*config
    };
    let Some(got) = table_events(made, evict_ns, small) else {
        return false;
    };
    let got: Vec<&FlowSummary> = ended_summaries(&got).collect();
    ended_summaries(events).all(|w| got.iter().any(|g| FlowSummary { id: w.id, ..**g } == *w))
}

/// The flow events of `made` through a flow table with `config` (its packets in order,
/// the least recently used flow evicted at each of `evict_ns`, every flow ended at the
/// end); `None` when `config` is not one a table runs with.
fn table_events(made: &Frames, evict_ns: &[u64], config: FlowConfig) -> Option<Vec<FlowEvent>> {
    let mut table = flowtrack::table::FlowTable::new(config).ok()?;
    let mut events: Vec<FlowEvent> = Vec::new();
    let mut arena = Vec::new();
    let mut evictions = evict_ns.iter().peekable();
    for rec in made.records() {
        while let Some(at) = evictions.next_if(|&&at| at <= rec.timestamp_ns) {
            table.evict_lru(*at, &mut events);
        }
        arena.clear();
        let (p, _) = crate::parse::packet::parse_into(&rec, &mut arena);
        if let Some(meta) = crate::parse::flow_stage::meta_of(&p) {
            table.track(&meta, &mut events);
        }
    }
    for &at in evictions {
        table.evict_lru(at, &mut events);
    }
    table.end_all(&mut events);
    Some(events)
}

/// How many packets a direction of an ended flow in `events` gets: all of them when the
/// call's ended flows fit in [`MAX_SYNTH_BYTES`] as header-only frames, else an even share
/// of that budget per direction (at least [`MIN_FOLDED_PACKETS_PER_DIRECTION`]).
fn packets_per_direction(events: &[FlowEvent]) -> u64 {
    let (flows, packets) = ended_summaries(events).fold((0u64, 0u64), |(f, p), s| {
        let n = s
            .packets_from_originator
            .saturating_add(s.packets_from_responder);
        (f + 1, p.saturating_add(n))
    });
    let budget = MAX_SYNTH_BYTES as u64 / LARGEST_SUMMARY_FRAME;
    if packets <= budget {
        u64::MAX
    } else {
        (budget / (2 * flows).max(1)).max(MIN_FOLDED_PACKETS_PER_DIRECTION)
    }
}

/// The packets of one ended flow (see the module docs).
fn summary_packets(
    conn: &Conn,
    s: &FlowSummary,
    per_direction: u64,
    anchors: &[u64],
    out: &mut Frames,
) {
    let tcp = conn.transport == Transport::Tcp;
    let counts = [
        s.packets_from_originator.min(per_direction),
        s.packets_from_responder.min(per_direction),
    ];
    let bytes = [s.bytes_from_originator, s.bytes_from_responder];
    let seen = s.tcp_flags_seen;
    let extra = seen & (PSH | tcp_flags::URG | tcp_flags::ECE | tcp_flags::CWR);
    let total = counts[0] + counts[1];
    if total == 0 {
        return;
    }
    // The first and last packets at the first and last times; packets between at the
    // anchors inside that span (eviction replays, see [`EvictionPlan`]), as many as there
    // are packets between, the rest spread evenly after them.
    let inside: Vec<u64> = anchors
        .iter()
        .copied()
        .filter(|&t| t > s.first_ns && t < s.last_ns)
        .take(total.saturating_sub(2) as usize)
        .collect();
    let from = inside.last().copied().unwrap_or(s.first_ns);
    let spread = total - 1 - inside.len() as u64;
    let base = inside.len() as u64;
    let time = |k: u64| {
        if k == 0 {
            s.first_ns
        } else if k <= base {
            inside[k as usize - 1]
        } else {
            let span = s.last_ns.saturating_sub(from);
            from + (u128::from(span) * u128::from(k - base) / u128::from(spread.max(1))) as u64
        }
    };
    let mut sent = [0u64; 2];
    let mut bytes_left = bytes;
    for k in 0..total {
        // Alternate while both sides have packets left, originator first.
        let side =
            usize::from(!(sent[0] < counts[0] && (sent[0] <= sent[1] || sent[1] >= counts[1])));
        let i = sent[side];
        sent[side] += 1;
        let last_of_side = sent[side] == counts[side];
        let last_overall = k + 1 == total;
        let mut flags = 0u8;
        if tcp {
            if i == 0 && seen & SYN != 0 {
                flags |= SYN;
                if side == 1 {
                    flags |= ACK;
                }
            } else if seen & ACK != 0 {
                flags |= ACK;
            }
            if i > 0 || seen & SYN == 0 {
                flags |= extra;
            }
            let fin_here = match s.end_reason {
                EndReason::Fin => last_of_side,
                _ => seen & FIN != 0 && side == 0 && last_of_side,
            };
            if fin_here {
                flags |= FIN;
            }
            if last_overall && (s.end_reason == EndReason::Rst || seen & RST != 0) {
                flags |= RST;
            }
        }
        // The wire bytes left for this side, spread over its remaining packets.
        let remaining = counts[side] - i;
        let len = bytes_left[side] / remaining;
        bytes_left[side] -= len;
        let seq = ISN[side].wrapping_add(1).wrapping_add(i as u32);
        let ack = ISN[1 - side].wrapping_add(1);
        if let Some(f) = conn.frame(side, flags, seq, ack, &[]) {
            out.push(time(k), len, &f);
        }
    }
}

/// The datagram's other fragments, for a packet that completed a reassembled IP datagram:
/// raw IP frames (DLT 101) carrying the parts of `whole` (the reassembled payload, offset 0
/// to its end) that the completing fragment `last` does not, with `last`'s addresses,
/// identification and protocol. Replayed just before `last`, they make the kitchen's
/// reassembler complete the same datagram at the same frame, so the chef is handed the
/// same packet (the kitchen does not keep the earlier fragments themselves). At most two:
/// the bytes before `last` (more fragments follow) and, when `last` was not the final
/// fragment, the bytes after it. Empty when `whole` does not extend `last` consistently.
pub fn other_fragments(last: &Fragment<'_>, whole: &[u8]) -> Vec<Vec<u8>> {
    let start = last.offset as usize;
    let end = start.saturating_add(last.data.len());
    if end > whole.len() || (!last.more && end != whole.len()) {
        return Vec::new();
    }
    let mut pieces = Vec::with_capacity(2);
    if start > 0 {
        pieces.push((0usize, &whole[..start], true));
    }
    if last.more && end < whole.len() {
        pieces.push((end, &whole[end..], false));
    }
    pieces
        .into_iter()
        .filter_map(|(offset, data, more)| {
            ip_fragment(&last.key, last.ip_number, offset, more, data)
        })
        .collect()
}

/// One raw IP fragment of the datagram `key` (`None` when the offset or length does not
/// fit the header fields, which a reassembled datagram never needs).
fn ip_fragment(
    key: &FragKey,
    ip_number: u8,
    offset: usize,
    more: bool,
    data: &[u8],
) -> Option<Vec<u8>> {
    let frag_offset = IpFragOffset::try_new(u16::try_from(offset / 8).ok()?).ok()?;
    let mut frame = Vec::with_capacity(48 + data.len());
    if key.ipv6 {
        let ip = Ipv6Header {
            traffic_class: 0,
            flow_label: Default::default(),
            payload_length: u16::try_from(data.len() + 8).ok()?,
            next_header: IpNumber::IPV6_FRAGMENTATION_HEADER,
            hop_limit: 64,
            source: key.source.to_be_bytes(),
            destination: key.destination.to_be_bytes(),
        };
        frame.extend_from_slice(&ip.to_bytes());
        let frag =
            Ipv6FragmentHeader::new(IpNumber(ip_number), frag_offset, more, key.identification);
        frame.extend_from_slice(&frag.to_bytes());
    } else {
        let v4 = |a: u128| (a as u32).to_be_bytes();
        let mut ip = Ipv4Header::new(
            u16::try_from(data.len()).ok()?,
            64,
            IpNumber(key.protocol),
            v4(key.source),
            v4(key.destination),
        )
        .ok()?;
        ip.identification = key.identification as u16;
        ip.dont_fragment = false;
        ip.more_fragments = more;
        ip.fragment_offset = frag_offset;
        ip.header_checksum = ip.calc_header_checksum();
        frame.extend_from_slice(&ip.to_bytes());
    }
    frame.extend_from_slice(data);
    Some(frame)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::packet::parse_frame;

    #[test]
    fn stream_segments_carry_the_chunk_bytes_at_their_offsets() {
        let key = crate::chef_host::bindings::FlowKey {
            transport: TransportProtocol::Tcp,
            originator: IpAddress::V4(0x0a00_0001),
            responder: IpAddress::V4(0x0a00_0002),
            originator_port: 40000,
            responder_port: 443,
        };
        let arena = b"hello world".to_vec();
        let chunk = |offset, gap_before, start: u32, len: u32, last| StreamChunk {
            flow: crate::chef_host::bindings::FlowRef {
                id: 7,
                direction: Direction::FromOriginator,
            },
            key,
            timestamp_ns: 10,
            offset,
            gap_before,
            data: crate::chef_host::bindings::Span { offset: start, len },
            last,
        };
        let chunks = [chunk(0, 0, 0, 5, false), chunk(100, 94, 5, 6, true)];
        let (frames, summary) = stream_packets(&chunks, &arena, 1_000_000_000);
        assert_eq!(
            frames.frames.len(),
            5,
            "handshake + two segments: {summary}"
        );
        let parsed: Vec<_> = frames
            .frames
            .iter()
            .map(|f| {
                let bytes = &frames.data[f.offset..f.offset + f.len];
                (parse_frame(LINK_TYPE, bytes), bytes.to_vec())
            })
            .collect();
        let tcp = |i: usize| match &parsed[i].0.transport {
            Some(crate::chef_host::bindings::TransportHeader::Tcp(t)) => (t.sequence, t.flags),
            other => panic!("frame {i}: {other:?}"),
        };
        assert_eq!(tcp(0).0, ISN[0]);
        assert_eq!(tcp(3).0, ISN[0] + 1);
        assert_eq!(tcp(4).0, ISN[0] + 101);
        let payload = |i: usize| {
            let p = &parsed[i].0.payload;
            parsed[i].1[p.offset as usize..(p.offset + p.len) as usize].to_vec()
        };
        assert_eq!(payload(3), b"hello");
        assert_eq!(payload(4), b" world");
        assert!(tcp(4).1.contains(crate::chef_host::bindings::TcpFlags::FIN));
        assert!(tcp(0).1.contains(crate::chef_host::bindings::TcpFlags::SYN));
    }

    /// Runs `made` through a real flow table; the events it produces (ended at the end).
    fn through_the_table(made: &Frames) -> Vec<FlowEvent> {
        table_events(made, &[], FlowConfig::default()).expect("default config")
    }

    #[test]
    fn flow_packets_give_the_same_summaries_through_the_flow_table() {
        let key = |transport, a: &str, b: &str, ports: (u16, u16)| FlowKey {
            transport,
            originator: a.parse().expect("address"),
            responder: b.parse().expect("address"),
            originator_port: ports.0,
            responder_port: ports.1,
        };
        let tcp = FlowSummary {
            id: 9,
            key: key(Transport::Tcp, "10.0.0.1", "10.0.0.2", (40000, 80)),
            first_ns: 1_000,
            last_ns: 9_000,
            packets_from_originator: 5,
            packets_from_responder: 4,
            bytes_from_originator: 5 * 66 + 300,
            bytes_from_responder: 4 * 1514,
            tcp_flags_seen: SYN | ACK | PSH | FIN,
            end_reason: EndReason::Fin,
        };
        let rst = FlowSummary {
            id: 10,
            key: key(Transport::Tcp, "2001:db8::1", "2001:db8::2", (40001, 443)),
            first_ns: 2_000,
            last_ns: 3_000,
            packets_from_originator: 2,
            packets_from_responder: 1,
            bytes_from_originator: 2 * 74,
            bytes_from_responder: 74,
            tcp_flags_seen: SYN | ACK | RST,
            end_reason: EndReason::Rst,
        };
        let udp = FlowSummary {
            id: 11,
            key: key(Transport::Udp, "10.0.0.1", "10.0.0.53", (5353, 53)),
            first_ns: 4_000,
            last_ns: 4_500,
            packets_from_originator: 1,
            packets_from_responder: 1,
            bytes_from_originator: 80,
            bytes_from_responder: 200,
            tcp_flags_seen: 0,
            end_reason: EndReason::EndOfCapture,
        };
        let want = [tcp, rst, udp];
        let events: Vec<FlowEvent> = want.iter().map(|s| FlowEvent::Ended(*s)).collect();
        let (made, summary, _) = flow_packets(&events, None);
        assert_eq!(made.left_out, 0, "{summary}");
        let mut got: Vec<FlowSummary> = ended_summaries(&through_the_table(&made))
            .copied()
            .collect();
        got.sort_by_key(|s| s.first_ns);
        assert_eq!(got.len(), 3, "{got:?}");
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(FlowSummary { id: w.id, ..*g }, *w);
        }
        // A start alone: one packet, from the originator, at the start.
        let start = FlowEvent::Started(flowtrack::table::FlowStart {
            id: 1,
            key: tcp.key,
            timestamp_ns: 77,
        });
        let (made, _, _) = flow_packets(&[start], None);
        let events = through_the_table(&made);
        assert!(
            matches!(events[0], FlowEvent::Started(s) if s.key == tcp.key && s.timestamp_ns == 77),
            "{events:?}"
        );
    }

    /// What a chef asking for `want` stream bytes gets when `made` is replayed through the
    /// kitchen's own flow and stream stages (as `nd-sniff -r` runs them): per chunk its
    /// side, offset, gap before, `last` and bytes.
    fn reassembled(made: &Frames, want: u32) -> Vec<(usize, u64, u64, bool, Vec<u8>)> {
        reassembled_by_batch(made, want, 3600)
            .into_iter()
            .map(|(_, c)| c)
            .collect()
    }

    /// `made` replayed through the kitchen's own batch builder and flow stage, as
    /// `nd-sniff -r` runs it: pokes every `poke_secs` of capture time (they cut batches),
    /// the least recently used flow evicted at `evict_ns` (`--capsule-evict-ns`), every
    /// flow ended at the end. The batches.
    fn batches_of(
        made: &Frames,
        poke_secs: u64,
        evict_ns: &[u64],
    ) -> Vec<crate::parse::batch::Batch> {
        use crate::parse::batch::{BatchBuilder, ClockMode, Step};
        use crate::parse::flow_stage::{FlowShared, FlowStage};
        let shared = std::sync::Arc::new(FlowShared::default());
        shared.set_wanted(true);
        let mut b = BatchBuilder::new(ClockMode::Replay, std::time::Duration::from_secs(poke_secs));
        let stage = FlowStage::new(Default::default(), shared).expect("default config");
        b.set_flow_stage(stage.with_evictions(evict_ns));
        for rec in made.records() {
            b.push(&rec);
        }
        b.end_flows();
        let mut batches = Vec::new();
        while let Some(step) = b.next_step() {
            if let Step::Packets(batch) = step {
                batches.push(batch);
            }
        }
        batches
    }

    /// [`reassembled`] with pokes every `poke_secs` of capture time (they cut the
    /// batches): each chunk with the index of the batch that delivered it.
    #[allow(clippy::type_complexity)]
    fn reassembled_by_batch(
        made: &Frames,
        want: u32,
        poke_secs: u64,
    ) -> Vec<(usize, (usize, u64, u64, bool, Vec<u8>))> {
        use crate::chef_host::bindings::Interest;
        use crate::parse::stream_stage::{StreamFilter, StreamStage};
        let filter = StreamFilter::new(&Interest {
            link_types: vec![],
            network: vec![],
            transport: vec![],
            ports: vec![],
            flow_events: false,
            stream_bytes: want,
        })
        .expect("a stream interest");
        let mut stage = StreamStage::new(flowtrack::reassembly::ReassemblyLimits {
            want: u64::from(want),
            ..Default::default()
        });
        let mut out = Vec::new();
        for (i, batch) in batches_of(made, poke_secs, &[]).iter().enumerate() {
            let batch_no = i + 1;
            stage.feed(&batch.packets, &batch.arena);
            for e in &batch.flows.ended {
                if let FlowEvent::Ended(s) = e {
                    stage.end_flow(s.id, s.last_ns);
                }
            }
            let (chunks, arena) = stage.chunks_for(&filter);
            for c in chunks {
                let start = c.data.offset as usize;
                let data = arena[start..start + c.data.len as usize].to_vec();
                out.push((
                    batch_no,
                    (
                        side_of(c.flow.direction),
                        c.offset,
                        c.gap_before,
                        c.last,
                        data,
                    ),
                ));
            }
            stage.end_batch();
        }
        out
    }

    #[test]
    fn stream_capsules_replay_the_same_chunks_through_reassembly() {
        let key = crate::chef_host::bindings::FlowKey {
            transport: TransportProtocol::Tcp,
            originator: IpAddress::V6((0x2001_0db8_0000_0000, 1)),
            responder: IpAddress::V6((0x2001_0db8_0000_0000, 2)),
            originator_port: 50000,
            responder_port: 80,
        };
        let arena: Vec<u8> = (0..=255u8).cycle().take(400).collect();
        let chunk = |dir, offset, gap_before, start: u32, len: u32, last| StreamChunk {
            flow: crate::chef_host::bindings::FlowRef {
                id: 3,
                direction: dir,
            },
            key,
            timestamp_ns: 1_700_000_000_000_000_000 + offset,
            offset,
            gap_before,
            data: crate::chef_host::bindings::Span { offset: start, len },
            last,
        };
        let (o, r) = (Direction::FromOriginator, Direction::FromResponder);
        // A whole exchange from offset 0: the replay gives exactly these chunks.
        let whole = [
            chunk(o, 0, 0, 0, 120, false),
            chunk(r, 0, 0, 120, 200, true),
            chunk(o, 120, 0, 320, 30, true),
        ];
        let (made, _) = stream_packets(&whole, &arena, 1_000_000_000);
        let want: Vec<_> = whole
            .iter()
            .map(|c| {
                let d = arena[c.data.offset as usize..][..c.data.len as usize].to_vec();
                (side_of(c.flow.direction), c.offset, c.gap_before, c.last, d)
            })
            .collect();
        let mut got = reassembled(&made, 4096);
        got.sort_by_key(|c| (c.0, c.1));
        let mut want_sorted = want.clone();
        want_sorted.sort_by_key(|c| (c.0, c.1));
        assert_eq!(got, want_sorted);
        // A stream that began in an earlier call, with a hole: the bytes before come as
        // zeros in an earlier batch (a poke between), then the same bytes at the same offsets
        // with the same gaps; what follows the hole comes when the flow ends.
        let mid = [
            chunk(o, 5000, 0, 0, 100, false),
            chunk(o, 5200, 100, 100, 50, true),
        ];
        let poke_secs = 5;
        let (made, summary) = stream_packets(&mid, &arena, poke_secs * 1_000_000_000);
        assert_eq!(summary["earlier_bytes_as_zeros"], 5000, "{summary}");
        let got: Vec<_> = reassembled_by_batch(&made, 1 << 20, poke_secs)
            .into_iter()
            .filter(|c| !c.1 .4.is_empty())
            .collect();
        assert_eq!(got.len(), 3, "{got:?}");
        let (filler_batch, filler) = &got[0];
        assert_eq!(filler, &(0, 0, 0, false, vec![0u8; 5000]));
        assert!(
            got[1].0 > *filler_batch,
            "the stand-in came in the same call: {got:?}"
        );
        assert_eq!(got[1].1, (0, 5000, 0, false, arena[..100].to_vec()));
        assert_eq!(got[2].1, (0, 5200, 100, true, arena[100..150].to_vec()));
        // A capture clock too close to zero for a poke to fit before the call: no stand-in,
        // the stream starts with a gap of its earlier bytes (counted in the note).
        let early: Vec<StreamChunk> = mid
            .iter()
            .map(|c| StreamChunk {
                timestamp_ns: c.offset,
                ..*c
            })
            .collect();
        let (made, summary) = stream_packets(&early, &arena, poke_secs * 1_000_000_000);
        assert_eq!(
            summary["earlier_bytes_not_replayed_directions"], 1,
            "{summary}"
        );
        let got = reassembled(&made, 1 << 20);
        assert_eq!(got[0], (0, 5000, 5000, false, arena[..100].to_vec()));
    }

    #[test]
    fn an_idle_timeout_is_replayed_by_a_clock_packet() {
        let config = FlowConfig::default();
        let udp = FlowSummary {
            id: 4,
            key: FlowKey {
                transport: Transport::Udp,
                originator: "10.0.0.1".parse().expect("address"),
                responder: "10.0.0.9".parse().expect("address"),
                originator_port: 40000,
                responder_port: 123,
            },
            first_ns: 5_000_000_000,
            last_ns: 6_000_000_000,
            packets_from_originator: 2,
            packets_from_responder: 2,
            bytes_from_originator: 2 * 90,
            bytes_from_responder: 2 * 90,
            tcp_flags_seen: 0,
            end_reason: EndReason::IdleTimeout,
        };
        let (made, summary, _) = flow_packets(&[FlowEvent::Ended(udp)], Some(&config));
        assert_eq!(made.frames.len(), 5, "{summary}");
        let events = through_the_table(&made);
        let ended: Vec<FlowSummary> = ended_summaries(&events).copied().collect();
        // The UDP flow ends idle (before the clock flow, which ends with the capture).
        assert_eq!(
            FlowSummary {
                id: udp.id,
                ..ended[0]
            },
            udp
        );
        assert_eq!(ended[1].key.transport, Transport::Icmpv4);
        assert_eq!(ended[1].end_reason, EndReason::EndOfCapture);
        // Without the kitchen's flow config it cannot be timed: the note says so.
        let (made, summary, _) = flow_packets(&[FlowEvent::Ended(udp)], None);
        assert_eq!(made.frames.len(), 4);
        assert_eq!(summary["ends_not_replayed"], 1);
    }

    #[test]
    fn long_flows_replay_packet_for_packet_and_are_folded_only_past_the_budget() {
        let long = |id: u64, packets: u64| FlowSummary {
            id,
            key: FlowKey {
                transport: Transport::Tcp,
                originator: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
                responder: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
                originator_port: 40_000 + id as u16,
                responder_port: 80,
            },
            first_ns: 1_000_000 * id,
            last_ns: 1_000_000 * id + 900_000,
            packets_from_originator: packets,
            packets_from_responder: packets - 1,
            bytes_from_originator: packets * 1_000,
            bytes_from_responder: (packets - 1) * 1_400,
            tcp_flags_seen: SYN | ACK | PSH | FIN,
            end_reason: EndReason::Fin,
        };
        // 1000 packets each way: far more than the old fold at 64, made one for one.
        let want = long(1, 1_000);
        let (made, summary, _) = flow_packets(&[FlowEvent::Ended(want)], None);
        assert_eq!(made.frames.len(), 1_999, "{summary}");
        assert!(
            summary["packets_per_direction_folded_to"].is_null(),
            "{summary}"
        );
        let got: Vec<FlowSummary> = ended_summaries(&through_the_table(&made))
            .copied()
            .collect();
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(
            FlowSummary {
                id: want.id,
                ..got[0]
            },
            want
        );
        // Ten flows of 10 000 packets a way do not fit: each direction is folded to an even
        // share of the budget, and nothing is left out.
        let many: Vec<FlowEvent> = (1..=10)
            .map(|id| FlowEvent::Ended(long(id, 10_000)))
            .collect();
        let (made, summary, _) = flow_packets(&many, None);
        let folded = summary["packets_per_direction_folded_to"]
            .as_u64()
            .expect("folded");
        assert!(
            (MIN_FOLDED_PACKETS_PER_DIRECTION..10_000).contains(&folded),
            "{summary}"
        );
        assert_eq!(made.left_out, 0, "{summary}");
        assert_eq!(made.frames.len() as u64, 10 * 2 * folded, "{summary}");
        assert!(made.data.len() <= MAX_SYNTH_BYTES);
    }

    /// The ended flows a replay of `made` gives through the kitchen's own batch builder and
    /// flow stage, evicting at `evict_ns` (as `nd-sniff -r --capsule-evict-ns` runs them).
    fn ended_through_the_stage(made: &Frames, evict_ns: &[u64]) -> Vec<FlowSummary> {
        let batches = batches_of(made, 3600, evict_ns);
        let events: Vec<FlowEvent> = batches.iter().flat_map(|b| b.flows.ended.clone()).collect();
        ended_summaries(&events).copied().collect()
    }

    #[test]
    fn evicted_flows_are_evicted_again_and_started_ones_kept_fresher() {
        let config = FlowConfig::default();
        let key = |a: &str, port: u16, transport| FlowKey {
            transport,
            originator: a.parse().expect("address"),
            responder: "10.0.0.9".parse().expect("address"),
            originator_port: port,
            responder_port: 53,
        };
        let s0 = 1_700_000_000_000_000_000u64;
        let flow = |id, port, first, last, reason| FlowSummary {
            id,
            key: key("10.0.0.1", port, Transport::Udp),
            first_ns: s0 + first,
            last_ns: s0 + last,
            packets_from_originator: 3,
            packets_from_responder: 2,
            bytes_from_originator: 3 * 80,
            bytes_from_responder: 2 * 120,
            tcp_flags_seen: 0,
            end_reason: reason,
        };
        // Two flows evicted (the older first), one that ends with the capture, and one
        // that only starts in the call, before the first eviction (in the kitchen it had
        // later packets: the capsule has its first only).
        let older = flow(1, 1001, 1_000, 2_000, EndReason::Evicted);
        let newer = flow(2, 1002, 1_500, 3_000, EndReason::Evicted);
        let stays = flow(3, 1003, 2_500, 9_000, EndReason::EndOfCapture);
        let start = FlowEvent::Started(flowtrack::table::FlowStart {
            id: 4,
            key: key("10.0.0.2", 1004, Transport::Udp),
            timestamp_ns: s0 + 500,
        });
        let events = [
            start,
            FlowEvent::Ended(older),
            FlowEvent::Ended(newer),
            FlowEvent::Ended(stays),
        ];
        let (made, summary, evict_ns) = flow_packets(&events, Some(&config));
        assert_eq!(summary["evictions_replayed"], true, "{summary}");
        assert_eq!(summary["ends_checked_same"], true, "{summary}");
        assert_eq!(evict_ns.len(), 2, "{summary}");
        let ended = ended_through_the_stage(&made, &evict_ns);
        for want in [older, newer, stays] {
            assert!(
                ended
                    .iter()
                    .any(|g| FlowSummary { id: want.id, ..*g } == want),
                "{want:?} not in {ended:?}"
            );
        }
        // The started flow was not evicted in their place.
        let started_key = key("10.0.0.2", 1004, Transport::Udp);
        let its_end = ended.iter().find(|s| s.key == started_key).expect("ends");
        assert_eq!(its_end.end_reason, EndReason::EndOfCapture, "{ended:?}");
        // Without the evictions, they end with the capture (as before this was built).
        let without = ended_through_the_stage(&made, &[]);
        assert!(
            without
                .iter()
                .all(|s| s.end_reason == EndReason::EndOfCapture),
            "{without:?}"
        );
    }
}
