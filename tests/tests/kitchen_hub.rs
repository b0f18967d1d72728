//! The kitchen's hub connection against the real `nd-hub` (issue #3 item 5), with a raw
//! tokio-tungstenite eater in the test: hub down at start, hub killed and restarted
//! mid-run (exact accounting), over-size dumplings refused at the kitchen, and SIGINT /
//! SIGTERM mid-run (final poke, flush, clean close, exit 0).
//!
//! Pacing: the kitchen replays a FIFO (`-r <fifo>`; its reader never seeks) that the test
//! writes packet by packet, taken from the original's sample capture with rewritten
//! timestamps (100 ms apart, so a `-p 1` poke falls every 10 packets). Between writes the
//! kitchen is idle, so the test can kill the hub when nothing is in flight.
//!
//! Where the kitchen reports its accounting: every dumpling it produces is also printed on
//! stdout (`--stdout`), its exit summary (stderr) says `summary: ... N dumplings`, and the
//! `hub delivery` line says `sent=.. dropped=.. unsent=.. connections=..`.
//!
//! A "gate" (a TCP forwarder in the test, 127.0.0.1 only) sits between the kitchen and the
//! hub's kitchen port, so the test decides when the kitchen can reach a restarted hub:
//! after the eater has reconnected (a dumpling forwarded before any eater is connected is
//! dropped by the hub, by design, which would make the accounting a race).

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e_tests::{
    bin, free_port, test_data, wait_for_port, workspace_root, Lines, LiveProcess as Proc,
};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

const KITCHEN: &str = "hub_test_kitchen";

// ---------------------------------------------------------------------------------------
// Packets.

/// The sample capture as (pcap global header, records with timestamps rewritten to
/// `T0 + i * 100 ms`, cycling through its 50 packets for `n` records).
fn packets(n: usize) -> (Vec<u8>, Vec<Vec<u8>>) {
    let bytes = std::fs::read(test_data("original/loopback_dns_arp_http.pcap"))
        .expect("tests/data/original/loopback_dns_arp_http.pcap");
    assert_eq!(
        &bytes[..4],
        &[0xd4, 0xc3, 0xb2, 0xa1],
        "little-endian µs pcap"
    );
    let header = bytes[..24].to_vec();
    let mut originals = Vec::new();
    let mut at = 24;
    while at + 16 <= bytes.len() {
        let incl = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
        let end = at + 16 + incl;
        assert!(end <= bytes.len(), "truncated capture");
        originals.push(bytes[at..end].to_vec());
        at = end;
    }
    assert_eq!(originals.len(), 50);
    let t0: u64 = 1_700_000_000_000_000; // µs
    let out = (0..n)
        .map(|i| {
            let mut r = originals[i % originals.len()].clone();
            let ts = t0 + i as u64 * 100_000;
            r[0..4].copy_from_slice(&((ts / 1_000_000) as u32).to_le_bytes());
            r[4..8].copy_from_slice(&((ts % 1_000_000) as u32).to_le_bytes());
            r
        })
        .collect();
    (header, out)
}

