//! The in-place lift of a chef's `list<packet-dumpling>` (`chef_host::packet_answer`)
//! against the path it replaced: wasmtime's `Vec<PacketDumpling>` lift followed by the
//! lane's old per-dumpling decisions (written out below as they were), on answers a real
//! component returns (`kitchen/fixtures/answer-chef`: the answer its arena describes).
//! Generated answers: valid and invalid JSON, invalid UTF-8 (also cut out of a longer
//! string mid-character), out-of-bounds pointers, overlapping strings, bad indexes, the
//! count cap and both output budgets hit mid-list, merged calls, huge and aliased lists.
//! Every case must give the same call result (the same error text), the same verdicts in
//! the same order and the same budget afterwards; also through wasmtime's lift decided after
//! the call (`Intake::settle`, with the generic-lowering diagnostic).

mod common;

use common::*;
use dumpling::{Driver, EnvelopeHead};
use kitchen::chef_host::bindings::PacketDumpling;
use kitchen::chef_host::output_budget::OutputBudget;
use kitchen::chef_host::packet_answer::{Intake, Part, Verdict};
use kitchen::chef_host::{CacheSetting, ChefLimits, LoadedChef};

/// xorshift64*: reproducible cases without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The caps of one case.
#[derive(Debug, Clone)]
struct Cfg {
    cap: usize,
    max_bytes: usize,
    merged: bool,
    parts: Vec<Part>,
    times: Vec<u64>,
}

/// An answer script for `answer-chef` (see its docs).
#[derive(Default)]
struct Script(Vec<u8>);

impl Script {
    fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn own(&mut self, index: u32, bytes: &[u8]) {
        self.u32(index).u32(0).u32(bytes.len() as u32);
        self.0.extend_from_slice(bytes);
    }
    fn raw(&mut self, index: u32, ptr: u32, len: u32) {
        self.u32(index).u32(1).u32(ptr).u32(len);
    }
    fn alias(&mut self, index: u32, record: u32, offset: u32, len: u32) {
        self.u32(index).u32(2).u32(record).u32(offset).u32(len);
    }
}

const PAYLOADS: &[&[u8]] = &[
    br#"{"a":1}"#,
    br#"{"flow":"10.0.0.1:443","bytes":[1,2,3],"ok":true,"x":null}"#,
    br#"{ "spaced" : 1 }"#,
    br#"{"f":1.50}"#,
    br#""\u00e9t\u00e9 \ud83d\ude00""#,
    "\"été ✓ 😀\"".as_bytes(),
    br#"{"x":"#,
    b"",
    b"[[[[[[[[[[]]]]]]]]]]",
    br#"{"long":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}"#,
];

/// A random case: its caps and its script (how many records it owns, for aliases).
fn case(rng: &mut Rng, base_ns: u64) -> (Cfg, Script) {
    let merged = rng.below(3) == 0;
    let parts = if merged {
        let n = 1 + rng.below(4) as usize;
        let mut end = 0;
        (0..n)
            .map(|k| {
                end += 1 + rng.below(4) as usize;
                Part {
                    end,
                    clock_ns: base_ns + 100_000_000 * k as u64 + rng.below(3) * 40_000_000,
                }
            })
            .collect()
    } else {
        vec![Part {
            end: 1 + rng.below(8) as usize,
            clock_ns: base_ns + rng.below(4) * 30_000_000,
        }]
    };
    let items = parts.last().map_or(0, |p| p.end);
    let cfg = Cfg {
        cap: [1, 3, 8, 1000][rng.below(4) as usize],
        max_bytes: [8, 40, 1 << 20][rng.below(3) as usize],
        merged,
        times: (0..items)
            .map(|i| 1_700_000_000_000_000_000 + i as u64 * 1_234_567)
            .collect(),
        parts,
    };
    let mut s = Script::default();
    let n = rng.below(24) as u32;
    s.u32(n);
    // One case in three has one hostile record somewhere (more would fail nearly every
    // call, leaving the decisions untested).
    let hostile = (rng.below(3) == 0).then(|| rng.below(n.max(1) as u64) as u32);
    let mut owned = 0u32;
    for r in 0..n {
        let index = match rng.below(10) {
            0 => items as u32,
            1 => u32::MAX,
            2 => items as u32 + rng.below(3) as u32,
            _ => rng.below(items.max(1) as u64) as u32,
        };
        if hostile == Some(r) {
            match rng.below(5) {
                // Out of bounds: past the memory, or wrapping.
                0 => s.raw(index, 0xffff_fff0, 64),
                1 => s.raw(index, 0x7fff_0000 + rng.below(0x1000) as u32, 16),
                2 => s.own(index, b"\"\xff\xfe\""),
                3 => s.own(index, b"\"\xc3\""),
                // Cut out of a string of multi-byte characters: mid-character or not.
                _ => {
                    s.own(index, "\"ééééé\"".as_bytes());
                    s.alias(index, owned, rng.below(4) as u32, 1 + rng.below(6) as u32);
                    owned += 1;
                }
            }
            continue;
        }
        match rng.below(6) {
            // Overlapping: the start of an earlier string (cut mid-character at times).
            0 if owned > 0 => {
                let r = rng.below(owned as u64) as u32;
                s.alias(index, r, 0, rng.below(3) as u32);
            }
            _ => {
                let p = PAYLOADS[rng.below(PAYLOADS.len() as u64) as usize];
                s.own(index, p);
                owned += 1;
            }
        }
    }
    (cfg, s)
}

