//! `nd-sniff --metrics-address` and the replay progress line, with real processes: a real
//! kitchen replays the bundled capture through a FIFO the test keeps open (so the replay
//! is still running when it is scraped), sending to a real hub; `/metrics` must count
//! exactly the capture's packets, the hub must have received what the kitchen says it
//! sent, and `promtool check metrics` must accept it. The progress line is checked
//! through a real pseudo-terminal (`script` from util-linux) and is absent from a pipe.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use e2e_tests::{
    bin, free_port, http_get, is_root, metric_sample, on_path, open_fifo, promtool_check,
    spawn_hub, wait_for_port, workspace_root, ChildGuard,
};

/// The bundled capture and its packet count (`captures/README.md`; tshark agrees).
const CAPTURE: &str = "captures/ndpi__anyconnect-vpn.pcap";
const CAPTURE_PACKETS: u64 = 589;

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("nd-kmetrics-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn capture_bytes() -> Vec<u8> {
    std::fs::read(workspace_root().join(CAPTURE)).expect("read the bundled capture")
}

#[test]
fn kitchen_metrics_count_a_running_replay_and_pass_promtool() {
    let (in_port, out_port, metrics_port) = (free_port(), free_port(), free_port());
    let hub_metrics_port = free_port();
    let _hub = spawn_hub(
        in_port,
        out_port,
        &["--metrics-address", &hub_metrics_port.to_string()],
    );
    let dir = TempDir::new("scrape");
    let (path, mut writer) = open_fifo(&dir.0);
    // A name with a quote and a backslash: the label must come out escaped.
    let kitchen_name = r#"metrics "k" \ 1"#;
    let kitchen = ChildGuard::spawn(
        "nd-sniff",
        Command::new(bin("nd-sniff"))
            .args(["-n", kitchen_name, "-h", &format!("127.0.0.1:{in_port}")])
            .args(["--metrics-address", &metrics_port.to_string(), "-r"])
            .arg(&path),
    );
    let metrics: SocketAddr = ([127, 0, 0, 1], metrics_port).into();
    assert!(
        wait_for_port(metrics, Duration::from_secs(30)),
        "the kitchen never listened for metrics"
    );

    // Half the capture cannot be cut exactly at a packet; write it all, keep the FIFO
    // open: the replay is still running (waiting for more) when it is scraped.
    writer.write_all(&capture_bytes()).expect("feed the fifo");
    let label = r#"kitchen="metrics \"k\" \\ 1""#;
    let packets = format!("netdumplings_chef_packets_total{{{label},chef=\"PacketCountChef\"}}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let body = loop {
        let response = http_get(metrics, "/metrics");
        let (head, body) = response.split_once("\r\n\r\n").expect("HTTP response");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(head.contains("text/plain; version=0.0.4"), "{head}");
        let sent = metric_sample(
            body,
            &format!("netdumplings_kitchen_hub_sent_dumplings_total{{{label}}}"),
        );
        let made = metric_sample(
            body,
            &format!("netdumplings_kitchen_dumplings_total{{{label}}}"),
        );
        if metric_sample(body, &packets) == Some(CAPTURE_PACKETS as f64)
            && sent.is_some()
            && sent == made
        {
            break body.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "metrics never reached the capture's {CAPTURE_PACKETS} packets with every dumpling sent:\n{body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let value = |series: &str| {
        metric_sample(&body, series).unwrap_or_else(|| panic!("no sample {series}:\n{body}"))
    };
    assert_eq!(
        value(&format!("netdumplings_kitchen_packets_total{{{label}}}")),
        CAPTURE_PACKETS as f64
    );
    assert_eq!(
        value(&format!(
            "netdumplings_kitchen_replay_read_packets_total{{{label}}}"
        )),
        CAPTURE_PACKETS as f64
    );
    assert_eq!(
        value(&format!(
            "netdumplings_kitchen_replay_read_bytes_total{{{label}}}"
        )),
        capture_bytes().len() as f64
    );
    let dumplings = value(&format!("netdumplings_kitchen_dumplings_total{{{label}}}"));
    assert!(dumplings > 0.0, "{body}");
    // Per-chef dumplings add up to the kitchen's (no status dumplings in a replay).
    let per_chef: f64 = body
        .lines()
        .filter(|l| l.starts_with("netdumplings_chef_dumplings_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(per_chef, dumplings, "{body}");
    // The call-time histogram counts every batch PacketCountChef ran.
    let hist = format!(
        "netdumplings_chef_batch_duration_seconds_count{{{label},chef=\"PacketCountChef\"}}"
    );
    assert!(value(&hist) >= 1.0, "{body}");
    let inf = format!(
        "netdumplings_chef_batch_duration_seconds_bucket{{le=\"+Inf\",{label},chef=\"PacketCountChef\"}}"
    );
    let inf_alt = format!(
        "netdumplings_chef_batch_duration_seconds_bucket{{{label},chef=\"PacketCountChef\",le=\"+Inf\"}}"
    );
    assert_eq!(
        metric_sample(&body, &inf).or_else(|| metric_sample(&body, &inf_alt)),
        Some(value(&hist)),
        "{body}"
    );
    assert!(
        value(&format!(
            "netdumplings_chef_memory_bytes{{{label},chef=\"PacketCountChef\"}}"
        )) > 0.0
    );
    assert_eq!(
        value(&format!(
            "netdumplings_chef_traps_total{{{label},chef=\"PacketCountChef\"}}"
        )),
        0.0
    );
    assert!(value("process_resident_memory_bytes") > 0.0);
    assert!(http_get(metrics, "/other").starts_with("HTTP/1.1 404"));
    promtool_check(&body);

    // The hub received what the kitchen says it sent.
    let hub_body = http_get(([127, 0, 0, 1], hub_metrics_port).into(), "/metrics");
    assert_eq!(
        metric_sample(&hub_body, "netdumplings_hub_dumplings_in_total"),
        Some(dumplings),
        "{hub_body}"
    );

    // End of input: the kitchen ends cleanly; its stderr (a pipe) holds log lines only,
    // no progress line.
    drop(writer);
    let out = kitchen.wait_output(Duration::from_secs(20));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}: {stderr}", out.status);
    assert_log_only(&stderr);
    assert!(stderr.contains("Metrics: http://127.0.0.1:"), "{stderr}");
}

/// No progress bytes: no carriage return, no escape sequence, no `replay:` line.
fn assert_log_only(stderr: &str) {
    assert!(
        !stderr.contains('\r') && !stderr.contains('\x1b') && !stderr.contains("replay: "),
        "progress bytes in piped stderr: {stderr:?}"
    );
}

/// Run `args` (nd-sniff's) under `script`, i.e. on a real pseudo-terminal; returns what
/// the terminal received (stdout and stderr together). `None` without `script`.
fn on_a_terminal(args: &str, feed: impl FnOnce()) -> Option<String> {
    let Some(script) = on_path("script") else {
        assert!(
            std::env::var_os("CI").is_none() && !is_root(),
            "script (util-linux) missing"
        );
        eprintln!("SKIP terminal test: `script` (util-linux) not found");
        return None;
    };
    let command = format!("'{}' {args}", bin("nd-sniff").display());
    let child = ChildGuard::spawn(
        "script",
        Command::new(script).args(["-q", "-e", "-c", &command, "/dev/null"]),
    );
    feed();
    let out = child.wait_output(Duration::from_secs(30));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{}: {text}", out.status);
    Some(text)
}

#[test]
fn replay_progress_is_drawn_on_a_terminal_only() {
    // A regular file: the line shows the file's size and a percent, and is erased at the
    // end (the last progress bytes are an erase, after the last drawn line).
    let file = workspace_root().join(CAPTURE);
    let args = format!("--no-hub -r '{}'", file.display());
    if let Some(out) = on_a_terminal(&args, || {}) {
        assert!(
            out.contains("\r\x1b[2Kreplay: 0 B of 137.0 KiB (0%)"),
            "{out:?}"
        );
        let last_draw = out.rfind("\x1b[2Kreplay: ").expect("a drawn line");
        let last_erase = out.rfind("\r\x1b[2K").expect("an erase");
        assert!(
            last_erase > last_draw,
            "line not erased at the end: {out:?}"
        );
        assert!(
            out.contains("end of"),
            "the log lines are still there: {out:?}"
        );
    }
    // --quiet: no line even on a terminal; nor when --stdout prints to the same terminal.
    for flag in ["--quiet", "--stdout"] {
        if let Some(out) = on_a_terminal(&format!("{args} {flag}"), || {}) {
            assert!(!out.contains("replay: "), "{flag}: {out:?}");
            assert!(out.contains("end of"), "{flag}: {out:?}");
        }
    }
    // A FIFO fed in two parts with a pause: redrawn with real counts while it waits, and
    // no percent or ETA (the size of a pipe is unknown).
    let dir = TempDir::new("tty");
    let (path, writer) = open_fifo(&dir.0);
    let capture = capture_bytes();
    let args = format!("--no-hub -r '{}'", path.display());
    let feed = move || {
        let mut writer = writer;
        writer
            .write_all(&capture[..capture.len() / 2])
            .expect("feed");
        std::thread::sleep(Duration::from_millis(1200));
        writer
            .write_all(&capture[capture.len() / 2..])
            .expect("feed");
        std::thread::sleep(Duration::from_millis(600));
    };
    if let Some(out) = on_a_terminal(&args, feed) {
        let drawn: Vec<&str> = out
            .split("\r\x1b[2K")
            .filter(|s| s.starts_with("replay: "))
            .collect();
        assert!(drawn.len() >= 3, "a few redraws expected: {out:?}");
        assert!(
            drawn
                .iter()
                .any(|l| l.contains(" KiB, ") && l.contains(" packets/s, ")),
            "{drawn:?}"
        );
        assert!(
            !drawn.iter().any(|l| l.contains('%') || l.contains("ETA")),
            "{drawn:?}"
        );
        // Redrawn at most ~4 times a second (1.8 s of feeding plus the end).
        assert!(drawn.len() <= 12, "{} redraws: {drawn:?}", drawn.len());
    }
}

/// Live on `lo` (root only): the metrics follow the capture while it runs.
#[test]
fn kitchen_metrics_follow_a_live_capture_on_lo() {
    if !is_root() {
        eprintln!(
            "SKIP kitchen_metrics_follow_a_live_capture_on_lo: needs root (live capture on lo)"
        );
        return;
    }
    const N: u64 = 40;
    let receiver = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind receiver");
    let port = receiver.local_addr().expect("addr").port();
    let metrics_port = free_port();
    let mut sniff = e2e_tests::LiveProcess::spawn(
        Command::new(bin("nd-sniff"))
            .args(["-i", "lo", "-f", &format!("udp port {port}"), "--no-hub"])
            .args(["-n", "live_metrics", "-c", "PacketCountChef", "-p", "1"])
            .args(["--metrics-address", &metrics_port.to_string()])
            .env("RUST_LOG", "info"),
    );
    sniff.wait_until_sniffing();
    let sender = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind sender");
    for i in 0..N {
        sender
            .send_to(format!("datagram {i}").as_bytes(), ("127.0.0.1", port))
            .expect("send");
        std::thread::sleep(Duration::from_millis(2));
    }
    let metrics: SocketAddr = ([127, 0, 0, 1], metrics_port).into();
    let series =
        r#"netdumplings_chef_packets_total{kitchen="live_metrics",chef="PacketCountChef"}"#;
    let deadline = Instant::now() + Duration::from_secs(10);
    let body = loop {
        let response = http_get(metrics, "/metrics");
        let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        if metric_sample(body, series) == Some(N as f64) {
            break body.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "never counted {N} packets:\n{body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let captured = metric_sample(
        &body,
        r#"netdumplings_kitchen_packets_total{kitchen="live_metrics"}"#,
    );
    assert!(captured.is_some_and(|c| c >= N as f64), "{body}");
    assert_eq!(
        metric_sample(
            &body,
            r#"netdumplings_kitchen_kernel_dropped_packets_total{kitchen="live_metrics"}"#
        ),
        Some(0.0),
        "{body}"
    );
    assert!(
        !body.contains("netdumplings_kitchen_replay_"),
        "no replay series live: {body}"
    );
    promtool_check(&body);
    sniff.signal("INT");
    assert!(sniff.wait(Duration::from_secs(20)).success());
}
