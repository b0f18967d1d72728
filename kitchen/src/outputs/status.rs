//! Kitchen status: per-chef and kitchen-wide counters, reported as a kitchen-made interval
//! dumpling from [`dumpling::KITCHEN_STATUS_CHEF`] and in `nd-sniff`'s exit summary (both
//! are rendered from the same [`StatusReport`], so they never disagree).
//!
//! What is measured where:
//! * per chef, by its lane ([`crate::dispatch::ChefLane`], counters in
//!   [`crate::dispatch::ChefCounters`]): packets offered (handed to a call, whether or not the call
//!   succeeded), calls, dumplings and their bytes, time per `on-packets` batch (a fixed
//!   log-linear histogram, so recording a batch never allocates), state (from the outcome
//!   of the chef's last call), load failures (from hot reload, per file);
//! * per chef, by the chef host ([`crate::chef_host::ChefStats`]): traps, timeouts, memory
//!   failures, restarts;
//! * kitchen-wide: capture counters (live: `capture::LiveCapture::stats()`), hub counters,
//!   and while chefs use them the flow table's and TCP reassembly's counters ([`traffic`]).
//!
//! Determinism: a replay's status dumpling must be byte-for-byte reproducible, so in
//! [`StatusDetail::Deterministic`] it leaves out everything that depends on wall time
//! (`mean_ns`, `p99_ns`, the hub's counters). Live dumplings and the exit summary include
//! them.

use std::collections::BTreeMap;

use serde::Serialize;

pub mod traffic;

use traffic::{FlowStatus, StreamStatus};

/// Sub-buckets per power of two in [`BatchTiming`] (4 = about 19 % bucket width).
const SUB_BITS: u32 = 2;
const SUB: usize = 1 << SUB_BITS;
/// Buckets: 64 powers of two times [`SUB`] sub-buckets.
const BUCKETS: usize = 64 * SUB;

/// Time per batch: count, sum and a fixed log-linear histogram (no allocation per call;
/// p99 is the upper bound of the bucket holding the 99th percentile, within ~19 %).
#[derive(Clone)]
pub struct BatchTiming {
    count: u64,
    sum_ns: u64,
    buckets: Box<[u32; BUCKETS]>,
}

impl Default for BatchTiming {
    fn default() -> Self {
        BatchTiming {
            count: 0,
            sum_ns: 0,
            buckets: Box::new([0; BUCKETS]),
        }
    }
}

impl std::fmt::Debug for BatchTiming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchTiming")
            .field("count", &self.count)
            .field("mean_ns", &self.mean_ns())
            .field("p99_ns", &self.p99_ns())
            .finish()
    }
}

fn bucket_of(ns: u64) -> usize {
    if ns < SUB as u64 {
        return ns as usize;
    }
    let msb = 63 - ns.leading_zeros();
    let sub = (ns >> (msb - SUB_BITS)) as usize & (SUB - 1);
    (msb as usize) * SUB + sub
}

/// Largest value that falls in bucket `b`.
fn bucket_upper(b: usize) -> u64 {
    if b < SUB {
        return b as u64;
    }
    let msb = (b / SUB) as u32;
    let sub = (b % SUB) as u64;
    let base = 1u64 << msb;
    let width = base >> SUB_BITS;
    // `base - 1 + (sub + 1) * width`, ordered so the top bucket ends at u64::MAX exactly.
    (base - 1).saturating_add((sub + 1) * width)
}

impl BatchTiming {
    /// Record one batch.
    pub fn record(&mut self, ns: u64) {
        self.count += 1;
        self.sum_ns = self.sum_ns.saturating_add(ns);
        let b = &mut self.buckets[bucket_of(ns)];
        *b = b.saturating_add(1);
    }

    /// Batches recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Total ns of all batches (saturating).
    pub fn sum_ns(&self) -> u64 {
        self.sum_ns
    }

    /// Batches that took less than `2^pow2` ns (exact: bucket edges fall on powers of two).
    pub fn count_below_pow2(&self, pow2: u32) -> u64 {
        let end = (pow2 as usize * SUB).min(BUCKETS);
        self.buckets[..end].iter().map(|&n| u64::from(n)).sum()
    }

    /// Mean ns per batch (0 when none).
    pub fn mean_ns(&self) -> u64 {
        self.sum_ns.checked_div(self.count).unwrap_or(0)
    }