/// A fresh FIFO under `target/kitchen-hub/`.
fn fifo(name: &str) -> PathBuf {
    let dir = workspace_root().join("target/kitchen-hub");
    std::fs::create_dir_all(&dir).expect("mkdir target/kitchen-hub");
    let path = dir.join(format!("{name}-{}.fifo", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let ok = Command::new("mkfifo")
        .arg(&path)
        .status()
        .expect("run mkfifo");
    assert!(ok.success(), "mkfifo {}", path.display());
    path
}

// ---------------------------------------------------------------------------------------
// Processes.

/// `nd-hub -a 127.0.0.1 -i IN -o OUT -f 60`, waiting until both ports accept.
fn start_hub(kitchens: u16, eaters: u16) -> Proc {
    let hub = Proc::spawn(
        Command::new(bin("nd-hub"))
            .args(["-a", "127.0.0.1", "-i", &kitchens.to_string()])
            .args(["-o", &eaters.to_string(), "-f", "60"])
            .env("RUST_LOG", "info"),
    );
    for port in [kitchens, eaters] {
        assert!(
            wait_for_port(
                SocketAddr::from(([127, 0, 0, 1], port)),
                Duration::from_secs(10)
            ),
            "nd-hub did not listen on {port}"
        );
    }
    hub
}

/// `nd-sniff -r <fifo> --stdout -h 127.0.0.1:<port> -p 1` plus `extra`.
fn start_kitchen(fifo: &Path, hub_port: u16, extra: &[&str]) -> Proc {
    Proc::spawn(
        Command::new(bin("nd-sniff"))
            .arg("-r")
            .arg(fifo)
            .args(["--stdout", "-p", "1", "-f", "", "-n", KITCHEN])
            .args(["-h", &format!("127.0.0.1:{hub_port}")])
            .arg("--chef-cache-dir")
            .arg(workspace_root().join("target/kitchen-hub/chef-cache"))
            .args(extra)
            .env("RUST_LOG", "info"),
    )
}

/// Writes the pcap header, then packets on demand, into a FIFO (opening it blocks until
/// the kitchen opens its end, so this runs on its own thread).
struct Feeder {
    tx: std::sync::mpsc::Sender<Option<Vec<u8>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Feeder {
    fn start(path: &Path, header: Vec<u8>) -> Feeder {
        let (tx, rx) = std::sync::mpsc::channel::<Option<Vec<u8>>>();
        let path = path.to_owned();
        let thread = std::thread::spawn(move || {
            let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(&path) else {
                return;
            };
            if f.write_all(&header).is_err() {
                return;
            }
            while let Ok(Some(bytes)) = rx.recv() {
                if f.write_all(&bytes).and_then(|_| f.flush()).is_err() {
                    return;
                }
            }
        });
        Feeder {
            tx,
            thread: Some(thread),
        }
    }

    fn send(&self, records: &[Vec<u8>]) {
        for r in records {
            let _ = self.tx.send(Some(r.clone()));
        }
    }

    /// End of file.
    fn close(mut self) {
        let _ = self.tx.send(None);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Wait until `count()` exceeds `above` and then has not changed for `quiet` (at most
/// `limit` in all); returns it.
fn wait_stable(count: impl Fn() -> usize, above: usize, quiet: Duration, limit: Duration) -> usize {
    let deadline = Instant::now() + limit;
    wait_until(|| count() > above, limit);
    let mut last = count();
    let mut since = Instant::now();
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        let now = count();
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= quiet {
            break;
        }
    }
    last
}

/// Wait until `check()` holds, at most `limit`.
fn wait_until(check: impl Fn() -> bool, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    check()
}

// ---------------------------------------------------------------------------------------
// The eater and the gate.

/// A raw eater that (re)connects to the hub's eater port and records every dumpling of
/// [`KITCHEN`], text as received.
struct Eater {
    received: Lines,
    /// Hellos sent on successful connections so far.
    sessions: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Eater {
    fn start(port: u16) -> Eater {
        let received: Lines = Arc::default();
        let sessions = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s, st) = (received.clone(), sessions.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let url = format!("ws://127.0.0.1:{port}/");
                while !st.load(Ordering::Relaxed) {
                    let Ok(Ok((mut ws, _))) = tokio::time::timeout(
                        Duration::from_secs(2),
                        tokio_tungstenite::connect_async(url.as_str()),
                    )
                    .await
                    else {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    };
                    if ws
                        .send(Message::text(r#"{"eater_name": "t"}"#))
                        .await
                        .is_err()
                    {
                        continue;
                    }
                    // The hub's welcome status comes first: then we are registered.
                    let mut welcomed = false;
                    while !st.load(Ordering::Relaxed) {
                        match tokio::time::timeout(Duration::from_millis(100), ws.next()).await {
                            Err(_) => continue,
                            Ok(Some(Ok(Message::Text(t)))) => {
                                if !welcomed {
                                    welcomed = true;
                                    s.fetch_add(1, Ordering::SeqCst);
                                }
                                let v: serde_json::Value =
                                    serde_json::from_str(t.as_str()).unwrap_or_default();
                                if v["metadata"]["kitchen"] == KITCHEN {
                                    r.lock().unwrap().push(t.to_string());
                                }
                            }
                            Ok(Some(Ok(_))) => {}
                            Ok(_) => break,
                        }
                    }
                }
            });
        });
        Eater {
            received,
            sessions,
            stop,
            thread: Some(thread),
        }
    }

    fn count(&self) -> usize {
        self.received.lock().unwrap().len()
    }

    fn wait_session(&self, n: u64, limit: Duration) {
        assert!(
            wait_until(|| self.sessions.load(Ordering::SeqCst) >= n, limit),
            "the eater did not (re)connect to the hub"
        );
    }

    fn finish(mut self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.received.lock().unwrap().clone()
    }
}

/// A TCP forwarder `127.0.0.1:<port>` → `upstream`; closed, it accepts and drops at once.
struct Gate {
    port: u16,
    open: Arc<AtomicBool>,
}

impl Gate {
    fn start(upstream: u16, open: bool) -> Gate {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind gate");
        let port = listener.local_addr().expect("addr").port();
        let flag = Arc::new(AtomicBool::new(open));
        let f = flag.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                listener.set_nonblocking(true).expect("nonblocking");
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                loop {
                    let Ok((mut down, _)) = listener.accept().await else {
                        return;
                    };
                    if !f.load(Ordering::SeqCst) {
                        drop(down);
                        continue;
                    }
                    tokio::spawn(async move {
                        if let Ok(mut up) =
                            tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                        {
                            let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                        }
                    });
                }
            });
        });
        Gate { port, open: flag }
    }

    fn set_open(&self, open: bool) {
        self.open.store(open, Ordering::SeqCst);
    }
}

