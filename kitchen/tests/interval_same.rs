//! `interval-same` against a real component, the `same_chef` fixture (its answer is picked by
//! the poke's time, `now_ns % 1000`; its handler's `on-interval` sends the same payloads as
//! text): a `same` makes byte for byte the dumpling the text makes, with the same counters
//! and output budgets; it names positions of the previous answer only; after a restart it
//! names nothing (counted, no crash); a payload refused for a budget stays nameable.

mod common;

use std::time::Duration;

use common::*;
use kitchen::chef_host::{ChefLimits, ChefStats, LoadedChef};
use kitchen::dispatch::{ChefCounters, ClockMode, Dispatcher};

const SEC: u64 = 1_000_000_000;

/// Poke a replay dispatcher holding only `chef` at each of `times`; the dumplings of each
/// poke, the lane's counters and the chef's own stats (after the chef is retired, which
/// pokes it a last time, at the last time: its dumplings are not in the list, its counts
/// are).
fn poke_at(chef: LoadedChef, times: &[u64]) -> (Vec<Vec<String>>, ChefCounters, ChefStats) {
    let out = Collect::default();
    let mut d = Dispatcher::new(
        "k",
        vec![slot(chef)],
        Duration::from_secs(3600),
        ClockMode::Replay,
        Box::new(out.clone()),
    );
    // An ARP request: a packet at each poke's time moves the replay's clock (what the
    // per-second output budget follows) to it.
    let mut frame = vec![0xff; 6];
    frame.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
    frame.extend_from_slice(&[2, 0, 0, 0, 0, 1, 10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 10, 0, 0, 2]);
    let mut per_poke = Vec::new();
    for t in times {
        let before = out.0.lock().unwrap().len();
        let record = capture::PacketRecord {
            timestamp_ns: *t,
            link_type: 1,
            interface_index: 0,
            original_len: frame.len() as u32,
            data: &frame,
        };
        d.push(&record).expect("packet");
        d.poke(*t).expect("poke");
        per_poke.push(out.0.lock().unwrap()[before..].to_vec());
    }
    let (slot, counters) = d.retire_chef(0).expect("retire");
    let stats = slot.chef.stats.clone();
    (per_poke, counters, stats)
}

/// Pokes 10 s apart picking the fixture's answers `codes`.
fn times(codes: &[u64]) -> Vec<u64> {
    codes
        .iter()
        .enumerate()
        .map(|(n, c)| (n as u64 + 1) * 10 * SEC + c)
        .collect()
}

/// The fixture loaded on `host`, answering through `interval-same` or not.
fn same_chef(host: &kitchen::chef_host::ChefHost, same: bool) -> LoadedChef {
    let mut chef = load_fixture(host, "same_chef");
    chef.set_interval_same(same);
    assert_eq!(chef.answers_same(), same);
    chef
}

/// The payload of a dumpling line.
fn payload(line: &str) -> String {
    json(line)["payload"].to_string()
}

/// The counters a `same` must leave as the text would.
fn outcome(c: &ChefCounters) -> [u64; 6] {
    [
        c.dumplings,
        c.bytes,
        c.invalid,
        c.oversize,
        c.over_cap,
        c.over_budget,
    ]
}

#[test]
fn same_makes_the_dumplings_the_text_makes() {
    let host = host();
    // Two payloads; swapped by `same`; a new text beside two `same` of one payload; a lone
    // `same`; then `same` past the previous answer (dropped: the handler leaves them out).
    let codes = times(&[0, 1, 1, 8, 8, 6, 0, 2, 0, 1]);
    let (a, ca, sa) = poke_at(same_chef(&host, true), &codes);
    let (b, cb, sb) = poke_at(same_chef(&host, false), &codes);
    assert_eq!(a, b, "byte-identical dumplings, poke by poke");
    assert_eq!(outcome(&ca), outcome(&cb));
    let sizes: Vec<usize> = a.iter().map(Vec::len).collect();
    assert_eq!(sizes, [2, 3, 3, 3, 3, 1, 2, 1, 2, 3]);
    // Poke 2 swapped poke 1's payloads; poke 4 sent the table twice as `same(0)`.
    assert_eq!(payload(&a[1][0]), payload(&a[0][1]));
    assert_eq!(payload(&a[1][1]), payload(&a[0][0]));
    assert!(payload(&a[0][0]).starts_with("{\"lookups_seen\""));
    assert_eq!(payload(&a[3][1]), payload(&a[2][0]));
    assert_eq!(payload(&a[3][2]), payload(&a[2][0]));
    assert_eq!(payload(&a[4][1]), "1");
    // The two `same` past the previous answer: dropped and counted by the host only.
    assert_eq!((sa.same_unresolved, sa.undecodable), (2, 2));
    assert_eq!((sb.same_unresolved, sb.undecodable), (0, 0));
    assert_eq!(sa.traps + sb.traps, 0);
}

