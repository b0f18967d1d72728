//! Replay, resume and interest pushdown for eaters, with a real `nats-server` (one node,
//! JetStream on disk) and real `nd-hub --nats` processes on 127.0.0.1; raw WebSocket
//! kitchens send numbered dumplings so every check is exact.
//!
//! * replay from a stream sequence and from a time, while the kitchen keeps sending:
//!   each replaying eater gets every dumpling from its start on, in order, once (no gap
//!   or duplicate at the seam between backlog and live), each with `metadata.nd_seq`;
//! * a hub killed -9 under an eater (Rust eater library and `nd-print -h A,B`): the eater
//!   resumes on the other hub, nothing lost, duplicates 0;
//! * interest pushdown: an eater asking for one chef gets only it, and the hub's live
//!   consumer pulled only that chef's dumplings from NATS (the hub's own count); two
//!   eaters wanting two chefs make it pull exactly those two on nats-server >= 2.10
//!   (multi-subject filter), the whole stream on 2.9 (one subject);
//! * without `--nats`: a replay request gets a notice, interest still filters.
//!
//! Skips with a message when `nats-server` is missing (never in CI).

#[path = "hub_support.rs"]
mod support;

#[path = "nats_support.rs"]
mod nats;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use e2e_tests::{bin, log_field, ChildGuard};
use futures_util::SinkExt;
use nats::Cluster;
use serde_json::Value;
use support::{connect, Hub, Ws};
use tokio_tungstenite::tungstenite::Message;

/// Start `nd-hub --nats` on `cluster` (every node's URL); ready once an eater handshake completes
/// (the hub accepts nothing before its stream and consumer exist).
async fn fleet_hub(cluster: &Cluster, id: &str, extra: &[&str]) -> Hub {
    let urls = cluster.urls();
    let mut args = vec!["-f", "60", "--nats", &urls, "--nats-hub-id", id];
    args.extend_from_slice(extra);
    let hub = Hub::start(&args);
    if nats::handshake_within(hub.eaters, Duration::from_secs(30)).await {
        return hub;
    }
    let (_, log) = hub.stop();
    panic!("hub {id} did not federate: {log}\n{}", cluster.logs());
}

/// A dumpling of `chef` numbered `n` (the number is the payload).
fn numbered(chef: &str, n: u64) -> String {
    format!(
        r#"{{"metadata": {{"chef": "{chef}", "kitchen": "rk", "creation_time": 1.5, "driver": "packet"}}, "payload": {{"n": {n}}}}}"#
    )
}

/// A kitchen sending dumplings `from..to` (chef by `chef_of`) with `pause` between them;
/// returns when all are sent (after a short grace for the hub to take them).
async fn send_range(
    addr: std::net::SocketAddr,
    from: u64,
    to: u64,
    pause: Duration,
    chef_of: fn(u64) -> &'static str,
) {
    let mut ws = support::kitchen(addr, r#"{"kitchen_name": "rk"}"#).await;
    for n in from..to {
        ws.send(Message::text(numbered(chef_of(n), n)))
            .await
            .expect("kitchen send");
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = ws.close(None).await;
}

fn bench(_: u64) -> &'static str {
    "BenchChef"
}

/// A raw eater sending `hello` (extra keys merged into `{"eater_name": name}`).
async fn raw_eater(addr: std::net::SocketAddr, name: &str, extra: Value) -> Ws {
    let mut ws = connect(addr).await;
    let mut hello = serde_json::json!({ "eater_name": name });
    if let (Some(h), Some(e)) = (hello.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            h.insert(k.clone(), v.clone());
        }
    }
    ws.send(Message::text(hello.to_string()))
        .await
        .expect("eater hello");
    ws
}

/// What an eater read: (payload n, metadata.nd_seq) of each kitchen dumpling, and the
/// notices' texts.
#[derive(Default, Debug)]
struct Read {
    dumplings: Vec<(u64, Option<u64>, String)>,
    notices: Vec<Value>,
}

