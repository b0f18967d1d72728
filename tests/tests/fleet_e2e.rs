//! The fleet with real processes on 127.0.0.1: a 3-node `nats-server` cluster (routes,
//! JetStream on disk, stream with 3 replicas), 3 `nd-hub --nats` hubs, 4 `nd-sniff`
//! kitchens replaying ARP captures fed through FIFOs (so they run for seconds), and raw
//! WebSocket eaters on every hub. Every eater must get every dumpling the kitchens
//! produced (`--stdout`), byte for byte and exactly once, while faults happen mid-run:
//! kill -9 of one NATS node, kill -9 of a hub (its kitchens fail over with `-h A,B`),
//! kill -9 and restart of the whole NATS cluster.
//!
//! Skips with a message when `nats-server` is missing (never in CI).

#[path = "hub_support.rs"]
mod support;

#[path = "nats_support.rs"]
mod nats;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e_tests::{bin, ChildGuard};
use futures_util::{SinkExt, StreamExt};
use nats::Cluster;
use support::{connect, eater, is_chef, kitchen, Hub, ORIGINAL_STATUS_KEYS};
use tokio_tungstenite::tungstenite::Message;

/// Packets per second each kitchen replays.
const RATE: u32 = 150;

/// Start a federated hub and wait until its federation is up: the hub accepts no
/// connection before its JetStream stream and consumer exist, so a completed eater
/// handshake means it is ready.
async fn fleet_hub(cluster: &Cluster, id: &str) -> Hub {
    let urls = cluster.urls();
    let hub = Hub::start(&[
        "-f",
        "60",
        "--nats",
        &urls,
        "--nats-replicas",
        "3",
        "--nats-hub-id",
        id,
        // Fleet status every second, so hubs list each other (and age out) quickly.
        "--nats-status-period",
        "1",
    ]);
    if nats::handshake_within(hub.eaters, Duration::from_secs(45)).await {
        return hub;
    }
    let (_, log) = hub.stop();
    panic!("hub {id} did not federate: {log}\n{}", cluster.logs());
}

/// A raw eater collecting every non-status dumpling until told to stop (or its hub dies).
struct Eater {
    name: String,
    got: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Eater {
    async fn start(hub: &Hub, name: &str) -> Eater {
        let mut ws = connect(hub.eaters).await;
        let hello = serde_json::json!({ "eater_name": name }).to_string();
        ws.send(Message::text(hello)).await.expect("eater hello");
        let got = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (g, s) = (got.clone(), stop.clone());
        let task = tokio::spawn(async move {
            while !s.load(Ordering::Relaxed) {
                match tokio::time::timeout(Duration::from_millis(100), ws.next()).await {
                    Err(_) => continue,
                    Ok(Some(Ok(m @ (Message::Text(_) | Message::Binary(_))))) => {
                        if is_chef(&m, "SystemStatusChef") || is_chef(&m, "HubNoticeChef") {
                            continue;
                        }
                        let text = match m {
                            Message::Text(t) => t.to_string(),
                            Message::Binary(b) => String::from_utf8_lossy(&b).into_owned(),
                            _ => continue,
                        };
                        g.lock().expect("lock").push(text);
                    }
                    Ok(Some(Ok(_))) => continue,
                    Ok(_) => break,
                }
            }
        });
        Eater {
            name: name.to_owned(),
            got,
            stop,
            task,
        }
    }

    fn count(&self) -> usize {
        self.got.lock().map(|g| g.len()).unwrap_or(0)
    }

    async fn finish(self) -> (String, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
        let got = self.got.lock().map(|g| g.clone()).unwrap_or_default();
        (self.name, got)
    }
}

/// An `nd-sniff` kitchen reading ARP packets from a FIFO the test writes.
struct Kitchen {
    guard: ChildGuard,
    stop: Arc<AtomicBool>,
    feeder: std::thread::JoinHandle<u64>,
}

impl Kitchen {
    fn start(dir: &std::path::Path, name: &str, seed: u8, hubs: &str, extra: &[&str]) -> Kitchen {
        let fifo: PathBuf = dir.join(format!("{name}.pcap"));
        nats::mkfifo(&fifo);
        let guard = ChildGuard::spawn(
            "nd-sniff",
            Command::new(bin("nd-sniff"))
                .arg("-r")
                .arg(&fifo)
                .args([
                    "-h",
                    hubs,
                    "-n",
                    name,
                    "--stdout",
                    "-p",
                    "3600",
                    "-c",
                    "ARPChef",
                    "--kitchen-status",
                    "off",
                    "--flush-timeout",
                    "40",
                ])
                .args(extra)
                .env("RUST_LOG", "info"),
        );
        let stop = Arc::new(AtomicBool::new(false));
        let feeder = nats::feed_arp_fifo(&fifo, RATE, seed, stop.clone());
        Kitchen {
            guard,
            stop,
            feeder,
        }
    }

