//! A federated hub against what it does not control, with a real `nats-server` and real
//! `nd-hub --nats` processes on 127.0.0.1:
//!
//! * a dumpling the hub takes but NATS cannot carry (its headers push it over the
//!   server's `max_payload`) is refused and counted, and everything after it still flows
//!   (it used to be retried forever, and nothing after it was ever published);
//! * a NATS client that is no hub writes junk, raw bytes and forged hub dumplings onto the
//!   stream's subjects: eaters get none of it, and the real dumplings still arrive;
//! * the stream is deleted and created again, or only deleted: the hub notices, reads the
//!   new stream from its start (or creates it again) and delivers what comes next.
//!
//! Skips with a message when `nats-server` is missing (never in CI).

#[path = "hub_support.rs"]
mod support;

#[path = "nats_support.rs"]
mod nats;

use std::time::{Duration, Instant};

use futures_util::SinkExt;
use nats::Cluster;
use serde_json::Value;
use support::{connect, Hub, Ws};
use tokio_tungstenite::tungstenite::Message;

/// Start `nd-hub --nats` on `cluster`; ready once an eater handshake completes.
async fn fleet_hub(cluster: &Cluster, id: &str) -> Hub {
    let urls = cluster.urls();
    let hub = Hub::start(&["-f", "60", "--nats", &urls, "--nats-hub-id", id]);
    if nats::handshake_within(hub.eaters, Duration::from_secs(30)).await {
        return hub;
    }
    let (_, log) = hub.stop();
    panic!("hub {id} did not federate: {log}\n{}", cluster.logs());
}

/// An eater that has read its welcome status.
async fn eater(hub: &Hub, name: &str) -> Ws {
    let mut ws = connect(hub.eaters).await;
    let hello = serde_json::json!({ "eater_name": name }).to_string();
    ws.send(Message::text(hello)).await.expect("eater hello");
    assert!(
        support::next_data(&mut ws, Duration::from_secs(5))
            .await
            .is_some(),
        "welcome status"
    );
    ws
}

/// A plain NATS client (no hub) on the cluster's first node.
async fn nats_client(cluster: &Cluster) -> async_nats::Client {
    async_nats::connect(cluster.nodes[0].client.to_string())
        .await
        .expect("a plain NATS client")
}

/// A dumpling of chef `Real` numbered `n`, `pad` bytes of padding in its payload.
fn numbered(n: u64, pad: usize) -> String {
    format!(
        r#"{{"metadata": {{"chef": "Real", "kitchen": "rk", "creation_time": 1.5, "driver": "packet"}}, "payload": {{"n": {n}, "pad": "{}"}}}}"#,
        "x".repeat(pad)
    )
}

/// Everything an eater read that is not the hub's own status: (chef, payload `n`) of each
/// message, or the raw text of one that is no JSON.
async fn read_until(ws: &mut Ws, last_n: u64, limit: Duration) -> Vec<(String, Option<u64>)> {
    let deadline = Instant::now() + limit;
    let mut read = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(message) = support::next_data(ws, left).await else {
            return read;
        };
        let text = match &message {
            Message::Text(t) => t.to_string(),
            Message::Binary(b) => String::from_utf8_lossy(b).into_owned(),
            _ => continue,
        };
        let Ok(value) = serde_json::from_str::<Value>(&text) else {
            read.push((format!("(not JSON) {text}"), None));
            continue;
        };
        let chef = value["metadata"]["chef"].as_str().unwrap_or("?").to_owned();
        // The hub's own statuses carry its uptime; a forged one does not.
        if chef == "SystemStatusChef" && value["payload"]["server_uptime"].is_number() {
            continue;
        }
        let n = value["payload"]["n"].as_u64();
        let done = chef == "Real" && n == Some(last_n);
        read.push((chef, n));
        if done {
            return read;
        }
    }
}

