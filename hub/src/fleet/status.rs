//! Fleet status: every federated hub tells the others what it serves, and each hub's
//! `SystemStatusChef` dumpling gains a `fleet` section listing the hubs it has heard from.
//!
//! Each hub publishes a small JSON [`HubReport`] (its id, uptime, kitchens with names and
//! rates, eater count, dumpling rates) every `--nats-status-period` on the **core NATS**
//! subject `<status prefix>.<hub id>` (default `nd.status.<hub id>`), and subscribes to
//! `<status prefix>.*`. Core NATS rather than a JetStream stream or KV bucket because a
//! status is only worth its latest value and is repeated every period: a lost one costs
//! nothing, nothing needs to be stored or replayed, and plain subjects cross leaf-node
//! links and JetStream domains without any stream sourcing, so a site hub behind a leaf
//! node shows up in the main cluster's status whenever the link is up. A hub that stops
//! publishing ages out after [`AGE_OUT_PERIODS`] of its own declared period, at most
//! [`MAX_TRUSTED_PERIOD_SECS`] (the period is the sender's word: a report claiming an
//! hour kept a forged hub listed for three). A full board makes room for a new hub by
//! dropping, first among hubs heard from once, the one heard from longest ago (never this
//! hub), so reports forged under many ids can no longer keep a real hub out of the list.
//!
//! Everything read from NATS is bounded before it is kept: the message size
//! ([`MAX_REPORT_BYTES`]), the number of hubs ([`MAX_HUBS`]), kitchens per hub (the
//! hub's status list cap) and the length of every name ([`MAX_NAME_BYTES`]). Names are
//! kept as JSON strings, so eaters print them escaped.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tracing::{debug, warn};

use crate::auth::Principal;
use crate::state::{stopped, Shared};

/// Most hubs a board keeps; a new one past it replaces the one heard from longest ago.
pub const MAX_HUBS: usize = 256;
/// Longest status period a report may declare, in seconds (its age-out is 3 of them).
pub const MAX_TRUSTED_PERIOD_SECS: f64 = 60.0;
/// Largest status message accepted from NATS, in bytes.
pub const MAX_REPORT_BYTES: usize = 64 * 1024;
/// Longest hub id or kitchen name kept, in bytes (longer ones are cut).
pub const MAX_NAME_BYTES: usize = 128;
/// A hub is dropped from the fleet section after this many of its periods without news.
pub const AGE_OUT_PERIODS: f64 = 3.0;

/// One kitchen of a hub, as published in its report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KitchenReport {
    /// The `kitchen_name` of its hello (`null` when it sent none).
    pub kitchen_name: Option<String>,
    /// Valid dumplings it sent since it connected.
    pub dumplings_in: u64,
    /// Valid dumplings per second over the last period.
    pub dumplings_in_per_s: f64,
}

/// What one hub publishes about itself every status period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HubReport {
    /// The hub's fleet id (`--nats-hub-id`).
    pub hub_id: String,
    /// Seconds since the hub started.
    pub server_uptime: f64,
    /// How often it publishes, in seconds (for ageing it out).
    pub status_period: f64,
    /// Connected kitchens (exact).
    pub dumpling_kitchen_count: u64,
    /// Connected eaters (exact).
    pub dumpling_eater_count: u64,
    /// Valid dumplings its kitchens sent since it started.
    pub total_dumplings_in: u64,
    /// Frames it delivered to its eaters since it started.
    pub total_dumplings_out: u64,
    /// Dumplings in per second over the last period.
    pub dumplings_in_per_s: f64,
    /// Frames out per second over the last period.
    pub dumplings_out_per_s: f64,
    /// Its kitchens, in connection order (capped at its status list cap).
    pub kitchens: Vec<KitchenReport>,
}

impl HubReport {
    /// Cut what an outsider could make large: names, the kitchen list; and reject
    /// non-finite numbers. `None` when the report is unusable.
    fn bounded(mut self, max_kitchens: usize) -> Option<HubReport> {
        if self.hub_id.is_empty() {
            return None;
        }
        cut(&mut self.hub_id);
        self.kitchens.truncate(max_kitchens);
        for k in &mut self.kitchens {
            if let Some(name) = &mut k.kitchen_name {
                cut(name);
            }
            k.dumplings_in_per_s = finite(k.dumplings_in_per_s);
        }
        self.server_uptime = finite(self.server_uptime);
        self.dumplings_in_per_s = finite(self.dumplings_in_per_s);
        self.dumplings_out_per_s = finite(self.dumplings_out_per_s);
        self.status_period = finite(self.status_period).clamp(0.1, MAX_TRUSTED_PERIOD_SECS);
        Some(self)
    }
}

