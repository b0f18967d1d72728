//! `/metrics` for Prometheus (`nd-sniff --metrics-address`): the kitchen's counters in the
//! Prometheus text format, encoded by `prometheus-client`.
//!
//! The dispatcher stays the only owner of the counters (the same ones the
//! `KitchenStatusChef` dumpling and the exit summary report): the thread that runs the
//! chefs takes a [`Snapshot`] every [`PUBLISH_EVERY`] (live loop, replay progress tick,
//! also while a replayed pipe is idle) and [`KitchenMetrics::publish`]es it; a scrape
//! encodes the latest snapshot on the metrics thread, so the packet path never waits for
//! a scrape. Label values a chef controls (its name, at most 64 characters) are escaped by
//! the encoder; one label set per loaded chef, capped at [`MAX_CHEF_SERIES`].
//!
//! The HTTP side (address rule, `GET /metrics` server) is shared with `nd-hub`:
//! [`hub_link::metrics_http`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::dispatch::Dispatcher;
use crate::outputs::status::{BatchTiming, ChefStatus, StatusDetail, StatusReport};
use crate::run::replay::ReplayCounters;

/// How often the chefs' thread publishes a fresh snapshot.
pub const PUBLISH_EVERY: Duration = Duration::from_millis(250);

/// Per-chef label sets exported at most (a kitchen loads far fewer chefs; the cap keeps a
/// chef folder flooded with files from blowing up a scrape).
pub const MAX_CHEF_SERIES: usize = 256;

/// The port `--metrics-address` alone binds (on 127.0.0.1); `nd-hub` uses 11349.
pub const DEFAULT_METRICS_PORT: u16 = 11350;

/// Upper bounds of the call-time histogram: `2^k` ns for these `k` (1.0 µs .. 17.2 s);
/// the status histogram's buckets end exactly there, so the counts are exact.
const HISTOGRAM_POW2: [u32; 13] = [10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30, 32, 34];

/// A chef's measurements beside its [`ChefStatus`].
#[derive(Debug, Clone)]
struct ChefExtra {
    timing: BatchTiming,
    memory_bytes: u64,
}

/// What a replay has read so far.
#[derive(Debug, Clone, Copy, Default)]
struct ReplayRead {
    packets: u64,
    bytes: u64,
}

/// The kitchen's counters at one moment (taken on the chefs' thread).
#[derive(Debug, Clone)]
pub struct Snapshot {
    report: StatusReport,
    extra: BTreeMap<String, ChefExtra>,
    chefs_memory_bytes: u64,
    dumplings: u64,
    replay: Option<ReplayRead>,
}

impl Snapshot {
    /// The dispatcher's counters now (full detail: timings and hub counters included),
    /// plus what a replay has read when `replay` is given.
    pub fn take(d: &mut Dispatcher, replay: Option<&ReplayCounters>) -> Snapshot {
        use std::sync::atomic::Ordering::Relaxed;
        let report = d.status_report(StatusDetail::Full);
        let extra = d
            .chefs()
            .iter()
            .take(MAX_CHEF_SERIES)
            .map(|lane| {
                let extra = ChefExtra {
                    timing: lane.counters().timing.clone(),
                    memory_bytes: lane.chef.memory_bytes(),
                };
                (lane.chef.name().to_owned(), extra)
            })
            .collect();
        let chefs_memory_bytes = d
            .chefs()
            .first()
            .map_or(0, |s| s.chef.limits().kitchen_memory.used());
        Snapshot {
            report,
            extra,
            chefs_memory_bytes,
            dumplings: d.stats().dumplings,
            replay: replay.map(|c| ReplayRead {
                packets: c.read.load(Relaxed),
                bytes: c.bytes.load(Relaxed),
            }),
        }
    }
}

/// The latest snapshot, shared between the chefs' thread and the metrics server.
#[derive(Debug)]
pub struct KitchenMetrics {
    kitchen: String,
    latest: Mutex<Option<Arc<Snapshot>>>,
}

impl KitchenMetrics {
    /// Metrics of the kitchen named `kitchen` (its `kitchen` label), empty until the first
    /// [`KitchenMetrics::publish`].
    pub fn new(kitchen: &str) -> Arc<KitchenMetrics> {
        Arc::new(KitchenMetrics {
            // Bounded like the hub's peer names; the encoder escapes it.
            kitchen: kitchen.chars().take(128).collect(),
            latest: Mutex::new(None),
        })
    }

