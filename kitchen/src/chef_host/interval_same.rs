//! The optional `netdumplings:chef/interval-same@0.2.0` export: `on-interval` whose answer
//! may say "the same as payload i of my previous answer" (`same(i)`) instead of the text.
//!
//! Why: a chef reporting a whole table on every poke sends it unchanged most of the time
//! (DNSLookupChef's ~38 KB `lookups_seen`: 83 % of its 14 140 pokes on the mixed corpus).
//! Sent as text, each such poke cost the SDK a copy of the text, the guest's lowering, the
//! kitchen's lift and a byte comparison with the previous payload (~4.3 µs); a `same` is one
//! `u32`, and the kitchen wraps the payload it kept.
//!
//! What is kept ([`Slots`]), per chef instance: the previous answer's payloads by position,
//! those the kitchen accepted or refused only for an output budget (held unchecked, checked
//! when a `same` asks for them), at most one call's output budget of them (accepted ones
//! first: they fit by construction). A `same` is resolved to its payload before the lane
//! sees the answer, and the lane then runs exactly the checks, budgets and counters a text
//! would get; the dumpling is byte-identical (only `creation_time` differs, as for any
//! poke). A `same` that refers to nothing (past the previous answer, a payload not kept, or
//! no previous answer: nothing is kept across a restart or reload) is dropped and counted by
//! the host as undecodable output (`ChefStats::same_unresolved` too).

use dumpling::PayloadMemo;
use wasmtime::component::{ComponentType, Lift};

use super::chef_text::ChefText;

/// The export's name (interface of the `same-chef` world, added within 0.2).
pub const EXPORT: &str = "netdumplings:chef/interval-same@0.2.0";

/// One `interval-payload` of the answer, as lifted (the text as [`ChefText`]: UTF-8 checked
/// by `simdutf8`, copied out once).
#[derive(ComponentType, Lift, Debug)]
#[component(variant)]
pub enum Item {
    /// `json(string)`.
    #[component(name = "json")]
    Json(ChefText),
    /// `same(u32)`.
    #[component(name = "same")]
    Same(u32),
}

/// One interval payload as the lane gets it.
#[derive(Debug)]
pub enum IntervalText {
    /// A text the chef sent.
    Text(ChefText),
    /// A `same` resolved: the payload of `len` bytes is held by the chef host at this
    /// position of the answer ([`Slots::memo`]).
    Kept(usize),
    /// A `same` that referred to nothing (counted by the host), or an item past the
    /// per-call cap (never read: the lane counts it as over the cap).
    Unresolved,
}

impl IntervalText {
    /// The payload's length in bytes (0 when unresolved).
    pub fn len(&self) -> usize {
        match self {
            IntervalText::Text(t) => t.len(),
            IntervalText::Kept(n) => *n,
            IntervalText::Unresolved => 0,
        }
    }

    /// Whether the payload is empty (or unresolved).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What became of the payload at one position of the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Not decided (unresolved, past the cap, or the lane never got to it): not kept.
    Pending,
    /// Wrapped into a dumpling: kept.
    Accepted,
    /// Refused for an output budget before its check: kept unchecked while the bound
    /// allows.
    Held,
    /// Refused as too large or not one JSON value: not kept (a `same` to it would be
    /// refused again).
    Refused,
}

/// One chef instance's kept payloads (see the module docs).
#[derive(Debug, Default)]
pub struct Slots {
    /// The previous answer's payloads by position (`held()` is `None`: not kept).
    prev: Vec<PayloadMemo>,
    /// The current answer's, while the lane decides them.
    next: Vec<PayloadMemo>,
    /// What became of each of `next`.
    outcome: Vec<Outcome>,
    /// Between [`Self::start`] and [`Self::finish`].
    active: bool,
    /// At most this many bytes kept (the chef's per-call output budget).
    max_kept_bytes: u64,
    /// No payload longer than this is kept (the chef's per-dumpling cap).
    max_each: usize,
}

impl Slots {
    /// Empty slots keeping at most `max_kept_bytes` (one call's output budget), no payload
    /// over `max_each` bytes (the size cap).
    pub fn new(max_kept_bytes: u64, max_each: usize) -> Self {
        Slots {
            max_kept_bytes,
            max_each,
            ..Slots::default()
        }
    }

    /// Forget everything (the instance is gone: a restart or a new instance keeps nothing).
    pub fn clear(&mut self) {
        self.prev = Vec::new();
        self.next = Vec::new();
        self.outcome = Vec::new();
        self.active = false;
    }

    /// Whether an answer is being decided ([`Self::start`] was called, not yet
    /// [`Self::finish`]).
    pub fn active(&self) -> bool {
        self.active
    }

