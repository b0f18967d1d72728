//! Every capture of the development corpus (`shared/pcaps`, 164 files, 16 link types,
//! damaged, empty, big-endian, nanosecond and multi-interface pcapng files among them)
//! replays through the real `nd-sniff` with every built-in chef: no panic, no chef
//! failure, and the packet total equals the manifest's count.

use e2e_tests::{bin, json_lines, shared_dir, ChildGuard};
use std::process::Command;
use std::time::Duration;

/// Files the manifest notes as damaged part-way: nd-sniff processes the packets before
/// the damage, reports it, and exits 1 (as tcpdump does for a truncated file).
const DAMAGED: &[&str] = &[
    "ndpi__fuzz-2021-10-13.pcap",
    "suricata-verify__bug-1450-05__tls_DER-incomplete-content.pcap",
];

fn summary_packets(stderr: &str) -> Option<u64> {
    stderr
        .lines()
        .find_map(|l| l.split("summary: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

#[test]
fn every_corpus_capture_replays_with_the_manifest_packet_count() {
    let Some(shared) = shared_dir() else {
        return;
    };
    let manifest =
        std::fs::read_to_string(shared.join("pcaps/MANIFEST.tsv")).expect("read MANIFEST.tsv");
    let mut header = None;
    let mut checked = 0;
    let mut failures = Vec::new();
    for line in manifest.lines() {
        let cols: Vec<&str> = line.split('\t').collect();
        let Some(h) = &header else {
            header = Some(cols.iter().map(|c| c.to_string()).collect::<Vec<_>>());
            continue;
        };
        let col = |name: &str| {
            h.iter()
                .position(|c| c == name)
                .and_then(|i| cols.get(i).copied())
                .unwrap_or_else(|| panic!("MANIFEST has no {name} column"))
        };
        let file = col("file");
        let want: u64 = col("packets").parse().expect("packets column");
        let path = shared.join("pcaps").join(file);
        let out = ChildGuard::spawn(
            "nd-sniff",
            Command::new(bin("nd-sniff"))
                .arg("-r")
                .arg(&path)
                .args(["--stdout", "--no-hub", "-p", "60"])
                .env("RUST_LOG", "info")
                .env("NO_COLOR", "1"),
        )
        .wait_output(Duration::from_secs(60));
        let stderr = String::from_utf8_lossy(&out.stderr);
        checked += 1;
        if stderr.contains("panicked") {
            failures.push(format!("{file}: panic\n{stderr}"));
            continue;
        }
        let damaged = DAMAGED.contains(&file);
        let expected_code = if damaged { 1 } else { 0 };
        if out.status.code() != Some(expected_code) {
            failures.push(format!(
                "{file}: exit {:?}, expected {expected_code}\n{stderr}",
                out.status.code()
            ));
            continue;
        }
        if damaged && !stderr.contains("damaged") {
            failures.push(format!("{file}: damage not reported\n{stderr}"));
        }
        match summary_packets(&stderr) {
            Some(n) if n == want => {}
            other => failures.push(format!("{file}: {other:?} packets, manifest says {want}")),
        }
        // Every dumpling printed is valid JSON with the envelope (json_lines panics otherwise).
        for d in json_lines(&out.stdout) {
            if !d["metadata"]["chef"].is_string() || d.get("payload").is_none() {
                failures.push(format!("{file}: malformed dumpling {d}"));
            }
        }
        // No built-in chef may trap, time out or run out of memory on real traffic.
        for l in stderr.lines().filter(|l| l.contains(" calls (")) {
            for bad in [" traps", " timeouts", " memory"] {
                if let Some(n) = l
                    .split(", ")
                    .find(|part| part.ends_with(bad))
                    .and_then(|part| part.split_whitespace().next())
                    .and_then(|n| n.parse::<u64>().ok())
                {
                    if n != 0 {
                        failures.push(format!("{file}: {l}"));
                    }
                }
            }
        }
    }
    assert!(checked >= 160, "only {checked} captures in the manifest");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
