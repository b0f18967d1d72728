//! Compatibility with the Python original (netdumplings 0.5.1), issue #4's "done when":
//! the original's own `nd-print` and `nd-hubdetails`, unchanged from its pip package, work
//! against our hub; our eaters work against the original hub.
//!
//! Needs the original installed by `python/setup-original.sh` (into `target/ndorig`);
//! every test skips with a message when it is not there.

#[path = "hub_support.rs"]
mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use e2e_tests::{bin, free_port, wait_for_port, workspace_root, ChildGuard};
use futures_util::SinkExt;
use support::*;
use tokio_tungstenite::tungstenite::Message;

const T: Duration = Duration::from_secs(20);

/// An executable of the original, or `None` (with a SKIP message).
fn original(name: &str) -> Option<PathBuf> {
    let path = workspace_root().join("target/ndorig/bin").join(name);
    if path.exists() {
        Some(path)
    } else {
        eprintln!(
            "SKIP: the original netdumplings is not installed (run python/setup-original.sh)"
        );
        None
    }
}

fn original_cmd(path: &PathBuf) -> Command {
    let mut cmd = Command::new(path);
    // A private cwd: `python -m`-style imports must not see stray files.
    cmd.current_dir(workspace_root().join("target"));
    // Unbuffered: a tool ended by SIGTERM (`ChildGuard::interrupt_then_terminate`) has
    // written everything it printed.
    cmd.env("PYTHONUNBUFFERED", "1");
    cmd
}

const PACKET: &str = r#"{"metadata": {"chef": "DNSLookupChef", "kitchen": "kitchen_a", "creation_time": 1795739862.5129113, "driver": "packet"}, "payload": {"lookup": {"hostname": "example.test", "when": 1795739862.5128865}}}"#;
const INTERVAL: &str = r#"{"metadata": {"chef": "PacketCountChef", "kitchen": "kitchen_a", "creation_time": 1795739858.1052768, "driver": "interval"}, "payload": {"packet_counts": {"Ethernet": 14, "IP": 14, "TCP": 14, "Raw": 6, "caf\u00e9": 1e-05, "big": 1e+16, "list": [1, 2.5, null, true, "\u2603"]}}}"#;