    /// Start deciding `items` (the first `cap` of them; the rest are over the per-call cap):
    /// each `same` is resolved against the previous answer, its payload moved (or, when
    /// several `same` name it, copied) to its new position. A `json` at a position no `same`
    /// names starts from the previous payload there (so a changed table is scanned only
    /// where it changed, [`PayloadMemo::wrap`]). Returns the lane's items and how many
    /// `same` referred to nothing.
    pub fn start(&mut self, items: Vec<Item>, cap: usize) -> (Vec<IntervalText>, u64) {
        if self.active {
            // The previous answer was never finished (a caller outside the lane): as is.
            self.finish();
        }
        let mut prev = std::mem::take(&mut self.prev);
        let n = items.len().min(cap);
        // How many `same` name each previous position that holds a payload.
        let mut refs = vec![0u32; prev.len()];
        for item in items.iter().take(n) {
            if let Item::Same(i) = item {
                if let Some(r) = refs.get_mut(*i as usize) {
                    if prev[*i as usize].held().is_some() {
                        *r += 1;
                    }
                }
            }
        }
        self.next.clear();
        self.next.resize_with(n, PayloadMemo::default);
        self.outcome.clear();
        self.outcome.resize(n, Outcome::Pending);
        self.active = true;
        let mut unresolved = 0u64;
        let mut out = Vec::with_capacity(items.len());
        for (k, item) in items.into_iter().enumerate() {
            if k >= n {
                out.push(match item {
                    Item::Json(t) => IntervalText::Text(t),
                    Item::Same(_) => IntervalText::Unresolved,
                });
                continue;
            }
            match item {
                Item::Json(t) => {
                    if refs.get(k) == Some(&0) {
                        self.next[k] = std::mem::take(&mut prev[k]);
                    }
                    out.push(IntervalText::Text(t));
                }
                Item::Same(i) => {
                    let i = i as usize;
                    match refs.get_mut(i) {
                        Some(r) if *r > 0 => {
                            *r -= 1;
                            let memo = if *r == 0 {
                                std::mem::take(&mut prev[i])
                            } else {
                                prev[i].clone()
                            };
                            let len = memo.held().map_or(0, str::len);
                            self.next[k] = memo;
                            out.push(IntervalText::Kept(len));
                        }
                        _ => {
                            unresolved += 1;
                            out.push(IntervalText::Unresolved);
                        }
                    }
                }
            }
        }
        (out, unresolved)
    }

    /// The memo at position `k` of the current answer (the resolved payload of a `same`, or
    /// the previous payload there for a `json` to be compared with).
    pub fn memo(&mut self, k: usize) -> Option<&mut PayloadMemo> {
        self.next.get_mut(k)
    }

    /// Record what became of the payload at position `k`.
    pub fn settle(&mut self, k: usize, outcome: Outcome) {
        if let Some(o) = self.outcome.get_mut(k) {
            *o = outcome;
        }
    }

    /// The current answer is decided: keep its accepted payloads, then those held for a
    /// budget in answer order while they fit within `max_kept_bytes` (the rest are freed);
    /// they become the previous answer.
    pub fn finish(&mut self) {
        if !self.active {
            return;
        }
        self.active = false;
        let len = |m: &PayloadMemo| m.held().map_or(0, str::len) as u64;
        let mut kept: u64 = self
            .next
            .iter()
            .zip(&self.outcome)
            .filter(|(_, o)| **o == Outcome::Accepted)
            .map(|(m, _)| len(m))
            .sum();
        for (memo, outcome) in self.next.iter_mut().zip(&self.outcome) {
            let keep = match outcome {
                Outcome::Accepted => true,
                Outcome::Held => {
                    let n = len(memo);
                    let fits = n <= self.max_each as u64 && kept + n <= self.max_kept_bytes;
                    if fits {
                        kept += n;
                    }
                    fits
                }
                Outcome::Pending | Outcome::Refused => false,
            };
            if !keep {
                memo.clear();
            }
        }
        self.prev = std::mem::take(&mut self.next);
        self.outcome.clear();
    }

