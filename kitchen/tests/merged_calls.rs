//! A sparse chef's calls merged in a replay window (`kitchen/src/dispatch/lane/merge.rs`):
//! the output is byte-identical to unmerged calls, a trap loses the merged call's packets
//! and counts once, and a merged call has the deadline of every call it replaces. Real
//! wasm chefs (the built-ins and the `sparse-chef` fixture) on synthesized captures,
//! replayed as `nd-sniff -r` does.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use common::{host_with, load_fixture, slot, write_pcap, Collect};
use kitchen::chef_host::{ChefLimits, ChefSource, LoadedChef};
use kitchen::chefs::builtin::BUILTIN_CHEFS;
use kitchen::dispatch::{ClockMode, Dispatcher};
use kitchen::run::replay::{replay, NoHooks, ReplayEnd, ReplayOptions};

const POKE: Duration = Duration::from_secs(1);

/// An Ethernet ARP request for `tpa` from 10.0.(n>>8).(n&255), at `at_us` µs after the
/// capture's start.
fn arp(n: u32, tpa: [u8; 4], at_us: u64) -> (u64, Vec<u8>) {
    let (hi, lo) = ((n >> 8) as u8, n as u8);
    let mut frame = vec![0xffu8; 6];
    frame.extend_from_slice(&[0x02, 0, 0, 9, hi, lo, 0x08, 0x06]);
    frame.extend_from_slice(&[0, 1, 0x08, 0, 6, 4, 0, 1, 0x02, 0, 0, 9, hi, lo]);
    frame.extend_from_slice(&[10, 0, hi, lo, 0, 0, 0, 0, 0, 0]);
    frame.extend_from_slice(&tpa);
    (at_us, frame)
}

/// An Ethernet + IPv4 + UDP frame (port 9), at `at_us`.
fn udp(n: u32, at_us: u64) -> (u64, Vec<u8>) {
    let mut frame = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x08, 0x00];
    let (hi, lo) = ((n >> 8) as u8, n as u8);
    frame.extend_from_slice(&[0x45, 0, 0, 32, 0, 0, 0, 0, 64, 17, 0, 0]);
    frame.extend_from_slice(&[10, 1, hi, lo, 10, 2, 0, 1]);
    frame.extend_from_slice(&[0x30, 0x39, 0, 9, 0, 12, 0, 0, b'p', b'i', b'n', b'g']);
    (at_us, frame)
}

/// Replay `path` through `chefs` as `nd-sniff -r` does, with merged calls on or off:
/// the dumplings in order and the dispatcher (for its chefs' counters).
fn run(path: &Path, chefs: Vec<LoadedChef>, merge: bool) -> (Vec<String>, Dispatcher) {
    let out = Collect::default();
    let mut d = Dispatcher::new(
        "test_kitchen",
        chefs.into_iter().map(slot).collect(),
        POKE,
        ClockMode::Replay,
        Box::new(out.clone()),
    );
    d.set_merge_calls(merge);
    let reader = capture::FileReader::open(path).expect("open capture");
    let options = ReplayOptions {
        filter: None,
        filter_check: None,
        stop: Arc::new(AtomicBool::new(false)),
        progress: None,
    };
    let (end, _) = replay(reader, &mut d, &mut NoHooks, options).expect("replay");
    assert!(matches!(end, ReplayEnd::Done), "{end:?}");
    d.finish().expect("finish");
    let lines = out.0.lock().unwrap().clone();
    (lines, d)
}

/// (packet calls, packets offered, seen, dropped, traps, timeouts) of chef `name`.
fn counts(d: &Dispatcher, name: &str) -> (u64, u64, u64, u64, u64, u64) {
    let lane = d
        .chefs()
        .iter()
        .find(|l| l.chef.name() == name)
        .unwrap_or_else(|| panic!("no chef {name}"));
    let (st, c) = (&lane.chef.stats, lane.counters());
    (
        st.packet_calls,
        c.offered,
        c.seen,
        c.dropped,
        st.traps,
        st.timeouts,
    )
}

fn builtin(name: &str, host: &kitchen::chef_host::ChefHost) -> LoadedChef {
    BUILTIN_CHEFS
        .iter()
        .map(|b| host.load(ChefSource::Builtin(b.file), b.bytes).unwrap())
        .find(|c| c.name() == name)
        .unwrap_or_else(|| panic!("no built-in {name}"))
}

