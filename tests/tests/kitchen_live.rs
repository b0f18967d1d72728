//! Live capture through the real `nd-sniff` on `lo` (needs root or CAP_NET_RAW: skipped
//! with a message otherwise): exactly N UDP datagrams sent by the test to a test-chosen
//! port on 127.0.0.1 are counted by the built-in `PacketCountChef` (its final interval
//! dumpling, made by the final poke after SIGINT). Also the two start-up failures an
//! operator meets first: an unknown interface (non-zero exit, the real interfaces listed)
//! and a bad filter (libpcap's own message, non-zero exit).

use std::net::UdpSocket;
use std::process::Command;
use std::time::{Duration, Instant};

use e2e_tests::{bin, is_root, LiveProcess};

/// `nd-sniff ARGS` with live output lines (`RUST_LOG=info`).
fn start_sniff(args: &[&str]) -> LiveProcess {
    LiveProcess::spawn(
        Command::new(bin("nd-sniff"))
            .args(args)
            .env("RUST_LOG", "info"),
    )
}

#[test]
fn live_capture_on_lo_counts_exactly_the_datagrams_sent() {
    if !is_root() {
        eprintln!("SKIP live_capture_on_lo_counts_exactly_the_datagrams_sent: needs root (live capture on lo)");
        return;
    }
    const N: usize = 25;
    // The receiver owns the port, so no ICMP "port unreachable" is involved.
    let receiver = UdpSocket::bind("127.0.0.1:0").expect("bind receiver");
    let port = receiver.local_addr().expect("addr").port();
    let filter = format!("udp port {port}");
    let mut sniff = start_sniff(&[
        "-i",
        "lo",
        "-f",
        &filter,
        "--stdout",
        "--no-hub",
        "-p",
        "1",
        "-n",
        "live_kitchen",
        "-c",
        "PacketCountChef",
    ]);
    sniff.wait_until_sniffing();
    let sender = UdpSocket::bind("127.0.0.1:0").expect("bind sender");
    for i in 0..N {
        sender
            .send_to(format!("datagram {i}").as_bytes(), ("127.0.0.1", port))
            .expect("send");
        std::thread::sleep(Duration::from_millis(5));
    }
    // Let the capture thread hand them over (live batches flush within 50 ms).
    std::thread::sleep(Duration::from_millis(1500));
    let _ = Command::new("kill")
        .arg("-INT")
        .arg(sniff.child.id().to_string())
        .status();
    let status = sniff.wait(Duration::from_secs(30));
    let stderr = sniff.stderr_text();
    assert_eq!(status.code(), Some(0), "{stderr}");
    let lines = sniff.stdout.lock().unwrap().clone();
    let last = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .rfind(|d| {
            d["metadata"]["chef"] == "PacketCountChef" && d["metadata"]["driver"] == "interval"
        })
        .unwrap_or_else(|| panic!("no PacketCountChef interval dumpling:\n{stderr}"));
    assert_eq!(
        last["payload"]["packet_counts"]["UDP"], N,
        "the final count must be exactly the {N} datagrams sent: {last}\n{stderr}"
    );
    drop(receiver);
}

#[test]
fn unknown_interface_fails_and_lists_the_real_ones() {
    let mut sniff = start_sniff(&["-i", "nd-no-such-if0", "--stdout", "--no-hub"]);
    let status = sniff.wait(Duration::from_secs(60));
    let stderr = sniff.stderr_text();
    assert_ne!(status.code(), Some(0), "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.contains("nd-no-such-if0") && l.contains("interfaces available"))
        .unwrap_or_else(|| panic!("no line naming the interface and listing others:\n{stderr}"));
    // Every real interface of this machine is listed (from /sys/class/net, when present).
    if let Ok(entries) = std::fs::read_dir("/sys/class/net") {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            assert!(line.contains(&name), "{name} not listed: {line}");
        }
    }
}

#[test]
fn bad_filter_fails_with_libpcaps_message() {
    if !is_root() {
        eprintln!("SKIP bad_filter_fails_with_libpcaps_message: needs root (opens lo)");
        return;
    }
    let mut sniff = start_sniff(&["-i", "lo", "-f", "udp port and and", "--stdout", "--no-hub"]);
    let status = sniff.wait(Duration::from_secs(60));
    let stderr = sniff.stderr_text();
    assert_ne!(status.code(), Some(0), "{stderr}");
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("udp port and and") && l.contains("syntax error")),
        "libpcap's message (syntax error) with the filter text expected:\n{stderr}"
    );
}

#[test]
fn a_filter_too_complex_for_libpcap_is_refused_in_bounded_time_on_a_live_interface() {
    // libpcap's optimizer is superlinear and cannot be interrupted: 3 000 `host` terms
    // held a live kitchen in `pcap_compile` for more than 9 minutes, deaf to Ctrl-C.
    let filter = (0..3000)
        .map(|i| format!("host 10.{}.{}.{}", i >> 16 & 255, i >> 8 & 255, i & 255))
        .collect::<Vec<_>>()
        .join(" or ");
    let started = Instant::now();
    let mut sniff = start_sniff(&[
        "-i",
        "lo",
        "-f",
        &filter,
        "--filter-compile-timeout-secs",
        "1",
        "--stdout",
        "--no-hub",
    ]);
    // Refused before the interface is opened, so the same without root.
    let status = sniff.wait(Duration::from_secs(60));
    let elapsed = started.elapsed();
    let stderr = sniff.stderr_text();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("too complex"), "{stderr}");
    assert!(elapsed < Duration::from_secs(30), "took {elapsed:?}");
}

/// Without the right to capture, the hint names the binary that ran (here a link to
/// `nd-sniff` in a folder whose name needs quoting), not `target/release/nd-sniff`, as one
/// shell word, so the suggested `setcap` command is the one to run. As root the test drops
/// every capability with `setpriv`; without root the right is missing anyway.
#[test]
fn no_permission_names_the_binary_that_ran() {
    let dir = e2e_tests::workspace_root()
        .join(format!("target/e2e-tmp/perm probe {}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let program = dir.join("nd-sniff");
    let _ = std::fs::remove_file(&program);
    if std::fs::hard_link(bin("nd-sniff"), &program).is_err() {
        std::fs::copy(bin("nd-sniff"), &program).expect("copy nd-sniff");
    }
    let mut cmd = if is_root() {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--inh-caps=-all", "--bounding-set=-all"])
            .arg(&program);
        cmd
    } else {
        Command::new(&program)
    };
    cmd.args(["-i", "lo", "--stdout", "--no-hub", "-c", "PacketCountChef"])
        .env("RUST_LOG", "info");
    let out = match cmd.output() {
        Ok(out) => out,
        Err(e) => {
            eprintln!("SKIP no_permission_names_the_binary_that_ran: setpriv: {e}");
            let _ = std::fs::remove_dir_all(&dir);
            return;
        }
    };
    // The path the kernel reports for the running program (links in it resolved).
    let real = std::fs::canonicalize(&program).unwrap_or(program.clone());
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    let word = format!("'{}'", real.display());
    assert!(
        stderr.contains(&format!(
            "`sudo setcap cap_net_raw,cap_net_admin=eip {word}`"
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("target/release/nd-sniff"), "{stderr}");
}