#[tokio::test]
async fn original_nd_print_works_against_our_hub_and_matches_ours() {
    let Some(orig_print) = original("nd-print") else {
        return;
    };
    let hub = Hub::start(&["-f", "60"]);
    let theirs = ChildGuard::spawn(
        "original nd-print",
        original_cmd(&orig_print).args(["--no-color", "-h", &hub.eater_hub(), "-k", "kitchen_a"]),
    );
    let ours = ChildGuard::spawn(
        "nd-print",
        Command::new(bin("nd-print")).args([
            "--no-color",
            "-h",
            &hub.eater_hub(),
            "-k",
            "kitchen_a",
        ]),
    );
    // Both connected (Python starts slowly).
    let s = status_until(hub.eaters, T, |s| s["dumpling_eater_count"] == 3).await;
    assert_eq!(s["dumpling_eater_count"], 3, "both eaters connected: {s}");
    let mut k = kitchen(
        hub.kitchens,
        r#"{"kitchen_name": "kitchen_a", "interface": "lo"}"#,
    )
    .await;
    k.send(Message::text(PACKET)).await.unwrap();
    k.send(Message::text(INTERVAL)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    ours.interrupt();
    let theirs = theirs.interrupt_then_terminate(T);
    let ours = ours.wait_output(T);
    let theirs_out = String::from_utf8_lossy(&theirs.stdout);
    let ours_out = String::from_utf8_lossy(&ours.stdout);
    assert!(
        theirs_out.contains("DNSLookupChef from kitchen_a"),
        "{theirs_out}"
    );
    assert_eq!(
        ours_out, theirs_out,
        "our nd-print prints what the original prints"
    );
    let theirs_err = String::from_utf8_lossy(&theirs.stderr);
    assert!(!theirs_err.contains("Invalid dumpling"), "{theirs_err}");
}

#[tokio::test]
async fn original_nd_hubdetails_works_against_our_hub_at_once() {
    let Some(orig) = original("nd-hubdetails") else {
        return;
    };
    let hub = Hub::start(&["-f", "60"]);
    let started = Instant::now();
    let out = ChildGuard::spawn(
        "original nd-hubdetails",
        original_cmd(&orig).args(["--no-color", "-h", &hub.eater_hub()]),
    )
    .wait_output(T);
    assert!(out.status.success());
    // With -f 60 the original hub would make it wait up to a minute; ours answers at once.
    assert!(started.elapsed() < Duration::from_secs(10));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let header = format!(
        "Connected to nd-hub at ws://{}\nWaiting for a SystemStatus dumpling...\n\n",
        hub.eater_hub()
    );
    assert!(stdout.starts_with(&header), "{stdout}");
    let payload: serde_json::Value = serde_json::from_str(&stdout[header.len()..]).unwrap();
    assert_eq!(
        payload["dumpling_eaters"][0]["info_from_eater"]["eater_name"],
        "detailseater"
    );
    let (_, log) = hub.stop();
    assert!(
        log.contains("detailseater connection closed: received 4102 dumpling eater is full"),
        "{log}"
    );
}

struct OriginalHub {
    _guard: ChildGuard,
    kitchens: std::net::SocketAddr,
    eaters: std::net::SocketAddr,
}

fn start_original_hub() -> Option<OriginalHub> {
    let exe = original("nd-hub")?;
    let (i, o) = (free_port(), free_port());
    let guard = ChildGuard::spawn(
        "original nd-hub",
        original_cmd(&exe).args([
            "-a",
            "127.0.0.1",
            "-i",
            &i.to_string(),
            "-o",
            &o.to_string(),
            "-f",
            "1",
        ]),
    );
    let kitchens = ([127, 0, 0, 1], i).into();
    let eaters = ([127, 0, 0, 1], o).into();
    assert!(wait_for_port(kitchens, T) && wait_for_port(eaters, T));
    Some(OriginalHub {
        _guard: guard,
        kitchens,
        eaters,
    })
}

#[tokio::test]
async fn our_eaters_work_against_the_original_hub() {
    let Some(orig) = start_original_hub() else {
        return;
    };
    let n = 20;
    let print = ChildGuard::spawn(
        "nd-print",
        Command::new(bin("nd-print")).args([
            "-h",
            &orig.eaters.to_string(),
            "--json",
            "-c",
            "BenchChef",
            "--count",
            &n.to_string(),
        ]),
    );
    // The original sends nothing on connect; give our eater time to register.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let mut k = kitchen(orig.kitchens, r#"{"kitchen_name": "k"}"#).await;
    let sent: Vec<String> = (0..n).map(|i| dumpling_text("k", i, 300)).collect();
    for d in &sent {
        k.send(Message::text(d.as_str())).await.unwrap();
    }
    let out = print.wait_output(T);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = std::str::from_utf8(&out.stdout).unwrap().lines().collect();
    assert_eq!(lines, sent);

    let out = ChildGuard::spawn(
        "nd-hubdetails",
        Command::new(bin("nd-hubdetails")).args(["-h", &orig.eaters.to_string(), "--no-color"]),
    )
    .wait_output(T);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("\"dumpling_kitchen_count\": 1"), "{stdout}");

    let status = ChildGuard::spawn(
        "nd-hubstatus",
        Command::new(bin("nd-hubstatus")).args(["-h", &orig.eaters.to_string(), "--no-color"]),
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    status.interrupt();
    let out = status.wait_output(T);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("  kitchens: 1  eaters: "));
}

#[tokio::test]
async fn our_kitchen_sends_text_frames_to_the_original_hub() {
    // Our kitchen asks every hub for binary frames (`nd-binary-frames`); the original does
    // not answer the header, so the kitchen must keep the text frames its eaters expect.
    let capture = e2e_tests::test_data("original/loopback_dns_arp_http.pcap");
    if !capture.exists() {
        eprintln!("SKIP: {} missing", capture.display());
        return;
    }
    let Some(orig) = start_original_hub() else {
        return;
    };
    // The original's first status (within `-f 1`) is this raw eater's welcome.
    let (mut raw, _) = eater(orig.eaters, "rawtap").await;
    let kitchen = ChildGuard::spawn(
        "nd-sniff",
        Command::new(bin("nd-sniff")).arg("-r").arg(&capture).args([
            "-h",
            &orig.kitchens.to_string(),
            "--stdout",
            "-p",
            "3600",
            "-n",
            "test_kitchen",
        ]),
    )
    .wait_output(T);
    assert!(
        kitchen.status.success(),
        "nd-sniff: {}",
        String::from_utf8_lossy(&kitchen.stderr)
    );
    let produced: Vec<String> = String::from_utf8(kitchen.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect();
    assert!(!produced.is_empty(), "the kitchen made dumplings");
    let mut got = Vec::new();
    let deadline = Instant::now() + T;
    while got.len() < produced.len() && Instant::now() < deadline {
        match next_dumpling(&mut raw, Duration::from_secs(5)).await {
            Some(Message::Text(t)) => got.push(t.to_string()),
            Some(other) => panic!("the original hub forwarded a non-text frame: {other:?}"),
            None => break,
        }
    }
    assert_eq!(got, produced, "text frames, count and bytes");
}
