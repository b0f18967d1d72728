//! `TopTalkersChef`: the busiest flows and hosts of each poke interval (the interval
//! driver at work: packets only update counters, dumplings come from the timer), and the
//! kitchen's connection summaries (chef API 0.2 flow events).
//!
//! Drivers: packet and interval. Interest: IPv4 and IPv6, with flow events.
//!
//! Packet payload, once per connection the kitchen's flow table ends (FIN, RST, idle
//! timeout, eviction, end of capture), for at most [`MAX_ENDED_REPORTED_PER_SEC`]
//! connections per second of capture time; `originator` opened it:
//!
//! ```json
//! {"flow_ended": {"id": 7, "protocol": "tcp", "originator": "10.0.0.5:51234",
//!    "responder": "93.184.216.34:443", "first": 1700000000.5, "last": 1700000003.25,
//!    "packets_from_originator": 12, "packets_from_responder": 10,
//!    "bytes_from_originator": 2100, "bytes_from_responder": 30500,
//!    "tcp_flags": ["FIN", "SYN", "ACK", "PSH"], "end_reason": "fin"}}
//! ```
//!
//! Interval payload, every poke (zeros and `[]` when idle); counts cover the packets
//! since the previous poke, then reset:
//!
//! ```json
//! {"top_talkers": {
//!    "interval": 5.0, "packets": 120, "bytes": 53000, "flows": 17, "flows_evicted": 0,
//!    "top_flows": [{"protocol": "tcp", "src": "10.0.0.5:51234", "dst": "93.184.216.34:443",
//!                   "packets": 40, "bytes": 30000}],
//!    "top_hosts": [{"ip": "10.0.0.5", "packets": 60, "bytes": 40000}],
//!    "connections_started": 4,
//!    "connections_ended": {"fin": 2, "rst": 0, "idle_timeout": 1, "evicted": 0, "end_of_capture": 0},
//!    "connections_unreported": 0,
//!    "top_ended": [{"protocol": "tcp", "originator": "10.0.0.5:51234",
//!                   "responder": "93.184.216.34:443", "packets": 22, "bytes": 32600,
//!                   "end_reason": "fin"}]}}
//! ```
//!
//! * `connections_*` and `top_ended` (at most [`TOP_N`] connections ended this interval,
//!   largest `bytes` both ways first) come from the kitchen's flow events: bidirectional, one
//!   per connection, with the kitchen's flow-table bounds and timeouts.
//! * `connections_unreported`: connections ended this interval that got no `flow_ended`
//!   dumpling because [`MAX_ENDED_REPORTED_PER_SEC`] had already been sent in their second
//!   (a scan or a flood ends ~10^5 connections a second; one dumpling each would bury the
//!   hub and every eater, and the kitchen's output budget would drop them anyway, unseen by
//!   the chef). They are in `connections_ended` and `top_ended` all the same.
//!
//! * `bytes` are wire lengths of the frames (`original-len`), so they include headers.
//! * A flow is one direction of (protocol, source, destination); ports are `0` for
//!   protocols without ports, so ICMP flows look like `"10.0.0.5:0"`. IPv6 uses `[..]:port`.
//! * `top_hosts` ranks source addresses by bytes sent.
//! * `top_flows` and `top_hosts` hold at most [`TOP_N`] entries, largest `bytes` first.
//!
//! Payload bound: the interval payload holds no string from the traffic (addresses,
//! numbers and fixed names) and at most [`TOP_N`] entries per list, so its worst case (IPv6
//! ends, 20-digit counts) is under 16 KB, far under the kitchen's 1,044,480-byte limit.
//!
//! State bound: at most [`MAX_FLOWS`] flows and [`MAX_HOSTS`] hosts per interval. When a
//! table is full, the least recently active entry is evicted (counted in `flows_evicted`);
//! `packets` and `bytes` stay exact.
//!
//! Hot reload: nothing to carry (`export_chef!`). Everything the chef keeps covers the
//! current interval only, and the kitchen pokes the old version once more before it swaps
//! in the new one, so that final dumpling reports the partial interval and resets it. The
//! kitchen's flow table lives in the kitchen: connections open across the reload still end
//! (and are summarised) in the new version.

use std::net::{IpAddr, SocketAddr};

use chef_sdk::bounded::BoundedMap;
use chef_sdk::flow::{FlowEndReason, FlowKey as WitFlowKey, FlowSummary, IpAddress};
use chef_sdk::wit::{TcpFlags, TransportProtocol};
use chef_sdk::{
    Chef, ChefInfo, Drivers, Dumplings, FlowEvent, Interest, NetworkProtocol, Packet, RawJson,
    Tick, Timestamp,
};
use serde::Serialize;

/// Flows tracked per interval.
pub const MAX_FLOWS: usize = 4096;
/// Source hosts tracked per interval.
pub const MAX_HOSTS: usize = 1024;
/// Entries in each top list.
pub const TOP_N: usize = 10;
/// `flow_ended` dumplings sent per second of capture time at most (~0.35 MB/s of payload,
/// 2 % of the kitchen's default output budget per chef); the rest are only counted
/// (`connections_unreported`). A second is that of the connection's last packet, never
/// going back before the next poke (so evictions of older connections, whose last packets
/// lie seconds back, do not reopen a spent second).
pub const MAX_ENDED_REPORTED_PER_SEC: u64 = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FlowKey {
    protocol: u8,
    src: SocketAddr,
    dst: SocketAddr,
}

/// Packet and byte counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Packets.
    pub packets: u64,
    /// Bytes on the wire.
    pub bytes: u64,
}

impl Counts {
    fn add(&mut self, bytes: u64) {
        self.packets += 1;
        self.bytes += bytes;
    }
}

/// One entry of `top_flows`.
#[derive(Debug, Serialize)]
pub struct FlowEntry {
    /// `tcp`, `udp`, `icmp`, `icmpv6` or the IP protocol number as text.
    pub protocol: String,
    /// Source address and port.
    #[serde(serialize_with = "chef_sdk::ser::socket_addr")]
    pub src: SocketAddr,
    /// Destination address and port.
    #[serde(serialize_with = "chef_sdk::ser::socket_addr")]
    pub dst: SocketAddr,
    /// Counters.
    #[serde(flatten)]
    pub counts: Counts,
}

