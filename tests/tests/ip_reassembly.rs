//! IP reassembly in the real `nd-sniff`, on real captures with IPv4 fragments: every
//! fragment is counted, every datagram tshark puts back together is put back together, and
//! the counts reach `KitchenStatusChef` (replayed with `--kitchen-status on`).
//!
//! The expected figures are tshark's (`tshark -r FILE -Y "ip.flags.mf==1 ||
//! ip.frag_offset>0"`: fragments; distinct `ip.id` among them: datagrams), taken once on
//! 2026-12-05; the captures are fixed files of the shared corpus. `ip4_fragments` repeats
//! the last fragment of two datagrams after they completed (frames 30 and 42): as in the
//! Linux stack, each late copy starts a datagram of its own that waits for fragments that
//! never come, so it ends the replay `incomplete`.

use e2e_tests::{shared_pcap, sniff_dumplings, stdout_replay};

/// (capture, fragments, datagrams reassembled, datagrams incomplete at the end).
const CAPTURES: &[(&str, u64, u64, u64)] = &[
    ("arkime__socks5-http-302-frag.pcap", 62, 4, 0),
    (
        "pcapplusplus__Pcap++Test__PcapExamples__ip4_fragments.pcap",
        50,
        6,
        2,
    ),
];

/// A capture of the shared corpus, which must be there.
fn corpus(name: &str) -> std::path::PathBuf {
    shared_pcap(name)
        .filter(|p| p.is_file())
        .unwrap_or_else(|| panic!("missing {name} in the shared corpus (set ND_SHARED_PCAPS)"))
}

#[test]
fn fragments_are_counted_and_datagrams_reassembled_as_tshark_does() {
    for &(name, fragments, datagrams, incomplete) in CAPTURES {
        let capture = corpus(name);
        let mut cmd = stdout_replay(&capture, "frag_kitchen", "3600");
        cmd.args(["--kitchen-status", "on", "-c", "PacketCountChef"]);
        let (dumplings, log) = sniff_dumplings(&mut cmd, &capture);
        let status = dumplings
            .iter()
            .rev()
            .find(|d| d["metadata"]["chef"] == "KitchenStatusChef")
            .unwrap_or_else(|| panic!("{name}: no KitchenStatusChef dumpling\n{log}"));
        let ip = &status["payload"]["ip_reassembly"];
        assert_eq!(ip["fragments"], fragments, "{name}: {ip}");
        assert_eq!(ip["reassembled"], datagrams, "{name}: {ip}");
        assert_eq!(ip["incomplete"], incomplete, "{name}: {ip}");
        for dropped in ["timed_out", "evicted", "conflicting", "malformed"] {
            assert_eq!(ip[dropped], 0, "{name}: {dropped}: {ip}");
        }
        assert!(
            log.contains(&format!(
                "IP fragments: {fragments} seen, {datagrams} datagrams reassembled"
            )),
            "{name}: exit summary\n{log}"
        );
    }
}

#[test]
fn reassembly_off_offers_fragments_alone_and_counts_nothing() {
    let name = "arkime__socks5-http-302-frag.pcap";
    let capture = corpus(name);
    let mut cmd = stdout_replay(&capture, "frag_kitchen", "3600");
    cmd.args([
        "--kitchen-status",
        "on",
        "--ip-reassembly-kib",
        "0",
        "-c",
        "HTTPRequestChef",
    ]);
    let (dumplings, log) = sniff_dumplings(&mut cmd, &capture);
    let status = dumplings
        .iter()
        .rev()
        .find(|d| d["metadata"]["chef"] == "KitchenStatusChef")
        .expect("a KitchenStatusChef dumpling");
    assert!(status["payload"].get("ip_reassembly").is_none(), "{status}");
    // The GET is cut into fragments: without reassembly the HTTP chef cannot see it.
    assert!(
        !dumplings
            .iter()
            .any(|d| d["metadata"]["chef"] == "HTTPRequestChef"),
        "{log}"
    );
}
