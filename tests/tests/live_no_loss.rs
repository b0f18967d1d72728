//! No silent loss, live on `lo` (needs root or CAP_NET_RAW: skipped with a message
//! otherwise): a burst of UDP datagrams far faster than a slow chef
//! (`SlowUnderDeadlineChef`, 20 ms per batch) can take, then SIGINT at once, so packets are
//! still queued at shutdown. Every packet the capture received must be seen by the good
//! chef (`PacketCountChef`) or counted as dropped somewhere: by the chef (restarting,
//! failed, quarantined), at the capture queue, or still queued at shutdown.
//!
//! `received == seen + chef dropped + queue_dropped + shutdown_dropped + loopback_skipped`,
//! from the exit summary's per-chef status line and the capture statistics line.

use std::net::UdpSocket;
use std::path::PathBuf;
use std::process::Command;

use e2e_tests::{
    bin, hostile_release_dir, is_root, log_field as field, workspace_root, LiveProcess,
};

/// Datagrams in the burst.
const BURST: u64 = 30_000;

/// `target/hostile-chefs/.../slow_under_deadline_chef.wasm`, built if needed.
fn slow_chef() -> PathBuf {
    let wasm = hostile_release_dir().join("slow_under_deadline_chef.wasm");
    assert!(wasm.is_file(), "{} missing", wasm.display());
    wasm
}

/// The number before `what` in the summary's status line (`..., 123 seen, ...`).
fn before(line: &str, what: &str) -> u64 {
    let at = line
        .find(what)
        .unwrap_or_else(|| panic!("no {what:?} in {line}"));
    line[..at]
        .trim_end()
        .rsplit(' ')
        .next()
        .and_then(|n| n.trim_start_matches('(').parse().ok())
        .unwrap_or_else(|| panic!("no number before {what:?} in {line}"))
}

#[test]
fn every_received_packet_is_seen_or_counted_as_dropped() {
    if !is_root() {
        eprintln!(
            "SKIP every_received_packet_is_seen_or_counted_as_dropped: needs root (live \
             capture on lo)"
        );
        return;
    }
    let chef = slow_chef();
    let dir = workspace_root().join("target/kitchen-test-tmp/live-no-loss");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("chef dir");
    std::fs::copy(&chef, dir.join("slow_under_deadline_chef.wasm")).expect("stage chef");
    let receiver = UdpSocket::bind("127.0.0.1:0").expect("bind receiver");
    let port = receiver.local_addr().expect("addr").port();
    let filter = format!("udp port {port}");
    let mut sniff = LiveProcess::spawn(
        Command::new(bin("nd-sniff"))
            .args(["-i", "lo", "-f", &filter, "--stdout", "--no-hub", "-p", "1"])
            .args([
                "-n",
                "noloss",
                "--no-chef-watch",
                "--chef-deadline-ms",
                "200",
            ])
            .arg("-d")
            .arg(&dir)
            .args(["-c", "PacketCountChef", "-c", "SlowUnderDeadlineChef"])
            .env("RUST_LOG", "info"),
    );
    sniff.wait_until_sniffing();
    let sender = UdpSocket::bind("127.0.0.1:0").expect("bind sender");
    // Drain the receiver meanwhile so its buffer never refuses datagrams (not that it
    // matters to the capture, which sees them on lo either way).
    receiver.set_nonblocking(true).expect("nonblocking");
    let mut buf = [0u8; 64];
    for i in 0..BURST {
        let _ = sender.send_to(&i.to_be_bytes(), ("127.0.0.1", port));
        while receiver.recv(&mut buf).is_ok() {}
    }
    // At once: the slow chef has a backlog queued.
    let (stderr, capture) = sniff.interrupt_for_capture_statistics();
    let received = field(&capture, "received");
    let queue_dropped = field(&capture, "queue_dropped");
    let shutdown_dropped = field(&capture, "shutdown_dropped");
    let loopback = field(&capture, "loopback_skipped");
    let status_line = stderr
        .lines()
        .find(|l| l.contains(": chef PacketCountChef: "))
        .unwrap_or_else(|| panic!("no PacketCountChef summary line:\n{stderr}"));
    let seen = before(status_line, " seen,");
    let dropped = before(status_line, " dropped (");
    let shed = before(status_line, " shed)");
    eprintln!(
        "received {received}: PacketCountChef saw {seen}, dropped {dropped} ({shed} shed); queue dropped \
         {queue_dropped}, shutdown dropped {shutdown_dropped}, loopback skipped {loopback}"
    );
    // The slow chef too: whatever it shed or missed is counted.
    let slow_line = stderr
        .lines()
        .find(|l| l.contains(": chef SlowUnderDeadlineChef: "))
        .unwrap_or_else(|| panic!("no SlowUnderDeadlineChef summary line:\n{stderr}"));
    let (slow_seen, slow_dropped) = (before(slow_line, " seen,"), before(slow_line, " dropped ("));
    eprintln!(
        "SlowUnderDeadlineChef saw {slow_seen}, dropped {slow_dropped} ({} shed)",
        before(slow_line, " shed)")
    );
    assert_eq!(
        slow_seen + slow_dropped + queue_dropped + shutdown_dropped + loopback,
        received,
        "{slow_line}"
    );
    assert!(received > 0, "nothing captured:\n{stderr}");
    assert!(received <= BURST, "{received} > {BURST} sent");
    assert_eq!(
        seen + dropped + queue_dropped + shutdown_dropped + loopback,
        received,
        "packets lost without being counted:\n{capture}\n{status_line}"
    );
}