/// Two distinct free ports.
fn two_ports() -> (u16, u16) {
    loop {
        let (a, b) = (free_port(), free_port());
        if a != b {
            return (a, b);
        }
    }
}

/// `key=N` from the kitchen's `hub delivery` line.
fn delivery(stderr: &str, key: &str) -> u64 {
    let line = stderr
        .lines()
        .find(|l| l.contains("hub delivery"))
        .unwrap_or_else(|| panic!("no `hub delivery` line in:\n{stderr}"));
    e2e_tests::log_field(line, key)
}

/// `N` from the summary's `..., N dumplings`.
fn summary_dumplings(stderr: &str) -> u64 {
    let line = stderr
        .lines()
        .find(|l| l.contains("summary:") && l.contains("dumplings"))
        .unwrap_or_else(|| panic!("no summary line in:\n{stderr}"));
    let before = line.trim_end().trim_end_matches("dumplings").trim_end();
    before
        .rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no dumpling count in {line}"))
}

/// Per chef, the dumplings in order.
fn by_chef(lines: &[String]) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut m: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for l in lines {
        let v: serde_json::Value = serde_json::from_str(l).expect("dumpling JSON");
        let chef = v["metadata"]["chef"].as_str().unwrap_or("?").to_owned();
        m.entry(chef).or_default().push(l.clone());
    }
    m
}

// ---------------------------------------------------------------------------------------
// Tests.