    /// Bytes of payload kept for the next answer (for tests and the bound).
    pub fn kept_bytes(&self) -> u64 {
        self.prev
            .iter()
            .map(|m| m.held().map_or(0, str::len) as u64)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dumpling::{Driver, EnvelopeHead};

    fn json(t: &str) -> Item {
        Item::Json(ChefText::Text(t.to_owned()))
    }

    /// Decide an answer as the lane does: every resolved payload wrapped (accepted when
    /// it checks), each text wrapped through its position's memo; returns the payloads
    /// wrapped, in order (`None`: unresolved).
    fn decide(slots: &mut Slots, items: Vec<Item>, cap: usize) -> (Vec<Option<String>>, u64) {
        let head = EnvelopeHead::new("C", None);
        let (out, unresolved) = slots.start(items, cap);
        let mut got = Vec::new();
        for (k, t) in out.into_iter().take(cap).enumerate() {
            let Some(memo) = slots.memo(k) else {
                panic!("no memo at {k}")
            };
            let wrapped = match t {
                IntervalText::Text(t) => memo.wrap(&head, 1.0, Driver::Interval, t.into_string()),
                IntervalText::Kept(n) => {
                    assert_eq!(memo.held().map(str::len), Some(n));
                    memo.wrap_held(&head, 1.0, Driver::Interval)
                }
                IntervalText::Unresolved => {
                    got.push(None);
                    continue;
                }
            };
            slots.settle(
                k,
                if wrapped.is_ok() {
                    Outcome::Accepted
                } else {
                    Outcome::Refused
                },
            );
            got.push(wrapped.ok().map(|w| {
                let v: serde_json::Value = serde_json::from_str(&w).unwrap_or_default();
                v["payload"].to_string()
            }));
        }
        slots.finish();
        (got, unresolved)
    }

    #[test]
    fn same_names_the_previous_answer_by_position() {
        let mut s = Slots::new(1 << 20, 1 << 20);
        let s1 = |x: &str| Some(x.to_owned());
        // Nothing before the first answer.
        assert_eq!(decide(&mut s, vec![Item::Same(0)], 8), (vec![None], 1));
        let (got, bad) = decide(&mut s, vec![json("[1]"), json("\"b\""), json("x")], 8);
        assert_eq!((got, bad), (vec![s1("[1]"), s1("\"b\""), None], 0));
        // Swapped, repeated, past the end, and the invalid one (not kept).
        let items = vec![
            Item::Same(1),
            Item::Same(0),
            Item::Same(0),
            Item::Same(3),
            Item::Same(2),
            Item::Same(u32::MAX),
        ];
        let (got, bad) = decide(&mut s, items, 8);
        assert_eq!(
            got,
            vec![s1("\"b\""), s1("[1]"), s1("[1]"), None, None, None]
        );
        assert_eq!(bad, 3);
        // Positions are this answer's: 0 is now "b", 2 is [1], 3.. hold nothing.
        let (got, bad) = decide(&mut s, vec![Item::Same(2), Item::Same(0), Item::Same(3)], 8);
        assert_eq!((got, bad), (vec![s1("[1]"), s1("\"b\""), None], 1));
        // A text at a position, then `same` to it; cleared: nothing.
        let (got, _) = decide(&mut s, vec![json("{\"a\":2}")], 8);
        assert_eq!(got, vec![s1("{\"a\":2}")]);
        let (got, _) = decide(&mut s, vec![Item::Same(0)], 8);
        assert_eq!(got, vec![s1("{\"a\":2}")]);
        s.clear();
        assert_eq!(decide(&mut s, vec![Item::Same(0)], 8), (vec![None], 1));
    }

    #[test]
    fn items_past_the_cap_are_neither_resolved_nor_kept() {
        let mut s = Slots::new(1 << 20, 1 << 20);
        decide(&mut s, vec![json("1"), json("2"), json("3")], 2);
        // Position 2 was past the cap: not kept; a `same` past the cap is not counted.
        let (out, bad) = s.start(vec![Item::Same(2), Item::Same(1), Item::Same(0)], 2);
        assert_eq!(bad, 1);
        assert!(matches!(
            out[..],
            [
                IntervalText::Unresolved,
                IntervalText::Kept(1),
                IntervalText::Unresolved
            ]
        ));
    }

    #[test]
    fn kept_payloads_stay_within_one_calls_budget() {
        // 10-byte budget: accepted ones always kept, then held ones in order while they fit.
        let mut s = Slots::new(10, 6);
        let (out, _) = s.start(
            vec![
                json("\"1234\""),
                json("\"12\""),
                json("\"123\""),
                json("\"1234567\""),
            ],
            8,
        );
        assert_eq!(out.len(), 4);
        let texts = ["\"1234\"", "\"12\"", "\"123\"", "\"1234567\""];
        for (k, t) in texts.iter().enumerate() {
            let Some(m) = s.memo(k) else { panic!() };
            m.hold((*t).to_owned());
        }
        s.settle(0, Outcome::Held); // 6 bytes: fits (6)
        s.settle(1, Outcome::Held); // 4 bytes: 10, fits
        s.settle(2, Outcome::Accepted); // 5 bytes: kept first
        s.settle(3, Outcome::Held); // 9 bytes: over the size cap
        s.finish();
        // Accepted 5, then 6 (11 > 10: not kept), then 4 (9).
        assert_eq!(s.kept_bytes(), 9);
        let (out, bad) = s.start((0..4).map(Item::Same).collect(), 8);
        assert_eq!(bad, 2);
        assert!(matches!(
            out[..],
            [
                IntervalText::Unresolved,
                IntervalText::Kept(4),
                IntervalText::Kept(5),
                IntervalText::Unresolved
            ]
        ));
    }
}
