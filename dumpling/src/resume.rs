//! [`Trace`]: where the canonical scan ([`crate::canonical`]) of a payload can be resumed,
//! so a payload that differs from the last one in a few bytes is scanned only around them.
//!
//! Why: an interval chef sends its whole table on every poke (`DNSLookupChef`'s
//! `lookups_seen`, ~40 KB). A table that did not change is compared and reused
//! ([`crate::PayloadMemo`]); one that did (17 % of its pokes on the mixed corpus, one or a
//! few entries changed or added) was scanned in full, ~6 % of a replay's CPU. The scan is a
//! left-to-right state machine whose state just after a `,` depends only on the bytes
//! before it, so:
//! * up to the first byte that differs from the last payload, the last scan's states hold:
//!   the new scan starts at the last recorded state at or before that byte;
//! * after each `,` past it, where the last scan recorded the same state at the matching
//!   offset (as matched before the last difference, or as at the end, give or take
//!   [`WINDOW`] bytes) and the bytes that follow are the same in both, the states the last
//!   scan recorded inside those equal bytes hold too: the scan skips to the last of them;
//!   when the equal bytes run to the end of both payloads, what follows passed last time,
//!   and the scan stops and accepts.
//!
//! On the mixed corpus's 2 360 changed `DNSLookupChef` tables (~38 KB, usually one to three
//! entries changed, often far apart) this scans 1.4 % of the tokens the whole scans do.
//!
//! The answer is the whole scan's answer in every case (the tests compare them); only the
//! bytes scanned differ.

use crate::canonical::{scan, Comma, ScanState};

/// Fewest bytes between two recorded states (a ~40 KB table keeps ~600 of them).
const SPACING: usize = 64;

/// How far (bytes) from where `old`'s bytes are expected a recorded state of `old` is
/// looked for after a difference (an edit may change a length: `"count":9` to `10`).
const WINDOW: isize = 32;

/// The scan states of one payload that passed the canonical scan, just after some of its
/// commas (at least [`SPACING`] bytes apart), in order of offset.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Trace {
    points: Vec<(u32, ScanState)>,
}

impl Trace {
    /// The canonical scan of `payload` (the same answer as
    /// `canonical_depth(payload).is_some()`), recording its states in this trace on
    /// success (the trace is empty on failure).
    pub(crate) fn record(&mut self, payload: &str) -> bool {
        self.points.clear();
        if u32::try_from(payload.len()).is_err() {
            // Offsets are kept as u32: a longer payload is scanned without a trace.
            return crate::canonical::canonical_depth(payload).is_some();
        }
        let points = &mut self.points;
        let mut last = 0usize;
        let passed = scan(payload, 0, ScanState::START, |at, st| {
            if at - last >= SPACING {
                points.push((at as u32, *st));
                last = at;
            }
            Comma::Go
        })
        .is_some();
        if !passed {
            self.points.clear();
        }
        passed
    }

