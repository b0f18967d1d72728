//! Stream verdicts (chef API 0.2 `stream-verdicts`) in a real `nd-sniff` replaying real
//! captures: `HTTPRequestChef` and `TLSServerNameChef` give up the directions they stop
//! reading, the kitchen stops delivering and copying them, and nothing a chef says changes
//! what it or any other chef reports:
//! * the two stream chefs' output is byte-identical with verdicts honoured and with
//!   `--ignore-stream-verdicts` (every chunk handed over, as before verdicts), on one chef
//!   thread and on two, while the exit summary counts the directions released;
//! * `VerdictChef` (`kitchen/fixtures/verdict-chef`) gives up every direction at its first
//!   chunk with a hostile answer (indices past the end, a 10 000-entry tail of duplicates):
//!   it then gets one chunk per direction, and `TLSServerNameChef` beside it reports exactly
//!   what it reports alone.

#[path = "../../kitchen/src/fixtures_build.rs"]
mod fixtures_build;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use e2e_tests::{bin, json_lines, shared_pcap, synth_streams_dir, ChildGuard};

/// Captures with HTTP and TLS over TCP (and SOCKS / CONNECT tunnels) from the shared
/// corpus; absent ones are skipped.
const CORPUS: &[&str] = &[
    "arkime__tls-split-client-hello.pcap",
    "pcapplusplus__ExamplesTest__pcap_examples__tls.pcap",
    "pcapplusplus__Pcap++Test__PcapExamples__650HttpResponses.pcap",
    "pcapplusplus__ExamplesTest__pcap_examples__http-packets.pcap",
    "arkime__http-simple-get.pcap",
    "arkime__socks5-http-302-frag.pcap",
    "zeek__http__connect-with-header.pcap",
    "ndpi__tls_heur__vmess-tcp-tls.pcapng",
    "ndpi__tls_heur__vmess-websocket.pcapng",
];

/// The corpus captures present plus every synthesized stream capture (split, reordered,
/// duplicated, overlapping, missing segments; tunnels).
fn captures() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = CORPUS
        .iter()
        .filter_map(|n| shared_pcap(n))
        .filter(|p| p.exists())
        .collect();
    let synth = synth_streams_dir();
    let mut names: Vec<PathBuf> = std::fs::read_dir(&synth)
        .expect("synthesized captures")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pcap"))
        .collect();
    names.sort();
    out.extend(names);
    out
}

fn verdict_chef_dir() -> PathBuf {
    let fixtures = fixtures_build::build_fixtures().unwrap_or_else(|e| panic!("{e}"));
    let dir = fixtures_build::workspace_root().join("target/stream-verdicts-test");
    std::fs::create_dir_all(&dir).expect("test dir");
    std::fs::copy(
        fixtures.join("verdict_chef.wasm"),
        dir.join("verdict_chef.wasm"),
    )
    .expect("copy verdict_chef.wasm");
    dir
}

/// One replay of `capture` through `chefs` (plus `extra` flags): its stdout bytes and log.
fn replay(capture: &Path, chefs: &[&str], extra: &[&str]) -> (Vec<u8>, String) {
    let mut cmd = Command::new(bin("nd-sniff"));
    cmd.arg("-r")
        .arg(capture)
        .args([
            "--stdout",
            "--no-hub",
            "-p",
            "3600",
            "-n",
            "verdict_kitchen",
        ])
        .args(["--chef-deadline-ms", "5000"]);
    for chef in chefs {
        cmd.args(["-c", chef]);
    }
    cmd.args(extra).env("RUST_LOG", "info").env("NO_COLOR", "1");
    let out = ChildGuard::spawn("nd-sniff", &mut cmd).wait_output(Duration::from_secs(120));
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "nd-sniff failed on {}: {log}",
        capture.display()
    );
    (out.stdout, log)
}

/// The exit summary's count of directions released by chefs (0 without a stream stage).
fn released(log: &str) -> u64 {
    log.lines()
        .find_map(|l| l.split("summary: streams: ").nth(1))
        .and_then(|l| l.rsplit(", ").next())
        .and_then(|l| l.strip_suffix(" directions released by chefs"))
        .map_or(0, |n| n.parse().expect("a count"))
}