/// The ARP target address a `sparse-chef` dumpling names.
fn tpa_of(line: &str) -> String {
    common::json(line)["payload"]["tpa"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// `n` ARP requests, each in its own poke interval (1.1 s apart) with a UDP packet
/// between: unmerged, every ARP packet is a call of its own. `tpa(i)` is packet i's target.
fn sparse_capture(name: &str, n: u32, tpa: impl Fn(u32) -> [u8; 4]) -> PathBuf {
    let mut packets = Vec::new();
    for i in 0..n {
        let at = u64::from(i) * 1_100_000;
        packets.push(arp(i, tpa(i), at));
        packets.push(udp(i, at + 500_000));
    }
    write_pcap("merged_calls", name, &packets)
}

#[test]
fn merged_sparse_calls_give_byte_identical_output_in_far_fewer_calls() {
    let path = sparse_capture("identical.pcap", 300, |i| [10, 0, 1, i as u8]);
    let host = host_with(ChefLimits::default());
    let chefs = || {
        vec![
            builtin("ARPChef", &host),
            builtin("PacketCountChef", &host),
            load_fixture(&host, "sparse_chef"),
        ]
    };
    let (merged, dm) = run(&path, chefs(), true);
    let (unmerged, du) = run(&path, chefs(), false);
    // ARPChef and SparseChef: one dumpling per ARP packet; PacketCountChef: one per poke.
    assert!(merged.len() >= 600, "{} dumplings", merged.len());
    assert_eq!(merged.len(), unmerged.len());
    for (i, (a, b)) in merged.iter().zip(&unmerged).enumerate() {
        assert_eq!(a, b, "dumpling {i} differs");
    }
    for chef in ["ARPChef", "SparseChef"] {
        let (calls_m, offered_m, seen_m, dropped_m, ..) = counts(&dm, chef);
        let (calls_u, offered_u, seen_u, dropped_u, ..) = counts(&du, chef);
        assert_eq!((offered_m, seen_m, dropped_m), (300, 300, 0), "{chef}");
        assert_eq!((offered_u, seen_u, dropped_u), (300, 300, 0), "{chef}");
        assert_eq!(calls_u, 300, "{chef}: unmerged, one call per ARP packet");
        // Up to 16 calls merged into one, within a window (512 packets: 2 here).
        assert!(calls_m <= 300 / 16 + 4, "{chef}: {calls_m} merged calls");
    }
    // PacketCountChef takes pokes: never merged.
    assert_eq!(
        counts(&dm, "PacketCountChef").0,
        counts(&du, "PacketCountChef").0
    );
}

#[test]
fn a_trap_in_a_merged_call_loses_that_calls_packets_and_counts_once() {
    // Packet 20 traps; the call that carries it is lost.
    let path = sparse_capture("trap.pcap", 40, |i| {
        if i == 20 {
            [10, 9, 9, 9]
        } else {
            [10, 0, 2, i as u8]
        }
    });
    let host = host_with(ChefLimits::default());
    let (merged, dm) = run(&path, vec![load_fixture(&host, "sparse_chef")], true);
    let (unmerged, du) = run(&path, vec![load_fixture(&host, "sparse_chef")], false);
    let seen = |lines: &[String], i: u32| lines.iter().any(|l| tpa_of(l) == format!("10.0.2.{i}"));
    let (calls_m, offered_m, seen_m, dropped_m, traps_m, _) = counts(&dm, "SparseChef");
    let (_, offered_u, seen_u, dropped_u, traps_u, _) = counts(&du, "SparseChef");
    // One failure each way: the trap is one failed call, merged or not.
    assert_eq!((traps_m, traps_u), (1, 1));
    assert_eq!(offered_m, 40);
    assert_eq!(offered_m, seen_m + dropped_m);
    assert_eq!(offered_u, seen_u + dropped_u);
    // Unmerged, packet 19 was a call of its own before the trap; merged, it shared the
    // trapping call (calls of 16 segments from the window's start: 16..32) and is lost
    // with it, as are the packets after 20 in that call.
    assert!(
        seen(&unmerged, 19),
        "unmerged: packet 19's dumpling is sent"
    );
    assert!(
        !seen(&merged, 19),
        "merged: packet 19 shared the trapping call"
    );
    assert!(
        !seen(&merged, 21),
        "merged: packet 21 shared the trapping call"
    );
    assert!(
        seen(&merged, 15),
        "merged: the call before the trapping one is kept"
    );
    assert!(
        dropped_m >= 16,
        "merged: the whole call's packets are dropped ({dropped_m})"
    );
    assert!(dropped_m > dropped_u, "{dropped_m} vs {dropped_u}");
    assert!(calls_m < 40);
    // Nothing is sent for the packets lost: every dumpling names a packet seen.
    assert_eq!(merged.len() as u64, seen_m);
}

#[test]
fn a_merged_call_has_the_deadline_of_every_call_it_replaces() {
    // Four packets that each take 150 ms of real time (the chef spins on its monotonic
    // clock), each in its own poke interval, under a 300 ms deadline: every unmerged call
    // fits; merged they are one 600 ms call, which fits the 4 x 300 ms it gets.
    let path = sparse_capture("deadline.pcap", 4, |i| [10, 8, 15, i as u8]);
    let limits = ChefLimits {
        deadline: Duration::from_millis(300),
        ..ChefLimits::default()
    };
    let host = host_with(limits);
    let (merged, dm) = run(&path, vec![load_fixture(&host, "sparse_chef")], true);
    let (calls, offered, seen, dropped, traps, timeouts) = counts(&dm, "SparseChef");
    assert_eq!(calls, 1, "the four calls were merged into one");
    assert_eq!((offered, seen, dropped, traps, timeouts), (4, 4, 0, 0, 0));
    let tpas: Vec<String> = merged.iter().map(|l| tpa_of(l)).collect();
    assert_eq!(tpas, ["10.8.15.0", "10.8.15.1", "10.8.15.2", "10.8.15.3"]);
}
