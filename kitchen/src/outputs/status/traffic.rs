//! The flow table's, TCP reassembly's and IP reassembly's counters as the status report
//! carries them: in the `KitchenStatusChef` dumpling (`flows`, `streams`, `ip_reassembly`),
//! in `/metrics` and in the exit summary, all read from one [`super::StatusReport`].
//!
//! Owners: the flow table counts ([`flowtrack::table::FlowStats`], stamped on each batch
//! by the flow stage, so the dispatcher sees them in step with the packets it ran and a
//! replay's status stays reproducible); the reassembler counts
//! ([`flowtrack::reassembly::ReassemblyStats`], in the dispatcher's stream stage). These
//! types only copy them. Each section is present only while it means something: `flows`
//! once a flow was tracked (some chef asked for flows or streams), `streams` while some
//! chef asks for stream bytes (dropping the last such chef drops the stage and its counts),
//! `ip_reassembly` once an IP fragment was seen (its counts are the batch builder's
//! [`crate::parse::defrag::DefragStats`], carried on the batches like the flow counts);
//! `undecoded_link_types` once a packet of a link type the parser cannot decode came (the
//! batch builder's [`crate::parse::batch::UndecodedLinkTypes`], carried the same way).

use serde::Serialize;

use flowtrack::reassembly::ReassemblyStats;

use crate::parse::batch::UndecodedLinkTypes;
use crate::parse::defrag::DefragStats;
use crate::parse::flow_stage::FlowCounters;
use crate::parse::packet::dlt;

/// The `ip_reassembly` section: IP reassembly's own counters, once a fragment was seen.
pub fn ip_reassembly(s: &DefragStats) -> Option<DefragStats> {
    (s.fragments > 0).then_some(*s)
}

/// The `undecoded_link_types` section: packets whose link type the parser cannot decode
/// (they reach only chefs taking every packet, as undecoded frames).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UndecodedLinkStatus {
    /// Such packets, all together.
    pub packets: u64,
    /// Per link type told apart (the first [`UndecodedLinkTypes::MAX`]), in the order
    /// their first packets came.
    pub link_types: Vec<UndecodedLinkType>,
    /// Packets of the link types past those.
    #[serde(skip_serializing_if = "is_zero")]
    pub others: u64,
}

/// One link type of [`UndecodedLinkStatus`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UndecodedLinkType {
    /// The link type number (pcap `LINKTYPE_`/`DLT_` value).
    pub link_type: u32,
    /// Its libpcap name without `DLT_`, when known (`IEEE802_11`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'static str>,
    /// Its packets.
    pub packets: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The `undecoded_link_types` section, once such a packet came.
pub fn undecoded_link_types(u: &UndecodedLinkTypes) -> Option<UndecodedLinkStatus> {
    let packets = u.total();
    (packets > 0).then(|| UndecodedLinkStatus {
        packets,
        link_types: u
            .counts()
            .iter()
            .map(|&(link_type, packets)| UndecodedLinkType {
                link_type,
                name: dlt::name(link_type),
                packets,
            })
            .collect(),
        others: u.others(),
    })
}

/// The flow table's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct FlowStatus {
    /// Flows started.
    pub started: u64,
    /// Flows ended after a FIN each way.
    pub ended_fin: u64,
    /// Flows ended after a RST.
    pub ended_rst: u64,
    /// Flows ended by an idle timeout.
    pub ended_idle: u64,
    /// Flows evicted because the table was full (`--flow-table-size`).
    pub evicted: u64,
    /// Flows ended by the end of the input.
    pub ended_end_of_capture: u64,
    /// Flows tracked now.
    pub active: u64,
    /// Times the flow clock restarted after capture time went back.
    pub clock_restarts: u64,
}

impl From<FlowCounters> for FlowStatus {
    fn from(c: FlowCounters) -> Self {
        let s = c.stats;
        FlowStatus {
            started: s.started,
            ended_fin: s.ended_fin,
            ended_rst: s.ended_rst,
            ended_idle: s.ended_idle,
            evicted: s.evicted,
            ended_end_of_capture: s.ended_end_of_capture,
            active: c.active,
            clock_restarts: s.clock_restarts,
        }
    }
}