    /// Stop feeding; the kitchen reaches the end of its input, flushes and exits.
    /// Returns the dumplings it produced (its `--stdout` lines) and its stderr.
    fn finish(self) -> (Vec<String>, String) {
        self.stop.store(true, Ordering::Relaxed);
        let packets = self.feeder.join().unwrap_or(0);
        let out = self.guard.wait_output(Duration::from_secs(60));
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "nd-sniff failed: {stderr}");
        let lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_owned)
            .collect();
        assert!(
            packets > 0 && !lines.is_empty(),
            "kitchen produced nothing: {stderr}"
        );
        (lines, stderr)
    }
}

/// Remove the `metadata.nd_id` the kitchen's hub client adds (first key in metadata), so
/// a delivered dumpling compares equal to the kitchen's `--stdout` line.
fn strip_id(text: &str) -> String {
    const HEAD: &str = r#"{"metadata":{"nd_id":""#;
    match text.strip_prefix(HEAD) {
        Some(rest) => match rest.find("\",") {
            Some(end) => format!(r#"{{"metadata":{{{}"#, &rest[end + 2..]),
            None => text.to_owned(),
        },
        None => text.to_owned(),
    }
}

/// Every eater got exactly `produced` (as a multiset, ids stripped): nothing lost, no
/// duplicate. Returns the duplicate count per eater for the message.
fn assert_exactly_once(produced: &[String], eaters: &[(String, Vec<String>)]) {
    let mut want: BTreeMap<&str, usize> = BTreeMap::new();
    for p in produced {
        *want.entry(p.as_str()).or_default() += 1;
    }
    for (name, got) in eaters {
        let mut have: BTreeMap<String, usize> = BTreeMap::new();
        for g in got {
            *have.entry(strip_id(g)).or_default() += 1;
        }
        let missing = want
            .iter()
            .filter(|(k, n)| have.get(**k).copied().unwrap_or(0) < **n)
            .count();
        let duplicates: usize = have.values().map(|n| n.saturating_sub(1)).sum();
        let foreign = have
            .keys()
            .filter(|k| !want.contains_key(k.as_str()))
            .count();
        assert_eq!(
            (missing, duplicates, foreign, got.len()),
            (0, 0, 0, produced.len()),
            "eater {name}: (missing, duplicates, foreign, received) vs produced {}",
            produced.len()
        );
    }
}

/// Wait until every eater has `n` dumplings (or `limit` passes).
async fn wait_delivered(eaters: &[Eater], n: usize, limit: Duration) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline && eaters.iter().any(|e| e.count() < n) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One fleet run: `fault` is called after ~2 s of traffic.
async fn fleet_run(
    cluster: &mut Cluster,
    fault: impl FnOnce(&mut Cluster, &mut Vec<Option<Hub>>),
    kitchen_hubs: impl Fn(&[String], usize) -> String,
    eaters_on: &[usize],
    kitchen_args: &[&str],
) -> (Vec<String>, Vec<(String, Vec<String>)>, Vec<String>) {
    let dir = nats::scratch("fleet");
    let mut hubs: Vec<Option<Hub>> = Vec::new();
    for id in ["hubA", "hubB", "hubC"] {
        hubs.push(Some(fleet_hub(cluster, id).await));
    }
    let kitchen_addrs: Vec<String> = hubs
        .iter()
        .map(|h| {
            h.as_ref()
                .map(|h| h.kitchens.to_string())
                .unwrap_or_default()
        })
        .collect();
    let mut eaters = Vec::new();
    for &i in eaters_on {
        for j in 0..2 {
            let hub = hubs[i].as_ref().expect("hub");
            eaters.push(Eater::start(hub, &format!("eater{i}{j}")).await);
        }
    }
    let kitchens: Vec<Kitchen> = (0..4)
        .map(|k| {
            Kitchen::start(
                &dir,
                &format!("kitchen.{k} *>"),
                k as u8 + 1,
                &kitchen_hubs(&kitchen_addrs, k),
                kitchen_args,
            )
        })
        .collect();
    // Kitchens take a while to start (chef compilation on a busy machine): wait for
    // real traffic (about a second of every kitchen) before the fault.
    wait_delivered(&eaters[..1], 4 * RATE as usize, Duration::from_secs(60)).await;
    assert!(
        eaters[0].count() >= 4 * RATE as usize,
        "no traffic reached the eaters before the fault\n{}",
        cluster.logs()
    );
    fault(cluster, &mut hubs);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut produced = Vec::new();
    let mut kitchen_logs = Vec::new();
    for k in kitchens {
        let (lines, log) = tokio::task::spawn_blocking(move || k.finish())
            .await
            .expect("kitchen join");
        produced.extend(lines);
        kitchen_logs.push(log);
    }
    wait_delivered(&eaters, produced.len(), Duration::from_secs(30)).await;
    let mut results = Vec::new();
    for e in eaters {
        results.push(e.finish().await);
    }
    let mut hub_logs = Vec::new();
    for hub in hubs.into_iter().flatten() {
        let (_, log) = tokio::task::spawn_blocking(move || hub.stop())
            .await
            .expect("hub stop");
        hub_logs.push(log);
    }
    let _ = std::fs::remove_dir_all(&dir);
    kitchen_logs.extend(hub_logs);
    (produced, results, kitchen_logs)
}

fn failure_context(logs: &[String], cluster: &Cluster) -> String {
    let mut out = String::new();
    for l in logs {
        for line in l
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR") || l.contains("fleet"))
        {
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push_str(&cluster.logs());
    out
}

/// The run made real traffic and every eater got all of it exactly once; returns the
/// logs' context for further messages.
fn assert_fleet_delivered(
    produced: &[String],
    eaters: &[(String, Vec<String>)],
    logs: &[String],
    cluster: &Cluster,
) -> String {
    let context = failure_context(logs, cluster);
    // For soak loops: what the hubs went through, even in a run that passes.
    if std::env::var_os("ND_FLEET_SHOW_LOGS").is_some() {
        eprintln!("{context}");
    }
    assert!(
        produced.len() > 1000,
        "produced {}: {context}",
        produced.len()
    );
    let result = std::panic::catch_unwind(|| assert_exactly_once(produced, eaters));
    assert!(result.is_ok(), "{context}");
    context
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hubs_four_kitchens_every_eater_gets_everything_once_while_a_nats_node_dies() {
    let Some(mut cluster) = Cluster::start(3) else {
        return;
    };
    let (produced, eaters, logs) = fleet_run(
        &mut cluster,
        |cluster, _| cluster.kill(2),
        |hubs, k| hubs[k % 3].clone(),
        &[0, 1, 2],
        &[],
    )
    .await;
    assert_fleet_delivered(&produced, &eaters, &logs, &cluster);
}

/// The hub list of kitchen `k`: kitchens 0 and 2 start on hub A and fail over to B; 1 and
/// 3 use B then C (the hub-fault tests take hub A down).
fn half_on_hub_a(hubs: &[String], k: usize) -> String {
    if k.is_multiple_of(2) {
        format!("{},{}", hubs[0], hubs[1])
    } else {
        format!("{},{}", hubs[1], hubs[2])
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_hub_its_kitchens_fail_over_and_nothing_is_lost_or_doubled() {
    let Some(mut cluster) = Cluster::start(3) else {
        return;
    };
    let (produced, eaters, logs) = fleet_run(
        &mut cluster,
        |_, hubs| {
            // kill -9 hub A (by PID): its kitchens must move to hub B.
            if let Some(mut hub) = hubs[0].take() {
                let _ = hub.guard.child.kill();
                let _ = hub.guard.child.wait();
            }
        },
        half_on_hub_a,
        &[1, 2],
        &[],
    )
    .await;
    let context = assert_fleet_delivered(&produced, &eaters, &logs, &cluster);
    let failed_over = logs
        .iter()
        .filter(|l| l.contains("reconnected to the hub"))
        .count();
    assert!(failed_over >= 2, "kitchens on hub A failed over: {context}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_hub_is_noticed_by_the_keepalive_and_its_kitchens_fail_over() {
    // A hub whose host froze sends no reset: its TCP connections stay open and take data
    // until their buffers fill. Only the kitchens' keep-alive (0.5 s here: given up after
    // 1.5 s of silence) can tell; without it they would wait for TCP's timeout (minutes)
    // and this run would lose everything after the freeze.
    let Some(mut cluster) = Cluster::start(3) else {
        return;
    };
    let (produced, eaters, logs) = fleet_run(
        &mut cluster,
        |_, hubs| {
            if let Some(hub) = hubs[0].take() {
                hub.guard.freeze();
                // Killed (by PID) once the kitchens are long gone from it.
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_secs(20));
                    drop(hub);
                });
            }
        },
        half_on_hub_a,
        &[1, 2],
        &["--hub-keepalive-secs", "0.5"],
    )
    .await;
    let context = assert_fleet_delivered(&produced, &eaters, &logs, &cluster);
    let gave_up = logs
        .iter()
        .filter(|l| l.contains("sent nothing, not even a pong") || l.contains("took no data"))
        .count();
    assert!(
        gave_up >= 2,
        "the kitchens on the frozen hub gave it up: {context}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_nats_cluster_restarts_and_nothing_acknowledged_is_lost() {
    let Some(mut cluster) = Cluster::start(3) else {
        return;
    };
    let (produced, eaters, logs) = fleet_run(
        &mut cluster,
        |cluster, _| {
            for i in 0..3 {
                cluster.kill(i);
            }
            std::thread::sleep(Duration::from_millis(500));
            for i in 0..3 {
                cluster.restart(i);
            }
        },
        |hubs, k| hubs[k % 3].clone(),
        &[0, 1, 2],
        &[],
    )
    .await;
    assert_fleet_delivered(&produced, &eaters, &logs, &cluster);
}

/// A fresh eater's welcome status payload from `hub`.
async fn welcome_status(hub: &Hub) -> serde_json::Value {
    let (mut ws, status) = eater(hub.eaters, "fleet-status-probe").await;
    let _ = ws.close(None).await;
    status["payload"].clone()
}

/// `hub id -> sorted kitchen names` of a status payload's fleet section.
fn fleet_kitchens(payload: &serde_json::Value) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for hub in payload["fleet"]["hubs"].as_array().into_iter().flatten() {
        let mut names: Vec<String> = hub["kitchens"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|k| k["kitchen_name"].as_str().map(str::to_owned))
            .collect();
        names.sort();
        out.insert(hub["hub_id"].as_str().unwrap_or("").to_owned(), names);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hub_status_lists_the_whole_fleet_and_a_dead_hub_ages_out() {
    let Some(cluster) = Cluster::start(3) else {
        return;
    };
    let mut hubs = Vec::new();
    for id in ["hubA", "hubB", "hubC"] {
        hubs.push(fleet_hub(&cluster, id).await);
    }
    // 4 kitchens: one on A, one on B, two on C; one name needs escaping on a terminal.
    let placement = [
        (0, "kitchen.0 *>"),
        (1, "kitchen.1\\u001b[31m"),
        (2, "k2"),
        (2, "k3"),
    ];
    let mut kitchens = Vec::new();
    for (hub, name) in placement {
        let hello = format!(r#"{{"kitchen_name": "{name}"}}"#);
        let mut k = kitchen(hubs[hub].kitchens, &hello).await;
        let dumpling = format!(
            r#"{{"metadata":{{"chef":"C","kitchen":"{name}","creation_time":1.5,"driver":"packet"}},"payload":1}}"#
        );
        k.send(Message::text(dumpling)).await.expect("kitchen send");
        kitchens.push(k);
    }
    let want: BTreeMap<String, Vec<String>> = [
        ("hubA", vec!["kitchen.0 *>"]),
        ("hubB", vec!["kitchen.1\u{1b}[31m"]),
        ("hubC", vec!["k2", "k3"]),
    ]
    .into_iter()
    .map(|(h, k)| (h.to_owned(), k.into_iter().map(str::to_owned).collect()))
    .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    for (i, hub) in hubs.iter().enumerate() {
        let local_kitchens = placement.iter().filter(|(h, _)| *h == i).count();
        loop {
            let payload = welcome_status(hub).await;
            let keys: Vec<&str> = payload
                .as_object()
                .map(|o| o.keys().map(String::as_str).collect())
                .unwrap_or_default();
            assert_eq!(
                &keys[..7],
                &ORIGINAL_STATUS_KEYS[..],
                "original keys first, in order"
            );
            assert_eq!(
                keys.get(7),
                Some(&"fleet"),
                "then the fleet section: {payload}"
            );
            // The original counts stay this hub's own.
            assert_eq!(payload["dumpling_kitchen_count"], local_kitchens as u64);
            assert_eq!(payload["fleet"]["hub_id"], ["hubA", "hubB", "hubC"][i]);
            if fleet_kitchens(&payload) == want {
                assert_eq!(payload["fleet"]["hub_count"], 3);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "hub {i} never listed the whole fleet: {payload}\n{}",
                cluster.logs()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    // The eater CLIs show it, with the network's names escaped.
    let details = Command::new(bin("nd-hubdetails"))
        .args(["-h", &hubs[1].eater_hub(), "--no-color"])
        .output()
        .expect("run nd-hubdetails");
    let text = String::from_utf8_lossy(&details.stdout);
    assert!(details.status.success(), "nd-hubdetails: {text}");
    assert!(
        text.contains("\"fleet\": {")
            && text.contains("\"hub_id\": \"hubC\"")
            && text.contains(r#"kitchen.1\u001b[31m"#),
        "nd-hubdetails shows the fleet, escaped: {text}"
    );
    assert!(
        !text.contains('\u{1b}'),
        "no raw escape reaches the terminal"
    );
    let status = ChildGuard::spawn(
        "nd-hubstatus",
        Command::new(bin("nd-hubstatus")).args(["-h", &hubs[0].eater_hub(), "--no-color"]),
    );
    std::thread::sleep(Duration::from_millis(1500));
    status.interrupt();
    let out = status.wait_output(Duration::from_secs(10));
    let line = String::from_utf8_lossy(&out.stdout);
    assert!(
        line.contains("fleet: 3 hubs (hubA 1k/") && line.contains("4 kitchens"),
        "nd-hubstatus shows the fleet: {line}"
    );

    // kill -9 hub C (by PID): it stops publishing and leaves A's fleet within 3 periods.
    let mut dead = hubs.pop().expect("hub C");
    let _ = dead.guard.child.kill();
    let _ = dead.guard.child.wait();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let listed = fleet_kitchens(&welcome_status(&hubs[0]).await);
        if !listed.contains_key("hubC") {
            assert!(listed.contains_key("hubA") && listed.contains_key("hubB"));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "hub C never aged out: {listed:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // A hub without --nats keeps exactly the original keys.
    let single = Hub::start(&[]);
    let payload = welcome_status(&single).await;
    let keys: Vec<&str> = payload
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    assert_eq!(keys, ORIGINAL_STATUS_KEYS, "no fleet key without --nats");
    drop(kitchens);
}
