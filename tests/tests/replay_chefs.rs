//! The sample chefs, as real wasm components inside the real `nd-sniff`, replaying real
//! captures, checked against ground truth computed independently by tshark
//! (`tests/data/truth/generate.sh`) and against the Python original's own output.

use e2e_tests::{json_lines, shared_pcap, sniff_dumplings, stdout_replay, test_data, truth_rows};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Replays `capture` through the named built-in chefs (no hub) and returns the dumplings.
/// The poke interval is an hour, so the only interval dumplings are the final poke's.
fn replay(capture: &Path, chefs: &[&str]) -> Vec<Value> {
    let mut cmd = stdout_replay(capture, "test_kitchen", "3600");
    cmd.args(["-f", ""]);
    for chef in chefs {
        cmd.args(["-c", chef]);
    }
    let (dumplings, _) = sniff_dumplings(&mut cmd, capture);
    for d in &dumplings {
        assert_eq!(d["metadata"]["kitchen"], "test_kitchen", "{d}");
        assert!(d["metadata"]["creation_time"].is_f64(), "{d}");
    }
    dumplings
}

fn by_chef<'a>(dumplings: &'a [Value], chef: &str, driver: &str) -> Vec<&'a Value> {
    dumplings
        .iter()
        .filter(|d| d["metadata"]["chef"] == chef && d["metadata"]["driver"] == driver)
        .collect()
}

fn capture_path(name: &str) -> Option<std::path::PathBuf> {
    if name == "loopback_dns_arp_http.pcap" {
        return Some(test_data("original/loopback_dns_arp_http.pcap"));
    }
    if name == "ndpi__anyconnect-vpn.pcap" {
        return Some(e2e_tests::workspace_root().join("captures").join(name));
    }
    shared_pcap(name)
}

fn stem(name: &str) -> &str {
    name.trim_end_matches(".pcap")
}

#[test]
fn arp_chef_reports_every_arp_packet_as_tshark_sees_it() {
    for name in [
        "loopback_dns_arp_http.pcap",
        "arkime__cloudshark-arp.pcap",
        "ndpi__anyconnect-vpn.pcap",
        "ndpi__dns-tunnel-iodine.pcap",
        "zeek__var-services-std-ports.pcap",
    ] {
        let Some(path) = capture_path(name) else {
            continue;
        };
        let truth = truth_rows(&format!("{}.arp.tsv", stem(name)));
        assert!(!truth.is_empty(), "{name}: no ARP ground truth");
        let dumplings = replay(&path, &["ARPChef"]);
        let arp = by_chef(&dumplings, "ARPChef", "packet");
        assert_eq!(
            arp.len(),
            truth.len(),
            "{name}: one dumpling per ARP packet"
        );
        for (d, row) in arp.iter().zip(&truth) {
            let p = &d["payload"];
            let op = match row[2].as_str() {
                "1" => Value::from("request"),
                "2" => Value::from("reply"),
                other => Value::from(other.parse::<u64>().expect("opcode")),
            };
            assert_eq!(p["operation"], op, "{name} frame {}", row[0]);
            assert_eq!(p["src_hw"], row[3].as_str(), "{name} frame {}", row[0]);
            assert_eq!(p["src_ip"], row[4].as_str(), "{name} frame {}", row[0]);
            assert_eq!(p["dst_hw"], row[5].as_str(), "{name} frame {}", row[0]);
            assert_eq!(p["dst_ip"], row[6].as_str(), "{name} frame {}", row[0]);
            // Deviation from the original (documented): `time` is the capture time.
            let want: f64 = row[1].parse().expect("epoch");
            let got = p["time"].as_f64().expect("time is a number");
            assert!((got - want).abs() < 1e-5, "{name}: time {got} vs {want}");
            let created = d["metadata"]["creation_time"]
                .as_f64()
                .expect("creation_time");
            assert!(
                (created - want).abs() < 1e-5,
                "replayed dumplings carry capture time: {created} vs {want}"
            );
        }
    }
}