/// One entry of `top_hosts`.
#[derive(Debug, Serialize)]
pub struct HostEntry {
    /// Source address.
    pub ip: IpAddr,
    /// Counters.
    #[serde(flatten)]
    pub counts: Counts,
}

/// The interval summary.
#[derive(Debug, Serialize)]
pub struct Summary {
    /// Seconds covered (the poke interval).
    pub interval: f64,
    /// IP packets seen.
    pub packets: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Distinct flows tracked.
    pub flows: usize,
    /// Flows evicted because the table was full.
    pub flows_evicted: u64,
    /// Busiest flows.
    pub top_flows: Vec<FlowEntry>,
    /// Busiest sources.
    pub top_hosts: Vec<HostEntry>,
    /// Connections the kitchen started tracking this interval.
    pub connections_started: u64,
    /// Connections it ended this interval, by reason.
    pub connections_ended: EndCounts,
    /// Of those, how many got no `flow_ended` dumpling (over
    /// [`MAX_ENDED_REPORTED_PER_SEC`]).
    pub connections_unreported: u64,
    /// The largest of them.
    pub top_ended: Vec<EndedEntry>,
}

/// Connections ended, by reason.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct EndCounts {
    /// Both sides sent FIN.
    pub fin: u64,
    /// A RST.
    pub rst: u64,
    /// Idle longer than the kitchen's timeout.
    pub idle_timeout: u64,
    /// Pushed out of the kitchen's full flow table.
    pub evicted: u64,
    /// The capture ended.
    pub end_of_capture: u64,
}

/// One entry of `top_ended`.
#[derive(Debug, Clone, Serialize)]
pub struct EndedEntry {
    /// `tcp`, `udp`, `icmp` or `icmpv6`.
    pub protocol: &'static str,
    /// Who opened it.
    #[serde(serialize_with = "chef_sdk::ser::socket_addr")]
    pub originator: SocketAddr,
    /// The other side.
    #[serde(serialize_with = "chef_sdk::ser::socket_addr")]
    pub responder: SocketAddr,
    /// Packets both ways.
    pub packets: u64,
    /// Bytes on the wire both ways.
    pub bytes: u64,
    /// Why it ended.
    pub end_reason: &'static str,
}

/// A connection's summary: the packet payload `{"flow_ended": {...}}`.
#[derive(Debug, Serialize)]
pub struct FlowEnded {
    /// The kitchen's flow id (unique in one kitchen run).
    pub id: u64,
    /// `tcp`, `udp`, `icmp` or `icmpv6`.
    pub protocol: &'static str,
    /// Who opened it (the SYN sender, else the first sender seen).
    #[serde(serialize_with = "chef_sdk::ser::socket_addr")]
    pub originator: SocketAddr,
    /// The other side.
    #[serde(serialize_with = "chef_sdk::ser::socket_addr")]
    pub responder: SocketAddr,
    /// Time of the first packet (s since the Unix epoch).
    pub first: f64,
    /// Time of the last packet.
    pub last: f64,
    /// Packets the originator sent.
    pub packets_from_originator: u64,
    /// Packets the responder sent.
    pub packets_from_responder: u64,
    /// Bytes on the wire the originator sent.
    pub bytes_from_originator: u64,
    /// Bytes on the wire the responder sent.
    pub bytes_from_responder: u64,
    /// TCP flags seen either way (empty for UDP/ICMP).
    pub tcp_flags: Vec<&'static str>,
    /// `fin`, `rst`, `idle_timeout`, `evicted` or `end_of_capture`.
    pub end_reason: &'static str,
}

/// Packet payload for an ended connection.
#[derive(Debug, Serialize)]
pub struct FlowEndedPayload {
    /// The summary.
    pub flow_ended: FlowEnded,
}

/// Interval payload: `{"top_talkers": {...}}`.
#[derive(Debug, Serialize)]
pub struct TopTalkers {
    /// The summary.
    pub top_talkers: Summary,
}

/// The chef: this interval's counters.
pub struct TopTalkersChef {
    total: Counts,
    flows: BoundedMap<FlowKey, Counts>,
    hosts: BoundedMap<IpAddr, Counts>,
    evicted_before: u64,
    started: u64,
    ended: EndCounts,
    /// Ended this interval without a `flow_ended` dumpling.
    unreported: u64,
    /// The capture second whose `flow_ended` dumplings [`Self::reported_in_second`] counts.
    report_second: u64,
    /// `flow_ended` dumplings sent in `report_second`.
    reported_in_second: u64,
    /// At most `TOP_N`, largest first.
    top_ended: Vec<EndedEntry>,
}

impl Default for TopTalkersChef {
    fn default() -> Self {
        TopTalkersChef {
            total: Counts::default(),
            flows: BoundedMap::new(MAX_FLOWS),
            hosts: BoundedMap::new(MAX_HOSTS),
            evicted_before: 0,
            started: 0,
            ended: EndCounts::default(),
            unreported: 0,
            report_second: 0,
            reported_in_second: 0,
            top_ended: Vec::new(),
        }
    }
}

fn transport_name(t: TransportProtocol) -> &'static str {
    match t {
        TransportProtocol::Tcp => "tcp",
        TransportProtocol::Udp => "udp",
        TransportProtocol::Icmpv4 => "icmp",
        TransportProtocol::Icmpv6 => "icmpv6",
    }
}

fn reason_name(r: FlowEndReason) -> &'static str {
    match r {
        FlowEndReason::Fin => "fin",
        FlowEndReason::Rst => "rst",
        FlowEndReason::IdleTimeout => "idle_timeout",
        FlowEndReason::Evicted => "evicted",
        FlowEndReason::EndOfCapture => "end_of_capture",
    }
}

fn ip(a: IpAddress) -> IpAddr {
    match a {
        IpAddress::V4(v4) => chef_sdk::ipv4_addr(v4).into(),
        IpAddress::V6(v6) => chef_sdk::ipv6_addr(v6).into(),
    }
}