/// TCP reassembly's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StreamStatus {
    /// Segments looked at.
    pub segments: u64,
    /// Bytes delivered to the chefs in stream chunks.
    pub delivered_bytes: u64,
    /// Bytes that arrived again (retransmissions, overlaps); the first copy was kept.
    pub duplicate_bytes: u64,
    /// Segments whose overlapping bytes differed from the kept ones.
    pub conflicting_overlaps: u64,
    /// Holes given up and reported to the chefs as gaps.
    pub gaps: u64,
    /// Bytes in those holes.
    pub gap_bytes: u64,
    /// Of `gap_bytes`: dropped for the per-flow budget (`--stream-flow-buffer-kib`).
    pub dropped_bytes_flow_budget: u64,
    /// Of `gap_bytes`: dropped for the total budget (`--stream-memory-mib`).
    pub dropped_bytes_memory_budget: u64,
    /// Flows in which a budget forced a gap at least once.
    pub flows_over_budget: u64,
    /// Bytes that landed before stream offset 0 (not deliverable).
    pub before_start_bytes: u64,
    /// Out-of-order bytes held now (with bookkeeping).
    pub held_bytes: u64,
    /// Most out-of-order bytes held at once.
    pub held_peak_bytes: u64,
    /// Directions no longer reassembled because every chef that wanted them said it was
    /// done with them (`stream-verdicts`).
    pub released_directions: u64,
}

impl StreamStatus {
    /// From the reassembler's counters and what it holds now.
    pub fn new(s: ReassemblyStats, held_bytes: u64) -> Self {
        StreamStatus {
            segments: s.segments,
            delivered_bytes: s.delivered_bytes,
            duplicate_bytes: s.duplicate_bytes,
            conflicting_overlaps: s.conflicting_overlaps,
            gaps: s.gaps,
            gap_bytes: s.gap_bytes,
            dropped_bytes_flow_budget: s.gap_bytes_flow_window,
            dropped_bytes_memory_budget: s.gap_bytes_memory_full,
            flows_over_budget: s.flows_over_budget,
            before_start_bytes: s.before_start_bytes,
            held_bytes,
            held_peak_bytes: s.held_peak,
            released_directions: s.released_directions,
        }
    }
}

/// The exit summary's lines for these sections (none when absent).
pub fn summary_lines(
    flows: Option<&FlowStatus>,
    streams: Option<&StreamStatus>,
    ip: Option<&DefragStats>,
    undecoded: Option<&UndecodedLinkStatus>,
) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(u) = undecoded {
        let mut line = format!(
            "{} packets of link types the parser does not decode (only chefs taking every \
             packet saw them):",
            u.packets
        );
        for t in &u.link_types {
            let name = t.name.map_or_else(String::new, |n| format!(" (DLT_{n})"));
            line.push_str(&format!(" {}{name} {},", t.link_type, t.packets));
        }
        if u.others > 0 {
            line.push_str(&format!(" other types {},", u.others));
        }
        line.pop();
        lines.push(line);
    }
    if let Some(f) = ip {
        lines.push(format!(
            "IP fragments: {} seen, {} datagrams reassembled; dropped: {} timed out, {} over \
             the memory bound, {} conflicting, {} malformed; {} incomplete now",
            f.fragments,
            f.reassembled,
            f.timed_out,
            f.evicted,
            f.conflicting,
            f.malformed,
            f.incomplete
        ));
    }
    if let Some(f) = flows {
        lines.push(format!(
            "flows: {} started, {} ended by FIN, {} by RST, {} idle, {} evicted (table full), \
             {} at the end; {} still tracked; {} flow-clock restarts",
            f.started,
            f.ended_fin,
            f.ended_rst,
            f.ended_idle,
            f.evicted,
            f.ended_end_of_capture,
            f.active,
            f.clock_restarts
        ));
    }
    if let Some(s) = streams {
        lines.push(format!(
            "streams: {} segments, {} bytes delivered, {} duplicate bytes, {} conflicting \
             overlaps, {} gaps ({} bytes; {} dropped for the per-flow budget, {} for the total \
             budget; {} flows over budget), {} bytes before the stream start, {} bytes held \
             ({} at most), {} directions released by chefs",
            s.segments,
            s.delivered_bytes,
            s.duplicate_bytes,
            s.conflicting_overlaps,
            s.gaps,
            s.gap_bytes,
            s.dropped_bytes_flow_budget,
            s.dropped_bytes_memory_budget,
            s.flows_over_budget,
            s.before_start_bytes,
            s.held_bytes,
            s.held_peak_bytes,
            s.released_directions
        ));
    }
    lines
}