fn finite(x: f64) -> f64 {
    if x.is_finite() && x >= 0.0 {
        x
    } else {
        0.0
    }
}

/// Cut a string to [`MAX_NAME_BYTES`] on a character boundary.
fn cut(s: &mut String) {
    if s.len() > MAX_NAME_BYTES {
        let mut end = MAX_NAME_BYTES;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

/// Round to 3 decimals, so status rates read well.
fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[derive(Debug)]
struct Seen {
    report: HubReport,
    at: Instant,
    /// Reports heard from this hub (a hub reports every period; a forged id once).
    reports: u64,
}

impl Seen {
    fn expired(&self, now: Instant) -> bool {
        now.duration_since(self.at).as_secs_f64() > AGE_OUT_PERIODS * self.report.status_period
    }
}

/// The hubs this hub has heard from (itself included), newest report of each.
#[derive(Debug)]
pub struct FleetBoard {
    /// This hub's id.
    pub hub_id: String,
    max_kitchens: usize,
    hubs: Mutex<BTreeMap<String, Seen>>,
    /// Hubs dropped to make room for new ones (for the rate-limited log line).
    evicted: std::sync::atomic::AtomicU64,
    /// This hub's federation counters and NATS connection (the section's `nats`).
    stats: Arc<super::FleetStats>,
}

/// One hub in the `fleet` section of a `SystemStatusChef` dumpling.
#[derive(Debug, Serialize)]
struct HubView<'a> {
    hub_id: &'a str,
    /// Seconds since its last report reached this hub.
    last_seen: f64,
    server_uptime: f64,
    dumpling_kitchen_count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    dumpling_eater_count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    total_dumplings_in: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    total_dumplings_out: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dumplings_in_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dumplings_out_per_s: Option<f64>,
    kitchens: Vec<&'a KitchenReport>,
}

/// This hub's own NATS connection and publishing, in the `fleet` section: while NATS is
/// away the hub delivers nothing (its eaters read what comes back from the stream), and
/// this is where an eater or the web view sees why.
#[derive(Debug, Serialize)]
struct NatsView {
    connected: bool,
    /// Seconds since the connection went down (`null` while it is up).
    down_for: Option<f64>,
    /// Times the connection was lost since the hub started.
    disconnects: u64,
    /// Dumplings accepted from this hub's kitchens and not stored in the stream yet
    /// (restricted eaters do not see it: it counts other principals' traffic).
    #[serde(skip_serializing_if = "Option::is_none")]
    unpublished: Option<u64>,
}

/// The `fleet` section of a `SystemStatusChef` payload.
#[derive(Debug, Serialize)]
struct FleetView<'a> {
    hub_id: &'a str,
    nats: NatsView,
    hub_count: usize,
    hubs: Vec<HubView<'a>>,
}