fn endpoints(k: &WitFlowKey) -> (SocketAddr, SocketAddr) {
    (
        SocketAddr::new(ip(k.originator), k.originator_port),
        SocketAddr::new(ip(k.responder), k.responder_port),
    )
}

/// TCP flags and their names, in the order `tcp_flags` lists them.
const FLAG_NAMES: [(TcpFlags, &str); 8] = [
    (TcpFlags::FIN, "FIN"),
    (TcpFlags::SYN, "SYN"),
    (TcpFlags::RST, "RST"),
    (TcpFlags::PSH, "PSH"),
    (TcpFlags::ACK, "ACK"),
    (TcpFlags::URG, "URG"),
    (TcpFlags::ECE, "ECE"),
    (TcpFlags::CWR, "CWR"),
];

fn flag_names(f: TcpFlags) -> Vec<&'static str> {
    FLAG_NAMES
        .into_iter()
        .filter(|(flag, _)| f.contains(*flag))
        .map(|(_, name)| name)
        .collect()
}

/// Room for a `flow_ended` payload with two IPv4 endpoints and every flag (~330 bytes on
/// the high-cardinality corpus); IPv6 payloads grow the buffer once.
const PAYLOAD_CAPACITY: usize = 448;

/// An integer as serde_json writes it (serde_json formats integers with this same `itoa`).
fn json_u64(out: &mut String, v: u64) {
    out.push_str(itoa::Buffer::new().format(v));
}

/// A float as serde_json writes it: a finite one with this same `zmij` call
/// (`CompactFormatter::write_f64`), anything else as `null`.
fn json_f64(out: &mut String, v: f64) {
    if v.is_finite() {
        out.push_str(zmij::Buffer::new().format_finite(v));
    } else {
        out.push_str("null");
    }
}

/// An address octet in decimal (the digits `Display` and `chef_sdk::ser` write).
fn push_octet(out: &mut String, v: u8) {
    let v = usize::from(v);
    out.push_str(&OCTET_TEXT[usize::from(OCTET_AT[v])..usize::from(OCTET_AT[v + 1])]);
}

/// The decimal texts of 0..=255, one after the other ("012...9101112...255"); where each
/// starts is [`OCTET_AT`]. An address is then four slices copied instead of up to twelve
/// `char` pushes, each with its own capacity check.
const OCTET_BYTES: [u8; 10 + 90 * 2 + 156 * 3] = {
    let mut out = [0u8; 10 + 90 * 2 + 156 * 3];
    let (mut v, mut at) = (0usize, 0usize);
    while v < 256 {
        if v >= 100 {
            out[at] = b'0' + (v / 100) as u8;
            at += 1;
        }
        if v >= 10 {
            out[at] = b'0' + (v / 10 % 10) as u8;
            at += 1;
        }
        out[at] = b'0' + (v % 10) as u8;
        at += 1;
        v += 1;
    }
    out
};

/// [`OCTET_BYTES`] as text (ASCII digits only).
const OCTET_TEXT: &str = match std::str::from_utf8(&OCTET_BYTES) {
    Ok(text) => text,
    Err(_) => panic!("octet digits are ASCII"),
};

/// Where the text of octet `v` starts in [`OCTET_TEXT`] (`v + 1`'s start is its end).
const OCTET_AT: [u16; 257] = {
    let mut at = [0u16; 257];
    let mut v = 0usize;
    while v < 256 {
        let len = if v >= 100 {
            3
        } else if v >= 10 {
            2
        } else {
            1
        };
        at[v + 1] = at[v] + len;
        v += 1;
    }
    at
};

/// An IPv4 address in dotted decimal, unquoted (its `Display` text).
fn push_ipv4(out: &mut String, ip: std::net::Ipv4Addr) {
    let [a, b, c, d] = ip.octets();
    push_octet(out, a);
    out.push('.');
    push_octet(out, b);
    out.push('.');
    push_octet(out, c);
    out.push('.');
    push_octet(out, d);
}

/// A socket address as a JSON string, as `chef_sdk::ser::socket_addr` writes it (its text
/// has no character JSON escapes).
fn json_socket_addr(out: &mut String, addr: SocketAddr) {
    use std::fmt::Write;
    out.push('"');
    match addr {
        SocketAddr::V4(v4) => {
            push_ipv4(out, *v4.ip());
            out.push(':');
            out.push_str(itoa::Buffer::new().format(v4.port()));
        }
        SocketAddr::V6(_) => {
            // Writing into a `String` cannot fail.
            let _ = write!(out, "{addr}");
        }
    }
    out.push('"');
}

/// A string that needs no JSON escape (the names and numbers this chef writes: a unit test
/// checks every one), quoted.
fn json_plain_str(out: &mut String, s: &str) {
    out.push('"');
    out.push_str(s);
    out.push('"');
}