/// A metric of these sections: name (the encoder adds `_total` to counters), help, whether
/// it is a gauge, and its value.
pub type TrafficMetric = (&'static str, &'static str, bool, u64);

/// The `/metrics` families of these sections (none when absent). Flow ends are one family
/// per reason so a sum over them is the total.
pub fn metrics(
    flows: Option<&FlowStatus>,
    streams: Option<&StreamStatus>,
    ip: Option<&DefragStats>,
    undecoded: Option<&UndecodedLinkStatus>,
) -> Vec<TrafficMetric> {
    let mut out = Vec::new();
    if let Some(u) = undecoded {
        out.push((
            "netdumplings_kitchen_undecoded_link_packets",
            "Packets of link types the parser does not decode (only chefs taking every packet \
             see them).",
            false,
            u.packets,
        ));
    }
    if let Some(f) = ip {
        out.extend([
            (
                "netdumplings_kitchen_ip_fragments",
                "IP fragments seen.",
                false,
                f.fragments,
            ),
            (
                "netdumplings_kitchen_ip_datagrams_reassembled",
                "IP datagrams put back together from their fragments.",
                false,
                f.reassembled,
            ),
            (
                "netdumplings_kitchen_ip_datagrams_timed_out",
                "Fragmented IP datagrams dropped: not complete within --ip-reassembly-timeout.",
                false,
                f.timed_out,
            ),
            (
                "netdumplings_kitchen_ip_datagrams_evicted",
                "Fragmented IP datagrams dropped to stay within --ip-reassembly-kib.",
                false,
                f.evicted,
            ),
            (
                "netdumplings_kitchen_ip_datagrams_conflicting",
                "Fragmented IP datagrams dropped: overlapping fragments with different bytes.",
                false,
                f.conflicting,
            ),
            (
                "netdumplings_kitchen_ip_datagrams_malformed",
                "Fragmented IP datagrams dropped: too large or badly cut.",
                false,
                f.malformed,
            ),
            (
                "netdumplings_kitchen_ip_datagrams_incomplete",
                "Fragmented IP datagrams waiting for fragments now.",
                true,
                f.incomplete,
            ),
        ]);
    }
    if let Some(f) = flows {
        out.extend([
            (
                "netdumplings_kitchen_flows_started",
                "Flows (connections) started.",
                false,
                f.started,
            ),
            (
                "netdumplings_kitchen_flows_ended_fin",
                "Flows ended after a FIN each way.",
                false,
                f.ended_fin,
            ),
            (
                "netdumplings_kitchen_flows_ended_rst",
                "Flows ended after a RST.",
                false,
                f.ended_rst,
            ),
            (
                "netdumplings_kitchen_flows_ended_idle",
                "Flows ended by an idle timeout.",
                false,
                f.ended_idle,
            ),
            (
                "netdumplings_kitchen_flows_evicted",
                "Flows evicted because the flow table was full.",
                false,
                f.evicted,
            ),
            (
                "netdumplings_kitchen_flows_ended_end_of_capture",
                "Flows ended by the end of the input.",
                false,
                f.ended_end_of_capture,
            ),
            (
                "netdumplings_kitchen_flow_clock_restarts",
                "Times the flow clock restarted after capture time went back.",
                false,
                f.clock_restarts,
            ),
            (
                "netdumplings_kitchen_flows_active",
                "Flows tracked now.",
                true,
                f.active,
            ),
        ]);
    }
    if let Some(s) = streams {
        out.extend([
            (
                "netdumplings_kitchen_stream_segments",
                "TCP segments looked at by reassembly.",
                false,
                s.segments,
            ),
            (
                "netdumplings_kitchen_stream_delivered_bytes",
                "Stream bytes delivered to the chefs.",
                false,
                s.delivered_bytes,
            ),
            (
                "netdumplings_kitchen_stream_duplicate_bytes",
                "Stream bytes that arrived again (retransmissions, overlaps).",
                false,
                s.duplicate_bytes,
            ),
            (
                "netdumplings_kitchen_stream_conflicting_overlaps",
                "Segments whose overlapping bytes differed from the kept ones.",
                false,
                s.conflicting_overlaps,
            ),
            (
                "netdumplings_kitchen_stream_gaps",
                "Holes reported to the chefs as gaps.",
                false,
                s.gaps,
            ),
            (
                "netdumplings_kitchen_stream_gap_bytes",
                "Bytes in the holes reported as gaps.",
                false,
                s.gap_bytes,
            ),
            (
                "netdumplings_kitchen_stream_dropped_bytes_flow_budget",
                "Gap bytes given up for the per-flow reassembly budget.",
                false,
                s.dropped_bytes_flow_budget,
            ),
            (
                "netdumplings_kitchen_stream_dropped_bytes_memory_budget",
                "Gap bytes given up for the total reassembly budget.",
                false,
                s.dropped_bytes_memory_budget,
            ),
            (
                "netdumplings_kitchen_stream_flows_over_budget",
                "Flows in which a reassembly budget forced a gap.",
                false,
                s.flows_over_budget,
            ),
            (
                "netdumplings_kitchen_stream_before_start_bytes",
                "Stream bytes that landed before stream offset 0.",
                false,
                s.before_start_bytes,
            ),
            (
                "netdumplings_kitchen_stream_held_bytes",
                "Out-of-order stream bytes held now.",
                true,
                s.held_bytes,
            ),
        ]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_copy_their_owners_counters() {
        let mut c = FlowCounters::default();
        c.stats.started = 3;
        c.stats.ended_rst = 1;
        c.active = 2;
        let f = FlowStatus::from(c);
        assert_eq!((f.started, f.ended_rst, f.active), (3, 1, 2));
        let r = ReassemblyStats {
            gap_bytes: 700,
            gap_bytes_flow_window: 500,
            gap_bytes_memory_full: 200,
            flows_over_budget: 1,
            released_directions: 4,
            ..Default::default()
        };
        let s = StreamStatus::new(r, 64);
        assert_eq!(s.released_directions, 4);
        assert_eq!(
            (
                s.dropped_bytes_flow_budget,
                s.dropped_bytes_memory_budget,
                s.held_bytes
            ),
            (500, 200, 64)
        );
        let lines = summary_lines(Some(&f), Some(&s), None, None);
        assert!(lines[0].starts_with("flows: 3 started"), "{lines:?}");
        assert!(lines[1].contains("(700 bytes; 500 dropped for the per-flow budget, 200"));
        assert!(
            lines[1].ends_with(", 4 directions released by chefs"),
            "{lines:?}"
        );
        assert_eq!(metrics(Some(&f), None, None, None).len(), 8);
        assert!(
            summary_lines(None, None, None, None).is_empty()
                && metrics(None, None, None, None).is_empty()
        );
        let d = DefragStats {
            fragments: 9,
            reassembled: 2,
            timed_out: 1,
            incomplete: 1,
            ..Default::default()
        };
        let ip = ip_reassembly(&d).expect("fragments were seen");
        assert_eq!(
            (ip.fragments, ip.reassembled, ip.timed_out, ip.incomplete),
            (9, 2, 1, 1)
        );
        let lines = summary_lines(None, None, Some(&ip), None);
        assert!(
            lines[0].starts_with("IP fragments: 9 seen, 2 datagrams"),
            "{lines:?}"
        );
        assert_eq!(metrics(None, None, Some(&ip), None).len(), 7);
        assert!(ip_reassembly(&DefragStats::default()).is_none());
    }

    #[test]
    fn undecoded_link_types_read_in_the_status_the_summary_and_metrics() {
        let mut u = UndecodedLinkTypes::default();
        assert!(undecoded_link_types(&u).is_none(), "absent until one came");
        for lt in [105, 105, 1, 9999, 105] {
            u.note(lt);
        }
        let status = undecoded_link_types(&u).expect("two types came");
        let json = serde_json::to_string(&status).expect("serialises");
        assert_eq!(
            json,
            r#"{"packets":4,"link_types":[{"link_type":105,"name":"IEEE802_11","packets":3},{"link_type":9999,"packets":1}]}"#
        );
        let lines = summary_lines(None, None, None, Some(&status));
        assert_eq!(
            lines,
            [
                "4 packets of link types the parser does not decode (only chefs taking every \
              packet saw them): 105 (DLT_IEEE802_11) 3, 9999 1"
            ]
        );
        let m = metrics(None, None, None, Some(&status));
        assert_eq!(m.len(), 1);
        assert_eq!(
            (m[0].0, m[0].3),
            ("netdumplings_kitchen_undecoded_link_packets", 4)
        );
    }
}
