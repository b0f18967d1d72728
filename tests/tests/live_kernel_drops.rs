//! The kernel's drop count is per packet on `lo` (needs root or CAP_NET_RAW: skipped with a
//! message otherwise). The kitchen is frozen (SIGSTOP) while a burst of UDP datagrams to
//! 127.0.0.1 overflows its capture buffer, then resumed, left to drain, and stopped; every
//! datagram sent is then either received by the kitchen or counted as dropped by the
//! kernel, once: `received + kernel_dropped == sent`.
//!
//! The kernel hands a packet socket both the outgoing and the incoming copy of each
//! loopback packet; libpcap discards the outgoing ones it reads, but both filled the buffer
//! and both were counted when it overflowed, so `kernel_dropped` was twice the real loss
//! (the capture now has the kernel not queue the outgoing copies on a loopback interface,
//! `capture/src/live.rs`).

use std::net::UdpSocket;
use std::process::Command;
use std::time::Duration;

use e2e_tests::{bin, is_root, log_field as field, workspace_root, LiveProcess};

/// Datagrams sent while the kitchen is frozen: far more than the default 2 MiB kernel
/// buffer holds.
const SENT: u64 = 100_000;

#[test]
fn kernel_dropped_counts_each_lost_loopback_packet_once() {
    if !is_root() {
        eprintln!(
            "SKIP kernel_dropped_counts_each_lost_loopback_packet_once: needs root (live \
             capture on lo)"
        );
        return;
    }
    // A port of our own range that is free; the socket never reads (the capture sees the
    // datagrams on lo either way) and keeps the port ours.
    let receiver = (42300..42400)
        .find_map(|p| UdpSocket::bind(("127.0.0.1", p)).ok())
        .expect("a free UDP port in 42300-42399");
    let port = receiver.local_addr().expect("addr").port();
    let dir = workspace_root().join("target/kitchen-test-tmp/live-kernel-drops");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("chef dir");
    let filter = format!("udp and dst port {port}");
    let mut sniff = LiveProcess::spawn(
        Command::new(bin("nd-sniff"))
            .args(["-i", "lo", "-f", &filter, "--stdout", "--no-hub", "-p", "1"])
            .args(["-n", "kdrops", "--no-chef-watch", "-c", "PacketCountChef"])
            .arg("-d")
            .arg(&dir)
            .env("RUST_LOG", "info"),
    );
    sniff.wait_until_sniffing();

    sniff.signal("STOP");
    let sender = UdpSocket::bind("127.0.0.1:0").expect("bind sender");
    let mut sent = 0u64;
    for i in 0..SENT {
        if sender
            .send_to(&i.to_be_bytes(), ("127.0.0.1", port))
            .is_ok()
        {
            sent += 1;
        }
    }
    sniff.signal("CONT");
    // Let the kitchen read what the kernel kept (a few thousand packets), then stop it.
    std::thread::sleep(Duration::from_secs(3));
    let (_, capture) = sniff.interrupt_for_capture_statistics();
    let received = field(&capture, "received");
    let kernel_dropped = field(&capture, "kernel_dropped");
    eprintln!("sent {sent}: received {received}, kernel dropped {kernel_dropped}");
    assert_eq!(sent, SENT, "the sender itself failed some datagrams");
    assert!(
        kernel_dropped > 0,
        "nothing was dropped: the freeze did not overflow the buffer, the test shows \
         nothing:\n{capture}"
    );
    assert_eq!(
        received + kernel_dropped,
        sent,
        "every datagram is received or counted dropped once:\n{capture}"
    );
    drop(receiver);
}
