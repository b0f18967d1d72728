//! The flow table's and TCP reassembly's counters (issue 13 item 3) as a real `nd-sniff`
//! reports them in the `KitchenStatusChef` dumpling, the exit summary and `/metrics`, over
//! the synthesized captures of `tests/data/streams/synth.py`, whose figures follow from
//! how they are built: `tls-missing` (two connections, one with its middle 700 bytes never
//! sent), `tls-reordered` (five connections, a ClientHello in three segments cut at 700 and
//! 1400, in every order but the natural one) replayed with a 1 KiB per-flow buffer, and
//! `tls-duplicated` (every segment twice, plus an overlapping retransmission).

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use e2e_tests::{
    bin, free_port, http_get, metric_sample, open_fifo, promtool_check, sniff_dumplings,
    stdout_replay, synth_streams_dir, test_data, wait_for_port, ChildGuard,
};
use serde_json::Value;

/// Lengths of the ClientHellos synth.py makes for these server names.
fn hello_lengths(names: &[&str]) -> Vec<u64> {
    let script = format!(
        "import sys; sys.path.insert(0, {dir:?}); import synth\n\
         for n in sys.argv[1:]: print(len(synth.hello_for(n)))",
        dir = test_data("streams").to_string_lossy()
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .args(names)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().parse().expect("a length"))
        .collect()
}

/// Replay `capture` with TLSServerNameChef and the status dumpling on, plus `extra`; the
/// last status dumpling's payload and the log.
fn replay(capture: &Path, extra: &[&str]) -> (Value, String) {
    let mut cmd = stdout_replay(capture, "counters", "3600");
    cmd.args(["--kitchen-status", "on", "-c", "TLSServerNameChef"]);
    cmd.args(extra).env("RUST_LOG", "info").env("NO_COLOR", "1");
    let (dumplings, log) = sniff_dumplings(&mut cmd, capture);
    let status = dumplings
        .iter()
        .rfind(|d| d["metadata"]["chef"] == "KitchenStatusChef")
        .unwrap_or_else(|| panic!("no KitchenStatusChef dumpling:\n{log}"))["payload"]
        .clone();
    (status, log)
}

/// The exit summary line that starts with `what:` (after `summary: `).
fn summary_line<'a>(log: &'a str, what: &str) -> &'a str {
    log.lines()
        .find_map(|l| l.split("summary: ").nth(1).filter(|r| r.starts_with(what)))
        .unwrap_or_else(|| panic!("no `{what}` summary line:\n{log}"))
}

#[test]
fn status_and_summary_report_gaps_and_budget_drops_of_known_captures() {
    let dir = synth_streams_dir();

    // tls-missing: the first connection's bytes 700..1400 never come; the hole is given up
    // when the flow ends (not for a budget). Both connections close with FIN both ways.
    let h = hello_lengths(&["s0.missing.split.test", "s1.missing.split.test"]);
    let (status, log) = replay(&dir.join("tls-missing.pcap"), &[]);
    let streams = &status["streams"];
    let flows = &status["flows"];
    assert_eq!(flows["started"], 2, "{status:#}");
    assert_eq!(streams["gaps"], 1, "{status:#}");
    assert_eq!(streams["gap_bytes"], 700, "{status:#}");
    assert_eq!(streams["delivered_bytes"], h[0] - 700 + h[1], "{status:#}");
    assert_eq!(streams["duplicate_bytes"], 0, "{status:#}");
    assert_eq!(streams["conflicting_overlaps"], 0, "{status:#}");
    assert_eq!(streams["dropped_bytes_flow_budget"], 0, "{status:#}");
    assert_eq!(streams["dropped_bytes_memory_budget"], 0, "{status:#}");
    assert_eq!(streams["flows_over_budget"], 0, "{status:#}");
    assert_eq!(streams["held_bytes"], 0, "{status:#}");
    // The exit summary says the same (it reads the same report).
    let line = summary_line(&log, "streams:");
    assert!(
        line.contains(&format!("{} bytes delivered", h[0] - 700 + h[1]))
            && line.contains("1 gaps (700 bytes; 0 dropped for the per-flow budget"),
        "{line}"
    );
    let line = summary_line(&log, "flows:");
    assert!(
        line.starts_with("flows: 2 started, 2 ended by FIN"),
        "{line}"
    );

    // tls-reordered with a 1 KiB per-flow buffer: every out-of-order segment lies more than
    // 1 KiB past its hole, so each connection gives its hole up for the budget: 700 bytes
    // for orders (0,2,1), (1,0,2), (1,2,0), 1400 for (2,0,1), (2,1,0); the bytes of each
    // hole then arrive as duplicates.
    let names: Vec<String> = (0..5)
        .map(|i| format!("s{i}.reordered.split.test"))
        .collect();
    let h = hello_lengths(&names.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        h.iter().all(|l| l - 700 > 1024),
        "the third piece must end over 1 KiB past the first hole: {h:?}"
    );
    let (status, log) = replay(
        &dir.join("tls-reordered.pcap"),
        &["--stream-flow-buffer-kib", "1"],
    );
    let streams = &status["streams"];
    let dropped = 3 * 700 + 2 * 1400;
    assert_eq!(status["flows"]["started"], 5, "{status:#}");
    assert_eq!(streams["gaps"], 5, "{status:#}");
    assert_eq!(streams["gap_bytes"], dropped, "{status:#}");
    assert_eq!(streams["dropped_bytes_flow_budget"], dropped, "{status:#}");
    assert_eq!(streams["dropped_bytes_memory_budget"], 0, "{status:#}");
    assert_eq!(streams["flows_over_budget"], 5, "{status:#}");
    assert_eq!(streams["duplicate_bytes"], dropped, "{status:#}");
    assert_eq!(
        streams["delivered_bytes"],
        h.iter().sum::<u64>() - dropped,
        "{status:#}"
    );
    let line = summary_line(&log, "streams:");
    assert!(
        line.contains(&format!(
            "5 gaps ({dropped} bytes; {dropped} dropped for the per-flow budget, 0 for the \
             total budget; 5 flows over budget)"
        )),
        "{line}"
    );
    // A replay's status is reproducible: the flow counters travel with the batches, so the
    // status dumplings (one per 5 ms of capture time here) do not depend on how far the
    // reading thread ran ahead of the chefs.
    let statuses = || {
        let capture = dir.join("tls-reordered.pcap");
        let mut cmd = Command::new(bin("nd-sniff"));
        cmd.arg("-r").arg(&capture).args([
            "--stdout",
            "--no-hub",
            "-p",
            "0.005",
            "--kitchen-status",
            "on",
            "-c",
            "TLSServerNameChef",
        ]);
        let (dumplings, _) = sniff_dumplings(&mut cmd, &capture);
        dumplings
            .into_iter()
            .filter(|d| d["metadata"]["chef"] == "KitchenStatusChef")
            .map(|d| d["payload"].clone())
            .collect::<Vec<Value>>()
    };
    let first = statuses();
    assert!(first.len() > 3, "{first:#?}");
    let counts: Vec<&Value> = first.iter().map(|s| &s["flows"]["started"]).collect();
    assert!(
        counts.first() != counts.last(),
        "the flow counters change during the replay: {counts:?}"
    );
    assert_eq!(statuses(), first, "two replays, different status dumplings");

    // Without a chef that uses flows or streams, neither section appears.
    let mut cmd = Command::new(bin("nd-sniff"));
    let capture = dir.join("tls-missing.pcap");
    cmd.arg("-r").arg(&capture).args([
        "--stdout",
        "--no-hub",
        "-p",
        "3600",
        "--kitchen-status",
        "on",
        "-c",
        "PacketCountChef",
    ]);
    let (dumplings, log) = sniff_dumplings(&mut cmd, &capture);
    let status = &dumplings
        .iter()
        .rfind(|d| d["metadata"]["chef"] == "KitchenStatusChef")
        .expect("a status dumpling")["payload"];
    assert!(
        status.get("flows").is_none() && status.get("streams").is_none(),
        "{status:#}"
    );
    assert!(!log.contains("summary: streams:"), "{log}");
}

