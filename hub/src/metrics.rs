//! `/metrics` for Prometheus (`nd-hub --metrics-address`): the hub's counters in the
//! Prometheus text format, encoded by `prometheus-client`.
//!
//! The values are read from [`Shared`] at scrape time by a [`Collector`], so the hot paths
//! (ingest, fan-out) pay nothing for metrics. Per-peer series are capped at
//! [`MAX_PEER_SERIES`] per side so a crowd of eaters cannot blow up a scrape; totals stay
//! exact. Off by default; the CLI binds loopback unless given an address.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tracing::warn;

use crate::state::{Peer, Shared};

/// Per-peer series exported per side (kitchens, eaters); the rest are only in the totals.
pub const MAX_PEER_SERIES: usize = 100;

/// Reads the hub's counters at scrape time.
#[derive(Debug)]
pub struct HubCollector {
    shared: Arc<Shared>,
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let metric = ConstCounter::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: i64,
) -> Result<(), std::fmt::Error> {
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

/// One peer's series: (name from its hello, address, good count, bad count).
type PeerSeries = (String, String, u64, u64);

fn peer_series(peers: &BTreeMap<u64, Arc<Peer>>) -> Vec<PeerSeries> {
    peers
        .values()
        .take(MAX_PEER_SERIES)
        .map(|p| {
            (
                peer_name(p.hello.get()),
                p.addr.to_string(),
                p.good.load(Ordering::Relaxed),
                p.bad.load(Ordering::Relaxed),
            )
        })
        .collect()
}

/// The `kitchen_name` or `eater_name` of a hello (as text), cut to 128 characters.
fn peer_name(hello: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(hello).unwrap_or_default();
    let name = ["kitchen_name", "eater_name"]
        .iter()
        .find_map(|k| value.get(k))
        .map(|v| match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .unwrap_or_default();
    // A peer chose it: control and bidi characters escaped (the exposition format only
    // escapes `\`, `"` and newlines; a raw ESC would reach whoever curls /metrics).
    dumpling::text::escape(&name, 128)
}

impl Collector for HubCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.shared;
        let e = &mut encoder;
        counter(
            e,
            "netdumplings_hub_dumplings_in",
            "Valid dumplings received from kitchens.",
            s.total_in.load(Ordering::Relaxed),
        )?;
        counter(
            e,
            "netdumplings_hub_dumplings_out",
            "Frames delivered to eaters (status dumplings and notices included).",
            s.total_out.load(Ordering::Relaxed),
        )?;
        counter(
            e,
            "netdumplings_hub_invalid_messages",
            "Invalid messages received from kitchens (dropped).",
            s.total_invalid.load(Ordering::Relaxed),
        )?;
        counter(
            e,
            "netdumplings_hub_eater_dropped",
            "Dumplings dropped for eaters that fell behind.",
            s.total_dropped.load(Ordering::Relaxed),
        )?;
        counter(
            e,
            "netdumplings_hub_lag_notices",
            "HubNoticeChef lag notices sent to eaters that fell behind.",
            s.lag_notices.load(Ordering::Relaxed),
        )?;
        counter(
            e,
            "netdumplings_hub_connections_ended",
            "Connections (either side) whose task has ended.",
            s.connections_ended.load(Ordering::Relaxed),
        )?;
        counter(
            e,
            "netdumplings_hub_refused_origins",
            "WebSocket upgrades refused for their Origin (web pages of other sites).",
            s.origin_refusals.refused.load(Ordering::Relaxed),
        )?;
        gauge(
            e,
            "netdumplings_hub_ring_occupancy",
            "Dumplings in the fan-out ring not yet read by every eater.",
            s.ring.len() as i64,
        )?;
        gauge(
            e,
            "netdumplings_hub_ring_capacity",
            "Capacity of the fan-out ring, in dumplings.",
            s.config.ring_capacity as i64,
        )?;
        gauge(
            e,
            "netdumplings_hub_uptime_seconds",
            "Seconds since the hub started.",
            s.started.elapsed().as_secs() as i64,
        )?;
        if let Some(rss) = hub_link::metrics_http::resident_bytes() {
            gauge(
                e,
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                rss,
            )?;
        }

        if let Some(fleet) = s.fleet.get() {
            let hubs = s.fleet_status.get().map_or(0, |b| b.hub_ids().len());
            fleet_series(e, &fleet.stats, hubs)?;
            counter(
                e,
                "netdumplings_hub_fleet_kitchens_stalled",
                "Kitchens closed (1013) because NATS did not take their dumplings for 10 s.",
                s.kitchens_stalled.load(Ordering::Relaxed),
            )?;
        }

        // Copy what the registry holds, then encode without holding its lock.
        let (kitchen_series, kitchen_count, eater_series, eater_count) = {
            let registry = s.registry();
            (
                peer_series(&registry.kitchens),
                registry.kitchens.len(),
                peer_series(&registry.eaters),
                registry.eaters.len(),
            )
        };
        {
            let mut family = e.encode_descriptor(
                "netdumplings_hub_connections",
                "Registered connections by role.",
                None,
                MetricType::Gauge,
            )?;
            for (role, n) in [("kitchen", kitchen_count), ("eater", eater_count)] {
                ConstGauge::new(n as i64).encode(family.encode_family(&[("role", role)])?)?;
            }
        }
        let per_peer = |e: &mut DescriptorEncoder,
                        name: &str,
                        help: &str,
                        role: &str,
                        series: &[PeerSeries],
                        good: bool|
         -> Result<(), std::fmt::Error> {
            let mut family = e.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (peer_name, addr, g, b) in series {
                let labels = [(role, peer_name.as_str()), ("peer", addr.as_str())];
                ConstCounter::new(if good { *g } else { *b })
                    .encode(family.encode_family(&labels)?)?;
            }
            Ok(())
        };
        per_peer(
            e,
            "netdumplings_hub_kitchen_dumplings",
            "Valid dumplings received, per kitchen connection.",
            "kitchen",
            &kitchen_series,
            true,
        )?;
        per_peer(
            e,
            "netdumplings_hub_kitchen_invalid_messages",
            "Invalid messages, per kitchen connection.",
            "kitchen",
            &kitchen_series,
            false,
        )?;
        per_peer(
            e,
            "netdumplings_hub_eater_delivered",
            "Frames delivered, per eater connection.",
            "eater",
            &eater_series,
            true,
        )?;
        per_peer(
            e,
            "netdumplings_hub_eater_dropped_dumplings",
            "Dumplings dropped for lag, per eater connection.",
            "eater",
            &eater_series,
            false,
        )?;
        Ok(())
    }
}