#[test]
fn hub_down_at_start_then_up_gets_the_hello_then_everything_in_order() {
    let (hub_in, hub_out) = two_ports();
    let gate = Gate::start(hub_in, false);
    let path = fifo("down-at-start");
    let (header, recs) = packets(120);
    let mut kitchen = start_kitchen(&path, gate.port, &[]);
    let feeder = Feeder::start(&path, header);
    // No hub: the kitchen keeps reading and producing (buffered).
    feeder.send(&recs[..60]);
    let produced_early = wait_stable(
        || kitchen.stdout_count(),
        0,
        Duration::from_millis(1500),
        Duration::from_secs(30),
    );
    assert!(
        produced_early > 0,
        "the kitchen produced nothing while the hub was down:\n{}",
        kitchen.stderr_text()
    );
    // The hub comes up; the eater connects first, then the kitchen may.
    let mut hub = start_hub(hub_in, hub_out);
    let eater = Eater::start(hub_out);
    eater.wait_session(1, Duration::from_secs(10));
    gate.set_open(true);
    assert!(
        wait_until(|| eater.count() >= produced_early, Duration::from_secs(30)),
        "the buffered dumplings did not arrive: {} of {produced_early}\n{}",
        eater.count(),
        kitchen.stderr_text()
    );
    feeder.send(&recs[60..]);
    feeder.close();
    let status = kitchen.wait(Duration::from_secs(60));
    let stderr = kitchen.stderr_text();
    assert!(status.success(), "exit {status:?}:\n{stderr}");
    let produced = kitchen.stdout.lock().unwrap().clone();
    assert!(wait_until(
        || eater.count() >= produced.len(),
        Duration::from_secs(10)
    ));
    let received = eater.finish();
    // Everything, in the kitchen's order (byte for byte).
    assert_eq!(received.len(), produced.len(), "{stderr}");
    assert_eq!(received, produced);
    assert_eq!(summary_dumplings(&stderr), produced.len() as u64);
    assert_eq!(delivery(&stderr, "sent"), produced.len() as u64);
    assert_eq!(delivery(&stderr, "dropped"), 0);
    // The hub registered the kitchen by its hello (the hub refuses a connection whose first
    // frame is not a hello, so the dumplings arriving at all proves it came first).
    hub.signal("TERM");
    hub.wait(Duration::from_secs(10));
    let hub_log = hub.stderr_text();
    assert!(
        hub_log.contains(&format!(
            "Received dumpling kitchen connection from {KITCHEN}"
        )),
        "{hub_log}"
    );
    assert!(!hub_log.contains("bad hello"), "{hub_log}");
}

#[test]
fn hub_killed_and_restarted_mid_run_loses_only_what_the_kitchen_reports() {
    let (hub_in, hub_out) = two_ports();
    let gate = Gate::start(hub_in, true);
    let mut hub = start_hub(hub_in, hub_out);
    let eater = Eater::start(hub_out);
    eater.wait_session(1, Duration::from_secs(10));
    let path = fifo("restart");
    let (header, recs) = packets(150);
    let mut kitchen = start_kitchen(&path, gate.port, &[]);
    let feeder = Feeder::start(&path, header);

    // Phase 1: hub up.
    feeder.send(&recs[..50]);
    let n1 = wait_stable(
        || kitchen.stdout_count(),
        0,
        Duration::from_millis(1500),
        Duration::from_secs(30),
    );
    assert!(n1 > 0);
    assert!(
        wait_until(|| eater.count() >= n1, Duration::from_secs(20)),
        "phase 1: {} of {n1} arrived",
        eater.count()
    );

    // Phase 2: the hub is killed (SIGKILL, nothing in flight); the kitchen buffers.
    gate.set_open(false);
    let _ = hub.child.kill();
    let _ = hub.child.wait();
    std::thread::sleep(Duration::from_millis(500));
    feeder.send(&recs[50..100]);
    let n2 = wait_stable(
        || kitchen.stdout_count(),
        n1,
        Duration::from_millis(1500),
        Duration::from_secs(30),
    );
    assert!(n2 > n1, "nothing produced while the hub was down");

    // Phase 3: a new hub on the same ports; the eater reconnects, then the kitchen may.
    let mut hub2 = start_hub(hub_in, hub_out);
    eater.wait_session(2, Duration::from_secs(15));
    gate.set_open(true);
    assert!(
        wait_until(|| eater.count() >= n2, Duration::from_secs(30)),
        "after the restart: {} of {n2} arrived\n{}",
        eater.count(),
        kitchen.stderr_text()
    );
    feeder.send(&recs[100..]);
    feeder.close();
    let status = kitchen.wait(Duration::from_secs(60));
    let stderr = kitchen.stderr_text();
    let produced = kitchen.stdout.lock().unwrap().clone();
    let lost = delivery(&stderr, "dropped") + delivery(&stderr, "unsent");
    wait_until(
        || eater.count() as u64 >= produced.len() as u64 - lost,
        Duration::from_secs(10),
    );
    let received = eater.finish();
    assert_eq!(
        summary_dumplings(&stderr),
        produced.len() as u64,
        "{stderr}"
    );
    assert_eq!(
        received.len() as u64,
        produced.len() as u64 - lost,
        "received = produced - reported losses\n{stderr}"
    );
    assert!(
        delivery(&stderr, "connections") >= 2,
        "the kitchen did not reconnect:\n{stderr}"
    );
    // Order per chef kept (and here, with nothing lost, every dumpling).
    let (want, got) = (by_chef(&produced), by_chef(&received));
    if lost == 0 {
        assert_eq!(got, want);
        assert!(status.success(), "exit {status:?}:\n{stderr}");
    } else {
        for (chef, got) in &got {
            let want = &want[chef];
            let mut it = want.iter();
            for d in got {
                assert!(it.any(|w| w == d), "{chef}: out of order or unknown: {d}");
            }
        }
    }
    hub2.signal("TERM");
    hub2.wait(Duration::from_secs(10));
}