fn get_metrics(addr: SocketAddr) -> String {
    http_get(addr, "/metrics")
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default()
}

#[test]
fn metrics_count_stream_bytes_and_duplicates_of_a_running_replay() {
    // tls-duplicated: connection 0 sends each of its two segments twice (the whole hello
    // again: h0 duplicate bytes); connection 1 sends 0..1000, 500..1500, 1000..end (1000
    // duplicate bytes). Everything arrives, in order: h0 + h1 delivered, no gap.
    let h = hello_lengths(&["s0.duplicated.split.test", "s1.duplicated.split.test"]);
    let tmp = std::env::temp_dir().join(format!("nd-stream-metrics-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).expect("temp dir");
    let (path, mut writer) = open_fifo(&tmp);
    let port = free_port();
    let kitchen = ChildGuard::spawn(
        "nd-sniff",
        Command::new(bin("nd-sniff"))
            .args([
                "--no-hub",
                "--stdout",
                "-n",
                "streams",
                "-c",
                "TLSServerNameChef",
            ])
            .args(["--metrics-address", &port.to_string(), "-r"])
            .arg(&path),
    );
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    assert!(
        wait_for_port(addr, Duration::from_secs(30)),
        "the kitchen never listened for metrics"
    );
    // Keep the FIFO open: the replay is running (the flows have not ended) when scraped.
    let bytes = std::fs::read(synth_streams_dir().join("tls-duplicated.pcap")).expect("capture");
    writer.write_all(&bytes).expect("feed the fifo");
    let label = r#"kitchen="streams""#;
    let series = |name: &str| format!("{name}{{{label}}}");
    let delivered = series("netdumplings_kitchen_stream_delivered_bytes_total");
    let deadline = Instant::now() + Duration::from_secs(20);
    let body = loop {
        let body = get_metrics(addr);
        if metric_sample(&body, &delivered) == Some((h[0] + h[1]) as f64) {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "stream bytes never reached {}:\n{body}",
            h[0] + h[1]
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let value = |name: &str| {
        metric_sample(&body, &series(name)).unwrap_or_else(|| panic!("no {name}:\n{body}"))
    };
    assert_eq!(
        value("netdumplings_kitchen_stream_duplicate_bytes_total"),
        (h[0] + 1000) as f64
    );
    assert_eq!(value("netdumplings_kitchen_stream_gaps_total"), 0.0);
    assert_eq!(value("netdumplings_kitchen_stream_held_bytes"), 0.0);
    assert_eq!(value("netdumplings_kitchen_flows_started_total"), 2.0);
    assert_eq!(value("netdumplings_kitchen_flows_active"), 2.0);
    promtool_check(&body);
    drop(writer);
    let out = kitchen.wait_output(Duration::from_secs(30));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&tmp);
}