#[test]
fn dns_lookup_chef_sees_every_name_tshark_sees() {
    for name in [
        "loopback_dns_arp_http.pcap",
        "arkime__dns-wiresharkrepo.pcap",
        "ndpi__anyconnect-vpn.pcap",
        "zeek__var-services-std-ports.pcap",
        "arkime__v6.pcap",
    ] {
        let Some(path) = capture_path(name) else {
            continue;
        };
        let truth = truth_rows(&format!("{}.dns.tsv", stem(name)));
        assert!(!truth.is_empty(), "{name}: no DNS ground truth");
        // tshark writes the root name as "<Root>"; the chef strips one trailing dot.
        let want: BTreeSet<String> = truth
            .iter()
            .map(|r| r[4].clone())
            .filter(|n| n != "<Root>")
            .collect();
        let dumplings = replay(&path, &["DNSLookupChef"]);
        let seen: BTreeSet<String> = by_chef(&dumplings, "DNSLookupChef", "packet")
            .iter()
            .map(|d| {
                d["payload"]["lookup"]["hostname"]
                    .as_str()
                    .expect("hostname")
                    .to_owned()
            })
            .collect();
        let missing: Vec<_> = want.difference(&seen).collect();
        let extra: Vec<_> = seen.difference(&want).collect();
        assert!(
            missing.is_empty(),
            "{name}: names not reported: {missing:?}"
        );
        assert!(
            extra.is_empty(),
            "{name}: names tshark did not see: {extra:?}"
        );
        let interval = by_chef(&dumplings, "DNSLookupChef", "interval");
        let last = interval.last().expect("a final poke dumpling");
        let table = last["payload"]["lookups_seen"]
            .as_object()
            .expect("lookups_seen object");
        let keys: BTreeSet<String> = table.keys().cloned().collect();
        assert_eq!(keys, seen, "{name}: lookups_seen has every name");
        for (host, entry) in table {
            assert!(entry["count"].as_u64().unwrap_or(0) >= 1, "{host}: {entry}");
            assert!(entry["latest"].is_f64(), "{host}: {entry}");
        }
    }
}

/// scapy-style layer counts expected from tshark's dissector chain of each frame. Only
/// layers that both tools name the same way are compared. Like scapy, every instance of a
/// layer counts (a double-tagged frame counts `802.1Q` twice); a layer inside an ICMP error
/// is scapy's "X in ICMP".
fn expected_layer_counts(frames: &[Vec<String>]) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for row in frames {
        let mut in_icmp = false;
        for token in row[2].split(':') {
            let name = match token {
                "eth" => "Ethernet",
                "vlan" => "802.1Q",
                "arp" => "ARP",
                "ip" => "IP",
                "ipv6" => "IPv6",
                "tcp" => "TCP",
                "udp" => "UDP",
                "icmp" => "ICMP",
                _ => continue,
            };
            let key = if in_icmp && name != "ICMP" {
                format!("{name} in ICMP")
            } else {
                name.to_owned()
            };
            *counts.entry(key).or_insert(0) += 1;
            if token == "icmp" {
                in_icmp = true;
            }
        }
    }
    counts
}

#[test]
fn packet_count_chef_counts_layers_as_tshark_does() {
    for name in [
        "loopback_dns_arp_http.pcap",
        "ndpi__anyconnect-vpn.pcap",
        "arkime__cloudshark-arp.pcap",
        "arkime__twovlan.pcap",
        "arkime__http-simple-get.pcap",
    ] {
        let Some(path) = capture_path(name) else {
            continue;
        };
        let frames = truth_rows(&format!("{}.frames.tsv", stem(name)));
        assert!(!frames.is_empty(), "{name}: no frame ground truth");
        let want = expected_layer_counts(&frames);
        let dumplings = replay(&path, &["PacketCountChef"]);
        assert!(
            by_chef(&dumplings, "PacketCountChef", "packet").is_empty(),
            "PacketCountChef makes interval dumplings only"
        );
        let interval = by_chef(&dumplings, "PacketCountChef", "interval");
        let counts = &interval.last().expect("final poke")["payload"]["packet_counts"];
        for (layer, n) in &want {
            assert_eq!(
                counts[layer.as_str()].as_u64(),
                Some(*n),
                "{name}: {layer} count (chef said {counts})"
            );
        }
        assert_eq!(
            counts["Ethernet"].as_u64(),
            Some(frames.len() as u64),
            "{name}: every frame is counted once"
        );
    }
}