/// Read until `want` kitchen dumplings arrived or `limit` passed.
async fn read_n(ws: &mut Ws, want: usize, limit: Duration) -> Read {
    let mut read = Read::default();
    let deadline = Instant::now() + limit;
    while read.dumplings.len() < want {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(message) = support::next_data(ws, left).await else {
            break;
        };
        let value: Value = match serde_json::from_str(message.to_text().unwrap_or("")) {
            Ok(v) => v,
            Err(_) => continue,
        };
        match value["metadata"]["chef"].as_str() {
            Some("SystemStatusChef") => {}
            Some("HubNoticeChef") => read.notices.push(value["payload"].clone()),
            Some(chef) => read.dumplings.push((
                value["payload"]["n"].as_u64().unwrap_or(u64::MAX),
                value["metadata"]["nd_seq"].as_u64(),
                chef.to_owned(),
            )),
            None => {}
        }
    }
    read
}

/// `got` is exactly `from..to` in order, and the sequences (when present) rise by one.
fn assert_exact(name: &str, got: &[(u64, Option<u64>, String)], from: u64, to: u64) {
    let ns: Vec<u64> = got.iter().map(|g| g.0).collect();
    let want: Vec<u64> = (from..to).collect();
    if ns != want {
        let mut count: BTreeMap<u64, usize> = BTreeMap::new();
        for n in &ns {
            *count.entry(*n).or_default() += 1;
        }
        let missing = want.iter().filter(|n| !count.contains_key(n)).count();
        let duplicates: usize = count.values().map(|c| c - 1).sum();
        panic!(
            "{name}: got {} dumplings, want {} ({from}..{to}); missing {missing}, duplicates {duplicates}; first {:?}",
            ns.len(),
            want.len(),
            &ns[..ns.len().min(10)]
        );
    }
    let seqs: Vec<u64> = got.iter().filter_map(|g| g.1).collect();
    assert_eq!(
        seqs.len(),
        got.len(),
        "{name}: every dumpling carries nd_seq"
    );
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "{name}: sequences rise by one: {:?}",
        &seqs[..seqs.len().min(10)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_from_a_sequence_and_a_time_joins_the_live_stream_without_gap_or_duplicate() {
    let Some(cluster) = Cluster::start(1) else {
        return;
    };
    let hub = fleet_hub(&cluster, "hubR", &[]).await;
    // A backlog of 300, then 700 more sent while the eaters replay and catch up.
    send_range(hub.kitchens, 0, 300, Duration::ZERO, bench).await;
    let live = tokio::spawn(send_range(
        hub.kitchens,
        300,
        1000,
        Duration::from_millis(2),
        bench,
    ));
    // The stream was empty before this test's hub: sequence n+1 holds dumpling n.
    let mut from_seq = raw_eater(
        hub.eaters,
        "from-seq",
        serde_json::json!({"nd_since_seq": 101}),
    )
    .await;
    let mut from_time = raw_eater(
        hub.eaters,
        "from-time",
        serde_json::json!({"nd_since": "10m"}),
    )
    .await;
    let mut plain = raw_eater(hub.eaters, "plain", serde_json::json!({})).await;
    let (a, b, c) = tokio::join!(
        read_n(&mut from_seq, 900, Duration::from_secs(30)),
        read_n(&mut from_time, 1000, Duration::from_secs(30)),
        read_n(&mut plain, 1, Duration::from_secs(30)),
    );
    live.await.expect("kitchen");
    assert_exact("from-seq", &a.dumplings, 100, 1000);
    assert_eq!(a.dumplings[0].1, Some(101), "nd_seq is the stream sequence");
    assert_exact("from-time", &b.dumplings, 0, 1000);
    assert!(
        a.notices.iter().any(|n| n["nd_next_seq"] == 101),
        "start notice: {:?}",
        a.notices
    );
    // An eater that asked for nothing gets the original bytes (no nd_seq).
    assert!(
        c.dumplings.iter().all(|d| d.1.is_none()),
        "{:?}",
        c.dumplings
    );
    // Nothing more arrives after the last one (no duplicate trailing the seam).
    let extra = read_n(&mut from_seq, 1, Duration::from_millis(500)).await;
    assert!(
        extra.dumplings.is_empty(),
        "after the end: {:?}",
        extra.dumplings
    );
    let (_, log) = hub.stop();
    assert!(log.contains("eater replay consumer started"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eater_whose_hub_is_killed_resumes_on_another_hub_with_nothing_lost_or_doubled() {
    // A 3-node cluster with a 3-replica stream, as deployed: resume reads the sequence
    // where the eater stopped from whichever node the new hub's consumer lands on.
    let Some(cluster) = Cluster::start(3) else {
        return;
    };
    let replicas = ["--nats-replicas", "3"];
    let mut hub_a = fleet_hub(&cluster, "hubA", &replicas).await;
    let hub_b = fleet_hub(&cluster, "hubB", &replicas).await;
    const TOTAL: u64 = 1500;
    let hubs = format!("{},{}", hub_a.eaters, hub_b.eaters);

    // The Rust eater library: hub list, resume, one chef (interest; hub statuses are
    // not counted).
    let mut config = eater_client::EaterConfig::new(hubs.clone(), "lib-eater");
    config.resume = true;
    config.filter.chefs = vec!["BenchChef".into()];
    config.reconnect.initial = Duration::from_millis(100);
    config.reconnect.max = Duration::from_millis(400);
    let mut lib_eater = eater_client::Eater::new(config).expect("eater config");
    let lib_task = tokio::spawn(async move {
        let mut got = Vec::new();
        let mut reconnects = 0;
        let deadline = Instant::now() + Duration::from_secs(40);
        while (got.len() as u64) < TOTAL && Instant::now() < deadline {
            match tokio::time::timeout(Duration::from_secs(1), lib_eater.next_event()).await {
                Ok(Ok(eater_client::Event::Dumpling(d))) => {
                    let n = d.dumpling.payload["n"].as_u64().unwrap_or(u64::MAX);
                    // The stream was empty before: sequence n+1 holds dumpling n.
                    assert_eq!(d.seq, Some(n + 1), "nd_seq of {}", d.raw);
                    got.push(n)
                }
                Ok(Ok(eater_client::Event::Connected {
                    reconnected: true, ..
                })) => reconnects += 1,
                Ok(Ok(_)) | Err(_) => {}
                Ok(Err(error)) => panic!("eater gave up: {error}"),
            }
        }
        (got, reconnects)
    });
    // nd-print with the same hub list: resume is on by default with several hubs.
    let printer = ChildGuard::spawn(
        "nd-print",
        Command::new(bin("nd-print"))
            .args(["--json", "-n", "printer", "-c", "BenchChef", "-h", &hubs])
            .args(["--count", &TOTAL.to_string()]),
    );
    // Both eaters are on hub A; the kitchen sends through hub B (which survives).
    tokio::time::sleep(Duration::from_millis(700)).await;
    let kitchen = tokio::spawn(send_range(
        hub_b.kitchens,
        0,
        TOTAL,
        Duration::from_millis(2),
        bench,
    ));
    tokio::time::sleep(Duration::from_millis(1200)).await;
    // kill -9 hub A (by PID) mid-run.
    let _ = hub_a.guard.child.kill();
    let _ = hub_a.guard.child.wait();
    kitchen.await.expect("kitchen");
    let (got, reconnects) = lib_task.await.expect("eater task");
    let out = tokio::task::spawn_blocking(move || printer.wait_output(Duration::from_secs(40)))
        .await
        .expect("printer");
    let (_, log_b) = hub_b.stop();
    let check = |name: &str, ns: &[u64]| {
        let want: Vec<u64> = (0..TOTAL).collect();
        let mut count: BTreeMap<u64, usize> = BTreeMap::new();
        for n in ns {
            *count.entry(*n).or_default() += 1;
        }
        let missing = want.iter().filter(|n| !count.contains_key(n)).count();
        let duplicates: usize = count.values().map(|c| c - 1).sum();
        assert_eq!(
            (missing, duplicates, ns.len() as u64),
            (0, 0, TOTAL),
            "{name}: (missing, duplicates, received); hub B log:\n{log_b}"
        );
        assert_eq!(ns, &want[..], "{name}: in order");
    };
    check("eater library", &got);
    assert!(reconnects >= 1, "the library eater reconnected");
    let printed: Vec<u64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["payload"]["n"].as_u64())
        .collect();
    check("nd-print", &printed);
    assert!(
        out.status.success(),
        "nd-print: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(cluster);
}

/// An eater resuming after the stream was created again, here because nats-server came
/// back without its store while the eater's hub died, gets the new stream from its first
/// dumpling. It used to ask for its old position (`nd_since_seq` 31) in the new stream and
/// skip everything below it (13 of 13 runs of the reproducer); now it sends the `nd_stream`
/// of its hub's start notice, and a hub reading another stream starts at its first
/// sequence and names the new stream, so the eater forgets the old sequences.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eater_resuming_into_a_stream_created_again_misses_none_of_it() {
    let Some(mut cluster) = Cluster::start(1) else {
        return;
    };
    let mut hub_a = fleet_hub(&cluster, "hubA", &[]).await;
    let hub_b = fleet_hub(&cluster, "hubB", &[]).await;
    let mut config =
        eater_client::EaterConfig::new(format!("{},{}", hub_a.eaters, hub_b.eaters), "resumer");
    config.resume = true;
    config.filter.chefs = vec!["BenchChef".into()];
    config.reconnect.initial = Duration::from_millis(100);
    config.reconnect.max = Duration::from_millis(400);
    let mut eater = eater_client::Eater::new(config).expect("eater config");
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(u64, Option<u64>)>::new()));
    let seen = got.clone();
    let task = tokio::spawn(async move {
        let deadline = Instant::now() + Duration::from_secs(60);
        while seen.lock().map(|g| g.len()).unwrap_or(0) < 40 && Instant::now() < deadline {
            match tokio::time::timeout(Duration::from_secs(1), eater.next_event()).await {
                Ok(Ok(eater_client::Event::Dumpling(d))) => {
                    let n = d.dumpling.payload["n"].as_u64().unwrap_or(u64::MAX);
                    if let Ok(mut g) = seen.lock() {
                        g.push((n, d.seq));
                    }
                }
                Ok(Ok(_)) | Err(_) => {}
                Ok(Err(error)) => panic!("eater gave up: {error}"),
            }
        }
    });
    let count = || got.lock().map(|g| g.len()).unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(700)).await;
    send_range(hub_a.kitchens, 0, 30, Duration::ZERO, bench).await;
    assert!(
        nats::wait_until(Duration::from_secs(20), || count() == 30),
        "the first 30 arrived"
    );
    // Hub A dies and NATS comes back empty: hub B makes the stream again.
    let _ = hub_a.guard.child.kill();
    let _ = hub_a.guard.child.wait();
    cluster.restart_empty(0);
    send_range(hub_b.kitchens, 100, 110, Duration::from_millis(20), bench).await;
    let arrived = nats::wait_until(Duration::from_secs(30), || count() == 40);
    task.abort();
    let got = got.lock().map(|g| g.clone()).unwrap_or_default();
    let (_, log_b) = hub_b.stop();
    assert!(
        arrived,
        "the new stream's 10 never all came: {got:?}\nhub B:\n{log_b}"
    );
    let want: Vec<(u64, Option<u64>)> = (0..30)
        .map(|n| (n, Some(n + 1)))
        .chain((100..110).map(|n| (n, Some(n - 99))))
        .collect();
    assert_eq!(got, want, "hub B:\n{log_b}");
    drop(cluster);
}

/// The stream deleted and created again under an eater reading with sequences: it is
/// told the new stream's name and first sequence before the new stream's dumplings, so
/// its next resume asks in the new stream's sequences.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eater_reading_when_the_stream_is_created_again_is_told_its_new_name() {
    let Some(cluster) = Cluster::start(1) else {
        return;
    };
    let hub = fleet_hub(&cluster, "hubR", &[]).await;
    let mut ws = raw_eater(hub.eaters, "seq", serde_json::json!({ "nd_seq": true })).await;
    send_range(hub.kitchens, 0, 5, Duration::ZERO, bench).await;
    let before = read_n(&mut ws, 5, Duration::from_secs(10)).await;
    let named = |read: &Read| -> Vec<String> {
        read.notices
            .iter()
            .filter_map(|n| n["nd_stream"].as_str().map(str::to_owned))
            .collect()
    };
    let old = named(&before);
    assert_eq!(old.len(), 1, "{before:?}");
    let client = async_nats::connect(cluster.nodes[0].client.to_string())
        .await
        .expect("a plain NATS client");
    async_nats::jetstream::new(client)
        .delete_stream("ND_DUMPLINGS")
        .await
        .expect("delete the stream");
    send_range(hub.kitchens, 5, 10, Duration::from_millis(20), bench).await;
    let after = read_n(&mut ws, 5, Duration::from_secs(20)).await;
    let (_, log) = hub.stop();
    let new = named(&after);
    assert_eq!(
        new.len(),
        1,
        "one notice naming the new stream: {after:?}\n{log}"
    );
    assert_ne!(new, old, "{after:?}");
    let notice = after.notices.iter().find(|n| n["nd_stream"].is_string());
    assert_eq!(notice.map(|n| n["nd_next_seq"].clone()), Some(1.into()));
    assert_exact("after", &after.dumplings, 5, 10);
    assert_eq!(after.dumplings[0].1, Some(1), "{after:?}");
}

