//! Flows (chef API 0.2): the real `nd-sniff` replays real captures through the real
//! `TopTalkersChef` (wasm), whose connection summaries come from the kitchen's flow table;
//! they are checked against tshark's own conversation tracking (`tcp.stream` /
//! `udp.stream`, the index behind `tshark -z conv,tcp` / `conv,udp`), committed as
//! `tests/data/truth/*.conv.tsv` by `tests/data/truth/generate-flows.sh`.

use e2e_tests::{bin, shared_pcap, sniff_dumplings, stdout_replay, truth_rows};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

/// (protocol, endpoint, endpoint) with the endpoints in sorted order.
type Pair = (String, String, String);
/// Frames and bytes each way: [lower->upper frames, bytes, upper->lower frames, bytes].
type Counts = [u64; 4];

/// Replays `capture` through `TopTalkersChef` (and extra args); returns the dumplings and
/// stderr.
fn replay(capture: &Path, extra: &[&str]) -> (Vec<Value>, String) {
    let mut cmd = stdout_replay(capture, "flows_kitchen", "3600");
    cmd.args(["-f", "", "-c", "TopTalkersChef"]);
    cmd.args(extra);
    sniff_dumplings(&mut cmd, capture)
}

fn add(
    map: &mut BTreeMap<Pair, Counts>,
    proto: &str,
    a: &str,
    b: &str,
    ab: (u64, u64),
    ba: (u64, u64),
) {
    let (key, first, second) = if a <= b {
        ((proto.to_owned(), a.to_owned(), b.to_owned()), ab, ba)
    } else {
        ((proto.to_owned(), b.to_owned(), a.to_owned()), ba, ab)
    };
    let c = map.entry(key).or_default();
    c[0] += first.0;
    c[1] += first.1;
    c[2] += second.0;
    c[3] += second.1;
}