    /// Replace the snapshot scrapes read.
    pub fn publish(&self, snapshot: Snapshot) {
        *self.latest.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(snapshot));
    }

    /// Every metric in the Prometheus text format (version 0.0.4).
    pub fn encode(&self) -> String {
        let snapshot = self
            .latest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut registry = Registry::default();
        registry.register_collector(Box::new(KitchenCollector {
            kitchen: self.kitchen.clone(),
            snapshot,
        }));
        let mut text = String::new();
        // Writing into a String cannot fail; an encoder error would be a bug in a name.
        if let Err(error) =
            prometheus_client::encoding::prometheus_text::encode(&mut text, &registry)
        {
            tracing::warn!(%error, "cannot encode metrics");
        }
        text
    }
}

/// `--metrics-address` could not be served.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// Binding the address failed.
    #[error("cannot listen for metrics on {0}: {1} (choose another --metrics-address)")]
    Bind(SocketAddr, std::io::Error),
    /// The server thread or its runtime could not start.
    #[error("cannot start the metrics server: {0}")]
    Start(std::io::Error),
}

/// Bind `addr` now (so a taken port fails the start) and serve `GET /metrics` from a
/// thread of its own; returns the bound address. The thread lives as long as the process.
pub fn serve(addr: SocketAddr, metrics: Arc<KitchenMetrics>) -> Result<SocketAddr, MetricsError> {
    let listener = std::net::TcpListener::bind(addr).map_err(|e| MetricsError::Bind(addr, e))?;
    let bound = listener
        .local_addr()
        .map_err(|e| MetricsError::Bind(addr, e))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| MetricsError::Bind(addr, e))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(MetricsError::Start)?;
    std::thread::Builder::new()
        .name("nd-metrics".into())
        .spawn(move || {
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(error) => {
                        tracing::error!(%error, "cannot serve metrics");
                        return;
                    }
                };
                let render: hub_link::metrics_http::Render = Arc::new(move || metrics.encode());
                hub_link::metrics_http::serve(
                    listener,
                    render,
                    prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
                    "nd-sniff",
                )
                .await;
            })
        })
        .map_err(MetricsError::Start)?;
    Ok(bound)
}

/// Encodes one snapshot at scrape time.
#[derive(Debug)]
struct KitchenCollector {
    kitchen: String,
    snapshot: Option<Arc<Snapshot>>,
}

/// A histogram from a [`BatchTiming`] (seconds).
struct TimingHistogram<'a>(&'a BatchTiming);