/// What the lane did with a call's answer before the in-place lift (`lane.rs`'s
/// `wrap_indexed` and `wrap`, `merge.rs`'s `wrap_segments`), one line per decision.
fn reference(
    out: &[PacketDumpling],
    cfg: &Cfg,
    budget: &mut OutputBudget,
    head: &EnvelopeHead,
) -> Vec<String> {
    let mut v = Vec::new();
    let one =
        |v: &mut Vec<String>, d: &PacketDumpling, at: usize, clock: u64, b: &mut OutputBudget| {
            let len = d.payload.len();
            if len > cfg.max_bytes {
                v.push(format!("oversize {len}"));
                return;
            }
            if let Err(w) = b.take(len as u64, clock) {
                v.push(format!("budget {w:?} {len}"));
                return;
            }
            let t = dumpling::epoch_seconds_from_nanos(cfg.times[at]);
            let w = dumpling::wrap_checked_with(head, t, Driver::Packet, &d.payload);
            v.push(format!("wrapped {w:?}"));
        };
    if !cfg.merged {
        budget.start_call();
        let items = cfg.parts[0].end;
        if out.len() > cfg.cap {
            v.push(format!("over-cap {} {}", out.len(), cfg.cap));
        }
        for d in out.iter().take(cfg.cap) {
            let idx = d.packet_index as usize;
            if idx >= items {
                v.push(format!("bad {idx} {items}"));
                continue;
            }
            one(&mut v, d, idx, cfg.parts[0].clock_ns, budget);
        }
        return v;
    }
    let mut parts: Vec<Vec<&PacketDumpling>> = cfg.parts.iter().map(|_| Vec::new()).collect();
    let mut outside = Vec::new();
    for d in out {
        let idx = d.packet_index as usize;
        match parts.get_mut(cfg.parts.partition_point(|s| s.end <= idx)) {
            Some(part) => part.push(d),
            None => outside.push(idx),
        }
    }
    let mut start = 0;
    for (s, part) in cfg.parts.iter().zip(parts) {
        v.push("part".to_owned());
        budget.start_call();
        if part.len() > cfg.cap {
            v.push(format!("over-cap {} {}", part.len(), cfg.cap));
        }
        for d in part.iter().take(cfg.cap) {
            let rel = d.packet_index as usize - start;
            if rel >= s.end - start {
                v.push(format!("bad {rel} {}", s.end - start));
                continue;
            }
            one(&mut v, d, d.packet_index as usize, s.clock_ns, budget);
        }
        start = s.end;
    }
    for idx in outside {
        v.push(format!("bad {idx} {start}"));
    }
    v
}

/// The intake's verdicts in [`reference`]'s words.
fn words(verdicts: &[Verdict]) -> Vec<String> {
    verdicts
        .iter()
        .map(|v| match v {
            Verdict::Part => "part".to_owned(),
            Verdict::OverCap { made, cap } => format!("over-cap {made} {cap}"),
            Verdict::BadIndex { index, items } => format!("bad {index} {items}"),
            Verdict::Oversize(len) => format!("oversize {len}"),
            Verdict::OverBudget(w, len) => format!("budget {w:?} {len}"),
            Verdict::Wrapped(w) => format!("wrapped {w:?}"),
        })
        .collect()
}