fn num(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

/// The `flow_ended` summaries of a replay.
fn ended(dumplings: &[Value]) -> Vec<&Value> {
    dumplings
        .iter()
        .filter(|d| {
            d["metadata"]["chef"] == "TopTalkersChef" && d["metadata"]["driver"] == "packet"
        })
        .map(|d| &d["payload"]["flow_ended"])
        .collect()
}

const CAPTURES: [&str; 8] = [
    "arkime__dns-wiresharkrepo.pcap",
    "ndpi__chrome.pcap",
    "ndpi__anyconnect-vpn.pcap",
    "zeek__var-services-std-ports.pcap",
    "arkime__http-simple-get.pcap",
    "zeek__http__methods.pcap",
    "arkime__v6.pcap",
    "pcapplusplus__ExamplesTest__pcap_examples__tls.pcap",
];

#[test]
fn flow_summaries_match_tshark_conversations() {
    let mut checked = 0;
    for name in CAPTURES {
        let Some(path) = shared_pcap(name) else {
            return;
        };
        let truth_file = format!("{}.conv.tsv", name.trim_end_matches(".pcap"));
        let mut truth: BTreeMap<Pair, Counts> = BTreeMap::new();
        for r in truth_rows(&truth_file) {
            assert_eq!(r.len(), 7, "{truth_file}: {r:?}");
            let n = |i: usize| {
                r[i].parse::<u64>()
                    .unwrap_or_else(|_| panic!("{truth_file}: {r:?}"))
            };
            add(&mut truth, &r[0], &r[1], &r[2], (n(3), n(4)), (n(5), n(6)));
        }
        assert!(!truth.is_empty(), "{truth_file}: no conversations");
        let (dumplings, stderr) = replay(&path, &[]);
        let flows = ended(&dumplings);
        let mut ours: BTreeMap<Pair, Counts> = BTreeMap::new();
        let mut ids = BTreeSet::new();
        for f in &flows {
            assert!(ids.insert(num(&f["id"])), "{name}: flow id twice: {f}");
            let reason = f["end_reason"].as_str().unwrap_or_default();
            assert!(
                ["fin", "rst", "idle_timeout", "evicted", "end_of_capture"].contains(&reason),
                "{name}: {f}"
            );
            assert_ne!(
                reason, "evicted",
                "{name}: the default table never fills here: {f}"
            );
            let flags: Vec<&str> = f["tcp_flags"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            match reason {
                "fin" => assert!(flags.contains(&"FIN"), "{name}: {f}"),
                "rst" => assert!(flags.contains(&"RST"), "{name}: {f}"),
                _ => {}
            }
            assert!(f["first"].as_f64() <= f["last"].as_f64(), "{name}: {f}");
            let proto = f["protocol"].as_str().unwrap_or_default();
            if proto != "tcp" && proto != "udp" {
                continue;
            }
            let o = f["originator"].as_str().unwrap_or_default();
            let r = f["responder"].as_str().unwrap_or_default();
            add(
                &mut ours,
                proto,
                o,
                r,
                (
                    num(&f["packets_from_originator"]),
                    num(&f["bytes_from_originator"]),
                ),
                (
                    num(&f["packets_from_responder"]),
                    num(&f["bytes_from_responder"]),
                ),
            );
        }
        // Every conversation tshark sees, with the same frames and bytes each way, and no
        // other (summed per 5-tuple: an idle timeout or port reuse may split one).
        for (pair, want) in &truth {
            assert_eq!(
                ours.get(pair),
                Some(want),
                "{name}: {pair:?} (ours, tshark)"
            );
        }
        let extra: Vec<_> = ours.keys().filter(|k| !truth.contains_key(*k)).collect();
        assert!(
            extra.is_empty(),
            "{name}: flows tshark does not see: {extra:?}"
        );
        // The exit summary counts the same flows.
        assert!(
            stderr.contains(&format!("flows: {} started", flows.len())),
            "{name}: {stderr}"
        );
        checked += truth.len();
    }
    assert!(checked > 150, "only {checked} conversations checked");
}

#[test]
fn a_tiny_table_evicts_and_a_short_timeout_splits_but_nothing_is_lost() {
    let Some(path) = shared_pcap("ndpi__anyconnect-vpn.pcap") else {
        return;
    };
    let (dumplings, stderr) = replay(
        &path,
        &[
            "--flow-table-size",
            "2",
            "--flow-idle-udp-secs",
            "1",
            "--flow-idle-tcp-secs",
            "1",
        ],
    );
    let flows = ended(&dumplings);
    let evicted = flows
        .iter()
        .filter(|f| f["end_reason"] == "evicted")
        .count();
    assert!(evicted > 10, "{stderr}");
    let idle = flows
        .iter()
        .filter(|f| f["end_reason"] == "idle_timeout")
        .count();
    assert!(idle > 0, "{stderr}");
    assert!(
        stderr.contains(&format!("{evicted} evicted (table full)")),
        "{stderr}"
    );
    // Evicted or not, every TCP/UDP frame is counted in exactly one flow.
    let total: u64 = flows
        .iter()
        .filter(|f| f["protocol"] == "tcp" || f["protocol"] == "udp")
        .map(|f| num(&f["packets_from_originator"]) + num(&f["packets_from_responder"]))
        .sum();
    let truth: u64 = truth_rows("ndpi__anyconnect-vpn.conv.tsv")
        .iter()
        .map(|r| r[3].parse::<u64>().unwrap_or(0) + r[5].parse::<u64>().unwrap_or(0))
        .sum();
    assert_eq!(total, truth);
    // The interval dumplings' counts agree (summed over every poke).
    let intervals: Vec<&Value> = dumplings
        .iter()
        .filter(|d| {
            d["metadata"]["chef"] == "TopTalkersChef" && d["metadata"]["driver"] == "interval"
        })
        .map(|d| &d["payload"]["top_talkers"])
        .collect();
    assert!(!intervals.is_empty(), "no interval dumpling");
    let sum = |f: &dyn Fn(&Value) -> u64| intervals.iter().map(|t| f(t)).sum::<u64>();
    assert_eq!(
        sum(&|t| num(&t["connections_ended"]["evicted"])),
        evicted as u64
    );
    assert_eq!(sum(&|t| num(&t["connections_started"])), flows.len() as u64);
}

#[test]
fn flags_are_checked_and_named() {
    let out = Command::new(bin("nd-sniff"))
        .args([
            "-r",
            "/dev/null",
            "--no-hub",
            "--stdout",
            "--flow-table-size",
            "0",
        ])
        .output()
        .expect("nd-sniff runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--flow-table-size"), "{err}");
    let help = Command::new(bin("nd-sniff"))
        .arg("--help")
        .output()
        .expect("nd-sniff runs");
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--flow-table-size",
        "--flow-idle-tcp-secs",
        "--flow-idle-udp-secs",
        "--flow-idle-icmp-secs",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help");
    }
}