fn ab(n: u64) -> &'static str {
    if n.is_multiple_of(2) {
        "ChefA"
    } else {
        "ChefB"
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eater_asking_for_one_chef_gets_only_it_and_the_hub_pulls_only_it() {
    let Some(cluster) = Cluster::start(1) else {
        return;
    };
    let hub = fleet_hub(&cluster, "hubI", &[]).await;
    let mut one = raw_eater(
        hub.eaters,
        "only-a",
        serde_json::json!({"nd_chefs": ["ChefA"]}),
    )
    .await;
    // The hub switches its live consumer's filter to ChefA's subjects (a few ms; its
    // log is only readable after it stops, so give it ample time).
    tokio::time::sleep(Duration::from_millis(1000)).await;
    const TOTAL: u64 = 400;
    send_range(hub.kitchens, 0, TOTAL, Duration::ZERO, ab).await;
    let read = read_n(&mut one, (TOTAL / 2) as usize, Duration::from_secs(20)).await;
    let extra = read_n(&mut one, 1, Duration::from_millis(500)).await;
    assert!(
        read.dumplings.iter().all(|d| d.2 == "ChefA") && extra.dumplings.is_empty(),
        "only ChefA: {:?}",
        extra.dumplings
    );
    let ns: Vec<u64> = read.dumplings.iter().map(|d| d.0).collect();
    assert_eq!(
        ns,
        (0..TOTAL).step_by(2).collect::<Vec<_>>(),
        "every ChefA dumpling once"
    );
    let _ = one.close(None).await;
    let (_, log) = hub.stop();
    // The hub's count of dumplings its live consumer read from NATS: ChefA's only.
    let line = log
        .lines()
        .find(|l| l.contains("fleet: stopped"))
        .unwrap_or_else(|| panic!("no fleet stop line: {log}"));
    assert_eq!(
        log_field(line, "delivered"),
        TOTAL / 2,
        "pulled from NATS: {line}"
    );
    assert!(
        log.contains("live consumer filter changed") && log.contains("nd.dumplings.*.ChefA.*"),
        "{log}"
    );
}

fn abc(n: u64) -> &'static str {
    ["ChefA", "ChefB", "ChefC"][(n % 3) as usize]
}

