//! Live-capture tests.
//!
//! * Without root: the error paths that need no privilege (unknown interface, filter
//!   syntax) and a clear skip message for the rest.
//! * As root (effective uid 0): exact packet counts on `lo` and on `any` (each datagram
//!   exactly once), a bad filter with libpcap's message, prompt `stop()`, and exact counts on
//!   a veth pair between two network namespaces that the test creates (`nd-test-<pid>-…`,
//!   10.123.0.1/30 and 10.123.0.2/30, traffic only between those two addresses) and
//!   always deletes, even when the test fails. The capture in the namespace runs in the
//!   `capture-probe` helper binary started with `ip netns exec`.
//! * As root, dropping to `nobody` with `setpriv`: the missing-privilege error.

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Prints a skip message straight to stderr: libtest captures `eprintln!` of passing
/// tests, and a skip must be visible.
macro_rules! skip_note {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

use capture::{CaptureError, LiveCapture, LiveConfig};

const PROBE: &str = env!("CARGO_BIN_EXE_capture-probe");

fn is_root() -> bool {
    // Effective uid from /proc (second field of "Uid:"), no libc needed.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

fn skip_unless_root(test: &str) -> bool {
    if is_root() {
        return false;
    }
    skip_note!(
        "SKIPPED {test}: needs root (effective uid 0) for live capture; run `sudo cargo test \
         --release -p capture` to include it"
    );
    true
}

/// Captures on `iface` while sending `n` datagrams to 127.0.0.1 on a port of our own;
/// returns (packets captured, distinct sequence numbers, link type, stats).
fn loopback_round(iface: &str, n: u64) -> (u64, usize, u32, capture::CaptureStats) {
    let receiver = UdpSocket::bind("127.0.0.1:0").expect("bind receiver");
    let port = receiver.local_addr().expect("addr").port();
    let mut config = LiveConfig::new([iface]);
    config.filter = Some(format!("udp and dst port {port} and dst host 127.0.0.1"));
    let cap = LiveCapture::start(config).expect("start capture");
    let sender = UdpSocket::bind("127.0.0.1:0").expect("bind sender");
    receiver
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let mut buf = [0u8; 64];
    for seq in 0..n {
        let mut payload = *b"NDLOTEST--------";
        payload[8..].copy_from_slice(&seq.to_be_bytes());
        sender.send_to(&payload, ("127.0.0.1", port)).expect("send");
        let _ = receiver.recv(&mut buf); // keep the socket buffer empty
    }
    let mut seen = std::collections::HashSet::new();
    let mut captured = 0u64;
    let mut link_type = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    // Collect until n arrived, then 500 ms more to catch any duplicate.
    let mut settle_until: Option<Instant> = None;
    while Instant::now() < deadline && settle_until.is_none_or(|t| Instant::now() < t) {
        if let Some(p) = cap.recv_timeout(Duration::from_millis(50)).expect("recv") {
            captured += 1;
            link_type = p.link_type;
            let at = p
                .data
                .windows(8)
                .position(|w| w == b"NDLOTEST")
                .expect("payload marker in captured packet");
            seen.insert(p.data[at + 8..at + 16].to_vec());
            assert!(
                p.timestamp_ns > 1_600_000_000_000_000_000,
                "timestamp in ns"
            );
            let now_ns = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_nanos() as u64;
            assert!(
                now_ns.abs_diff(p.timestamp_ns) < 60_000_000_000,
                "timestamp near now"
            );
            if captured >= n && settle_until.is_none() {
                settle_until = Some(Instant::now() + Duration::from_millis(500));
            }
        }
    }
    cap.stop();
    assert!(matches!(
        cap.recv_timeout(Duration::from_millis(1)),
        Err(CaptureError::Closed)
    ));
    (captured, seen.len(), link_type, cap.stats())
}

#[test]
fn loopback_exact_count_once_each() {
    if skip_unless_root("loopback_exact_count_once_each") {
        return;
    }
    let (captured, unique, dlt, stats) = loopback_round("lo", 300);
    assert_eq!((captured, unique), (300, 300), "stats {stats:?}");
    assert_eq!(dlt, 1, "lo is Ethernet-framed");
    assert_eq!(stats.queue_dropped + stats.kernel_dropped, 0, "{stats:?}");
    assert_eq!(stats.received, 300);
}

#[test]
fn any_device_delivers_loopback_packets_once() {
    if skip_unless_root("any_device_delivers_loopback_packets_once") {
        return;
    }
    let (captured, unique, dlt, stats) = loopback_round("any", 300);
    assert_eq!((captured, unique), (300, 300), "stats {stats:?}");
    assert_eq!(dlt, 113, "any gives Linux cooked frames");
    assert_eq!(stats.received - stats.loopback_outgoing_skipped, 300);
}

#[test]
fn full_queue_drops_and_counts_without_blocking_capture() {
    if skip_unless_root("full_queue_drops_and_counts_without_blocking_capture") {
        return;
    }
    let receiver = UdpSocket::bind("127.0.0.1:0").expect("bind receiver");
    let port = receiver.local_addr().expect("addr").port();
    let mut config = LiveConfig::new(["lo"]);
    config.filter = Some(format!("udp and dst port {port} and dst host 127.0.0.1"));
    config.queue_capacity = 10;
    let cap = LiveCapture::start(config).expect("start capture");
    let sender = UdpSocket::bind("127.0.0.1:0").expect("bind sender");
    for _ in 0..100 {
        sender
            .send_to(b"NDQUEUE", ("127.0.0.1", port))
            .expect("send");
    }
    // Nobody consumes: the capture thread must keep going and drop at the queue.
    let deadline = Instant::now() + Duration::from_secs(10);
    while cap.stats().received < 100 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let s = cap.stats();
    assert_eq!(
        (s.received, s.queued, s.queue_dropped),
        (100, 10, 90),
        "{s:?}"
    );
    let mut got = 0;
    while let Ok(Some(p)) = cap.recv_timeout(Duration::from_millis(200)) {
        assert!(p.data.ends_with(b"NDQUEUE"));
        assert_eq!(p.interface_index, 0);
        assert_eq!(cap.interfaces()[0].name, "lo");
        got += 1;
    }
    assert_eq!(got, 10);
    // Room again: new packets are queued.
    sender
        .send_to(b"NDQUEUE", ("127.0.0.1", port))
        .expect("send");
    let p = cap.recv_timeout(Duration::from_secs(5)).expect("recv");
    assert!(p.is_some(), "a packet after the queue drained");
    cap.stop();
}

#[test]
fn unknown_interface_lists_the_real_ones() {
    let err = LiveCapture::start(LiveConfig::new(["nd-no-such-if0"])).expect_err("must fail");
    let msg = err.to_string();
    match &err {
        CaptureError::UnknownInterface { name, available } => {
            assert_eq!(name, "nd-no-such-if0");
            assert!(available.iter().any(|n| n == "lo"), "{available:?}");
            assert!(available.iter().any(|n| n == "any"), "{available:?}");
        }
        other => panic!("expected UnknownInterface, got {other:?}"),
    }
    assert!(
        msg.contains("nd-no-such-if0") && msg.contains("lo"),
        "{msg}"
    );
    let real = capture::list_interfaces().expect("list");
    assert!(real.iter().any(|n| n == "lo"), "{real:?}");
}

#[test]
fn filter_syntax_error_shows_libpcaps_message() {
    // Works without privileges (checked on a dead handle before opening).
    let mut config = LiveConfig::new(["lo"]);
    config.filter = Some("udp and port".into());
    let err = LiveCapture::start(config).expect_err("must fail");
    let msg = err.to_string();
    assert!(matches!(err, CaptureError::BadFilter { .. }), "{err:?}");
    assert!(msg.contains("syntax error"), "libpcap's message: {msg}");
    assert!(msg.contains("udp and port"), "{msg}");
}

#[test]
fn filter_invalid_for_the_link_type_shows_libpcaps_message() {
    if skip_unless_root("filter_invalid_for_the_link_type_shows_libpcaps_message") {
        return;
    }
    // Valid syntax, but 802.11 primitives do not apply to an Ethernet-framed interface:
    // only the real per-interface compile can tell.
    let mut config = LiveConfig::new(["lo"]);
    config.filter = Some("wlan type mgt".into());
    let err = LiveCapture::start(config).expect_err("must fail");
    let msg = err.to_string();
    assert!(matches!(err, CaptureError::BadFilter { .. }), "{err:?}");
    assert!(msg.contains("802.11"), "libpcap's message: {msg}");
}

#[test]
fn stop_is_prompt_and_idempotent_on_a_quiet_capture() {
    if skip_unless_root("stop_is_prompt_and_idempotent_on_a_quiet_capture") {
        return;
    }
    for immediate in [false, true] {
        let mut config = LiveConfig::new(["lo"]);
        // Matches nothing: the capture thread sits in poll().
        config.filter = Some("udp and dst port 9 and src port 9 and dst host 127.0.0.254".into());
        config.immediate_mode = immediate;
        config.read_timeout_ms = 5_000; // breakloop, not the timeout, must wake it
        let cap = LiveCapture::start(config).expect("start");
        assert!(cap
            .recv_timeout(Duration::from_millis(100))
            .expect("ok")
            .is_none());
        let t = Instant::now();
        cap.stop();
        let took = t.elapsed();
        assert!(took < Duration::from_secs(2), "stop took {took:?}");
        cap.stop();
        assert!(matches!(
            cap.recv_timeout(Duration::from_millis(10)),
            Err(CaptureError::Closed)
        ));
    }
}

#[test]
fn missing_privilege_says_what_is_needed() {
    if skip_unless_root("missing_privilege_says_what_is_needed") {
        return;
    }
    // As root, run the probe as nobody without capabilities.
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            PROBE,
            "capture",
            "--iface",
            "lo",
            "--timeout-ms",
            "100",
        ])
        .output();
    let out = match out {
        Ok(o) => o,
        Err(e) => {
            skip_note!("SKIPPED missing_privilege_says_what_is_needed: setpriv: {e}");
            return;
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("Permission denied") && out.status.code() != Some(77) {
        skip_note!(
            "SKIPPED missing_privilege_says_what_is_needed: nobody cannot run {PROBE}: {stderr}"
        );
        return;
    }
    assert_eq!(
        out.status.code(),
        Some(77),
        "stdout {stdout} stderr {stderr}"
    );
    assert!(
        stdout.contains("CAP_NET_RAW") && stdout.contains("setcap"),
        "{stdout}"
    );
    assert!(stdout.contains("root"), "{stdout}");
}

// ---------------------------------------------------------------------------------------
// veth pair between two namespaces of our own

static NS_SEQ: AtomicU32 = AtomicU32::new(0);

/// Two network namespaces joined by a veth pair; deleted (with the veth) on drop, and any
/// helper process still running is killed (by its own PID) first.
struct VethPair {
    ns_a: String,
    ns_b: String,
    children: Vec<Child>,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {args:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl VethPair {
    /// `nd-test-<pid>-<n>-a` holds `veth0` 10.123.0.1/30, `…-b` holds `veth1` 10.123.0.2/30.
    fn create() -> Result<VethPair, String> {
        let n = NS_SEQ.fetch_add(1, Ordering::SeqCst);
        let base = format!("nd-test-{}-{n}", std::process::id());
        let pair = VethPair {
            ns_a: format!("{base}-a"),
            ns_b: format!("{base}-b"),
            children: Vec::new(),
        };
        // From here on, `pair`'s Drop cleans up whatever was created.
        ip(&["netns", "add", &pair.ns_a])?;
        ip(&["netns", "add", &pair.ns_b])?;
        let (a, b) = (pair.ns_a.as_str(), pair.ns_b.as_str());
        ip(&[
            "-n", a, "link", "add", "veth0", "type", "veth", "peer", "name", "veth1", "netns", b,
        ])?;
        ip(&["-n", a, "addr", "add", "10.123.0.1/30", "dev", "veth0"])?;
        ip(&["-n", b, "addr", "add", "10.123.0.2/30", "dev", "veth1"])?;
        for (ns, dev) in [(a, "veth0"), (a, "lo"), (b, "veth1"), (b, "lo")] {
            ip(&["-n", ns, "link", "set", dev, "up"])?;
        }
        Ok(pair)
    }

    fn spawn_in(&mut self, ns: &str, args: &[&str]) -> std::io::Result<usize> {
        let child = Command::new("ip")
            .args(["netns", "exec", ns, PROBE])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        self.children.push(child);
        Ok(self.children.len() - 1)
    }
}

impl Drop for VethPair {
    fn drop(&mut self) {
        for c in &mut self.children {
            if matches!(c.try_wait(), Ok(None)) {
                let _ = c.kill();
            }
            let _ = c.wait();
        }
        for ns in [&self.ns_a, &self.ns_b] {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

/// Waits for a child with a deadline, then kills it; returns its stdout.
fn finish(child: &mut Child, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if matches!(child.try_wait(), Ok(None)) {
        let _ = child.kill();
    }
    let mut out = String::new();
    if let Some(mut so) = child.stdout.take() {
        let _ = std::io::Read::read_to_string(&mut so, &mut out);
    }
    let _ = child.wait();
    out
}

fn field(line: &str, key: &str) -> Option<u64> {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
}

/// Captures on `ifaces` (comma-separated, inside namespace A) while namespace B sends
/// 1000 datagrams to 10.123.0.1; asserts the exact count, once each.
fn veth_round(ifaces: &str) {
    let mut pair = VethPair::create().expect("create namespaces and veth pair");
    let n = 1000u64;
    let expect = n.to_string();
    let cap_ix = pair
        .spawn_in(
            &pair.ns_a.clone(),
            &[
                "capture",
                "--iface",
                ifaces,
                "--filter",
                "udp and dst port 40123 and dst host 10.123.0.1",
                "--expect",
                &expect,
                "--timeout-ms",
                "20000",
                "--settle-ms",
                "500",
            ],
        )
        .expect("spawn capture probe");
    // Wait for READY (the handle is open and filtered).
    let mut first = String::new();
    {
        let stdout = pair.children[cap_ix].stdout.as_mut().expect("stdout");
        let mut r = BufReader::new(stdout);
        r.read_line(&mut first).expect("read READY");
    }
    assert_eq!(first.trim(), "READY", "capture probe said {first:?}");
    let send_out = Command::new("ip")
        .args(["netns", "exec", &pair.ns_b, PROBE, "send"])
        .args([
            "--to",
            "10.123.0.1:40123",
            "--count",
            &expect,
            "--pps",
            "20000",
        ])
        .args(["--warmup-port", "40124"])
        .output()
        .expect("run sender");
    let send_line = String::from_utf8_lossy(&send_out.stdout).to_string();
    assert!(send_out.status.success(), "sender: {send_line}");
    assert_eq!(field(&send_line, "sent"), Some(n), "{send_line}");
    let out = finish(&mut pair.children[cap_ix], Duration::from_secs(25));
    let line = out.lines().last().unwrap_or_default().to_owned();
    assert_eq!(field(&line, "captured"), Some(n), "capture probe: {out}");
    assert_eq!(field(&line, "unique"), Some(n), "{line}");
    assert_eq!(field(&line, "duplicates"), Some(0), "{line}");
    assert_eq!(field(&line, "link_type"), Some(1), "{line}");
    assert_eq!(field(&line, "kernel_dropped"), Some(0), "{line}");
    assert_eq!(field(&line, "queue_dropped"), Some(0), "{line}");
    let ns_a = pair.ns_a.clone();
    drop(pair);
    // Cleanup really happened.
    let list = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    assert!(
        !String::from_utf8_lossy(&list.stdout).contains(&ns_a),
        "namespace {ns_a} left behind"
    );
}

#[test]
fn veth_in_own_namespaces_exact_count() {
    if skip_unless_root("veth_in_own_namespaces_exact_count") {
        return;
    }
    veth_round("veth0");
}

#[test]
fn two_interfaces_in_one_capture_exact_count() {
    if skip_unless_root("two_interfaces_in_one_capture_exact_count") {
        return;
    }
    // Two capture threads (lo and veth0 of namespace A); the traffic crosses veth0 only.
    veth_round("lo,veth0");
}

#[test]
fn veth_cleanup_happens_when_a_test_fails() {
    if skip_unless_root("veth_cleanup_happens_when_a_test_fails") {
        return;
    }
    let mut name = String::new();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let pair = VethPair::create().expect("create");
        name = pair.ns_a.clone();
        panic!("simulated failure");
    }));
    assert!(result.is_err());
    let list = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    assert!(!name.is_empty());
    assert!(
        !String::from_utf8_lossy(&list.stdout).contains(&name),
        "namespace {name} left behind after a panic"
    );
}