/// An IP address as serde writes it (its `Display` text, quoted).
fn json_ip(out: &mut String, ip: IpAddr) {
    use std::fmt::Write;
    out.push('"');
    match ip {
        IpAddr::V4(v4) => push_ipv4(out, v4),
        // Writing into a `String` cannot fail.
        IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
    out.push('"');
}

/// `"packets":N,"bytes":N` (a [`Counts`] flattened into its entry).
fn json_counts(out: &mut String, c: Counts) {
    out.push_str("\"packets\":");
    json_u64(out, c.packets);
    out.push_str(",\"bytes\":");
    json_u64(out, c.bytes);
}

/// The interval payload's text: byte for byte what serde_json makes of [`TopTalkers`]
/// (a unit test compares the two).
///
/// Why by hand: serde's path went through its flattening map serializer for each entry's
/// counters and `Display` for each address; with a poke every ~70 packets on a mixed corpus
/// the summary cost this chef ~6 µs a poke.
pub fn top_talkers_json(t: &TopTalkers) -> String {
    let s = &t.top_talkers;
    let mut out = String::with_capacity(1024);
    out.push_str("{\"top_talkers\":{\"interval\":");
    json_f64(&mut out, s.interval);
    out.push_str(",\"packets\":");
    json_u64(&mut out, s.packets);
    out.push_str(",\"bytes\":");
    json_u64(&mut out, s.bytes);
    out.push_str(",\"flows\":");
    json_u64(&mut out, s.flows as u64);
    out.push_str(",\"flows_evicted\":");
    json_u64(&mut out, s.flows_evicted);
    out.push_str(",\"top_flows\":");
    json_list(&mut out, &s.top_flows, |out, f| {
        out.push_str("{\"protocol\":");
        json_plain_str(out, &f.protocol);
        out.push_str(",\"src\":");
        json_socket_addr(out, f.src);
        out.push_str(",\"dst\":");
        json_socket_addr(out, f.dst);
        out.push(',');
        json_counts(out, f.counts);
        out.push('}');
    });
    out.push_str(",\"top_hosts\":");
    json_list(&mut out, &s.top_hosts, |out, h| {
        out.push_str("{\"ip\":");
        json_ip(out, h.ip);
        out.push(',');
        json_counts(out, h.counts);
        out.push('}');
    });
    out.push_str(",\"connections_started\":");
    json_u64(&mut out, s.connections_started);
    let e = s.connections_ended;
    out.push_str(",\"connections_ended\":{\"fin\":");
    json_u64(&mut out, e.fin);
    out.push_str(",\"rst\":");
    json_u64(&mut out, e.rst);
    out.push_str(",\"idle_timeout\":");
    json_u64(&mut out, e.idle_timeout);
    out.push_str(",\"evicted\":");
    json_u64(&mut out, e.evicted);
    out.push_str(",\"end_of_capture\":");
    json_u64(&mut out, e.end_of_capture);
    out.push_str("},\"connections_unreported\":");
    json_u64(&mut out, s.connections_unreported);
    out.push_str(",\"top_ended\":");
    json_list(&mut out, &s.top_ended, |out, x| {
        out.push_str("{\"protocol\":");
        json_plain_str(out, x.protocol);
        out.push_str(",\"originator\":");
        json_socket_addr(out, x.originator);
        out.push_str(",\"responder\":");
        json_socket_addr(out, x.responder);
        out.push_str(",\"packets\":");
        json_u64(out, x.packets);
        out.push_str(",\"bytes\":");
        json_u64(out, x.bytes);
        out.push_str(",\"end_reason\":");
        json_plain_str(out, x.end_reason);
        out.push('}');
    });
    out.push_str("}}");
    out
}

/// A JSON array of `items`, each written by `item`.
fn json_list<T>(out: &mut String, items: &[T], mut item: impl FnMut(&mut String, &T)) {
    out.push('[');
    for (i, x) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        item(out, x);
    }
    out.push(']');
}

const NANOS_PER_SEC: u64 = 1_000_000_000;

fn secs(ns: u64) -> f64 {
    Timestamp::from_nanos(ns).as_secs_f64()
}

fn protocol_name(p: u8) -> String {
    match p {
        6 => "tcp".to_owned(),
        17 => "udp".to_owned(),
        1 => "icmp".to_owned(),
        58 => "icmpv6".to_owned(),
        n => n.to_string(),
    }
}

fn top<K, T>(map: &BoundedMap<K, Counts>, make: impl Fn(K, Counts) -> T) -> Vec<T>
where
    K: Copy + std::hash::Hash + Eq,
{
    let mut all: Vec<(K, Counts)> = map.iter().map(|(k, c)| (*k, *c)).collect();
    let n = all.len().min(TOP_N);
    if n == 0 {
        return Vec::new();
    }
    all.select_nth_unstable_by(n - 1, |a, b| b.1.bytes.cmp(&a.1.bytes));
    all.truncate(n);
    all.sort_by(|a, b| {
        b.1.bytes
            .cmp(&a.1.bytes)
            .then(b.1.packets.cmp(&a.1.packets))
    });
    all.into_iter().map(|(k, c)| make(k, c)).collect()
}

impl TopTalkersChef {
    /// Counts one packet.
    pub fn count(&mut self, packet: &Packet<'_>) {
        let (Some(src), Some(dst), Some(protocol)) =
            (packet.src_ip(), packet.dst_ip(), packet.ip_protocol())
        else {
            return;
        };
        let bytes = u64::from(packet.original_len());
        self.total.add(bytes);
        let key = FlowKey {
            protocol,
            src: SocketAddr::new(src, packet.src_port().unwrap_or(0)),
            dst: SocketAddr::new(dst, packet.dst_port().unwrap_or(0)),
        };
        self.flows
            .get_or_insert_with(key, Counts::default)
            .add(bytes);
        self.hosts
            .get_or_insert_with(src, Counts::default)
            .add(bytes);
    }

    /// The summary of the interval so far, and a fresh start for the next one.
    pub fn summary(&mut self, tick: Tick) -> TopTalkers {
        let summary = Summary {
            interval: tick.interval.as_secs_f64(),
            packets: self.total.packets,
            bytes: self.total.bytes,
            flows: self.flows.len(),
            flows_evicted: self.flows.evicted() - self.evicted_before,
            top_flows: top(&self.flows, |k, counts| FlowEntry {
                protocol: protocol_name(k.protocol),
                src: k.src,
                dst: k.dst,
                counts,
            }),
            top_hosts: top(&self.hosts, |ip, counts| HostEntry { ip, counts }),
            connections_started: self.started,
            connections_ended: self.ended,
            connections_unreported: self.unreported,
            top_ended: std::mem::take(&mut self.top_ended),
        };
        self.started = 0;
        self.ended = EndCounts::default();
        self.unreported = 0;
        // Capture time that went back (a merged or rewritten capture) starts counting
        // seconds again from the poke's clock.
        let now_second = tick.now.as_nanos() / NANOS_PER_SEC;
        if now_second < self.report_second {
            self.report_second = now_second;
            self.reported_in_second = 0;
        }
        self.total = Counts::default();
        self.evicted_before = self.flows.evicted();
        self.flows.clear();
        self.hosts.clear();
        TopTalkers {
            top_talkers: summary,
        }
    }