/// The federation's series (`nd-hub --nats` only): whether NATS is up, what was stored,
/// what waits for it, and the hubs heard from. An outage used to show nowhere here.
fn fleet_series(
    e: &mut DescriptorEncoder,
    stats: &crate::fleet::FleetStats,
    hubs: usize,
) -> Result<(), std::fmt::Error> {
    let link = &stats.nats;
    let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    let gauges: [(&str, &str, i64); 4] = [
        (
            "netdumplings_hub_fleet_nats_connected",
            "1 while the hub's NATS connection is up, 0 while it is down (nothing is delivered then).",
            i64::from(link.connected()),
        ),
        (
            "netdumplings_hub_fleet_nats_down_seconds",
            "Seconds since the NATS connection went down (0 while it is up).",
            link.down_for().map_or(0, |d| d.as_secs() as i64),
        ),
        (
            "netdumplings_hub_fleet_unpublished",
            "Dumplings accepted from kitchens and not stored in the stream yet.",
            stats.unpublished() as i64,
        ),
        (
            "netdumplings_hub_fleet_hubs",
            "Hubs of the fleet heard from recently (this one included).",
            hubs as i64,
        ),
    ];
    for (name, help, value) in gauges {
        gauge(e, name, help, value)?;
    }
    let counters: [(&str, &str, u64); 7] = [
        (
            "netdumplings_hub_fleet_nats_disconnects",
            "Times the NATS connection was lost.",
            link.disconnects(),
        ),
        (
            "netdumplings_hub_fleet_stored",
            "Dumplings stored in the JetStream stream (new).",
            load(&stats.acked),
        ),
        (
            "netdumplings_hub_fleet_duplicates",
            "Publishes the stream took as duplicates (re-sent dumplings).",
            load(&stats.duplicates),
        ),
        (
            "netdumplings_hub_fleet_retried",
            "Publishes retried after an error.",
            load(&stats.retried),
        ),
        (
            "netdumplings_hub_fleet_refused",
            "Dumplings NATS or the stream refused for good (too large).",
            load(&stats.refused),
        ),
        (
            "netdumplings_hub_fleet_delivered",
            "Dumplings read back from the stream and handed to this hub's eaters.",
            load(&stats.delivered),
        ),
        (
            "netdumplings_hub_fleet_unchecked",
            "Messages on the stream's subjects no hub wrote (dropped).",
            load(&stats.unchecked),
        ),
    ];
    for (name, help, value) in counters {
        counter(e, name, help, value)?;
    }
    Ok(())
}

/// The registry a scrape encodes: only the hub's collector.
fn registry(shared: Arc<Shared>) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(HubCollector { shared }));
    registry
}

/// Encode every metric in the Prometheus text format (version 0.0.4).
pub fn encode(shared: &Arc<Shared>) -> String {
    let mut text = String::new();
    // Writing into a String cannot fail; an encoder error would be a bug in a name.
    if let Err(error) =
        prometheus_client::encoding::prometheus_text::encode(&mut text, &registry(shared.clone()))
    {
        warn!(%error, "cannot encode metrics");
    }
    text
}

/// Serve `GET /metrics` on `listener` until the task is aborted (the HTTP side is
/// [`hub_link::metrics_http`], shared with `nd-sniff`).
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let render: hub_link::metrics_http::Render = Arc::new(move || encode(&shared));
    hub_link::metrics_http::serve(
        listener,
        render,
        prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        "nd-hub",
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::peer_name;

    #[test]
    fn peer_names_in_labels_are_escaped_and_cut() {
        let hello = r#"{"kitchen_name": "k\u001b[2J\u202e\r\nx"}"#;
        let name = peer_name(hello);
        assert_eq!(name, r"k\x1b[2J\u{202e}\r\nx");
        let long = format!(r#"{{"eater_name": "{}"}}"#, "é".repeat(10_000));
        assert!(peer_name(&long).chars().count() < 160);
        assert_eq!(peer_name(r#"{"eater_name": 7}"#), "7");
    }
}