/// A raw kitchen that sends `frames` and waits a moment for the hub to take them.
async fn send(hub: &Hub, frames: impl IntoIterator<Item = String>) {
    let mut k = support::kitchen(hub.kitchens, r#"{"kitchen_name": "rk"}"#).await;
    for frame in frames {
        k.send(Message::text(frame)).await.expect("kitchen send");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = k.close(None).await;
}

/// Send a signal (`STOP`, `CONT`, ...) to the cluster's first node, by PID.
fn signaller(cluster: &Cluster) -> impl Fn(&str) + Send + 'static {
    let node = cluster.nodes[0]
        .child
        .as_ref()
        .map(|c| c.id())
        .expect("node");
    move |sig: &str| {
        let _ = std::process::Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(node.to_string())
            .status();
    }
}

/// [`fleet_hub`] with `extra` flags and `/metrics` on a free port (its address returned).
async fn fleet_hub_with_metrics(
    cluster: &Cluster,
    id: &str,
    extra: &[&str],
) -> (Hub, std::net::SocketAddr) {
    let port = e2e_tests::free_port();
    let (urls, port_text) = (cluster.urls(), port.to_string());
    let mut args = vec!["-f", "60", "--nats", &urls, "--nats-hub-id", id];
    args.extend_from_slice(&["--metrics-address", &port_text]);
    args.extend_from_slice(extra);
    let hub = Hub::start(&args);
    assert!(
        nats::handshake_within(hub.eaters, Duration::from_secs(30)).await,
        "hub {id} did not federate"
    );
    (hub, ([127, 0, 0, 1], port).into())
}

/// The body of a `/metrics` scrape.
fn scrape(metrics: std::net::SocketAddr) -> String {
    let response = e2e_tests::http_get(metrics, "/metrics");
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dumpling_nats_cannot_carry_is_refused_and_the_rest_flows() {
    let Some(cluster) = Cluster::start(1) else {
        return;
    };
    let hub = fleet_hub(&cluster, "hubBig").await;
    let mut ws = eater(&hub, "after-big").await;
    // Under the hub's 1 MiB message cap, over NATS's 1 MiB max_payload with the headers.
    let big = numbered(0, 1_048_570 - numbered(0, 0).len());
    assert!(big.len() <= 1 << 20);
    send(
        &hub,
        std::iter::once(big).chain((1..=50).map(|n| numbered(n, 10))),
    )
    .await;
    let read = read_until(&mut ws, 50, Duration::from_secs(20)).await;
    let ns: Vec<Option<u64>> = read.iter().map(|r| r.1).collect();
    let want: Vec<Option<u64>> = (1..=50).map(Some).collect();
    assert_eq!(ns, want, "the 50 after the big one, in order, without it");
    let (_, log) = hub.stop();
    assert!(log.contains("max_payload"), "the refusal is named: {log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_nats_client_that_is_no_hub_writes_never_reaches_eaters() {
    let Some(cluster) = Cluster::start(1) else {
        return;
    };
    let hub = fleet_hub(&cluster, "hubInj").await;
    let mut ws = eater(&hub, "victim").await;
    let client = nats_client(&cluster).await;
    let forged_status = r#"{"metadata": {"chef": "SystemStatusChef", "kitchen": null, "creation_time": 1.5, "driver": "interval"}, "payload": {"total_dumplings_in": 999999999}}"#;
    let forged_notice = r#"{"metadata": {"chef": "HubNoticeChef", "kitchen": null, "creation_time": 1.5, "driver": "interval"}, "payload": {"notice": "hub moved: reconnect to evil.example"}}"#;
    let junk: [&[u8]; 4] = [
        b"this is not json",
        b"\xff\xfe\x00garbage",
        forged_status.as_bytes(),
        forged_notice.as_bytes(),
    ];
    for bytes in junk {
        client
            .publish("nd.dumplings.rk.Real.packet", bytes.to_vec().into())
            .await
            .expect("publish");
    }
    client.flush().await.expect("flush");
    send(&hub, (1..=3).map(|n| numbered(n, 10))).await;
    let read = read_until(&mut ws, 3, Duration::from_secs(20)).await;
    assert_eq!(
        read,
        (1..=3)
            .map(|n| ("Real".to_owned(), Some(n)))
            .collect::<Vec<_>>(),
        "only the kitchen's dumplings"
    );
    let (_, log) = hub.stop();
    assert!(
        log.contains("no hub would have published"),
        "the junk is reported: {log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_deleted_and_created_again_or_only_deleted_keeps_delivering() {
    let Some(cluster) = Cluster::start(1) else {
        return;
    };
    let hub = fleet_hub(&cluster, "hubRe").await;
    let mut ws = eater(&hub, "through-resets").await;
    send(&hub, (1..=100).map(|n| numbered(n, 10))).await;
    let read = read_until(&mut ws, 100, Duration::from_secs(20)).await;
    assert_eq!(read.len(), 100, "before: {read:?}");

    let client = nats_client(&cluster).await;
    let js = async_nats::jetstream::new(client);
    // Deleted and created again by someone else: sequences start over below the hub's.
    js.delete_stream("ND_DUMPLINGS").await.expect("delete");
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "ND_DUMPLINGS".into(),
        subjects: vec!["nd.dumplings.>".into()],
        ..Default::default()
    })
    .await
    .expect("create again");
    send(&hub, (101..=130).map(|n| numbered(n, 10))).await;
    let read = read_until(&mut ws, 130, Duration::from_secs(20)).await;
    let ns: Vec<u64> = read.iter().filter_map(|r| r.1).collect();
    assert_eq!(ns, (101..=130).collect::<Vec<_>>(), "after re-creation");

    // Only deleted: the hub creates it again itself.
    js.delete_stream("ND_DUMPLINGS").await.expect("delete");
    send(&hub, (131..=140).map(|n| numbered(n, 10))).await;
    let read = read_until(&mut ws, 140, Duration::from_secs(30)).await;
    let ns: Vec<u64> = read.iter().filter_map(|r| r.1).collect();
    assert_eq!(ns, (131..=140).collect::<Vec<_>>(), "after deletion");
    let (_, log) = hub.stop();
    assert!(log.contains("deleted and created again"), "{log}");
}

/// A stream of the hub's name that someone made for other subjects would store nothing the
/// hub publishes (it accepted kitchens, and eaters got nothing, with "no responders" in the
/// log forever): the hub refuses to start and says what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_of_the_same_name_for_other_subjects_is_named_at_start() {
    let Some(cluster) = Cluster::start(1) else {
        return;
    };
    let js = async_nats::jetstream::new(nats_client(&cluster).await);
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "ND_DUMPLINGS".into(),
        subjects: vec!["other.>".into()],
        ..Default::default()
    })
    .await
    .expect("someone else's stream");
    let urls = cluster.urls();
    let out = e2e_tests::ChildGuard::spawn(
        "nd-hub",
        std::process::Command::new(e2e_tests::bin("nd-hub")).args([
            "-a",
            "127.0.0.1",
            "-i",
            "0",
            "-o",
            "0",
            "--nats",
            &urls,
        ]),
    )
    .wait_output(Duration::from_secs(40));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not nd.dumplings.>") && err.contains("other.>"),
        "{err}"
    );
}