    /// 99th percentile ns per batch (bucket upper bound; 0 when none).
    pub fn p99_ns(&self) -> u64 {
        if self.count == 0 {
            return 0;
        }
        // Rank of the 99th percentile, 1-based, rounded up.
        let rank = (self.count * 99).div_ceil(100).max(1);
        let mut seen = 0u64;
        for (i, &n) in self.buckets.iter().enumerate() {
            seen += u64::from(n);
            if seen >= rank {
                return bucket_upper(i);
            }
        }
        bucket_upper(BUCKETS - 1)
    }
}

/// A chef's state, from the outcome of its last call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ChefRunState {
    /// Its last call succeeded (or it was not called yet).
    #[default]
    Running,
    /// Its last call failed: its instance was dropped and is re-instantiated after a backoff.
    Restarting,
    /// It failed too often in a row and is not called any more (until its file changes).
    Quarantined,
}

/// Capture counters for the status dumpling.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CaptureCounters {
    /// Packets received (live) or read (replay).
    pub packets: u64,
    /// Packets the kernel dropped (live only; on `any`, a lost loopback packet counts twice,
    /// as the kernel queued both its outgoing and incoming copy).
    pub kernel_dropped: u64,
    /// Packets dropped at the queue between the capture threads and the kitchen (live only).
    pub queue_dropped: u64,
    /// Packets still queued when the kitchen stopped and not handed to the chefs (live
    /// only; the kitchen drains the queue for a bounded time first).
    pub shutdown_dropped: u64,
}

/// Hub counters for the status dumpling.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct HubCounters {
    /// Dumplings sent.
    pub sent: u64,
    /// Dumplings queued, not yet sent.
    pub buffered: u64,
    /// Dumplings dropped (queue full while the hub was unreachable).
    pub dropped: u64,
}

/// How much a report says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusDetail {
    /// Everything (live dumplings, the exit summary).
    Full,
    /// Only what a replay reproduces exactly (no wall-clock timings, no hub counters).
    Deterministic,
}

/// One chef in a [`StatusReport`].
#[derive(Debug, Clone, Serialize)]
pub struct ChefStatus {
    /// Where it came from (`built-in:<file>` or the file path).
    pub source: String,
    /// Its version (`describe`).
    pub version: String,
    /// SHA-256 of its component (hex): which exact code made its dumplings.
    pub sha256: String,
    /// Id of the key that signed its component (absent when unsigned or built-in).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// `running`, `restarting` or `quarantined`.
    pub state: ChefRunState,
    /// Packets handed to `on-packets` calls.
    pub packets_offered: u64,
    /// Packets handed to calls that worked.
    pub packets_seen: u64,
    /// Packets of its interest it did not see (restarting, failed call, quarantined, shed).
    pub packets_dropped: u64,
    /// Of `packets_dropped`: shed live while over its share of the kitchen's time.
    pub packets_shed: u64,
    /// Interval pokes skipped live while over its share of the kitchen's time.
    pub pokes_shed: u64,
    /// Flow events it asked for and did not see (shed live, failed call, quarantined);
    /// absent when none.
    #[serde(skip_serializing_if = "is_zero")]
    pub flow_events_dropped: u64,
    /// Stream bytes it asked for and did not see (shed live, failed call, quarantined);
    /// absent when none.
    #[serde(skip_serializing_if = "is_zero")]
    pub stream_bytes_dropped: u64,
    /// Successful calls (packet + interval).
    pub calls: u64,
    /// Dumplings sent.
    pub dumplings: u64,
    /// Bytes of dumplings sent.
    pub bytes: u64,
    /// Batches timed.
    pub batches: u64,
    /// Mean ns per batch (wall time; absent from deterministic reports).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean_ns: Option<u64>,
    /// p99 ns per batch (wall time; absent from deterministic reports).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p99_ns: Option<u64>,
    /// Calls that trapped.
    pub traps: u64,
    /// Calls past their deadline.
    pub timeouts: u64,
    /// Calls that hit the memory limit (the chef's own, or the kitchen-wide budget).
    pub memory_failures: u64,
    /// Dumplings dropped for the output byte budget (per call or per second).
    pub over_budget: u64,
    /// Re-instantiations after a failure.
    pub restarts: u64,
    /// Replacements by a new version of its file.
    pub reloads: u64,
    /// Reloads into this version that restored the previous version's state.
    pub state_restored: u64,
    /// Reloads into this version that started fresh: the previous version's state could
    /// not be carried (the log says why).
    pub state_fresh: u64,
    /// Failed attempts to load a new version of its file since its last successful load
    /// (the running version was kept each time).
    pub load_failures: u64,
}