    /// The canonical scan of `new` (the same answer as `canonical_depth(new).is_some()`),
    /// given that this is the trace of `old`, which passed it. The scan starts at the last
    /// recorded state before the first byte that differs; then, after each `,`, where `old`
    /// had the same state at the matching offset (offsets matched as they were before the
    /// last difference, or as at the end) and the bytes from there are the same, it skips
    /// to the last recorded state inside those equal bytes, or accepts when they run to the
    /// end of both. On success this becomes `new`'s trace; on failure it is empty.
    pub(crate) fn rescan(&mut self, old: &str, new: &str) -> bool {
        if u32::try_from(new.len()).is_err() || u32::try_from(old.len()).is_err() {
            return self.record(new);
        }
        let (o, n) = (old.as_bytes(), new.as_bytes());
        let prefix = common_prefix(o, n);
        // The last recorded state at or before the first difference (the bytes before it
        // are the same in both payloads, so it is `new`'s state there too).
        let k = self
            .points
            .partition_point(|&(at, _)| at as usize <= prefix);
        let (start, state) = match k {
            0 => (0, ScanState::START),
            _ => {
                let (at, st) = self.points[k - 1];
                (at as usize, st)
            }
        };
        let points = &self.points;
        let mut out: Vec<(u32, ScanState)> = points[..k].to_vec();
        let mut last = start;
        // Where `old`'s bytes are expected against `new`'s (`new` offset minus `old`
        // offset): as before the last difference found, and as at the end. An edit that
        // changed a length by up to WINDOW bytes is still found near the first.
        let end_delta = n.len() as isize - o.len() as isize;
        let mut delta: isize = 0;
        // The first of `old`'s points not below each window (both only move forward: the
        // second's window moves with `at`, the first's is set past the point jumped to).
        let mut near = [k, k];
        let passed = scan(new, start, state, |at, st| {
            for (w, d) in [(0, delta), (1, end_delta)] {
                if w == 1 && d == delta {
                    break;
                }
                let lo = at as isize - d - WINDOW;
                let hi = at as isize - d + WINDOW;
                while near[w] < points.len() && (points[near[w]].0 as isize) < lo {
                    near[w] += 1;
                }
                let mut i = near[w];
                while let Some(&(p, s)) = points.get(i) {
                    if p as isize > hi {
                        break;
                    }
                    if s == *st {
                        // `old` was in this state here; the bytes that follow in both,
                        // while the same, lead through `old`'s recorded states.
                        let old_at = p as usize;
                        let run = common_prefix(&n[at..], &o[old_at..]);
                        let d = at as isize - old_at as isize;
                        let shift = |&(p, s): &(u32, ScanState)| ((p as isize + d) as u32, s);
                        if at + run == n.len() && old_at + run == o.len() {
                            // The rest is `old`'s rest from the same state: it passed.
                            out.extend(points[i..].iter().map(shift));
                            return Comma::Accept;
                        }
                        let j = points.partition_point(|&(p, _)| p as usize <= old_at + run) - 1;
                        if j > i {
                            out.extend(points[i..=j].iter().map(shift));
                            let (to, to_state) = shift(&points[j]);
                            last = to as usize;
                            delta = d;
                            near[0] = j + 1;
                            return Comma::Jump(last, to_state);
                        }
                    }
                    i += 1;
                }
            }
            if at - last >= SPACING {
                out.push((at as u32, *st));
                last = at;
            }
            Comma::Go
        })
        .is_some();
        self.points = if passed { out } else { Vec::new() };
        passed
    }
}