/// `(major, minor)` of the nats-server the tests use (`nats-server: v2.15.1`).
fn server_minor() -> (u64, u64) {
    let binary = nats::nats_server().expect("nats-server (checked by Cluster::start)");
    let text = nats::server_version(&binary);
    let version = text.rsplit('v').next().unwrap_or("");
    let mut parts = version
        .split('.')
        .map(|p| p.trim().parse::<u64>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_eaters_wanting_two_chefs_make_the_hub_pull_exactly_those_two() {
    let Some(cluster) = Cluster::start(1) else {
        return;
    };
    let multi = server_minor() >= (2, 10);
    let hub = fleet_hub(&cluster, "hubM", &[]).await;
    let mut a = raw_eater(
        hub.eaters,
        "only-a",
        serde_json::json!({"nd_chefs": ["ChefA"]}),
    )
    .await;
    let mut b = raw_eater(
        hub.eaters,
        "only-b",
        serde_json::json!({"nd_chefs": ["ChefB"]}),
    )
    .await;
    // Let the live consumer switch to its new filter (a few ms; ample time under load).
    tokio::time::sleep(Duration::from_millis(1000)).await;
    const TOTAL: u64 = 600;
    send_range(hub.kitchens, 0, TOTAL, Duration::ZERO, abc).await;
    for (ws, chef, first) in [(&mut a, "ChefA", 0), (&mut b, "ChefB", 1)] {
        let read = read_n(ws, (TOTAL / 3) as usize, Duration::from_secs(20)).await;
        let extra = read_n(ws, 1, Duration::from_millis(300)).await;
        let ns: Vec<u64> = read.dumplings.iter().map(|d| d.0).collect();
        assert_eq!(
            ns,
            (first..TOTAL).step_by(3).collect::<Vec<_>>(),
            "every {chef} dumpling once, in order"
        );
        assert!(
            read.dumplings.iter().all(|d| d.2 == chef) && extra.dumplings.is_empty(),
            "only {chef}: {:?}",
            extra.dumplings
        );
        let _ = ws.close(None).await;
    }
    let (_, log) = hub.stop();
    let line = log
        .lines()
        .find(|l| l.contains("fleet: stopped"))
        .unwrap_or_else(|| panic!("no fleet stop line: {log}"));
    if multi {
        // Exact pushdown (nats-server >= 2.10): ChefC's third of the stream never left
        // NATS for this hub, and the consumer's filter listed both chefs' subjects.
        assert_eq!(
            log_field(line, "delivered"),
            2 * TOTAL / 3,
            "pulled from NATS (ChefA and ChefB only): {line}"
        );
        assert!(
            log.contains("nd.dumplings.*.ChefA.* nd.dumplings.*.ChefB.*"),
            "the multi-subject filter: {log}"
        );
        assert!(log.contains("multi_filter=true"), "{log}");
    } else {
        // nats-server 2.9: one filter subject, so two chefs need the whole stream.
        assert_eq!(log_field(line, "delivered"), TOTAL, "pulled: {line}");
        assert!(log.contains("multi_filter=false"), "{log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_nats_a_replay_request_gets_a_notice_and_interest_still_filters() {
    let hub = Hub::start(&["-f", "60"]);
    let mut ws = raw_eater(
        hub.eaters,
        "no-nats",
        serde_json::json!({"nd_since": "10m", "nd_chefs": ["ChefB"]}),
    )
    .await;
    let sender = tokio::spawn(send_range(hub.kitchens, 0, 20, Duration::ZERO, ab));
    let read = read_n(&mut ws, 10, Duration::from_secs(10)).await;
    sender.await.expect("kitchen");
    let text = read
        .notices
        .iter()
        .filter_map(|n| n["notice"].as_str())
        .collect::<Vec<_>>()
        .join(" | ");
    assert!(text.contains("without --nats"), "notice: {text:?}");
    let ns: Vec<u64> = read.dumplings.iter().map(|d| d.0).collect();
    assert_eq!(ns, (1..20).step_by(2).collect::<Vec<_>>(), "ChefB only");
    assert!(read.dumplings.iter().all(|d| d.1.is_none()));
    hub.stop();
}

/// A WebSocket to `addr` carrying `token` (`Authorization: Bearer`), or the refusal.
async fn connect_with_token(
    addr: std::net::SocketAddr,
    token: &str,
) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://{addr}/").into_client_request()?;
    let value = format!("Bearer {token}")
        .parse()
        .expect("a token is a valid header value");
    request.headers_mut().insert("authorization", value);
    let connect = tokio_tungstenite::connect_async(request);
    match tokio::time::timeout(Duration::from_secs(5), connect).await {
        Ok(result) => result.map(|(ws, _)| ws),
        Err(_) => Err(tokio_tungstenite::tungstenite::Error::ConnectionClosed),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_auth_replay_and_interest_never_widen_what_an_eater_may_see() {
    let Some(cluster) = Cluster::start(1) else {
        return;
    };
    let dir = nats::scratch("fleet-auth");
    let (kitchen_token, kitchen_hash) = support::nd_hub_token();
    let (a_token, a_hash) = support::nd_hub_token();
    let (all_token, all_hash) = support::nd_hub_token();
    let auth = dir.join("auth.toml");
    std::fs::write(
        &auth,
        format!(
            "[[principal]]\nname = \"sensor\"\nrole = \"kitchen\"\ntoken_sha256 = \"{kitchen_hash}\"\n\
             kitchens = [\"rk\"]\n\n\
             [[principal]]\nname = \"a-team\"\nrole = \"eater\"\ntoken_sha256 = \"{a_hash}\"\n\
             chefs = [\"ChefA\"]\n\n\
             [[principal]]\nname = \"everyone\"\nrole = \"eater\"\ntoken_sha256 = \"{all_hash}\"\n"
        ),
    )
    .expect("write auth.toml");
    let auth_path = auth.to_string_lossy().into_owned();
    let urls = cluster.urls();
    let hub = Hub::start(&[
        "-f",
        "60",
        "--nats",
        &urls,
        "--nats-hub-id",
        "hubAuth",
        "--auth",
        &auth_path,
    ]);
    // Ready once an authorised eater completes its handshake (nothing is accepted before
    // the hub's stream and consumer exist).
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        if let Ok(mut ws) = connect_with_token(hub.eaters, &all_token).await {
            let _ = ws.close(None).await;
            break;
        }
        assert!(Instant::now() < deadline, "hub did not federate");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A backlog of 200 (ChefA even, ChefB odd) from an authorised kitchen.
    const TOTAL: u64 = 200;
    let mut kitchen = connect_with_token(hub.kitchens, &kitchen_token)
        .await
        .expect("kitchen with its token");
    kitchen
        .send(Message::text(r#"{"kitchen_name": "rk"}"#))
        .await
        .expect("kitchen hello");
    for n in 0..TOTAL {
        kitchen
            .send(Message::text(numbered(ab(n), n)))
            .await
            .expect("kitchen send");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = kitchen.close(None).await;

    let hello = |name: &str, extra: Value| {
        let mut h = serde_json::json!({ "eater_name": name });
        if let (Some(h), Some(e)) = (h.as_object_mut(), extra.as_object()) {
            h.extend(e.clone());
        }
        Message::text(h.to_string())
    };
    // The restricted eater replays the whole stream: only ChefA, in order, each once.
    let mut a = connect_with_token(hub.eaters, &a_token)
        .await
        .expect("a-team");
    a.send(hello("a-replay", serde_json::json!({"nd_since_seq": 1})))
        .await
        .expect("hello");
    let got = read_n(&mut a, (TOTAL / 2) as usize, Duration::from_secs(20)).await;
    let extra = read_n(&mut a, 1, Duration::from_millis(700)).await;
    let ns: Vec<u64> = got.dumplings.iter().map(|d| d.0).collect();
    assert_eq!(
        ns,
        (0..TOTAL).step_by(2).collect::<Vec<_>>(),
        "a restricted replay gets only ChefA, each once"
    );
    assert!(
        got.dumplings.iter().all(|d| d.2 == "ChefA") && extra.dumplings.is_empty(),
        "nothing beyond ChefA: {:?}",
        extra.dumplings
    );
    // Asking (interest + replay) for a chef it may not see gets nothing, not ChefB.
    let mut b = connect_with_token(hub.eaters, &a_token)
        .await
        .expect("a-team");
    b.send(hello(
        "a-asks-b",
        serde_json::json!({"nd_since_seq": 1, "nd_chefs": ["ChefB"]}),
    ))
    .await
    .expect("hello");
    let got_b = read_n(&mut b, 1, Duration::from_millis(1500)).await;
    assert!(
        got_b.dumplings.is_empty(),
        "interest cannot widen the principal: {:?}",
        got_b.dumplings
    );
    // An unrestricted eater's replay gets everything: the filter above is the principal's.
    let mut all = connect_with_token(hub.eaters, &all_token)
        .await
        .expect("everyone");
    all.send(hello("all-replay", serde_json::json!({"nd_since_seq": 1})))
        .await
        .expect("hello");
    let got_all = read_n(&mut all, TOTAL as usize, Duration::from_secs(20)).await;
    assert_exact("everyone", &got_all.dumplings, 0, TOTAL);
    // An unknown token gets no replay: refused at the upgrade.
    assert!(
        connect_with_token(hub.eaters, "not-a-known-token")
            .await
            .is_err(),
        "an eater with an unknown token is refused"
    );
    let _ = (
        a.close(None).await,
        b.close(None).await,
        all.close(None).await,
    );
    let _ = hub.stop();
    let _ = std::fs::remove_dir_all(&dir);
}