/// `nd_id` is the kitchen's word: two kitchens sending the same ids both get through (the
/// second one's were dropped by JetStream as duplicates of the first's, so a kitchen could
/// suppress another's dumplings under `--auth`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_kitchens_dumpling_ids_cannot_stand_for_anothers() {
    let Some(cluster) = Cluster::start(1) else {
        return;
    };
    let hub = fleet_hub(&cluster, "hubIds").await;
    let mut ws = eater(&hub, "both").await;
    // The same five ids from both kitchens.
    let with_id = |kitchen: &str, n: u64| {
        let id = (n - 1) % 5;
        format!(
            r#"{{"metadata": {{"nd_id": "same-{id}", "chef": "Real", "kitchen": "{kitchen}", "creation_time": 1.5, "driver": "packet"}}, "payload": {{"n": {n}}}}}"#
        )
    };
    send(&hub, (1..=5).map(|n| with_id("first", n))).await;
    send(&hub, (6..=10).map(|n| with_id("second", n))).await;
    let read = read_until(&mut ws, 10, Duration::from_secs(20)).await;
    let ns: Vec<u64> = read.iter().filter_map(|r| r.1).collect();
    assert_eq!(ns, (1..=10).collect::<Vec<_>>());
}

/// An eater asking to start past the stream's end gets what comes from there, not the whole
/// stream (the reader took the stream's end being behind it for a re-created stream).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_past_the_end_is_not_taken_for_a_new_stream() {
    let Some(cluster) = Cluster::start(1) else {
        return;
    };
    let hub = fleet_hub(&cluster, "hubAhead").await;
    send(&hub, (1..=50).map(|n| numbered(n, 10))).await;
    let mut ahead = connect(hub.eaters).await;
    let hello = r#"{"eater_name": "ahead", "nd_since_seq": 1000}"#;
    ahead.send(Message::text(hello)).await.expect("eater hello");
    send(&hub, (51..=60).map(|n| numbered(n, 10))).await;
    // Quiet for the reader's stall check (1 s) and more: nothing below 1000 may come.
    let read = read_until(&mut ahead, 60, Duration::from_secs(4)).await;
    let old: Vec<u64> = read.iter().filter_map(|r| r.1).collect();
    assert!(old.is_empty(), "replayed from below its start: {old:?}");
    let (_, log) = hub.stop();
    assert!(!log.contains("deleted and created again"), "{log}");
}