/// The exit summary's stream line (empty without a stream stage).
fn stream_summary(log: &str) -> String {
    log.lines()
        .find_map(|l| l.split("summary: streams: ").nth(1))
        .unwrap_or_default()
        .to_owned()
}

/// The dumplings of `chef` (JSON lines) in `stdout`.
fn of(stdout: &[u8], chef: &str) -> Vec<serde_json::Value> {
    json_lines(stdout)
        .into_iter()
        .filter(|d| d["metadata"]["chef"] == chef)
        .collect()
}

#[test]
fn the_stream_chefs_say_the_same_with_and_without_verdicts() {
    let chefs = ["HTTPRequestChef", "TLSServerNameChef"];
    let (mut released_total, mut dumplings) = (0, 0);
    for capture in captures() {
        let (with, log) = replay(&capture, &chefs, &[]);
        let (without, log_without) = replay(&capture, &chefs, &["--ignore-stream-verdicts"]);
        let (threads, log_threads) = replay(&capture, &chefs, &["--chef-threads", "2"]);
        assert!(
            with == without,
            "{}: the output changed with verdicts",
            capture.display()
        );
        assert!(
            with == threads,
            "{}: the output changed on two chef threads",
            capture.display()
        );
        assert_eq!(released(&log_without), 0, "{}", capture.display());
        // What is reassembled does not depend on threads either.
        assert_eq!(
            stream_summary(&log),
            stream_summary(&log_threads),
            "{}",
            capture.display()
        );
        released_total += released(&log);
        dumplings += json_lines(&with).len();
    }
    eprintln!("{dumplings} dumplings, {released_total} directions released");
    assert!(dumplings > 20, "the captures made {dumplings} dumplings");
    // The synthesized captures are a batch or two each: shorter than the verdicts' lag
    // (`VERDICT_LAG`), so only the corpus's longer captures release directions.
    if shared_pcap(CORPUS[0]).is_some_and(|p| p.exists()) {
        assert!(
            released_total > 0,
            "only {released_total} directions were released"
        );
    }
}

#[test]
fn a_chefs_verdicts_do_not_stop_another_chef() {
    let dir = verdict_chef_dir();
    let d = dir.to_str().expect("UTF-8 path");
    let (mut seen, mut chunks_ignoring) = (0, 0);
    for capture in captures() {
        let (alone, _) = replay(&capture, &["TLSServerNameChef"], &[]);
        let both = ["TLSServerNameChef", "VerdictChef"];
        let (together, log) = replay(&capture, &both, &["-d", d]);
        assert_eq!(
            of(&together, "TLSServerNameChef"),
            of(&alone, "TLSServerNameChef"),
            "{}",
            capture.display()
        );
        // Each direction's chunks all come in one call (the first it appears in):
        // "<call> <flow> <o|r> <offset> <len> <last>".
        let mut calls: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        for v in of(&together, "VerdictChef") {
            let report = v["payload"].as_str().expect("a report").to_owned();
            let words: Vec<&str> = report.split(' ').collect();
            let call: u64 = words[0].parse().expect("a call number");
            calls.entry(words[1..3].join(" ")).or_default().push(call);
        }
        assert!(
            calls.values().all(|c| c.iter().all(|&n| n == c[0])),
            "{}: {calls:?}",
            capture.display()
        );
        let line = log
            .lines()
            .find(|l| l.contains("chef VerdictChef: "))
            .unwrap_or_else(|| panic!("no VerdictChef summary:\n{log}"));
        // Refused dumplings and failures are listed only when there are some.
        assert!(
            !line.contains("refused:") && !line.contains("failures:"),
            "{line}"
        );
        seen += calls.values().map(Vec::len).sum::<usize>();
        let (ignoring, _) = replay(
            &capture,
            &["VerdictChef"],
            &["-d", d, "--ignore-stream-verdicts"],
        );
        chunks_ignoring += of(&ignoring, "VerdictChef").len();
    }
    eprintln!("VerdictChef: {seen} chunks with verdicts, {chunks_ignoring} without");
    assert!(seen > 20, "VerdictChef saw {seen} chunks");
    assert!(
        chunks_ignoring > seen,
        "without verdicts VerdictChef got {chunks_ignoring} chunks, with them {seen}"
    );
}