#[test]
fn after_a_restart_same_names_nothing() {
    let host = host();
    // Two payloads; a trap (the instance and what it kept are dropped); `same(0)` from
    // the restarted instance names nothing; two payloads; `same(0)` again names the table.
    let (a, _, stats) = poke_at(same_chef(&host, true), &times(&[0, 3, 6, 0, 6]));
    let sizes: Vec<usize> = a.iter().map(Vec::len).collect();
    assert_eq!(sizes, [2, 0, 0, 2, 1]);
    assert_eq!((stats.traps, stats.restarts), (1, 1));
    assert_eq!((stats.same_unresolved, stats.undecodable), (1, 1));
    assert_eq!(payload(&a[4][0]), payload(&a[3][0]));
    assert_eq!(payload(&a[4][0]), payload(&a[0][0]));
}

#[test]
fn repeated_huge_payloads_take_the_output_budget_as_text_does() {
    let limits = ChefLimits {
        max_output_bytes_per_call: 1 << 20,
        ..ChefLimits::default()
    };
    let host = host_with(limits);
    // A 300 000-byte payload and an invalid one; then the large one 8 times by `same(0)`
    // and `same(1)` (the invalid one: not kept); then `same(0)` again.
    let codes = times(&[4, 5, 6]);
    let (a, ca, sa) = poke_at(same_chef(&host, true), &codes);
    let (b, cb, _) = poke_at(same_chef(&host, false), &codes);
    assert_eq!(a, b);
    let sizes: Vec<usize> = a.iter().map(Vec::len).collect();
    // 1 MiB per call holds three of the eight; the other five are over the budget.
    assert_eq!(sizes, [1, 3, 1]);
    assert_eq!(ca.over_budget, 5);
    // And the last poke's `same(0)`, accepted.
    assert_eq!(ca.dumplings, 6);
    assert!(ca.bytes > 6 * 300_000);
    // Text: "not json" refused twice (sent again); `same(1)`: named nothing.
    assert_eq!(
        [ca.over_budget, ca.dumplings, ca.bytes],
        [cb.over_budget, cb.dumplings, cb.bytes]
    );
    assert_eq!((ca.invalid, sa.same_unresolved), (1, 1));
    assert_eq!(cb.invalid, 2);

    // What is kept stays within one call's budget: the three accepted (900 000 bytes),
    // not the five refused for it (another 300 000 would pass 1 MiB), so `same(5)` names
    // nothing.
    let (a, ca, sa) = poke_at(same_chef(&host, true), &times(&[4, 5, 7]));
    let sizes: Vec<usize> = a.iter().map(Vec::len).collect();
    assert_eq!(sizes, [1, 3, 0]);
    // `same(1)`, `same(5)` and the last poke's `same(5)`.
    assert_eq!(sa.same_unresolved, 3);
    assert_eq!(ca.over_budget, 5);
}

#[test]
fn a_payload_refused_for_the_per_second_budget_stays_nameable() {
    let limits = ChefLimits {
        max_output_bytes_per_sec: 500_000,
        ..ChefLimits::default()
    };
    let host = host_with(limits);
    // The 300 000-byte payload (200 000 left this second), then `same(0)` twice within the
    // second (over the budget: held, not checked), then two seconds later (accepted).
    let t = 10 * SEC;
    let at = [t + 4, t + 1_006, t + 2_006, t + 2 * SEC + 6];
    let (a, ca, sa) = poke_at(same_chef(&host, true), &at);
    let (b, cb, _) = poke_at(same_chef(&host, false), &at);
    assert_eq!(a, b);
    assert_eq!(outcome(&ca), outcome(&cb));
    let sizes: Vec<usize> = a.iter().map(Vec::len).collect();
    assert_eq!(sizes, [1, 0, 0, 1]);
    // Twice, and at the last poke, in the same second as the accepted one.
    assert_eq!(ca.over_budget, 3);
    assert_eq!(sa.same_unresolved, 0);
}