/// A NATS server whose JetStream cannot make the stream (here: JetStream off; in the field,
/// its disk full or no quorum): the hub, which opens no port until the stream answers,
/// said nothing for the 30 s it retried. It now says at once what is wrong.
#[test]
fn a_jetstream_that_cannot_make_the_stream_is_said_at_once() {
    let Some(server) = nats::nats_server() else {
        return;
    };
    let port = nats::free_ports(1)[0];
    let nats_server = e2e_tests::ChildGuard::spawn(
        "nats-server",
        std::process::Command::new(server).args(["-a", "127.0.0.1", "-p", &port.to_string()]),
    );
    assert!(
        nats::wait_until(Duration::from_secs(10), || std::net::TcpStream::connect((
            "127.0.0.1",
            port
        ))
        .is_ok()),
        "nats-server did not start"
    );
    let ports = nats::free_ports(2);
    let hub = e2e_tests::ChildGuard::spawn(
        "nd-hub",
        std::process::Command::new(e2e_tests::bin("nd-hub"))
            .args(["-a", "127.0.0.1", "-i", &ports[0].to_string()])
            .args(["-o", &ports[1].to_string(), "-f", "60"])
            .args(["--nats", &format!("nats://127.0.0.1:{port}")])
            .env("RUST_LOG", "info"),
    );
    std::thread::sleep(Duration::from_secs(4));
    hub.terminate();
    let out = hub.wait_output(Duration::from_secs(40));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("fleet: the JetStream stream is not ready"),
        "nothing said within 4 s:\n{log}"
    );
    drop(nats_server);
}

/// SIGTERM to a federated hub while NATS does not answer: the publisher was aborted at
/// once and the dumplings it had been handed were lost without a word (the summary said
/// only what was stored). Now the stopping hub waits a bounded time for them and says how
/// many were never stored; with NATS answering again in time, every one is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_hub_stores_what_it_accepted_or_says_how_many_it_could_not() {
    let Some(cluster) = Cluster::start(1) else {
        return;
    };
    let signal = signaller(&cluster);

    // NATS frozen until after the hub stopped: what it accepted is counted as not stored.
    let hub = fleet_hub(&cluster, "hubStopA").await;
    send(&hub, (1..=5).map(|n| numbered(n, 10))).await;
    signal("STOP");
    send(&hub, (6..=40).map(|n| numbered(n, 10))).await;
    let started = Instant::now();
    let (status, log) = hub.stop();
    let took = started.elapsed();
    signal("CONT");
    assert!(status.success(), "{log}");
    assert!(
        took < Duration::from_secs(15),
        "the hub took {took:?} to stop"
    );
    let line = log
        .lines()
        .find(|l| l.contains("were not stored in the stream"))
        .unwrap_or_else(|| panic!("nothing said of the unstored dumplings:\n{log}"));
    let unpublished = e2e_tests::log_field(line, "unpublished");
    let dropped = e2e_tests::log_field(line, "dropped_at_stop");
    assert!(
        (35..=40).contains(&(unpublished + dropped)),
        "35 sent while NATS was frozen (and maybe some before): {line}"
    );

    // NATS answering again while the hub stops: every dumpling handed over is stored.
    let hub = fleet_hub(&cluster, "hubStopB").await;
    signal("STOP");
    send(&hub, (101..=140).map(|n| numbered(n, 10))).await;
    let resume_later = signaller(&cluster);
    let resume = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        resume_later("CONT");
    });
    let (status, log) = hub.stop();
    let _ = resume.join();
    assert!(status.success(), "{log}");
    assert!(
        !log.contains("were not stored in the stream"),
        "lost although NATS came back within the grace:\n{log}"
    );
    let stopped = log
        .lines()
        .find(|l| l.contains("fleet: stopped"))
        .unwrap_or_else(|| panic!("no fleet summary:\n{log}"));
    assert_eq!(e2e_tests::log_field(stopped, "unpublished"), 0, "{stopped}");
    // The stream has all 40: a new hub's eater replays them.
    let hub = fleet_hub(&cluster, "hubStopC").await;
    let mut replay = support::connect(hub.eaters).await;
    let hello = serde_json::json!({ "eater_name": "replay", "nd_since_seq": 1 }).to_string();
    replay.send(Message::text(hello)).await.expect("hello");
    let read = read_until(&mut replay, 140, Duration::from_secs(20)).await;
    let ns: Vec<u64> = read
        .iter()
        .filter(|r| r.0 == "Real")
        .filter_map(|r| r.1)
        .filter(|n| *n > 100)
        .collect();
    assert_eq!(ns, (101..=140).collect::<Vec<_>>(), "{read:?}");
    let _ = hub.stop();
}