#[test]
fn original_sample_chefs_match_the_python_original_on_its_own_capture() {
    let capture = test_data("original/loopback_dns_arp_http.pcap");
    let original_text =
        std::fs::read(test_data("original/pcap_replay_output.jsonl")).expect("original output");
    let original = json_lines(&original_text);
    let ours = replay(&capture, &["PacketCountChef", "DNSLookupChef", "ARPChef"]);

    // ARP: the same four dumplings, field for field, timestamps aside.
    let strip = |v: &Value| {
        let mut p = v["payload"].clone();
        if let Some(o) = p.as_object_mut() {
            o.remove("time");
        }
        p
    };
    let orig_arp: Vec<Value> = by_chef(&original, "ARPChef", "packet")
        .iter()
        .map(|d| strip(d))
        .collect();
    let our_arp: Vec<Value> = by_chef(&ours, "ARPChef", "packet")
        .iter()
        .map(|d| strip(d))
        .collect();
    assert_eq!(our_arp, orig_arp, "ARPChef payloads equal the original's");
    for d in by_chef(&ours, "ARPChef", "packet") {
        let keys: Vec<&String> = d["payload"].as_object().expect("object").keys().collect();
        assert_eq!(
            keys,
            [
                "operation",
                "src_hw",
                "src_ip",
                "dst_hw",
                "dst_ip",
                "time",
                "notes"
            ],
            "ARPChef payload keys in the original's order"
        );
    }

    // PacketCountChef: the same counts for every layer the original reported.
    let orig_counts = &by_chef(&original, "PacketCountChef", "interval")
        .last()
        .expect("original count")["payload"]["packet_counts"];
    let our_counts = &by_chef(&ours, "PacketCountChef", "interval")
        .last()
        .expect("our count")["payload"]["packet_counts"];
    for (layer, n) in orig_counts.as_object().expect("counts object") {
        assert_eq!(
            &our_counts[layer.as_str()],
            n,
            "PacketCountChef {layer}: ours {our_counts} vs original {orig_counts}"
        );
    }

    // DNSLookupChef: the same names. The original counted a query and its response
    // separately (bug 19 in the spec); ours counts each lookup once, so every name the
    // original reported is reported, and no other.
    let names = |ds: &[Value]| -> BTreeSet<String> {
        by_chef(ds, "DNSLookupChef", "packet")
            .iter()
            .map(|d| {
                d["payload"]["lookup"]["hostname"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned()
            })
            .collect()
    };
    let orig_names = names(&original);
    let our_names = names(&ours);
    assert!(
        orig_names.is_subset(&our_names),
        "ours {our_names:?} ⊇ original {orig_names:?}"
    );
    for d in by_chef(&ours, "DNSLookupChef", "packet") {
        assert!(d["payload"]["lookup"]["when"].is_f64(), "{d}");
    }
}

#[test]
fn replay_is_deterministic() {
    let capture = e2e_tests::workspace_root().join("captures/ndpi__anyconnect-vpn.pcap");
    let first = replay(&capture, &[]);
    let second = replay(&capture, &[]);
    assert!(!first.is_empty(), "the sample chefs make dumplings");
    assert_eq!(
        first, second,
        "two replays of one file give identical dumplings"
    );
}

#[test]
fn tls_server_name_chef_reports_every_single_segment_client_hello() {
    for name in [
        "ndpi__chrome.pcap",
        "ndpi__anyconnect-vpn.pcap",
        "pcapplusplus__ExamplesTest__pcap_examples__tls.pcap",
    ] {
        let Some(path) = capture_path(name) else {
            continue;
        };
        let truth = truth_rows(&format!("{}.sni.tsv", stem(name)));
        // ClientHellos without the server_name extension carry no name to report.
        let want: Vec<&str> = truth
            .iter()
            .filter(|r| r.len() > 1 && !r[1].is_empty())
            .map(|r| r[1].as_str())
            .collect();
        assert!(!want.is_empty(), "{name}: no SNI ground truth");
        let dumplings = replay(&path, &["TLSServerNameChef"]);
        let got: Vec<&str> = by_chef(&dumplings, "TLSServerNameChef", "packet")
            .iter()
            .map(|d| d["payload"]["tls"]["server_name"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(got, want, "{name}: one dumpling per ClientHello, in order");
    }
}

#[test]
fn http_request_chef_reports_every_single_segment_request() {
    for name in [
        "arkime__http-simple-get.pcap",
        "ndpi__anyconnect-vpn.pcap",
        "loopback_dns_arp_http.pcap",
    ] {
        let Some(path) = capture_path(name) else {
            continue;
        };
        let truth = truth_rows(&format!("{}.http.tsv", stem(name)));
        assert!(!truth.is_empty(), "{name}: no HTTP ground truth");
        let dumplings = replay(&path, &["HTTPRequestChef"]);
        let got = by_chef(&dumplings, "HTTPRequestChef", "packet");
        assert_eq!(got.len(), truth.len(), "{name}: one dumpling per request");
        for (d, row) in got.iter().zip(&truth) {
            let req = &d["payload"]["http_request"];
            let field = |i: usize| row.get(i).map(String::as_str).unwrap_or("");
            assert_eq!(req["method"], field(1), "{name} frame {}", row[0]);
            assert_eq!(req["path"], field(3), "{name} frame {}", row[0]);
            if !field(2).is_empty() {
                assert_eq!(req["host"], field(2), "{name} frame {}", row[0]);
            }
            if !field(4).is_empty() {
                assert_eq!(req["user_agent"], field(4), "{name} frame {}", row[0]);
            }
        }
    }
}

#[test]
fn dhcp_lease_chef_reports_every_ack_and_keeps_the_lease() {
    for name in ["arkime__wireshark-dhcp.pcap", "tcpdump__dhcp-rfc4388.pcap"] {
        let Some(path) = capture_path(name) else {
            continue;
        };
        // tshark columns: frame, message type, client MAC, yiaddr, requested IP, hostname.
        let acks: Vec<Vec<String>> = truth_rows(&format!("{}.dhcp.tsv", stem(name)))
            .into_iter()
            .filter(|r| r[1] == "5")
            .collect();
        assert!(!acks.is_empty(), "{name}: no DHCP ACK in the ground truth");
        let dumplings = replay(&path, &["DHCPLeaseChef"]);
        let got: Vec<&Value> = by_chef(&dumplings, "DHCPLeaseChef", "packet")
            .into_iter()
            .filter(|d| d["payload"]["dhcp"]["event"] == "ack")
            .collect();
        assert_eq!(got.len(), acks.len(), "{name}: one dumpling per ACK");
        for (d, row) in got.iter().zip(&acks) {
            assert_eq!(d["payload"]["dhcp"]["client_hw"], row[2].as_str(), "{name}");
            assert_eq!(d["payload"]["dhcp"]["ip"], row[3].as_str(), "{name}");
        }
        let leases = &by_chef(&dumplings, "DHCPLeaseChef", "interval")
            .last()
            .expect("final poke")["payload"]["leases"];
        let last_ack = acks.last().expect("an ack");
        assert_eq!(
            leases[last_ack[2].as_str()]["ip"],
            last_ack[3].as_str(),
            "{name}: the latest lease is kept ({leases})"
        );
    }
}

#[test]
fn top_talkers_chef_accounts_for_every_tcp_and_udp_packet() {
    let capture = e2e_tests::workspace_root().join("captures/ndpi__anyconnect-vpn.pcap");
    let frames = truth_rows("ndpi__anyconnect-vpn.frames.tsv");
    let dumplings = replay(&capture, &["TopTalkersChef"]);
    let last = &by_chef(&dumplings, "TopTalkersChef", "interval")
        .last()
        .expect("final poke")["payload"]["top_talkers"];
    let packets = last["packets"].as_u64().expect("packets");
    let flows = last["top_flows"].as_array().expect("top_flows");
    assert!(!flows.is_empty(), "{last}");
    // Flows are ordered by bytes, largest first.
    let bytes: Vec<u64> = flows
        .iter()
        .map(|f| f["bytes"].as_u64().unwrap_or(0))
        .collect();
    assert!(bytes.windows(2).all(|w| w[0] >= w[1]), "{bytes:?}");
    let ip_frames = frames
        .iter()
        .filter(|r| r[2].contains(":ip:") || r[2].contains(":ipv6:"))
        .count() as u64;
    assert!(
        packets > 0 && packets <= ip_frames,
        "counted {packets} of {ip_frames} IP packets"
    );
}

#[test]
fn http_request_chef_reports_only_real_requests_from_a_malformed_capture() {
    // Zeek's method-torture capture: tshark's lenient dissector calls 27 segments requests,
    // many without an HTTP version ("OPTIONS www.google.com HTTP/1.1" with no target...).
    // The chef parses strictly (httparse), so it reports a subset, in order, and never
    // anything tshark did not see.
    let name = "zeek__http__methods.pcap";
    let Some(path) = capture_path(name) else {
        return;
    };
    let truth = truth_rows(&format!("{}.http.tsv", stem(name)));
    let dumplings = replay(&path, &["HTTPRequestChef"]);
    let got = by_chef(&dumplings, "HTTPRequestChef", "packet");
    assert!(
        !got.is_empty() && got.len() < truth.len(),
        "{} of {}",
        got.len(),
        truth.len()
    );
    let mut rows = truth.iter();
    for d in got {
        let req = &d["payload"]["http_request"];
        let found = rows.any(|r| req["method"] == r[1].as_str() && req["path"] == r[3].as_str());
        assert!(
            found,
            "{name}: {req} is not a request tshark saw (in order)"
        );
    }
}