impl EncodeMetric for TimingHistogram<'_> {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let t = self.0;
        let mut buckets = Vec::with_capacity(HISTOGRAM_POW2.len() + 1);
        let mut below = 0;
        for k in HISTOGRAM_POW2 {
            let n = t.count_below_pow2(k);
            buckets.push(((1u64 << k) as f64 / 1e9, n - below));
            below = n;
        }
        buckets.push((f64::INFINITY, t.count() - below));
        encoder.encode_histogram::<NoLabelSet>(t.sum_ns() as f64 / 1e9, t.count(), &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

fn counter(
    e: &mut DescriptorEncoder,
    kitchen: &str,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let mut family = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    ConstCounter::new(value).encode(family.encode_family(&[("kitchen", kitchen)])?)
}

fn gauge(
    e: &mut DescriptorEncoder,
    kitchen: &str,
    name: &str,
    help: &str,
    value: i64,
) -> Result<(), std::fmt::Error> {
    let mut family = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(value).encode(family.encode_family(&[("kitchen", kitchen)])?)
}

/// One per-chef family: `value` of every chef, labelled `{kitchen, chef}`.
fn per_chef(
    e: &mut DescriptorEncoder,
    kitchen: &str,
    s: &Snapshot,
    (name, help, metric_type): (&str, &str, MetricType),
    value: impl Fn(&ChefStatus, Option<&ChefExtra>) -> i64,
) -> Result<(), std::fmt::Error> {
    let mut family = e.encode_descriptor(name, help, None, metric_type)?;
    for (chef, status) in s.report.chefs.iter().take(MAX_CHEF_SERIES) {
        let labels = [("kitchen", kitchen), ("chef", chef.as_str())];
        let v = value(status, s.extra.get(chef));
        match metric_type {
            MetricType::Counter => {
                ConstCounter::new(v.max(0) as u64).encode(family.encode_family(&labels)?)?
            }
            _ => ConstGauge::new(v).encode(family.encode_family(&labels)?)?,
        }
    }
    Ok(())
}

/// A per-chef family: name, help, type, and how to read its value.
type PerChefFamily = (
    &'static str,
    &'static str,
    MetricType,
    fn(&ChefStatus, Option<&ChefExtra>) -> i64,
);

const C: MetricType = MetricType::Counter;
const G: MetricType = MetricType::Gauge;

impl Collector for KitchenCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let e = &mut encoder;
        let k = self.kitchen.as_str();
        if let Some(rss) = hub_link::metrics_http::resident_bytes() {
            // Unlabelled, as every Prometheus exporter's process metrics (and nd-hub's).
            let metric = ConstGauge::new(rss);
            metric.encode(e.encode_descriptor(
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                None,
                metric.metric_type(),
            )?)?;
        }
        // Nothing measured yet (chefs still loading): only the process gauge.
        let Some(s) = self.snapshot.as_deref() else {
            return Ok(());
        };
        let i = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let cap = &s.report.capture;
        counter(
            e,
            k,
            "netdumplings_kitchen_packets",
            "Packets captured (live) or handed to the chefs (replay).",
            cap.packets,
        )?;
        counter(
            e,
            k,
            "netdumplings_kitchen_kernel_dropped_packets",
            "Packets the kernel dropped (live capture, pcap statistics; on `any`, a lost loopback packet counts twice).",
            cap.kernel_dropped,
        )?;
        counter(
            e,
            k,
            "netdumplings_kitchen_queue_dropped_packets",
            "Packets dropped at the queue between the capture threads and the chefs (live).",
            cap.queue_dropped,
        )?;
        counter(
            e,
            k,
            "netdumplings_kitchen_shutdown_dropped_packets",
            "Packets still queued at shutdown and not handed to the chefs (live).",
            cap.shutdown_dropped,
        )?;
        counter(
            e,
            k,
            "netdumplings_kitchen_dumplings",
            "Dumplings made by all chefs (status dumplings included).",
            s.dumplings,
        )?;
        gauge(
            e,
            k,
            "netdumplings_kitchen_chefs",
            "Chefs loaded.",
            s.report.chefs.len() as i64,
        )?;
        gauge(
            e,
            k,
            "netdumplings_kitchen_chefs_memory_bytes",
            "Linear memory of all chefs together, in bytes.",
            i(s.chefs_memory_bytes),
        )?;
        if let Some(r) = s.replay {
            counter(
                e,
                k,
                "netdumplings_kitchen_replay_read_packets",
                "Packets read from the replayed file (before --filter).",
                r.packets,
            )?;
            counter(
                e,
                k,
                "netdumplings_kitchen_replay_read_bytes",
                "Bytes of the replayed file read.",
                r.bytes,
            )?;
        }
        if let Some(hub) = s.report.hub {
            counter(
                e,
                k,
                "netdumplings_kitchen_hub_sent_dumplings",
                "Dumplings sent to the hub.",
                hub.sent,
            )?;
            gauge(
                e,
                k,
                "netdumplings_kitchen_hub_buffered_dumplings",
                "Dumplings queued for the hub, not yet sent.",
                i(hub.buffered),
            )?;
            counter(
                e,
                k,
                "netdumplings_kitchen_hub_dropped_dumplings",
                "Dumplings dropped because the hub queue was full while it was unreachable.",
                hub.dropped,
            )?;
        }
        let traffic = crate::outputs::status::traffic::metrics(
            s.report.flows.as_ref(),
            s.report.streams.as_ref(),
            s.report.ip_reassembly.as_ref(),
            s.report.undecoded_link_types.as_ref(),
        );
        for (name, help, is_gauge, value) in traffic {
            if is_gauge {
                gauge(e, k, name, help, i(value))?;
            } else {
                counter(e, k, name, help, value)?;
            }
        }
        counter(
            e,
            k,
            "netdumplings_kitchen_chef_load_failures",
            "Failed loads of chef files (all files).",
            s.report.load_failures.values().map(|f| f.count).sum(),
        )?;

        let fam: &[PerChefFamily] = &[
            ("netdumplings_chef_packets", "Packets handed to the chef's on-packets calls.", C,
                |c, _| c.packets_offered as i64),
            ("netdumplings_chef_seen_packets", "Packets handed to on-packets calls that worked.", C,
                |c, _| c.packets_seen as i64),
            ("netdumplings_chef_dropped_packets",
                "Packets of the chef's interest it did not see (restarting, failed call, quarantined, shed).", C,
                |c, _| c.packets_dropped as i64),
            ("netdumplings_chef_shed_packets",
                "Of the dropped packets: shed live while the chef was over its share of the kitchen's time.", C,
                |c, _| c.packets_shed as i64),
            ("netdumplings_chef_shed_pokes", "Interval pokes skipped live while over its share.", C,
                |c, _| c.pokes_shed as i64),
            ("netdumplings_chef_dropped_flow_events",
                "Flow events the chef asked for and did not see (shed, failed call, quarantined).", C,
                |c, _| c.flow_events_dropped as i64),
            ("netdumplings_chef_dropped_stream_bytes",
                "Stream bytes the chef asked for and did not see (shed, failed call, quarantined).", C,
                |c, _| c.stream_bytes_dropped as i64),
            ("netdumplings_chef_calls", "Successful calls (packets and interval).", C,
                |c, _| c.calls as i64),
            ("netdumplings_chef_dumplings", "Dumplings the chef made (sent to the outputs).", C,
                |c, _| c.dumplings as i64),
            ("netdumplings_chef_dumpling_bytes", "Bytes of the chef's dumplings (encoded JSON).", C,
                |c, _| c.bytes as i64),
            ("netdumplings_chef_traps", "Calls that trapped.", C, |c, _| c.traps as i64),
            ("netdumplings_chef_timeouts", "Calls stopped at their deadline.", C,
                |c, _| c.timeouts as i64),
            ("netdumplings_chef_memory_failures",
                "Calls that hit the memory limit (the chef's own or the kitchen-wide one).", C,
                |c, _| c.memory_failures as i64),
            ("netdumplings_chef_over_budget_dumplings",
                "Dumplings refused for the output byte budget (per call or per second).", C,
                |c, _| c.over_budget as i64),
            ("netdumplings_chef_restarts", "Re-instantiations after a failure.", C,
                |c, _| c.restarts as i64),
            ("netdumplings_chef_reloads", "Replacements by a new version of its file.", C,
                |c, _| c.reloads as i64),
            ("netdumplings_chef_state_restored",
                "Reloads into this version that restored the previous version's state.", C,
                |c, _| c.state_restored as i64),
            ("netdumplings_chef_state_fresh",
                "Reloads into this version that started fresh (state not carried).", C,
                |c, _| c.state_fresh as i64),
            ("netdumplings_chef_load_failures",
                "Failed loads of a new version of its file since its last successful load.", C,
                |c, _| c.load_failures as i64),
            ("netdumplings_chef_quarantined",
                "1 when the chef failed too often and is no longer called, else 0.", G,
                |c, _| i64::from(c.state == crate::outputs::status::ChefRunState::Quarantined)),
            ("netdumplings_chef_restarting",
                "1 while the chef waits to be re-instantiated after a failed call, else 0.", G,
                |c, _| i64::from(c.state == crate::outputs::status::ChefRunState::Restarting)),
            ("netdumplings_chef_memory_bytes", "Linear memory of the chef's instance, in bytes.", G,
                |_, x| x.map_or(0, |x| i64::try_from(x.memory_bytes).unwrap_or(i64::MAX))),
        ];
        for (name, help, metric_type, value) in fam {
            per_chef(e, k, s, (name, help, *metric_type), value)?;
        }
        let mut family = e.encode_descriptor(
            "netdumplings_chef_batch_duration_seconds",
            "Time per on-packets batch.",
            None,
            MetricType::Histogram,
        )?;
        for (chef, extra) in &s.extra {
            let labels = [("kitchen", k), ("chef", chef.as_str())];
            TimingHistogram(&extra.timing).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_end_at_inf() {
        let mut t = BatchTiming::default();
        for ns in [500u64, 2000, 2000, 5_000_000, 40_000_000_000] {
            t.record(ns);
        }
        let mut registry = Registry::default();
        #[derive(Debug)]
        struct One(BatchTiming);
        impl Collector for One {
            fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
                let m = TimingHistogram(&self.0);
                m.encode(e.encode_descriptor("t_seconds", "t", None, MetricType::Histogram)?)
            }
        }
        registry.register_collector(Box::new(One(t)));
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &registry).unwrap();
        assert!(text.contains("t_seconds_count 5\n"), "{text}");
        assert!(
            text.contains("t_seconds_bucket{le=\"1.024e-06\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("t_seconds_bucket{le=\"4.096e-06\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("t_seconds_bucket{le=\"17.179869184\"} 4\n"),
            "{text}"
        );
        assert!(text.contains("t_seconds_bucket{le=\"+Inf\"} 5\n"), "{text}");
    }

    #[test]
    fn empty_metrics_have_only_the_process_gauge() {
        let m = KitchenMetrics::new("k \"x\"");
        let text = m.encode();
        assert!(!text.contains("netdumplings_"), "{text}");
    }
}