    /// Counts one ended connection into the interval and returns its payload.
    pub fn ended(&mut self, s: &FlowSummary) -> FlowEndedPayload {
        let (protocol, originator, responder, reason) = self.count_ended(s);
        FlowEndedPayload {
            flow_ended: FlowEnded {
                id: s.id,
                protocol,
                originator,
                responder,
                first: secs(s.first_ns),
                last: secs(s.last_ns),
                packets_from_originator: s.packets_from_originator,
                packets_from_responder: s.packets_from_responder,
                bytes_from_originator: s.bytes_from_originator,
                bytes_from_responder: s.bytes_from_responder,
                tcp_flags: flag_names(s.tcp_flags_seen),
                end_reason: reason,
            },
        }
    }

    /// As [`Self::ended`], but the payload is written straight as JSON text, byte for byte
    /// what serde_json makes of [`FlowEndedPayload`] (the unit tests compare the two).
    ///
    /// Why: on high-cardinality traffic a connection ends for about every packet, and
    /// serde's path cost a `Vec` for the flag names and two regrowths of its 128-byte
    /// buffer per ~330-byte payload; here one `String` of the right size is filled in
    /// order, with the number formatters serde_json itself calls (`itoa`, `zmij`), so no
    /// UTF-8 check of the whole text is needed either.
    pub fn ended_json(&mut self, s: &FlowSummary) -> String {
        let (protocol, originator, responder, reason) = self.count_ended(s);
        let mut out = String::with_capacity(PAYLOAD_CAPACITY);
        out.push_str("{\"flow_ended\":{\"id\":");
        json_u64(&mut out, s.id);
        out.push_str(",\"protocol\":\"");
        out.push_str(protocol);
        out.push_str("\",\"originator\":");
        json_socket_addr(&mut out, originator);
        out.push_str(",\"responder\":");
        json_socket_addr(&mut out, responder);
        out.push_str(",\"first\":");
        let first_at = out.len();
        json_f64(&mut out, secs(s.first_ns));
        let first_end = out.len();
        out.push_str(",\"last\":");
        if s.last_ns == s.first_ns {
            // The same time is the same text: copied, not formatted again (a one-packet
            // flow, most of them on high-cardinality traffic, where the float formatter's
            // 128-bit arithmetic, emulated in wasm, was ~15 % of this function's time).
            out.extend_from_within(first_at..first_end);
        } else {
            json_f64(&mut out, secs(s.last_ns));
        }
        out.push_str(",\"packets_from_originator\":");
        json_u64(&mut out, s.packets_from_originator);
        out.push_str(",\"packets_from_responder\":");
        json_u64(&mut out, s.packets_from_responder);
        out.push_str(",\"bytes_from_originator\":");
        json_u64(&mut out, s.bytes_from_originator);
        out.push_str(",\"bytes_from_responder\":");
        json_u64(&mut out, s.bytes_from_responder);
        out.push_str(",\"tcp_flags\":[");
        let mut first = true;
        for (flag, name) in FLAG_NAMES {
            if s.tcp_flags_seen.contains(flag) {
                if !first {
                    out.push(',');
                }
                first = false;
                out.push('"');
                out.push_str(name);
                out.push('"');
            }
        }
        out.push_str("],\"end_reason\":\"");
        out.push_str(reason);
        out.push_str("\"}}");
        out
    }

    /// Counts one ended connection and returns its `flow_ended` text, unless
    /// [`MAX_ENDED_REPORTED_PER_SEC`] have been sent in the second of its last packet (then
    /// it is counted in `connections_unreported` and its text is never written).
    pub fn on_ended(&mut self, s: &FlowSummary) -> Option<String> {
        let second = s.last_ns / NANOS_PER_SEC;
        if second > self.report_second {
            self.report_second = second;
            self.reported_in_second = 0;
        }
        if self.reported_in_second < MAX_ENDED_REPORTED_PER_SEC {
            self.reported_in_second += 1;
            Some(self.ended_json(s))
        } else {
            self.count_ended(s);
            self.unreported += 1;
            None
        }
    }

    /// Counts one ended connection into the interval (by reason, and into `top_ended`);
    /// returns its protocol name, endpoints and reason name.
    fn count_ended(
        &mut self,
        s: &FlowSummary,
    ) -> (&'static str, SocketAddr, SocketAddr, &'static str) {
        let reason = reason_name(s.end_reason);
        match s.end_reason {
            FlowEndReason::Fin => self.ended.fin += 1,
            FlowEndReason::Rst => self.ended.rst += 1,
            FlowEndReason::IdleTimeout => self.ended.idle_timeout += 1,
            FlowEndReason::Evicted => self.ended.evicted += 1,
            FlowEndReason::EndOfCapture => self.ended.end_of_capture += 1,
        }
        let (originator, responder) = endpoints(&s.key);
        let protocol = transport_name(s.key.transport);
        let entry = EndedEntry {
            protocol,
            originator,
            responder,
            packets: s.packets_from_originator + s.packets_from_responder,
            bytes: s.bytes_from_originator + s.bytes_from_responder,
            end_reason: reason,
        };
        // A sorted list of at most TOP_N: O(TOP_N) per connection, no growth.
        let at = self.top_ended.partition_point(|e| e.bytes >= entry.bytes);
        if at < TOP_N {
            self.top_ended.insert(at, entry);
            self.top_ended.truncate(TOP_N);
        }
        (protocol, originator, responder, reason)
    }
}

impl Chef for TopTalkersChef {
    fn info() -> ChefInfo {
        ChefInfo::new(
            "TopTalkersChef",
            "Every poke, the busiest flows and source hosts of the last interval",
        )
        .drivers(Drivers::PACKET | Drivers::INTERVAL)
        .interest(
            Interest::ANY
                .network(&[NetworkProtocol::Ipv4, NetworkProtocol::Ipv6])
                .flow_events(true),
        )
    }

    fn on_packet(&mut self, packet: &Packet<'_>) -> impl Dumplings {
        self.count(packet);
    }

    fn on_interval(&mut self, tick: Tick) -> impl Dumplings {
        RawJson(top_talkers_json(&self.summary(tick)))
    }

    fn on_flow_event(&mut self, event: &FlowEvent) -> impl Dumplings {
        match event {
            FlowEvent::Started(_) => {
                self.started += 1;
                EndedJson(None)
            }
            FlowEvent::Ended(s) => EndedJson(self.on_ended(s)),
        }
    }
}