/// How many bytes `a` and `b` start with in common.
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    const BLOCK: usize = 256;
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut i = 0;
    // Blocks compared by the C library's `bcmp` (vectorised), then words, then bytes.
    while i + BLOCK <= n && a[i..i + BLOCK] == b[i..i + BLOCK] {
        i += BLOCK;
    }
    while i + 8 <= n {
        let x = u64::from_le_bytes(a[i..i + 8].try_into().unwrap_or([0; 8]));
        let y = u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or([0; 8]));
        if x != y {
            // The lowest differing byte (little-endian: the first in memory).
            return i + ((x ^ y).trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < n && a[i] == b[i] {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical::canonical_depth;

    /// Every state the whole scan of `payload` passes just after a comma.
    fn all_states(payload: &str) -> Vec<(u32, ScanState)> {
        let mut v = Vec::new();
        scan(payload, 0, ScanState::START, |at, st| {
            v.push((at as u32, *st));
            Comma::Go
        });
        v
    }

    /// The trace's promise: each recorded state is the whole scan's state there.
    fn assert_true_trace(trace: &Trace, payload: &str) {
        let all = all_states(payload);
        for p in &trace.points {
            assert!(all.contains(p), "{p:?} is not a state of {payload:.60}");
        }
        assert!(trace.points.windows(2).all(|w| w[0].0 < w[1].0));
    }

    /// A DNSLookupChef-like table of `n` names.
    fn table(n: usize, counts: &[u64]) -> String {
        let mut s = String::from(r#"{"lookups_seen":{"#);
        for i in 0..n {
            if i > 0 {
                s.push(',');
            }
            let c = counts.get(i).copied().unwrap_or(1);
            // serde's own float text, as the chef writes it (exact in binary, so it reads
            // back the same whatever serde_json's float features).
            let latest = 1_795_739.0 + ((i * 7919 + c as usize) % 1024) as f64 / 8.0;
            let latest = serde_json::to_string(&latest).unwrap_or_default();
            s.push_str(&format!(
                r#""host-{i}.example.test":{{"count":{c},"latest":{latest}}}"#
            ));
        }
        s.push_str("}}");
        s
    }

    /// xorshift64: deterministic test input.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    /// Check `new` after `old` both ways: resumed from `old`'s trace and from scratch.
    /// Whether it passed.
    fn step(trace: &mut Trace, old: &str, new: &str) -> bool {
        let want = canonical_depth(new).is_some();
        let got = trace.rescan(old, new);
        assert_eq!(got, want, "old {old:.60}\nnew {new:.60}");
        if got {
            assert_true_trace(trace, new);
        } else {
            assert!(trace.points.is_empty());
        }
        got
    }

    #[test]
    fn a_recorded_trace_holds_the_whole_scans_states() {
        for p in [
            table(0, &[]),
            table(1, &[]),
            table(300, &[]),
            "[1,2,3]".into(),
        ] {
            let mut t = Trace::default();
            assert_eq!(t.record(&p), canonical_depth(&p).is_some());
            assert_true_trace(&t, &p);
        }
        let mut t = Trace::default();
        assert!(!t.record("[1,2, 3]"));
        assert!(t.points.is_empty());
    }

    #[test]
    fn tables_with_changed_added_and_removed_entries_agree_with_the_whole_scan() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut counts: Vec<u64> = vec![1; 400];
        let mut n = 200;
        let mut old = table(n, &counts);
        let mut trace = Trace::default();
        assert!(trace.record(&old));
        for round in 0..400 {
            match rng.below(5) {
                // One or a few entries' counts change (the usual poke).
                0 | 1 => {
                    for _ in 0..=rng.below(3) {
                        let i = rng.below(n);
                        counts[i] += 1 + rng.below(20) as u64;
                    }
                }
                // A name is added at the end.
                2 if n < 400 => n += 1,
                // The table shrinks (an eviction changes everything after it).
                3 if n > 1 => {
                    counts.remove(rng.below(n));
                    counts.push(1);
                    n -= 1;
                }
                _ => {
                    let i = rng.below(n);
                    counts[i] = 10u64.pow(rng.below(12) as u32);
                }
            }
            let new = table(n, &counts);
            assert!(step(&mut trace, &old, &new), "a table serde writes passes");
            if round % 50 == 0 {
                // The same payload again.
                assert!(step(&mut trace, &new, &new));
            }
            old = new;
        }
    }

    #[test]
    fn byte_edits_anywhere_agree_with_the_whole_scan() {
        // One byte changed, inserted or removed at every position of a table, into
        // characters that break or keep the canonical form; then the edit undone.
        let base = table(12, &[3, 1, 9]) + "";
        let edits: &[&[u8]] = &[
            b" ",
            b"\"",
            b"\\",
            b"{",
            b"}",
            b"[",
            b"]",
            b":",
            b",",
            b"0",
            b"-",
            b".",
            b"e",
            b"9",
            b"1,",
            b",1",
            b"\"a\":1,",
            b"\x01",
        ];
        let bytes = base.as_bytes();
        for i in 0..=bytes.len() {
            for e in edits {
                let mut replaced = bytes.to_vec();
                if i < bytes.len() {
                    replaced.splice(i..=i, e.iter().copied());
                }
                let mut inserted = bytes.to_vec();
                inserted.splice(i..i, e.iter().copied());
                let mut removed = bytes.to_vec();
                if i < bytes.len() {
                    removed.remove(i);
                }
                for v in [replaced, inserted, removed] {
                    let Ok(new) = String::from_utf8(v) else {
                        continue;
                    };
                    let mut t = Trace::default();
                    assert!(t.record(&base));
                    step(&mut t, &base, &new);
                    // And back: from the edited payload's trace when it passed.
                    if t.record(&new) {
                        assert!(step(&mut t, &new, &base));
                    }
                }
            }
        }
    }

    #[test]
    fn a_repeated_tail_in_another_state_is_not_taken_for_the_old_one() {
        // The common tail is the same bytes, but reached inside a string in the new
        // payload: its recorded states must not match.
        let inner = (0..40)
            .map(|i| format!("{i}"))
            .collect::<Vec<_>>()
            .join(",");
        let old = format!("[[{inner}],{inner}]");
        let new = format!("[\"{inner}],{inner}]");
        let mut t = Trace::default();
        assert!(t.record(&old));
        assert!(!step(&mut t, &old, &new));
        // The same tail bytes one level deeper.
        let new = format!("[[{inner}],[{inner}]]");
        assert!(t.record(&old));
        assert!(step(&mut t, &old, &new));
    }

    #[test]
    fn common_prefix_is_exact() {
        let mut rng = Rng(7);
        for _ in 0..2000 {
            let len = rng.below(200);
            let a: Vec<u8> = (0..len).map(|_| b'a' + rng.below(2) as u8).collect();
            let mut b = a.clone();
            if !b.is_empty() && rng.below(4) > 0 {
                let i = rng.below(b.len());
                b[i] = b'z';
            }
            if rng.below(3) == 0 {
                b.truncate(rng.below(b.len() + 1));
            }
            let p = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
            assert_eq!(common_prefix(&a, &b), p);
        }
    }
}