/// The intake for `cfg`, with `budget` and the chef's head lent.
fn intake(cfg: &Cfg, budget: &OutputBudget) -> Intake {
    let mut i = Intake::default();
    i.cap = cfg.cap;
    i.max_bytes = cfg.max_bytes;
    i.merged = cfg.merged;
    i.parts = cfg.parts.clone();
    i.times = cfg.times.clone();
    i.budget = Some(budget.clone());
    i.head = Some(head());
    i
}

fn head() -> EnvelopeHead {
    EnvelopeHead::new("AnswerChef", Some("test_kitchen"))
}

/// Three chefs: the old path, the in-place path, and wasmtime's lift + `take_owned`.
struct Chefs {
    host: kitchen::chef_host::ChefHost,
    cache: std::path::PathBuf,
    old: LoadedChef,
    new: LoadedChef,
    generic: LoadedChef,
}

impl Chefs {
    /// `name`: this test's own compiled-chef cache (a failed call's chef is loaded again
    /// from it, not compiled again).
    fn new(name: &str) -> Self {
        let cache = std::env::temp_dir().join(format!("nd-{name}-{}", std::process::id()));
        // A deadline no case comes near, so no case depends on this machine's speed.
        let limits = ChefLimits {
            deadline: std::time::Duration::from_secs(30),
            ..ChefLimits::default()
        };
        let mut host = kitchen::chef_host::ChefHost::new(limits, CacheSetting::Dir(cache.clone()))
            .expect("chef host");
        host.set_deterministic(true);
        let (old, new, mut generic) = (
            load_fixture(&host, "answer_chef"),
            load_fixture(&host, "answer_chef"),
            load_fixture(&host, "answer_chef"),
        );
        generic.set_generic_lowering(true);
        Chefs {
            host,
            cache,
            old,
            new,
            generic,
        }
    }

    /// A failed call drops a chef's instance (and schedules a restart): fresh ones.
    fn renew(&mut self) {
        self.old = load_fixture(&self.host, "answer_chef");
        self.new = load_fixture(&self.host, "answer_chef");
        self.generic = load_fixture(&self.host, "answer_chef");
        self.generic.set_generic_lowering(true);
    }
}

impl Drop for Chefs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.cache);
    }
}

/// Run one case on all three paths and compare; the budget carries over. Returns the
/// verdicts, or the call's error.
fn check(
    chefs: &mut Chefs,
    cfg: &Cfg,
    script: &[u8],
    budget: &mut OutputBudget,
    what: &str,
) -> Result<Vec<String>, String> {
    let head = head();
    let old = chefs.old.on_packets(&[], script, 0);
    let mut old_budget = budget.clone();
    let want = old
        .as_ref()
        .map(|out| reference(out, cfg, &mut old_budget, &head))
        .map_err(|e| e.to_string());
    // In place (the times lent before the call), and wasmtime's lift decided after the
    // call with the times gathered then (`Intake::settle`, as the lane does for a chef
    // whose last answer was empty).
    for (name, chef, has_times) in [
        ("in place", &mut chefs.new, true),
        ("lifted, settled after", &mut chefs.generic, false),
    ] {
        let mut i = intake(cfg, budget);
        i.has_times = has_times;
        if !has_times {
            i.times.clear();
        }
        let got = chef
            .take_packets(&[], script, 0, &mut i)
            .map(|()| {
                i.settle(|t| t.extend_from_slice(&cfg.times));
                words(&i.verdicts)
            })
            .map_err(|e| e.to_string());
        assert_eq!(got, want, "{what}: {name}, {cfg:?}");
        let after = if want.is_ok() { &old_budget } else { &*budget };
        assert_eq!(
            format!("{:?}", i.budget),
            format!("{:?}", Some(after)),
            "{what}: {name}: budget after"
        );
        assert!(i.head.is_some(), "{what}: {name}: the head comes back");
    }
    if want.is_ok() {
        *budget = old_budget;
    }
    want
}