/// The `fleet` section of the status a new eater is welcomed with.
async fn welcome_fleet(hub: &Hub) -> Value {
    let mut ws = connect(hub.eaters).await;
    let hello = serde_json::json!({ "eater_name": "status" }).to_string();
    ws.send(Message::text(hello)).await.expect("eater hello");
    let message = support::next_data(&mut ws, Duration::from_secs(5))
        .await
        .expect("welcome status");
    let text = match message {
        Message::Text(t) => t.to_string(),
        other => panic!("welcome status is text: {other:?}"),
    };
    let status: Value = serde_json::from_str(&text).expect("status JSON");
    status["payload"]["fleet"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_outage_shows_in_metrics_and_in_the_status() {
    let Some(mut cluster) = Cluster::start(1) else {
        return;
    };
    let (hub, metrics) = fleet_hub_with_metrics(&cluster, "hubOut", &[]).await;
    let wait_for = |series: &str, value: f64| {
        let mut body = String::new();
        let seen = nats::wait_until(Duration::from_secs(30), || {
            body = scrape(metrics);
            e2e_tests::metric_sample(&body, series) == Some(value)
        });
        assert!(seen, "{series} never became {value}:\n{body}");
        body
    };

    wait_for("netdumplings_hub_fleet_nats_connected", 1.0);
    // The hub lists itself at its first status tick, which may come after the handshake.
    let body = wait_for("netdumplings_hub_fleet_hubs", 1.0);
    assert_eq!(
        e2e_tests::metric_sample(&body, "netdumplings_hub_fleet_nats_disconnects_total"),
        Some(0.0),
        "{body}"
    );
    e2e_tests::promtool_check(&body);
    let fleet = welcome_fleet(&hub).await;
    assert_eq!(fleet["nats"]["connected"], true, "{fleet}");
    assert!(fleet["nats"]["down_for"].is_null(), "{fleet}");

    // NATS killed: the hub says so in /metrics and in the status eaters get.
    cluster.kill(0);
    let body = wait_for("netdumplings_hub_fleet_nats_connected", 0.0);
    assert_eq!(
        e2e_tests::metric_sample(&body, "netdumplings_hub_fleet_nats_disconnects_total"),
        Some(1.0),
        "{body}"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let fleet = welcome_fleet(&hub).await;
    assert_eq!(fleet["nats"]["connected"], false, "{fleet}");
    assert!(
        fleet["nats"]["down_for"].as_f64().is_some_and(|s| s >= 1.0),
        "{fleet}"
    );
    assert_eq!(fleet["nats"]["disconnects"], 1, "{fleet}");
    let body = scrape(metrics);
    assert!(
        e2e_tests::metric_sample(&body, "netdumplings_hub_fleet_nats_down_seconds")
            .is_some_and(|s| s >= 1.0),
        "{body}"
    );

    // Back: connected again, the outage counted once.
    cluster.restart(0);
    let body = wait_for("netdumplings_hub_fleet_nats_connected", 1.0);
    assert_eq!(
        e2e_tests::metric_sample(&body, "netdumplings_hub_fleet_nats_down_seconds"),
        Some(0.0),
        "{body}"
    );
    let fleet = welcome_fleet(&hub).await;
    assert_eq!(fleet["nats"]["connected"], true, "{fleet}");
    let (status, log) = hub.stop();
    assert!(status.success(), "{log}");
    assert!(log.contains("NATS connection back up"), "{log}");
}

/// While NATS is frozen the publisher's queue fills and a kitchen connection stops
/// reading, so it cannot see its kitchen leave (the kitchen's FIN waits behind the bytes
/// the hub does not read): one kitchen that gave up and came back held all 8
/// `--max-kitchens` slots with its dead connections and was then refused. A kitchen whose
/// dumpling waits 10 s is now closed with 1013 "try again later": one still there is told
/// (and reconnects or fails over), one that left frees its slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kitchens_a_hub_cannot_serve_for_nats_are_closed_and_free_their_slots() {
    let Some(cluster) = Cluster::start(1) else {
        return;
    };
    let signal = signaller(&cluster);
    let (hub, metrics) =
        fleet_hub_with_metrics(&cluster, "hubSlots", &["--max-kitchens", "2"]).await;
    let sample = |series: &str| e2e_tests::metric_sample(&scrape(metrics), series);
    let kitchens = "netdumplings_hub_connections{role=\"kitchen\"}";
    signal("STOP");

    // Kitchen A floods the hub until it stops reading, and stays.
    let mut a = support::kitchen(hub.kitchens, r#"{"kitchen_name": "stays"}"#).await;
    let flood = async {
        for n in 0..8000 {
            if a.send(Message::text(numbered(n, 50))).await.is_err() {
                return false;
            }
        }
        true
    };
    let cut_off = matches!(
        tokio::time::timeout(Duration::from_secs(4), flood).await,
        Ok(false)
    );
    assert!(!cut_off, "kitchen A was cut off while flooding");
    // Kitchen B sends one dumpling, which waits behind A's, and vanishes.
    let mut b = support::kitchen(hub.kitchens, r#"{"kitchen_name": "leaves"}"#).await;
    b.send(Message::text(numbered(100_000, 50)))
        .await
        .expect("kitchen B's dumpling");
    assert!(
        nats::wait_until(Duration::from_secs(5), || sample(kitchens) == Some(2.0)),
        "both kitchens registered"
    );
    drop(b);

    // A is told why, within the 10 s bound (and some slack for a loaded machine).
    let close = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(message) = futures_util::StreamExt::next(&mut a).await {
            if let Ok(Message::Close(frame)) = message {
                return frame;
            }
        }
        None
    })
    .await
    .expect("kitchen A closed by the hub within 20 s")
    .expect("a close frame");
    assert_eq!(u16::from(close.code), 1013, "{close:?}");
    assert!(close.reason.contains("NATS unavailable"), "{close:?}");
    let mut now = None;
    let freed = nats::wait_until(Duration::from_secs(20), || {
        now = sample(kitchens);
        now == Some(0.0)
    });
    assert!(freed, "connections still held: {now:?}");
    // A at least (B's one dumpling may have found room in the publisher's queue when a
    // publish to the frozen server timed out; then B's end was read as usual).
    let stalled = sample("netdumplings_hub_fleet_kitchens_stalled_total");
    assert!(stalled.is_some_and(|n| n >= 1.0), "{stalled:?}");
    // The slots are free: a new kitchen is taken.
    let _c = support::kitchen(hub.kitchens, r#"{"kitchen_name": "new"}"#).await;
    assert!(
        nats::wait_until(Duration::from_secs(5), || sample(kitchens) == Some(1.0)),
        "a new kitchen registered"
    );
    signal("CONT");
    let (status, log) = hub.stop();
    assert!(status.success(), "{log}");
    assert!(
        log.contains("could not hand a dumpling to NATS for 10s"),
        "{log}"
    );
}