impl FleetBoard {
    /// An empty board for hub `hub_id`, keeping at most `max_kitchens` kitchens per hub;
    /// `stats` are this hub's federation counters.
    pub fn new(hub_id: &str, max_kitchens: usize, stats: Arc<super::FleetStats>) -> Self {
        FleetBoard {
            hub_id: hub_id.to_owned(),
            max_kitchens,
            hubs: Mutex::new(BTreeMap::new()),
            evicted: Default::default(),
            stats,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Seen>> {
        // Plain map updates: a panicking holder cannot leave it half-updated.
        self.hubs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Record a report (this hub's own, or one read from NATS). `false` when it was
    /// refused as unusable. A new hub on a full board replaces the one heard from longest
    /// ago (never this hub itself).
    pub fn record(&self, report: HubReport, at: Instant) -> bool {
        let Some(report) = report.bounded(self.max_kitchens) else {
            return false;
        };
        let mut hubs = self.lock();
        hubs.retain(|_, seen| !seen.expired(at));
        if !hubs.contains_key(&report.hub_id) && hubs.len() >= MAX_HUBS {
            // A hub heard from once goes first (ids made up one per report, at any rate,
            // then only push out each other), then the one heard from longest ago.
            let stalest = hubs
                .iter()
                .filter(|(id, _)| **id != self.hub_id)
                .min_by_key(|(_, seen)| (seen.reports > 1, seen.at))
                .map(|(id, _)| id.clone());
            if let Some(id) = stalest {
                hubs.remove(&id);
                let n = self.evicted.fetch_add(1, Ordering::Relaxed) + 1;
                if n <= 5 || n.is_multiple_of(1000) {
                    warn!(
                        dropped = %dumpling::text::escape(&id, 64),
                        new = %dumpling::text::escape(&report.hub_id, 64),
                        evicted = n,
                        "fleet: {MAX_HUBS} hubs reported status; dropped the one heard from longest ago (more hubs than this, or someone publishing forged status reports on the status subjects)"
                    );
                }
            }
        }
        let reports = hubs.get(&report.hub_id).map_or(0, |s| s.reports) + 1;
        hubs.insert(
            report.hub_id.clone(),
            Seen {
                report,
                at,
                reports,
            },
        );
        true
    }

    /// Record a raw status message read from `subject` (`<prefix>.<hub id>`). The id in
    /// the subject must match the report's, so one hub cannot pose as another by id.
    pub fn record_message(&self, subject: &str, payload: &[u8], at: Instant) -> bool {
        if payload.len() > MAX_REPORT_BYTES {
            return false;
        }
        let Ok(report) = serde_json::from_slice::<HubReport>(payload) else {
            return false;
        };
        if subject.rsplit('.').next() != Some(report.hub_id.as_str()) {
            return false;
        }
        self.record(report, at)
    }

    /// Ids of the hubs currently listed (not aged out), sorted.
    pub fn hub_ids(&self) -> Vec<String> {
        let now = Instant::now();
        self.lock()
            .iter()
            .filter(|(_, s)| !s.expired(now))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// The `fleet` section as seen by `view`. An eater restricted to some kitchens sees
    /// only those kitchens, and no restricted eater sees eater counts or dumpling totals
    /// and rates (they would count other principals' traffic).
    pub fn section(&self, view: Option<&Principal>) -> serde_json::Value {
        let view = view.filter(|p| p.is_restricted());
        let now = Instant::now();
        let hubs = self.lock();
        let mut list = Vec::new();
        for seen in hubs.values().filter(|s| !s.expired(now)) {
            let r = &seen.report;
            let allowed = view.and_then(|v| v.kitchens.as_ref());
            let kitchens: Vec<&KitchenReport> = r
                .kitchens
                .iter()
                .filter(|k| match allowed {
                    None => true,
                    Some(set) => k.kitchen_name.as_ref().is_some_and(|n| set.contains(n)),
                })
                .collect();
            let full = view.is_none();
            list.push(HubView {
                hub_id: &r.hub_id,
                last_seen: round3(now.duration_since(seen.at).as_secs_f64()),
                server_uptime: r.server_uptime,
                dumpling_kitchen_count: if allowed.is_some() {
                    kitchens.len() as u64
                } else {
                    r.dumpling_kitchen_count
                },
                dumpling_eater_count: full.then_some(r.dumpling_eater_count),
                total_dumplings_in: full.then_some(r.total_dumplings_in),
                total_dumplings_out: full.then_some(r.total_dumplings_out),
                dumplings_in_per_s: full.then_some(r.dumplings_in_per_s),
                dumplings_out_per_s: full.then_some(r.dumplings_out_per_s),
                kitchens,
            });
        }
        let link = &self.stats.nats;
        let section = FleetView {
            hub_id: &self.hub_id,
            nats: NatsView {
                connected: link.connected(),
                down_for: link.down_for().map(|d| round3(d.as_secs_f64())),
                disconnects: link.disconnects(),
                unpublished: view.is_none().then(|| self.stats.unpublished()),
            },
            hub_count: list.len(),
            hubs: list,
        };
        serde_json::to_value(&section).unwrap_or(serde_json::Value::Null)
    }
}

/// Counters remembered between two reports, to turn totals into rates.
#[derive(Default)]
struct RateMemory {
    at: Option<Instant>,
    total_in: u64,
    total_out: u64,
    kitchens: HashMap<u64, u64>,
}

/// Build this hub's report from its registry and counters.
fn own_report(
    shared: &Shared,
    hub_id: &str,
    period: Duration,
    memory: &mut RateMemory,
) -> HubReport {
    let now = Instant::now();
    let dt = memory
        .at
        .map(|t| now.duration_since(t).as_secs_f64())
        .unwrap_or(period.as_secs_f64())
        .max(1e-3);
    let total_in = shared.total_in.load(Ordering::Relaxed);
    let total_out = shared.total_out.load(Ordering::Relaxed);
    let cap = shared.config.status_list_max;
    let registry = shared.registry();
    let kitchen_count = registry.kitchens.len() as u64;
    let eater_count = registry.eaters.len() as u64;
    let mut kitchens = Vec::new();
    let mut seen_now = HashMap::new();
    for (id, peer) in registry.kitchens.iter().take(cap) {
        let good = peer.good.load(Ordering::Relaxed);
        let before = memory.kitchens.get(id).copied().unwrap_or(0);
        seen_now.insert(*id, good);
        kitchens.push(KitchenReport {
            kitchen_name: crate::status::hello_kitchen_name(peer),
            dumplings_in: good,
            dumplings_in_per_s: round3(good.saturating_sub(before) as f64 / dt),
        });
    }
    drop(registry);
    let report = HubReport {
        hub_id: hub_id.to_owned(),
        server_uptime: round3(shared.started.elapsed().as_secs_f64()),
        status_period: period.as_secs_f64(),
        dumpling_kitchen_count: kitchen_count,
        dumpling_eater_count: eater_count,
        total_dumplings_in: total_in,
        total_dumplings_out: total_out,
        dumplings_in_per_s: round3(total_in.saturating_sub(memory.total_in) as f64 / dt),
        dumplings_out_per_s: round3(total_out.saturating_sub(memory.total_out) as f64 / dt),
        kitchens,
    };
    *memory = RateMemory {
        at: Some(now),
        total_in,
        total_out,
        kitchens: seen_now,
    };
    report
}

/// Start publishing this hub's reports and collecting the fleet's, and install the
/// board in `shared` (so status dumplings get a `fleet` section). Returns the tasks.
pub fn start(
    client: async_nats::Client,
    shared: Arc<Shared>,
    options: &super::FleetOptions,
    stats: Arc<super::FleetStats>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let board = Arc::new(FleetBoard::new(
        &options.hub_id,
        shared.config.status_list_max,
        stats,
    ));
    let _ = shared.fleet_status.set(board.clone());
    let subject = format!("{}.{}", options.status_prefix, options.hub_id);
    let wildcard = format!("{}.*", options.status_prefix);
    let period = options.status_period;
    let mut tasks = Vec::new();

    let (pub_client, pub_shared, pub_board) = (client.clone(), shared.clone(), board.clone());
    let hub_id = options.hub_id.clone();
    tasks.push(tokio::spawn(async move {
        let mut memory = RateMemory::default();
        let mut shutdown = pub_shared.shutdown.clone();
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stopped(&mut shutdown) => return,
            }
            let report = own_report(&pub_shared, &hub_id, period, &mut memory);
            let payload = match serde_json::to_vec(&report) {
                Ok(p) => p,
                Err(_) => continue,
            };
            // Listed at once, even while NATS is away.
            pub_board.record(report, Instant::now());
            // Core publish: buffered by the client while disconnected, never blocks long.
            if let Err(error) = pub_client.publish(subject.clone(), payload.into()).await {
                debug!(%error, "fleet: status publish failed");
            }
        }
    }));

    let mut shutdown = shared.shutdown.clone();
    tasks.push(tokio::spawn(async move {
        let mut sub = match client.subscribe(wildcard.clone()).await {
            Ok(sub) => sub,
            Err(error) => {
                warn!(%error, subject = %wildcard, "fleet: cannot subscribe to hub status; the fleet section lists this hub only");
                return;
            }
        };
        loop {
            let message = tokio::select! {
                m = sub.next() => m,
                _ = stopped(&mut shutdown) => return,
            };
            let Some(message) = message else { return };
            if !board.record_message(message.subject.as_str(), &message.payload, Instant::now()) {
                debug!(subject = %message.subject, bytes = message.payload.len(), "fleet: ignored a status message");
            }
        }
    }));
    tasks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(id: &str, kitchens: &[&str]) -> HubReport {
        HubReport {
            hub_id: id.into(),
            server_uptime: 1.0,
            status_period: 1.0,
            dumpling_kitchen_count: kitchens.len() as u64,
            dumpling_eater_count: 2,
            total_dumplings_in: 10,
            total_dumplings_out: 20,
            dumplings_in_per_s: 1.5,
            dumplings_out_per_s: f64::NAN,
            kitchens: kitchens
                .iter()
                .map(|k| KitchenReport {
                    kitchen_name: Some((*k).into()),
                    dumplings_in: 5,
                    dumplings_in_per_s: 0.5,
                })
                .collect(),
        }
    }

    #[test]
    fn reports_are_bounded_and_checked_against_their_subject() {
        let board = FleetBoard::new("a", 2, Default::default());
        let now = Instant::now();
        let long = "é".repeat(100);
        assert!(board.record(report(&long, &["k1", "k2", "k3"]), now));
        // NaN would be sent as null, which a report refuses; our own are always finite.
        let mut b = report("b", &["x"]);
        b.dumplings_out_per_s = 2.0;
        let text = serde_json::to_vec(&b).unwrap();
        assert!(
            !board.record_message("nd.status.c", &text, now),
            "id must match subject"
        );
        assert!(board.record_message("nd.status.b", &text, now));
        assert!(!board.record_message("nd.status.b", &vec![b' '; MAX_REPORT_BYTES + 1], now));
        assert!(!board.record_message("nd.status.b", b"{\"hub_id\":1}", now));
        let section = board.section(None);
        assert_eq!(section["hub_count"], 2);
        let hubs = section["hubs"].as_array().unwrap();
        let cut_id = hubs[1]["hub_id"].as_str().unwrap();
        assert!(cut_id.len() <= MAX_NAME_BYTES && cut_id.starts_with("éé"));
        assert_eq!(hubs[1]["kitchens"].as_array().unwrap().len(), 2);
        assert_eq!(hubs[1]["dumplings_out_per_s"], 0.0, "NaN is not kept");
        assert_eq!(hubs[0]["dumplings_out_per_s"], 2.0);
    }

    #[test]
    fn silent_hubs_age_out_and_the_board_is_capped() {
        let board = FleetBoard::new("a", 4, Default::default());
        let old = Instant::now() - Duration::from_secs(10);
        assert!(board.record(report("gone", &[]), old));
        assert!(board.record(report("here", &[]), Instant::now()));
        assert_eq!(board.hub_ids(), vec!["here".to_owned()]);
        for i in 0..MAX_HUBS + 5 {
            board.record(report(&format!("h{i}"), &[]), Instant::now());
        }
        assert_eq!(board.hub_ids().len(), MAX_HUBS);
    }

    #[test]
    fn forged_reports_cannot_keep_a_real_hub_out_or_stay_for_hours() {
        let board = FleetBoard::new("a", 4, Default::default());
        let start = Instant::now();
        assert!(board.record(report("a", &[]), start));
        // A full board of forged hubs claiming an hour-long period.
        for i in 0..MAX_HUBS {
            let mut forged = report(&format!("fake{i}"), &[]);
            forged.status_period = 3600.0;
            board.record(forged, start + Duration::from_millis(i as u64));
        }
        // A real hub arriving later is listed; this hub stays.
        let later = start + Duration::from_secs(1);
        assert!(board.record(report("real", &[]), later));
        let ids = board.hub_ids();
        assert!(ids.contains(&"real".to_owned()) && ids.contains(&"a".to_owned()));
        assert_eq!(ids.len(), MAX_HUBS);
        // Once it reported again, a flood of new made-up ids (one report each, newer than
        // its last) pushes out only each other.
        assert!(board.record(report("real", &[]), later + Duration::from_millis(1)));
        for i in 0..5 * MAX_HUBS {
            let at = later + Duration::from_millis(2 + i as u64);
            board.record(report(&format!("flap{i}"), &[]), at);
        }
        let ids = board.hub_ids();
        assert!(
            ids.contains(&"real".to_owned()) && ids.contains(&"a".to_owned()),
            "{ids:?}"
        );
        // The forged ones are gone after 3 x 60 s at most, whatever they claimed.
        let much_later = start + Duration::from_secs(3 * 60 + 1);
        assert!(board.record(report("real", &[]), much_later));
        assert_eq!(board.hub_ids(), vec!["real".to_owned()]);
    }

    #[test]
    fn restricted_eaters_see_their_kitchens_and_no_counts() {
        let board = FleetBoard::new("a", 4, Default::default());
        board.record(report("a", &["k1", "k2"]), Instant::now());
        let p = Principal {
            name: "viewer".into(),
            role: crate::auth::Role::Eater,
            kitchens: Some(["k2".to_owned()].into()),
            token_sha256: None,
            cert_name: None,
            chefs: None,
        };
        let s = board.section(Some(&p));
        let hub = &s["hubs"][0];
        assert_eq!(hub["kitchens"].as_array().unwrap().len(), 1);
        assert_eq!(hub["kitchens"][0]["kitchen_name"], "k2");
        assert_eq!(hub["dumpling_kitchen_count"], 1);
        assert!(
            hub.get("dumpling_eater_count").is_none() && hub.get("total_dumplings_in").is_none()
        );
        assert_eq!(s["nats"]["connected"], false);
        assert!(s["nats"].get("unpublished").is_none(), "{s}");
        let full = board.section(None);
        assert_eq!(full["hubs"][0]["dumpling_eater_count"], 2);
        assert_eq!(full["nats"]["unpublished"], 0);
    }
}