/// The answer to a flow event: an ended connection's payload as JSON text (from
/// [`TopTalkersChef::ended_json`]), nothing for a start.
pub struct EndedJson(pub Option<String>);

impl Dumplings for EndedJson {
    fn for_each_json(self, mut emit: impl FnMut(String)) {
        if let Some(json) = self.0 {
            emit(json);
        }
    }
}

chef_sdk::export_chef!(TopTalkersChef);

#[cfg(test)]
mod tests {
    use super::*;
    use chef_sdk::testing::{frames, poke, sample_capture, Batch};

    fn summary(id: u64, orig_port: u16, bytes: u64, reason: FlowEndReason) -> FlowEvent {
        FlowEvent::Ended(FlowSummary {
            id,
            key: WitFlowKey {
                transport: TransportProtocol::Tcp,
                originator: IpAddress::V4(0x0a00_0001),
                responder: IpAddress::V6((0x2001_0db8 << 32, 1)),
                originator_port: orig_port,
                responder_port: 443,
            },
            first_ns: 1_500_000_000,
            last_ns: 3_250_000_000,
            packets_from_originator: 3,
            packets_from_responder: 2,
            bytes_from_originator: bytes,
            bytes_from_responder: 100,
            tcp_flags_seen: TcpFlags::SYN | TcpFlags::ACK | TcpFlags::FIN,
            end_reason: reason,
        })
    }