#[test]
fn in_place_lift_decides_like_the_lift_it_replaced() {
    let mut chefs = Chefs::new("packet-answer-cases");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    // Budgets small enough to run out mid-list and refill between cases.
    let mut budget = OutputBudget::new(160, 300);
    for n in 0..400 {
        let (cfg, script) = case(&mut rng, n * 200_000_000);
        match check(
            &mut chefs,
            &cfg,
            &script.0,
            &mut budget,
            &format!("case {n}"),
        ) {
            Err(e) => {
                // The error's kind (out of bounds, UTF-8, ...), without its figures.
                let kind = if e.contains("utf-8") {
                    "utf-8"
                } else {
                    "bounds"
                };
                assert!(e.contains("utf-8") || e.contains("out of bounds"), "{e}");
                *seen.entry(format!("error {kind}")).or_default() += 1;
                chefs.renew();
            }
            Ok(verdicts) => {
                for v in verdicts {
                    let words = if v.starts_with("budget") || v.starts_with("wrapped") {
                        2
                    } else {
                        1
                    };
                    let kind = v
                        .split([' ', '('])
                        .take(words)
                        .collect::<Vec<_>>()
                        .join(" ");
                    *seen.entry(kind).or_default() += 1;
                }
            }
        }
    }
    // The generator must reach every kind of decision and failure, or the comparison
    // proves little.
    for kind in [
        "part",
        "over-cap",
        "bad",
        "oversize",
        "budget PerCall",
        "budget PerSecond",
        "wrapped Ok",
        "wrapped Err",
        "error bounds",
        "error utf-8",
    ] {
        assert!(
            seen.get(kind).copied().unwrap_or(0) >= 3,
            "{kind} seen too rarely: {seen:#?}"
        );
    }
}

#[test]
fn hostile_lists_fail_or_stay_bounded_alike() {
    let mut chefs = Chefs::new("packet-answer-hostile");
    let cfg = Cfg {
        cap: 1000,
        max_bytes: 2 << 20,
        merged: false,
        parts: vec![Part {
            end: 4,
            clock_ns: 0,
        }],
        times: vec![1, 2, 3, 4],
    };
    let mut budget = OutputBudget::new(1 << 20, 16 << 20);
    // One 600 kB string aliased 250 times: 150 MB to lift, over wasmtime's 128 MiB of
    // host-call fuel: the call fails, on both paths, with wasmtime's error.
    let mut s = Script::default();
    s.u32(0x8000_0000 | 250);
    let big = [b"\"".as_slice(), &vec![b'a'; 600_000], b"\""].concat();
    s.own(0, &big);
    let e = check(&mut chefs, &cfg, &s.0, &mut budget, "aliased 600 kB x 250").unwrap_err();
    assert!(e.contains("fuel"), "{e}");
    chefs.renew();
    // The same string 100 times (60 MB of fuel): lifted, one kept, 99 over the per-call
    // budget; the in-place path copies only the kept one.
    let mut s = Script::default();
    s.u32(0x8000_0000 | 100);
    s.own(1, &big);
    let v = check(&mut chefs, &cfg, &s.0, &mut budget, "aliased 600 kB x 100").unwrap();
    assert_eq!(
        v.iter().filter(|v| v.starts_with("wrapped Ok")).count(),
        1,
        "{:?}",
        v.iter().map(|v| &v[..40.min(v.len())]).collect::<Vec<_>>()
    );
    assert_eq!(
        v.iter().filter(|v| v.starts_with("budget PerCall")).count(),
        99
    );
    // 100 000 one-byte records, over the count cap.
    let mut s = Script::default();
    s.u32(0x8000_0000 | 100_000);
    s.own(2, b"1");
    let v = check(&mut chefs, &cfg, &s.0, &mut budget, "100 000 records").unwrap();
    assert_eq!(v[0], "over-cap 100000 1000");
    assert_eq!(v.len(), 1001);
    // An invalid string after an out-of-bounds one, and the reverse: the first failure in
    // list order is the call's error, as wasmtime's lift gives it.
    for (what, first_bad) in [("oob then utf-8", true), ("utf-8 then oob", false)] {
        let mut s = Script::default();
        s.u32(3);
        s.own(0, b"{}");
        if first_bad {
            s.raw(0, 0xffff_0000, 8);
            s.own(0, b"\"\xff\"");
        } else {
            s.own(0, b"\"\xff\"");
            s.raw(0, 0xffff_0000, 8);
        }
        let e = check(&mut chefs, &cfg, &s.0, &mut budget, what).unwrap_err();
        let utf8 = e.contains("utf-8");
        assert_eq!(utf8, !first_bad, "{what}: {e}");
        chefs.renew();
    }
}