/// A file in the chef directory that does not run (its last load failed).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LoadFailure {
    /// Failed attempts so far.
    pub count: u64,
    /// The last reason.
    pub error: String,
}

/// The whole status, as sent in the `KitchenStatusChef` dumpling's payload.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    /// Per chef, by name.
    pub chefs: BTreeMap<String, ChefStatus>,
    /// Capture counters.
    pub capture: CaptureCounters,
    /// Hub counters (absent without a hub and from deterministic reports).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hub: Option<HubCounters>,
    /// The flow table's counters, once a flow was tracked ([`traffic`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flows: Option<FlowStatus>,
    /// TCP reassembly's counters, while some chef asks for stream bytes ([`traffic`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub streams: Option<StreamStatus>,
    /// IP reassembly's counters, once a fragment was seen ([`traffic`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip_reassembly: Option<crate::parse::defrag::DefragStats>,
    /// Packets of link types the parser cannot decode, once one came ([`traffic`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub undecoded_link_types: Option<traffic::UndecodedLinkStatus>,
    /// Load failures per chef file (hot reload), by path.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub load_failures: BTreeMap<String, LoadFailure>,
    /// Chefs left out of this report so it fits in one hub message (see
    /// [`StatusReport::fit`]); absent when nothing was left out.
    #[serde(skip_serializing_if = "is_zero")]
    pub chefs_omitted: u64,
    /// Load failures left out so the report fits in one hub message.
    #[serde(skip_serializing_if = "is_zero")]
    pub load_failures_omitted: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Longest load-failure reason kept in a report, in characters.
pub const MAX_LOAD_ERROR_CHARS: usize = 512;

impl StatusReport {
    /// Serialize the report in at most `max_bytes`: if the whole report is larger (many
    /// chefs, many failing files), load failures and then chefs are left out from the end
    /// (in name order) and counted in `load_failures_omitted` / `chefs_omitted`, so the
    /// `KitchenStatusChef` dumpling always reaches the hub. Every field of one entry is
    /// bounded (names 64, versions 64, paths ~256, reasons 512 characters), so halving
    /// converges in a few steps.
    pub fn fit(mut self, max_bytes: usize) -> (String, StatusReport) {
        loop {
            let text = serde_json::to_string(&self).unwrap_or_else(|_| "{}".to_owned());
            let nothing_left = self.load_failures.is_empty() && self.chefs.is_empty();
            if text.len() <= max_bytes || nothing_left {
                return (text, self);
            }
            if !self.load_failures.is_empty() {
                let keep = self.load_failures.len() / 2;
                while self.load_failures.len() > keep {
                    self.load_failures.pop_last();
                    self.load_failures_omitted += 1;
                }
            } else {
                let keep = self.chefs.len() / 2;
                while self.chefs.len() > keep {
                    self.chefs.pop_last();
                    self.chefs_omitted += 1;
                }
            }
        }
    }
}

/// Supplies the hub's counters when a status report is made.
pub type HubProbe = Box<dyn FnMut() -> HubCounters + Send>;

/// Kitchen-wide status inputs the dispatcher keeps.
#[derive(Default)]
pub struct StatusInputs {
    /// Emit a `KitchenStatusChef` dumpling at every poke.
    pub emit: bool,
    /// Latest capture counters (live: updated by the capture loop).
    pub capture: Option<CaptureCounters>,
    /// Hub probe, if there is a hub.
    pub hub: Option<HubProbe>,
    /// Load failures per chef file (hot reload).
    pub load_failures: BTreeMap<String, LoadFailure>,
}

impl StatusInputs {
    /// Count a failed load of `path`.
    pub fn record_load_failure(&mut self, path: &str, error: &str) {
        let e = self
            .load_failures
            .entry(path.to_owned())
            .or_insert(LoadFailure {
                count: 0,
                error: String::new(),
            });
        e.count += 1;
        // Reasons can quote chef output (a trap message): bounded, so one report stays
        // small (JSON escapes control characters; logs escape them when printing).
        e.error = match error.char_indices().nth(MAX_LOAD_ERROR_CHARS) {
            Some((end, _)) => format!("{}…", &error[..end]),
            None => error.to_owned(),
        };
    }

    /// Forget the failed loads of `path` (a version of it loaded, or it was removed).
    pub fn clear_load_failures(&mut self, path: &str) {
        self.load_failures.remove(path);
    }
}