    fn payloads(d: impl Dumplings) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        d.for_each_json(|j| out.push(serde_json::from_str(&j).expect("JSON")));
        out
    }

    #[test]
    fn flow_events_become_summaries_and_interval_counts() {
        assert!(describe_flow_events());
        let mut chef = TopTalkersChef::default();
        let start = FlowEvent::Started(chef_sdk::flow::FlowStart {
            id: 1,
            key: match summary(1, 1, 1, FlowEndReason::Fin) {
                FlowEvent::Ended(s) => s.key,
                FlowEvent::Started(s) => s.key,
            },
            timestamp_ns: 1_500_000_000,
        });
        assert!(payloads(chef.on_flow_event(&start)).is_empty());
        let out = payloads(chef.on_flow_event(&summary(1, 5000, 900, FlowEndReason::Fin)));
        let f = &out[0]["flow_ended"];
        assert_eq!(f["id"], 1);
        assert_eq!(f["protocol"], "tcp");
        assert_eq!(f["originator"], "10.0.0.1:5000");
        assert_eq!(f["responder"], "[2001:db8::1]:443");
        assert_eq!(f["first"], 1.5);
        assert_eq!(f["last"], 3.25);
        assert_eq!(f["bytes_from_originator"], 900);
        assert_eq!(f["packets_from_responder"], 2);
        assert_eq!(f["tcp_flags"], serde_json::json!(["FIN", "SYN", "ACK"]));
        assert_eq!(f["end_reason"], "fin");
        // Twelve more: the interval keeps the TOP_N largest, largest first.
        for k in 0..12u64 {
            let reason = if k % 2 == 0 {
                FlowEndReason::IdleTimeout
            } else {
                FlowEndReason::Evicted
            };
            chef.on_flow_event(&summary(2 + k, 6000 + k as u16, k * 10, reason))
                .for_each_json(|_| {});
        }
        let t = &poke(&mut chef, 2)[0]["top_talkers"];
        assert_eq!(t["connections_started"], 1);
        assert_eq!(
            t["connections_ended"],
            serde_json::json!({"fin": 1, "rst": 0, "idle_timeout": 6, "evicted": 6, "end_of_capture": 0})
        );
        let top = t["top_ended"].as_array().expect("top_ended");
        assert_eq!(top.len(), TOP_N);
        assert_eq!(top[0]["bytes"], 1000);
        assert_eq!(top[1]["bytes"], 210);
        assert!(top
            .windows(2)
            .all(|w| w[0]["bytes"].as_u64() >= w[1]["bytes"].as_u64()));
        assert_eq!(t["connections_unreported"], 0);
        // The next interval starts from zero.
        let t = &poke(&mut chef, 3)[0]["top_talkers"];
        assert_eq!(t["connections_ended"]["fin"], 0);
        assert_eq!(t["top_ended"], serde_json::json!([]));
    }

    /// A connection ending at `last_ns`.
    fn ended_at(id: u64, last_ns: u64) -> FlowEvent {
        match summary(id, 1000, 60, FlowEndReason::Evicted) {
            FlowEvent::Ended(s) => FlowEvent::Ended(FlowSummary {
                first_ns: last_ns,
                last_ns,
                ..s
            }),
            start => start,
        }
    }

    /// A flood of ended connections gets `MAX_ENDED_REPORTED_PER_SEC` dumplings per second
    /// of capture time; the rest are counted, never lost: in `connections_ended`,
    /// `connections_unreported` and `top_ended`. Older seconds (evictions) do not reopen a
    /// spent one; time going back before a poke does.
    #[test]
    fn a_flood_of_ended_connections_is_reported_up_to_the_cap_and_counted() {
        let mut chef = TopTalkersChef::default();
        let cap = MAX_ENDED_REPORTED_PER_SEC;
        let send = |chef: &mut TopTalkersChef, id: u64, at: u64| {
            payloads(chef.on_flow_event(&ended_at(id, at))).len() as u64
        };
        let second = 1_700_000_000 * NANOS_PER_SEC;
        // 3 × cap in one second, then cap + 5 in the next (every other one stamped a second
        // earlier, as evictions of older connections are).
        let mut sent: u64 = (0..3 * cap).map(|i| send(&mut chef, i, second + i)).sum();
        assert_eq!(sent, cap);
        let next = second + NANOS_PER_SEC;
        for i in 0..cap + 5 {
            let at = if i % 2 == 0 { next + i } else { second + i };
            sent += send(&mut chef, 10 * cap + i, at);
        }
        assert_eq!(sent, 2 * cap);
        let t = &poke(&mut chef, next + NANOS_PER_SEC)[0]["top_talkers"];
        let total = 4 * cap + 5;
        assert_eq!(t["connections_ended"]["evicted"], total);
        assert_eq!(t["connections_unreported"], total - 2 * cap);
        assert_eq!(t["top_ended"].as_array().map(Vec::len), Some(TOP_N));
        // Capture time went back: counting starts again from the poke's second.
        let earlier = 1_600_000_000 * NANOS_PER_SEC;
        let t = &poke(&mut chef, earlier)[0]["top_talkers"];
        assert_eq!(t["connections_unreported"], 0);
        assert_eq!(send(&mut chef, 99 * cap, earlier), 1);
    }

    /// The hand-written `flow_ended` text is byte for byte serde_json's, for IPv4 and IPv6
    /// endpoints, every flag set, every reason and transport, and edge numbers (0,
    /// `u64::MAX`, times with and without a fraction); and it counts the connection alike.
    #[test]
    fn hand_written_summary_matches_serde() {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let addr = |r: u64, port: u16| -> SocketAddr {
            if r.is_multiple_of(3) {
                let v6 = std::net::Ipv6Addr::from(u128::from(r) << (r % 64) | u128::from(r % 7));
                SocketAddr::new(v6.into(), port)
            } else {
                SocketAddr::new(std::net::Ipv4Addr::from((r >> 8) as u32).into(), port)
            }
        };
        let reasons = ["fin", "rst", "idle_timeout", "evicted", "end_of_capture"];
        for round in 0..2000u64 {
            let r = next();
            let n = |k: u64| (0..(r >> k) % 11).collect::<Vec<_>>();
            let edge = |v: u64| {
                if v.is_multiple_of(5) {
                    u64::MAX - v % 3
                } else {
                    v % 100_000
                }
            };
            let counts = |v: u64| Counts {
                packets: edge(v),
                bytes: edge(v >> 3),
            };
            let summary = Summary {
                interval: [5.0, 0.1, 1e-7, 2.5e9, 3.0][(round % 5) as usize],
                packets: edge(r),
                bytes: edge(r >> 5),
                flows: (r % 4097) as usize,
                flows_evicted: edge(r >> 9),
                top_flows: n(1)
                    .into_iter()
                    .map(|i| FlowEntry {
                        protocol: protocol_name((r >> i) as u8),
                        src: addr(r.rotate_left(i as u32), (r >> 16) as u16),
                        dst: addr(r.rotate_right(i as u32), i as u16),
                        counts: counts(r >> i),
                    })
                    .collect(),
                top_hosts: n(2)
                    .into_iter()
                    .map(|i| HostEntry {
                        ip: addr(r.rotate_left(7 + i as u32), 0).ip(),
                        counts: counts(r >> (i + 1)),
                    })
                    .collect(),
                connections_started: edge(r >> 11),
                connections_ended: EndCounts {
                    fin: edge(r >> 1),
                    rst: edge(r >> 2),
                    idle_timeout: edge(r >> 3),
                    evicted: edge(r >> 4),
                    end_of_capture: edge(r >> 6),
                },
                connections_unreported: edge(r >> 12),
                top_ended: n(3)
                    .into_iter()
                    .map(|i| EndedEntry {
                        protocol: ["tcp", "udp", "icmp", "icmpv6"][(i % 4) as usize],
                        originator: addr(r ^ i, 1),
                        responder: addr(r.wrapping_mul(i + 3), 65535),
                        packets: edge(r >> i),
                        bytes: edge(r >> (i + 2)),
                        end_reason: reasons[(i % 5) as usize],
                    })
                    .collect(),
            };
            let t = TopTalkers {
                top_talkers: summary,
            };
            assert_eq!(
                top_talkers_json(&t),
                serde_json::to_string(&t).expect("serde")
            );
        }
        // The strings written unescaped need no escape.
        let plain = |s: &str| serde_json::to_string(s).expect("json") == format!("\"{s}\"");
        assert!((0..=255u8).all(|p| plain(&protocol_name(p))));
        assert!(reasons
            .iter()
            .chain(["tcp", "udp", "icmp", "icmpv6"].iter())
            .all(|s| plain(s)));
        for t in [
            TransportProtocol::Tcp,
            TransportProtocol::Udp,
            TransportProtocol::Icmpv4,
            TransportProtocol::Icmpv6,
        ] {
            assert!(plain(transport_name(t)));
        }
        for r in [
            FlowEndReason::Fin,
            FlowEndReason::Rst,
            FlowEndReason::IdleTimeout,
            FlowEndReason::Evicted,
            FlowEndReason::EndOfCapture,
        ] {
            assert!(plain(reason_name(r)));
        }
    }

    #[test]
    fn octets_are_written_as_display_writes_them() {
        for v in 0..=255u8 {
            let mut out = String::new();
            push_octet(&mut out, v);
            assert_eq!(out, v.to_string());
        }
    }

    #[test]
    fn hand_written_flow_ended_matches_serde() {
        fn next(x: &mut u64) -> u64 {
            *x ^= *x << 13;
            *x ^= *x >> 7;
            *x ^= *x << 17;
            *x
        }
        fn edge(x: &mut u64, n: u64) -> u64 {
            match n % 7 {
                0 => 0,
                1 => u64::MAX,
                2 => 1_700_000_000_000_000_000,
                _ => next(x),
            }
        }
        fn addr(x: &mut u64, n: u64) -> IpAddress {
            match n % 3 {
                0 => IpAddress::V6((edge(x, n / 3), edge(x, n / 5))),
                _ => IpAddress::V4(edge(x, n / 7) as u32),
            }
        }
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut by_serde = TopTalkersChef::default();
        let mut by_hand = TopTalkersChef::default();
        let reasons = [
            FlowEndReason::Fin,
            FlowEndReason::Rst,
            FlowEndReason::IdleTimeout,
            FlowEndReason::Evicted,
            FlowEndReason::EndOfCapture,
        ];
        let transports = [
            TransportProtocol::Tcp,
            TransportProtocol::Udp,
            TransportProtocol::Icmpv4,
            TransportProtocol::Icmpv6,
        ];
        for i in 0..20_000u64 {
            let r = next(&mut x);
            let flags = FLAG_NAMES
                .iter()
                .enumerate()
                .filter(|(b, _)| (r >> b) & 1 == 1)
                .fold(TcpFlags::empty(), |f, (_, (flag, _))| f | *flag);
            let first = edge(&mut x, r >> 3);
            let s = FlowSummary {
                id: edge(&mut x, i),
                key: WitFlowKey {
                    transport: transports[(r >> 8) as usize % 4],
                    originator: addr(&mut x, r >> 10),
                    responder: addr(&mut x, r >> 20),
                    originator_port: (r >> 30) as u16,
                    responder_port: if i % 5 == 0 { 0 } else { (r >> 46) as u16 },
                },
                first_ns: first,
                // One-packet flows (the same time twice) take their own path.
                last_ns: if i % 3 == 0 {
                    first
                } else {
                    edge(&mut x, r >> 4)
                },
                packets_from_originator: edge(&mut x, r >> 5),
                packets_from_responder: edge(&mut x, r >> 6),
                bytes_from_originator: edge(&mut x, i),
                bytes_from_responder: edge(&mut x, i + 3),
                tcp_flags_seen: flags,
                end_reason: reasons[(r >> 40) as usize % 5],
            };
            let want = serde_json::to_string(&by_serde.ended(&s)).expect("serde");
            assert_eq!(by_hand.ended_json(&s), want);
        }
        let a = &poke(&mut by_serde, 2)[0];
        let b = &poke(&mut by_hand, 2)[0];
        assert_eq!(a, b);
        assert_ne!(a["top_talkers"]["connections_ended"]["fin"], 0);
    }

    fn describe_flow_events() -> bool {
        chef_sdk::testing::describe::<TopTalkersChef>()
            .interest
            .flow_events
    }

    #[test]
    fn ranks_flows_and_hosts_then_resets() {
        let mut b = Batch::default();
        for _ in 0..3 {
            b.push_ethernet(
                1,
                &frames::udp4([10, 0, 0, 1], [10, 0, 0, 2], 1000, 53, &[0; 100]),
            );
        }
        b.push_ethernet(
            1,
            &frames::tcp4([10, 0, 0, 3], [10, 0, 0, 2], 2000, 80, &[0; 1000]),
        );
        let mut chef = TopTalkersChef::default();
        assert!(b.feed(&mut chef).is_empty());
        let out = poke(&mut chef, 2);
        let t = &out[0]["top_talkers"];
        assert_eq!(t["packets"], 4);
        assert_eq!(t["bytes"], 3 * 142 + 1054);
        assert_eq!(t["flows"], 2);
        assert_eq!(t["interval"], 5.0);
        assert_eq!(t["top_flows"][0]["src"], "10.0.0.3:2000");
        assert_eq!(t["top_flows"][0]["protocol"], "tcp");
        assert_eq!(t["top_flows"][1]["packets"], 3);
        assert_eq!(t["top_hosts"][1]["ip"], "10.0.0.1");
        let idle = poke(&mut chef, 3);
        assert_eq!(idle[0]["top_talkers"]["packets"], 0);
        assert_eq!(idle[0]["top_talkers"]["top_flows"], serde_json::json!([]));
    }

    /// The interval payload holds no string from the traffic and at most [`TOP_N`] entries
    /// per list: its worst case (IPv6 ends, largest numbers) is a few KB, far under the
    /// kitchen's 1,044,480-byte limit, however many flows and hosts there were.
    #[test]
    fn worst_case_interval_payload_is_small() {
        let mut chef = TopTalkersChef::default();
        let mut b = Batch::default();
        for i in 0..(MAX_FLOWS as u32 + 100) {
            b.push_ethernet(
                1,
                &frames::udp4(
                    [255, 255, (i >> 8) as u8, i as u8],
                    [255; 4],
                    65535,
                    65535,
                    b"",
                ),
            );
        }
        b.feed(&mut chef);
        for id in 0..5000u64 {
            let mut e = summary(id, 65535, u64::MAX, FlowEndReason::EndOfCapture);
            if let FlowEvent::Ended(s) = &mut e {
                s.key.originator = IpAddress::V6((u64::MAX, id));
                s.key.responder = IpAddress::V6((u64::MAX - 1, u64::MAX));
                s.key.responder_port = 65535;
                s.packets_from_originator = u64::MAX;
                s.packets_from_responder = u64::MAX;
                s.bytes_from_responder = u64::MAX;
                s.first_ns = u64::MAX;
                s.last_ns = u64::MAX;
            }
            let _ = payloads(chef.on_flow_event(&e));
        }
        let raw = chef_sdk::testing::poke_raw(&mut chef, u64::MAX);
        assert!(raw[0].len() < 16 * 1024, "{}", raw[0].len());
    }

    #[test]
    fn bounded_under_a_flood() {
        let mut b = Batch::default();
        for i in 0..(MAX_FLOWS as u32 + 100) {
            let port = (i % 60000) as u16;
            let ip = (i / 60000) as u8;
            b.push_ethernet(
                1,
                &frames::udp4([10, 0, 0, ip], [10, 0, 1, 1], port, 9, b""),
            );
        }
        let mut chef = TopTalkersChef::default();
        b.feed(&mut chef);
        assert_eq!(chef.flows.len(), MAX_FLOWS);
        let t = &poke(&mut chef, 2)[0]["top_talkers"];
        assert_eq!(t["flows_evicted"], 100);
        assert_eq!(t["packets"], MAX_FLOWS as u64 + 100);
        assert_eq!(t["top_flows"].as_array().map(Vec::len), Some(TOP_N));
    }

    #[test]
    fn sample_capture_summary() {
        let batch = sample_capture().expect("sample capture");
        let mut chef = TopTalkersChef::default();
        batch.feed(&mut chef);
        let t = &poke(&mut chef, 2)[0]["top_talkers"];
        assert_eq!(t["packets"], 46, "every IP packet of the capture");
        assert_eq!(t["top_hosts"][0]["ip"], "127.0.0.1");
    }

    #[test]
    fn survives_the_corpus() {
        // Every capture of the team's pcap corpus: no panic, only valid JSON.
        assert!(chef_sdk::testing::sweep_corpus::<TopTalkersChef>() > 10_000);
    }
}
