//! Chef API 0.1 and 0.2 side by side (issue 13 item 1): a chef component built against the
//! frozen 0.1 contract (`wit/v0.1/chef.wit`) still loads and runs unchanged in the real
//! `nd-sniff`, and makes exactly the dumplings its 0.2 build makes, on real captures.
//!
//! The 0.1 component is `tests/data/chefs-v0.1/packet_count_chef.wasm`: `PacketCountChef`
//! as built by the SDK before it moved to 0.2 (committed, never rebuilt), so this test keeps
//! checking a real old binary; `dns_lookup_chef_c.wasm` is the C `DNSLookupChef` as the C
//! SDK built it on 0.1 before it moved to 0.2 (another toolchain's 0.1 output).

use e2e_tests::{bin, shared_pcap, sniff_dumplings, stdout_replay, test_data, ChildGuard};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The prebuilt 0.1 `PacketCountChef`.
fn v0_1_packet_count_chef() -> PathBuf {
    test_data("chefs-v0.1/packet_count_chef.wasm")
}

/// Replay `capture` through nd-sniff with extra arguments; the dumplings (pokes every 2 s of
/// capture time, so several interval dumplings per capture) and stderr.
fn replay(capture: &Path, extra: &[&str]) -> (Vec<Value>, String) {
    let mut cmd = stdout_replay(capture, "k", "2");
    cmd.args(["-f", "", "--no-chef-cache"]);
    cmd.args(extra);
    sniff_dumplings(&mut cmd, capture)
}

/// (driver, creation_time, payload) of every dumpling of `chef`, in order.
fn made_by(dumplings: &[Value], chef: &str) -> Vec<(String, String, Value)> {
    dumplings
        .iter()
        .filter(|d| d["metadata"]["chef"] == chef)
        .map(|d| {
            (
                d["metadata"]["driver"].as_str().unwrap_or("?").to_owned(),
                d["metadata"]["creation_time"].to_string(),
                d["payload"].clone(),
            )
        })
        .collect()
}

/// `nd-sniff -l` on the chef folder `dir` lists `chef` as built against chef API 0.1.
fn assert_listed_as_0_1(dir: &str, chef: &str) {
    let mut list = Command::new(bin("nd-sniff"));
    list.args(["-l", "--no-builtin-chefs", "-d", dir, "--no-chef-cache"]);
    let listed = ChildGuard::spawn("nd-sniff", &mut list).wait_output(Duration::from_secs(60));
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.status.success(), "{text}");
    assert!(
        text.contains(chef) && text.contains("chef API 0.1"),
        "{text}"
    );
}

#[test]
fn a_0_1_chef_loads_and_makes_the_same_dumplings_as_its_0_2_build() {
    let dir = e2e_tests::workspace_root().join("target/chef-api-versions/v0_1");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::copy(v0_1_packet_count_chef(), dir.join("packet_count_chef.wasm"))
        .expect("copy the 0.1 chef");
    let dir_arg = dir.to_str().expect("utf-8 path");

    // The listing says which contract each chef was built against.
    assert_listed_as_0_1(dir_arg, "PacketCountChef");

    let mut captures = vec![test_data("original/loopback_dns_arp_http.pcap")];
    // IPv6, VLAN tags, Linux cooked capture and ICMP errors: every optional part of the
    // packet record is exercised through the 0.1 layout.
    for name in [
        "pcapplusplus__Pcap++Test__PcapExamples__VlanPackets.pcap",
        "pcapplusplus__Pcap++Test__PcapExamples__four_ipv6_http_streams.pcap",
        "arkime__twovlan.pcap",
        "ndpi__6in4tunnel.pcap",
    ] {
        captures.extend(shared_pcap(name));
    }
    for capture in &captures {
        let (new, _) = replay(capture, &["-c", "PacketCountChef"]);
        let (old, stderr) = replay(capture, &["--no-builtin-chefs", "-d", dir_arg]);
        let new = made_by(&new, "PacketCountChef");
        let old = made_by(&old, "PacketCountChef");
        assert!(
            !new.is_empty()
                && new.iter().any(|(_, _, p)| p["packet_counts"]
                    .as_object()
                    .is_some_and(|m| !m.is_empty())),
            "{}: the 0.2 PacketCountChef counted nothing: {new:?}",
            capture.display()
        );
        assert_eq!(
            old,
            new,
            "{}: the 0.1 build's dumplings differ from the 0.2 build's; stderr: {stderr}",
            capture.display()
        );
    }
}

/// Host names of `chef`'s packet dumplings in order, and the counts of its last interval
/// dumpling (times aside: the C chef prints capture times with `%.17g`, the Rust one with
/// serde's shortest form).
fn lookups(dumplings: &[Value], chef: &str) -> (Vec<String>, Value) {
    let made = made_by(dumplings, chef);
    let names = made
        .iter()
        .filter(|(driver, _, _)| driver == "packet")
        .map(|(_, _, p)| p["lookup"]["hostname"].as_str().unwrap_or("?").to_owned())
        .collect();
    let counts = made
        .iter()
        .rev()
        .find(|(driver, _, _)| driver == "interval")
        .and_then(|(_, _, p)| p["lookups_seen"].as_object())
        .map(|m| {
            m.iter()
                .map(|(name, seen)| (name.clone(), seen["count"].clone()))
                .collect()
        })
        .unwrap_or(Value::Null);
    (names, counts)
}

/// A C chef built against chef API 0.1, kept as a binary when the C SDK moved to 0.2: the
/// 0.1 path of a second toolchain (clang-19, wasi-libc and wit-bindgen 0.63.0's C bindings
/// of `wit/v0.1`) stays under test. `tests/data/chefs-v0.1/dns_lookup_chef_c.wasm` is
/// `chefs/c/dns_lookup_chef` as `tools/nd-chef/nd-chef build` made it before the move
/// (committed, never rebuilt); it must load, be listed as 0.1, and see every lookup the
/// built-in Rust DNSLookupChef sees, with the same counts.
#[test]
fn a_0_1_c_chef_loads_and_sees_the_lookups_of_the_rust_chef() {
    let dir = e2e_tests::workspace_root().join("target/chef-api-versions/v0_1_c");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::copy(
        test_data("chefs-v0.1/dns_lookup_chef_c.wasm"),
        dir.join("dns_lookup_chef.wasm"),
    )
    .expect("copy the 0.1 C chef");
    let dir_arg = dir.to_str().expect("utf-8 path");
    assert_listed_as_0_1(dir_arg, "DNSLookupChef");
    let mut captures = vec![test_data("original/loopback_dns_arp_http.pcap")];
    captures.extend(shared_pcap("arkime__dns-wiresharkrepo.pcap"));
    captures.extend(shared_pcap("arkime__dns-tcp.pcap"));
    for capture in &captures {
        let (rust, _) = replay(capture, &["-c", "DNSLookupChef"]);
        let (c, stderr) = replay(capture, &["--no-builtin-chefs", "-d", dir_arg]);
        let (rust, c) = (
            lookups(&rust, "DNSLookupChef"),
            lookups(&c, "DNSLookupChef"),
        );
        assert!(
            !rust.0.is_empty(),
            "{}: no lookups to compare",
            capture.display()
        );
        assert_eq!(c, rust, "{}: stderr: {stderr}", capture.display());
    }
}