/// One chef's line of `nd-sniff`'s exit summary: every fact once (it printed two lines that
/// repeated the packets seen, the calls and the state), the counts a healthy run leaves
/// at 0 (refused dumplings, failures, reloads) only when there are some.
///
/// `status` is the chef's [`ChefStatus`] with [`StatusDetail::Full`] (`ChefLane::status`);
/// `stats` and `counters` add what the status dumpling does not carry: calls by kind,
/// refusals by reason, time in the chef.
pub fn chef_summary(
    name: &str,
    status: &ChefStatus,
    stats: &crate::chef_host::ChefStats,
    counters: &crate::dispatch::ChefCounters,
) -> String {
    use std::fmt::Write;
    // Only the named counts that are not 0, joined; `None` when all are 0.
    let some = |counts: &[(u64, &str)]| -> Option<String> {
        let shown: Vec<String> = counts
            .iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, what)| format!("{n} {what}"))
            .collect();
        (!shown.is_empty()).then(|| shown.join(", "))
    };
    let state = match status.state {
        ChefRunState::Running => "running",
        ChefRunState::Restarting => "restarting",
        // Upper case: the one state a reader must not miss.
        ChefRunState::Quarantined => "QUARANTINED",
    };
    let mut line = format!(
        "chef {name}: {state}; {} packets offered, {} seen, {} dropped ({} shed)",
        status.packets_offered, status.packets_seen, status.packets_dropped, status.packets_shed
    );
    if status.pokes_shed > 0 {
        let _ = write!(line, ", {} pokes shed", status.pokes_shed);
    }
    if let Some(missed) = some(&[
        (status.flow_events_dropped, "flow events"),
        (status.stream_bytes_dropped, "stream bytes"),
    ]) {
        let _ = write!(line, ", not seen: {missed}");
    }
    let _ = write!(
        line,
        "; {} packet calls, {} interval calls",
        stats.packet_calls, stats.interval_calls
    );
    if let Some(more) = some(&[
        (stats.flow_event_calls, "flow-event calls"),
        (stats.stream_calls, "stream calls"),
    ]) {
        let _ = write!(line, ", {more}");
    }
    let _ = write!(
        line,
        "; {} dumplings ({} bytes)",
        status.dumplings, status.bytes
    );
    if let Some(refused) = some(&[
        (stats.undecodable + counters.invalid, "invalid"),
        (counters.oversize, "oversize"),
        (counters.over_cap, "over cap"),
        (status.over_budget, "over output budget"),
    ]) {
        let _ = write!(line, "; refused: {refused}");
    }
    if let Some(failures) = some(&[
        (status.traps, "traps"),
        (status.timeouts, "timeouts"),
        (status.memory_failures, "memory"),
        (status.restarts, "restarts"),
    ]) {
        let _ = write!(line, "; failures: {failures}");
    }
    if let Some(reloads) = some(&[
        (status.reloads, "reloads"),
        (status.state_restored, "states restored"),
        (status.state_fresh, "fresh starts"),
        (status.load_failures, "load failures"),
    ]) {
        let _ = write!(line, "; {reloads}");
    }
    let _ = write!(line, "; {:.1} ms in chef", stats.busy_ns as f64 / 1e6);
    let mut timing = Vec::new();
    if stats.packets > 0 {
        timing.push(format!(
            "{:.0} ns/packet",
            stats.busy_ns as f64 / stats.packets as f64
        ));
    }
    if status.batches > 0 {
        timing.push(format!(
            "{} batches: {} ns mean, {} ns p99",
            status.batches,
            status.mean_ns.unwrap_or(0),
            status.p99_ns.unwrap_or(0)
        ));
    }
    if !timing.is_empty() {
        let _ = write!(line, " ({})", timing.join("; "));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_cover_their_values() {
        let mut last = 0;
        for ns in [0u64, 1, 3, 4, 5, 7, 8, 100, 1000, 12_345, 1 << 40, u64::MAX] {
            let b = bucket_of(ns);
            assert!(b >= last, "{ns}");
            last = b;
            assert!(bucket_upper(b) >= ns, "{ns} > upper {}", bucket_upper(b));
            if b > 0 {
                assert!(bucket_upper(b - 1) < ns, "{ns} in too high a bucket");
            }
        }
    }

    #[test]
    fn p99_and_mean() {
        let mut t = BatchTiming::default();
        for _ in 0..99 {
            t.record(1000);
        }
        t.record(1_000_000);
        assert_eq!(t.mean_ns(), (99 * 1000 + 1_000_000) / 100);
        let p99 = t.p99_ns();
        assert!((1000..1300).contains(&p99), "{p99}");
        t.record(1_000_000);
        t.record(1_000_000);
        let p99 = t.p99_ns();
        assert!((1_000_000..1_300_000).contains(&p99), "{p99}");
        assert_eq!(BatchTiming::default().p99_ns(), 0);
    }

    #[test]
    fn counts_below_powers_of_two_are_exact() {
        let mut t = BatchTiming::default();
        for ns in [3u64, 1023, 1024, 5000, 1 << 20] {
            t.record(ns);
        }
        assert_eq!(t.count_below_pow2(0), 0);
        assert_eq!(t.count_below_pow2(10), 2);
        assert_eq!(t.count_below_pow2(11), 3);
        assert_eq!(t.count_below_pow2(20), 4);
        assert_eq!(t.count_below_pow2(64), 5);
        assert_eq!(t.sum_ns(), 3 + 1023 + 1024 + 5000 + (1 << 20));
    }

    fn status(state: ChefRunState) -> ChefStatus {
        ChefStatus {
            source: "built-in:x.wasm".into(),
            version: "0.1.0".into(),
            sha256: String::new(),
            key_id: None,
            state,
            packets_offered: 26,
            packets_seen: 26,
            packets_dropped: 0,
            packets_shed: 0,
            pokes_shed: 0,
            flow_events_dropped: 0,
            stream_bytes_dropped: 0,
            calls: 10,
            dumplings: 7,
            bytes: 1121,
            batches: 3,
            mean_ns: Some(19542),
            p99_ns: Some(57343),
            traps: 0,
            timeouts: 0,
            memory_failures: 0,
            over_budget: 0,
            restarts: 0,
            reloads: 0,
            state_restored: 0,
            state_fresh: 0,
            load_failures: 0,
        }
    }

    /// One line per chef, each fact once; what a healthy run leaves at 0 is left out.
    #[test]
    fn a_chef_summary_is_one_line_with_each_fact_once() {
        let stats = crate::chef_host::ChefStats {
            packet_calls: 3,
            interval_calls: 7,
            packets: 26,
            busy_ns: 69_524,
            ..Default::default()
        };
        let counters = crate::dispatch::ChefCounters::default();
        let line = chef_summary(
            "PacketCountChef",
            &status(ChefRunState::Running),
            &stats,
            &counters,
        );
        assert_eq!(
            line,
            "chef PacketCountChef: running; 26 packets offered, 26 seen, 0 dropped (0 shed); \
             3 packet calls, 7 interval calls; 7 dumplings (1121 bytes); 0.1 ms in chef \
             (2674 ns/packet; 3 batches: 19542 ns mean, 57343 ns p99)"
        );
        // Refusals, failures, sheds and reloads, when there are some, each once.
        let mut bad = status(ChefRunState::Quarantined);
        (bad.packets_dropped, bad.packets_shed, bad.pokes_shed) = (20, 5, 2);
        (bad.traps, bad.timeouts, bad.restarts, bad.over_budget) = (4, 1, 5, 6);
        (bad.reloads, bad.load_failures) = (1, 2);
        let counters = crate::dispatch::ChefCounters {
            invalid: 2,
            over_cap: 3,
            ..Default::default()
        };
        let stats = crate::chef_host::ChefStats {
            undecodable: 1,
            stream_calls: 9,
            ..stats
        };
        let line = chef_summary("Bad", &bad, &stats, &counters);
        assert_eq!(
            line,
            "chef Bad: QUARANTINED; 26 packets offered, 26 seen, 20 dropped (5 shed), \
             2 pokes shed; 3 packet calls, 7 interval calls, 9 stream calls; 7 dumplings \
             (1121 bytes); refused: 3 invalid, 3 over cap, 6 over output budget; failures: \
             4 traps, 1 timeouts, 5 restarts; 1 reloads, 2 load failures; 0.1 ms in chef \
             (2674 ns/packet; 3 batches: 19542 ns mean, 57343 ns p99)"
        );
        for word in ["seen", "packet calls", "dumplings", "QUARANTINED", "traps"] {
            assert_eq!(line.matches(word).count(), 1, "{word} once: {line}");
        }
        // A chef never called: no per-packet or per-batch figures to show.
        let mut idle = status(ChefRunState::Running);
        (idle.packets_offered, idle.packets_seen, idle.batches) = (0, 0, 0);
        let line = chef_summary(
            "Idle",
            &idle,
            &crate::chef_host::ChefStats::default(),
            &crate::dispatch::ChefCounters::default(),
        );
        assert!(line.ends_with("; 0.0 ms in chef"), "{line}");
    }
}