/// The hostile suite's `HugeOutputChef` (one 4 MiB payload per call), built on demand.
fn huge_output_chef() -> PathBuf {
    let root = workspace_root();
    let wasm = root.join("target/hostile-chefs/wasm32-wasip2/release/huge_output_chef.wasm");
    if !wasm.exists() {
        let ok = Command::new("bash")
            .arg(root.join("tests/hostile-chefs/build.sh"))
            .arg("--locked")
            .current_dir(&root)
            .status()
            .expect("run tests/hostile-chefs/build.sh");
        assert!(ok.success(), "building the hostile chefs failed");
    }
    wasm
}

#[test]
fn dumplings_over_1_mib_are_refused_at_the_kitchen() {
    let (hub_in, hub_out) = two_ports();
    let mut hub = start_hub(hub_in, hub_out);
    let eater = Eater::start(hub_out);
    eater.wait_session(1, Duration::from_secs(10));
    let dir = workspace_root().join(format!("target/kitchen-hub/huge-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::copy(huge_output_chef(), dir.join("huge_output_chef.wasm")).expect("copy chef");
    let mut kitchen = Proc::spawn(
        Command::new(bin("nd-sniff"))
            .arg("-r")
            .arg(test_data("original/loopback_dns_arp_http.pcap"))
            .args(["-p", "1", "-f", "", "-n", KITCHEN, "--chef-cache-dir"])
            .arg(workspace_root().join("target/kitchen-hub/chef-cache"))
            .args(["-h", &format!("127.0.0.1:{hub_in}")])
            .arg("-d")
            .arg(&dir)
            .env("RUST_LOG", "info"),
    );
    let status = kitchen.wait(Duration::from_secs(60));
    let stderr = kitchen.stderr_text();
    assert!(status.success(), "exit {status:?}:\n{stderr}");
    let sent = delivery(&stderr, "sent") as usize;
    assert!(sent > 0);
    assert!(wait_until(
        || eater.count() >= sent,
        Duration::from_secs(10)
    ));
    let received = eater.finish();
    assert_eq!(received.len(), sent);
    // A clear log line: the chef, the size, the limit.
    let refused: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("HugeOutputChef") && l.contains("byte limit"))
        .collect();
    assert!(!refused.is_empty(), "no refusal line:\n{stderr}");
    assert!(
        refused[0].contains("4194") || refused[0].contains("refused a"),
        "{}",
        refused[0]
    );
    assert!(received.iter().all(|d| !d.contains("HugeOutputChef")));
    assert!(received.iter().all(|d| d.len() <= 1 << 20));
    // The hub never saw an over-size message (it would close the kitchen with 1009).
    hub.signal("TERM");
    hub.wait(Duration::from_secs(10));
    let hub_log = hub.stderr_text();
    assert!(!hub_log.contains("over the size cap"), "{hub_log}");
    assert!(
        hub_log.contains(&format!(
            "Dumpling kitchen {KITCHEN} connection closed: received 1000"
        )),
        "{hub_log}"
    );
}

/// Stream packets into a FIFO until told to stop (or the reader goes away).
fn stream_packets(path: &Path, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<usize> {
    let path = path.to_owned();
    std::thread::spawn(move || {
        let (header, recs) = packets(5000);
        let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(&path) else {
            return 0;
        };
        if f.write_all(&header).is_err() {
            return 0;
        }
        let mut n = 0;
        for r in &recs {
            if stop.load(Ordering::Relaxed) || f.write_all(r).and_then(|_| f.flush()).is_err() {
                break;
            }
            n += 1;
            std::thread::sleep(Duration::from_millis(5));
        }
        n
    })
}

fn signal_mid_run(sig: &str) {
    let (hub_in, hub_out) = two_ports();
    let mut hub = start_hub(hub_in, hub_out);
    let eater = Eater::start(hub_out);
    eater.wait_session(1, Duration::from_secs(10));
    let path = fifo(&format!("signal-{sig}"));
    let mut kitchen = start_kitchen(&path, hub_in, &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = stream_packets(&path, stop.clone());
    assert!(
        wait_until(|| eater.count() >= 20, Duration::from_secs(30)),
        "no dumplings reached the eater:\n{}",
        kitchen.stderr_text()
    );
    kitchen.signal(sig);
    let status = kitchen.wait(Duration::from_secs(30));
    stop.store(true, Ordering::Relaxed);
    let _ = writer.join();
    let stderr = kitchen.stderr_text();
    assert_eq!(
        status.code(),
        Some(0),
        "SIG{sig}: exit {status:?}:\n{stderr}"
    );
    let produced = kitchen.stdout.lock().unwrap().clone();
    assert!(wait_until(
        || eater.count() >= produced.len(),
        Duration::from_secs(10)
    ));
    let received = eater.finish();
    // Everything produced was flushed to the hub, the final poke included.
    assert_eq!(delivery(&stderr, "sent"), produced.len() as u64, "{stderr}");
    assert_eq!(received, produced);
    let last = produced.last().expect("dumplings");
    assert!(last.contains("\"driver\":\"interval\""), "{last}");
    // The hub saw a close frame (1000), not a reset.
    hub.signal("TERM");
    hub.wait(Duration::from_secs(10));
    let hub_log = hub.stderr_text();
    assert!(
        hub_log.contains(&format!(
            "Dumpling kitchen {KITCHEN} connection closed: received 1000"
        )),
        "{hub_log}"
    );
}

#[test]
fn sigint_mid_run_flushes_and_closes_cleanly() {
    signal_mid_run("INT");
}

#[test]
fn sigterm_mid_run_flushes_and_closes_cleanly() {
    signal_mid_run("TERM");
}

/// A FIFO nobody writes to blocks the kitchen's `open`; a pipe with no bytes yet blocks its
/// first read. Either way one signal ends the run (exit 0, "nothing was read"), no hub
/// needed and no second signal.
#[test]
fn a_signal_before_the_input_starts_ends_the_run() {
    // HUP too: a closed terminal or ssh session ends the run cleanly (it killed it).
    for sig in ["TERM", "INT", "HUP"] {
        let path = fifo(&format!("never-written-{sig}"));
        let mut kitchen = Proc::spawn(
            Command::new(bin("nd-sniff"))
                .arg("-r")
                .arg(&path)
                .args(["--stdout", "--no-hub", "-n", KITCHEN])
                .arg("--chef-cache-dir")
                .arg(workspace_root().join("target/kitchen-hub/chef-cache"))
                .env("RUST_LOG", "info"),
        );
        assert!(
            wait_until(
                || kitchen.stderr_text().contains("to start (a pipe or FIFO"),
                Duration::from_secs(30)
            ),
            "SIG{sig}: no waiting line:\n{}",
            kitchen.stderr_text()
        );
        kitchen.signal(sig);
        let status = kitchen.wait(Duration::from_secs(10));
        let stderr = kitchen.stderr_text();
        assert_eq!(status.code(), Some(0), "SIG{sig}: {status:?}\n{stderr}");
        assert!(
            stderr.contains("Caught a signal while waiting for")
                && stderr.contains("nothing was read"),
            "SIG{sig}:\n{stderr}"
        );
        let _ = std::fs::remove_file(&path);
    }
}

/// Ctrl-C ended the run and the kitchen waits (`--flush-timeout`) for a hub that is down: a
/// second Ctrl-C ends that wait with the summary and the loss line (it exited at once with
/// 130, saying nothing of the dumplings still queued); a third would exit at once.
#[test]
fn a_second_signal_ends_the_wait_for_the_hub_with_the_summary() {
    let hub_port = free_port(); // nothing listens: the hub is down
    let path = fifo("second-signal");
    let (header, recs) = packets(40);
    let mut kitchen = start_kitchen(&path, hub_port, &["--flush-timeout", "600"]);
    let feeder = Feeder::start(&path, header);
    feeder.send(&recs);
    assert!(
        wait_until(|| kitchen.stdout_count() > 0, Duration::from_secs(30)),
        "no dumplings:\n{}",
        kitchen.stderr_text()
    );
    kitchen.signal("TERM");
    assert!(
        wait_until(
            || kitchen
                .stderr_text()
                .contains("dumplings to the hub (up to"),
            Duration::from_secs(30)
        ),
        "no wait for the hub after the first signal:\n{}",
        kitchen.stderr_text()
    );
    let second = Instant::now();
    kitchen.signal("TERM");
    let status = kitchen.wait(Duration::from_secs(30));
    let ended_after = second.elapsed();
    feeder.close();
    let stderr = kitchen.stderr_text();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        ended_after < Duration::from_secs(20),
        "{ended_after:?}\n{stderr}"
    );
    assert!(!stderr.contains("second signal; exiting now"), "{stderr}");
    let produced = kitchen.stdout_count() as u64;
    let lost = delivery(&stderr, "unsent") + delivery(&stderr, "dropped");
    assert!(
        lost > 0 && lost <= produced,
        "{lost} of {produced}:\n{stderr}"
    );
    assert_eq!(delivery(&stderr, "sent"), 0, "{stderr}");
    assert!(
        stderr.contains("still queued when a signal ended the wait"),
        "{stderr}"
    );
}

/// A hub that stops reading (its host froze, or a federated hub waits for NATS) with
/// dumplings in its socket buffers: the kitchen counted them as sent, waited 2 s for the
/// close reply whatever `--flush-timeout` said, and exited 0 (the probe lost half of them).
/// Now the hub's pongs to the kitchen's counting pings confirm what it read, the close
/// waits up to `--flush-timeout`, and what was never confirmed is counted as possibly
/// lost: the kitchen says so and exits 1.
#[test]
fn a_hub_that_stops_reading_makes_the_kitchen_count_what_it_never_confirmed() {
    let (hub_in, hub_out) = two_ports();
    let hub = start_hub(hub_in, hub_out);
    let path = fifo("frozen");
    let (header, recs) = packets(100);
    let mut kitchen = start_kitchen(&path, hub_in, &["--flush-timeout", "3"]);
    let feeder = Feeder::start(&path, header);
    feeder.send(&recs[..50]);
    let before = wait_stable(
        || kitchen.stdout_count(),
        0,
        Duration::from_millis(1500),
        Duration::from_secs(30),
    );
    assert!(before > 0, "no dumplings before the freeze");
    // Frozen: its sockets stay open, nothing is read or answered.
    hub.signal("STOP");
    feeder.send(&recs[50..]);
    feeder.close();
    let started = Instant::now();
    let status = kitchen.wait(Duration::from_secs(30));
    let waited = started.elapsed();
    hub.signal("CONT");
    let stderr = kitchen.stderr_text();
    let made = summary_dumplings(&stderr);
    let sent = delivery(&stderr, "sent");
    let unconfirmed = delivery(&stderr, "unconfirmed");
    assert!(
        made > before as u64,
        "nothing made after the freeze:\n{stderr}"
    );
    assert_eq!(sent, made, "{stderr}");
    assert!(
        unconfirmed > 0 && unconfirmed <= sent,
        "unconfirmed={unconfirmed} of sent={sent}:\n{stderr}"
    );
    // At least what was made while the hub was frozen.
    assert!(
        unconfirmed >= made - before as u64,
        "unconfirmed={unconfirmed}, made while frozen {}:\n{stderr}",
        made - before as u64
    );
    assert!(stderr.contains("never confirmed"), "{stderr}");
    assert_eq!(status.code(), Some(1), "{stderr}");
    // It waited for the close reply for about --flush-timeout, not 2 s, nor forever.
    assert!(
        waited >= Duration::from_millis(2500) && waited < Duration::from_secs(20),
        "waited {waited:?}"
    );
}
