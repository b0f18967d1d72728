//! [`NameTally`]: a bounded count of names (how often each was seen, and when last), sent
//! whole on every poke as `{"<key>": {"name": {"count": N, "latest": T}, ...}}`.
//!
//! Why one type: `DNSLookupChef` (`lookups_seen`) and `TLSServerNameChef`
//! (`server_names_seen`) keep the same table and report it the same way. Serialising it
//! with serde on every poke cost `TLSServerNameChef` most of its time on a mixed corpus
//! (14 k pokes, most with nothing new): here the payload's text is kept until a name is
//! counted ([`crate::CachedPayload`], answered as "the same" to the kitchen), and when it
//! is rebuilt, each name's `"name":{...}` text is kept too and made again only for the
//! names counted since. The text is byte for byte what serde_json makes of the table
//! (tests compare them).
//!
//! Saved state: the table alone, exactly as a `BoundedMap<String, Seen>` serialises
//! (bounds and recency order included), so a chef that kept such a map reads its old
//! snapshots unchanged. The kept texts are not saved.

use serde::{Deserialize, Serialize};

use crate::bounded::BoundedMap;
use crate::{Cached, CachedPayload, Timestamp, PAYLOAD_BUDGET};

/// One name's counts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Seen {
    /// Times the name was counted.
    pub count: u64,
    /// Time of the latest.
    pub latest: Timestamp,
}

/// One name's entry: its counts and, while they are unchanged, the `"name":{...}` text
/// they give in the payload (empty: not made yet, or the counts changed since).
/// Serialised as its [`Seen`] alone.
#[derive(Debug, Clone)]
pub struct TallyEntry {
    /// The counts.
    pub seen: Seen,
    text: String,
}

impl From<Seen> for TallyEntry {
    fn from(seen: Seen) -> Self {
        TallyEntry {
            seen,
            text: String::new(),
        }
    }
}

impl Serialize for TallyEntry {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.seen.serialize(s)
    }
}

impl<'de> Deserialize<'de> for TallyEntry {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Seen::deserialize(d).map(TallyEntry::from)
    }
}

/// Names → [`Seen`], at most a capacity of them (a new name beyond it evicts the least
/// recently counted one), first-seen order in the payload.
#[derive(Serialize, Deserialize)]
#[serde(transparent)]
pub struct NameTally {
    names: BoundedMap<String, TallyEntry>,
    #[serde(skip)]
    payload: CachedPayload,
    /// The chef's counters' text in the cached payload (`,"name":n` for each non-zero one).
    #[serde(skip)]
    counters: String,
}

impl NameTally {
    /// An empty tally of at most `capacity` names, taking at most `state_budget` bytes of
    /// a hot-reload snapshot (see [`BoundedMap::with_state_budget`]).
    pub fn new(capacity: usize, state_budget: usize) -> Self {
        NameTally {
            names: BoundedMap::new(capacity).with_state_budget(state_budget),
            payload: CachedPayload::default(),
            counters: String::new(),
        }
    }

    /// Count `name` once more, seen at `when` (a name seen before is updated in place, no
    /// copy of it made).
    pub fn count(&mut self, name: &str, when: Timestamp) {
        let entry = match self.names.get_mut(name) {
            Some(entry) => entry,
            None => self.names.get_or_insert_with(name.to_owned(), || {
                TallyEntry::from(Seen {
                    count: 0,
                    latest: when,
                })
            }),
        };
        entry.seen.count += 1;
        entry.seen.latest = when;
        // Its text is stale (cleared, keeping its buffer for the next one).
        entry.text.clear();
        self.payload.invalidate();
    }

    /// The table, to read.
    pub fn names(&self) -> &BoundedMap<String, TallyEntry> {
        &self.names
    }

    /// The table, to change directly (tests, restores): the payload is made again from it
    /// at the next poke, and an entry inserted from a [`Seen`] has no text yet. Changing
    /// the counts of an entry already there is not seen: use [`Self::count`].
    pub fn names_mut(&mut self) -> &mut BoundedMap<String, TallyEntry> {
        self.payload.invalidate();
        &mut self.names
    }

    /// Re-apply this version's bounds after a restore.
    pub fn restored(&mut self, capacity: usize, state_budget: usize) {
        self.names.set_capacity(capacity);
        self.names.set_state_budget(state_budget);
        self.payload.invalidate();
    }

    /// The interval payload `{"<key>":{...}}`: the kept text while no name was counted
    /// since it was made (and `counters` are unchanged), else rebuilt from each entry's kept
    /// text (made again only for the entries that changed). Exactly serde_json's text of
    /// `{key: table}` while the table fits [`PAYLOAD_BUDGET`] (names of escaped control
    /// bytes take 6 bytes a byte: 1000 names of 253 can take 1.5 MB, which the kitchen
    /// would refuse at every poke); beyond it, only the most recently counted names that
    /// fit are listed and `"<unreported_key>": n` follows the table with how many were
    /// left out. Then `,"name":n` for each of the chef's `counters` that is not zero.
    pub fn payload(
        &mut self,
        key: &str,
        unreported_key: &str,
        counters: &[(&str, u64)],
    ) -> Cached<'_> {
        let mut now = String::new();
        for (name, n) in counters.iter().filter(|(_, n)| *n != 0) {
            push_counter(&mut now, name, *n as usize);
        }
        if now != self.counters {
            self.counters = now;
            self.payload.invalidate();
        }
        let NameTally {
            names,
            payload,
            counters,
        } = self;
        payload.payload_text(|| payload_text(key, unreported_key, counters, names))
    }
}

/// `,"name":n`.
fn push_counter(out: &mut String, name: &str, n: usize) {
    use std::fmt::Write;
    out.push(',');
    out.push_str(&serde_json::to_string(name).unwrap_or_else(|_| "\"\"".to_owned()));
    let _ = write!(out, ":{n}");
}

/// `{"<key>":{...}}` from each entry's kept text (see [`NameTally::payload`]).
fn payload_text(
    key: &str,
    unreported_key: &str,
    counters: &str,
    names: &mut BoundedMap<String, TallyEntry>,
) -> Option<String> {
    let key = match serde_json::to_string(key) {
        Ok(key) => key,
        Err(e) => {
            crate::log::error(&format!("{key} does not serialise: {e}"));
            return None;
        }
    };
    let mut failed = None;
    let mut total = 0usize;
    names.for_each_mut(|name, entry| {
        if failed.is_some() {
            return;
        }
        // A made text is never empty (it holds at least `"":{`), so empty means stale.
        if entry.text.is_empty() {
            match (
                serde_json::to_string(name),
                serde_json::to_string(&entry.seen),
            ) {
                (Ok(name), Ok(value)) => {
                    entry.text.push_str(&name);
                    entry.text.push(':');
                    entry.text.push_str(&value);
                }
                (Err(e), _) | (_, Err(e)) => {
                    failed = Some(e);
                    return;
                }
            }
        }
        total = total.saturating_add(entry.text.len() + 1);
    });
    if let Some(e) = failed {
        crate::log::error(&format!("{key} does not serialise: {e}"));
        return None;
    }
    let shown = names.newest_within(PAYLOAD_BUDGET, |_, entry| entry.text.len() + 1);
    let len = total.min(PAYLOAD_BUDGET) + key.len() + counters.len() + 64;
    let mut out = String::with_capacity(len);
    out.push('{');
    out.push_str(&key);
    out.push_str(":{");
    for (i, (_, entry)) in shown.entries.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&entry.text);
    }
    out.push('}');
    if shown.left_out > 0 {
        push_counter(&mut out, unreported_key, shown.left_out);
    }
    out.push_str(counters);
    out.push('}');
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cached::tests::texts as text;

    /// What serde_json makes of the table under `key`.
    fn serde_text(key: &str, t: &NameTally) -> String {
        let inner = serde_json::to_string(t.names()).expect("table serialises");
        format!("{{{}:{inner}}}", serde_json::to_string(key).expect("key"))
    }

    /// Names counted in a scrambled order, more than fit, with escapes and non-ASCII, poked
    /// at every step: the kept and rebuilt text is serde's, every time.
    #[test]
    fn the_payload_is_what_serde_makes_of_the_table_after_every_count() {
        let mut t = NameTally::new(50, 1 << 20);
        assert_eq!(
            text(t.payload("seen", "unseen", &[])),
            vec![r#"{"seen":{}}"#.to_owned()]
        );
        for i in 0..400u64 {
            let name = match i % 5 {
                0 => format!("n{}.test", (i * 7919) % 83),
                1 => format!("quote\"{}\\", i % 7),
                2 => format!("ctl\u{1}{}", i % 11),
                3 => format!("ünï{}", i % 13),
                _ => format!("n{}.test", i % 3),
            };
            t.count(
                &name,
                Timestamp::from_nanos(1_700_000_000_000_000_000 + i * 1_234_567),
            );
            if i % 3 != 0 {
                assert_eq!(
                    text(t.payload("seen", "unseen", &[])),
                    vec![serde_text("seen", &t)],
                    "{i}"
                );
            }
        }
        assert_eq!(t.names().len(), 50);
        // Unchanged: the same text again.
        let a = text(t.payload("seen", "unseen", &[]));
        assert_eq!(a, text(t.payload("seen", "unseen", &[])));
    }

    /// The snapshot is a `BoundedMap<String, Seen>`'s: each reads the other's.
    #[test]
    fn saved_as_a_bounded_map_of_counts() {
        let mut t = NameTally::new(10, 1 << 20);
        t.count("a", Timestamp::from_nanos(5));
        t.count("b", Timestamp::from_nanos(7));
        t.count("a", Timestamp::from_nanos(9));
        let saved = crate::state::to_state_json(&t);
        let as_map: BoundedMap<String, Seen> =
            crate::state::from_state_json(saved.as_bytes()).expect("a map");
        assert_eq!(as_map.get("a").map(|s| s.count), Some(2));
        assert_eq!(saved, crate::state::to_state_json(&as_map));
        let mut back: NameTally =
            crate::state::from_state_json(saved.as_bytes()).expect("restores");
        back.restored(10, 1 << 20);
        assert_eq!(
            text(back.payload("k", "u", &[])),
            text(t.payload("k", "u", &[]))
        );
    }

    /// 1000 names of 253 escaped control bytes (~1.5 MB of JSON): the payload shows the
    /// most recently counted that fit under the budget, counts the rest, and parses.
    #[test]
    fn a_table_too_large_for_one_payload_shows_the_newest_and_counts_the_rest() {
        let mut t = NameTally::new(1000, 1 << 20);
        for i in 0..1000u64 {
            let name = format!("{i:04}{}", "\u{1}".repeat(249));
            t.count(&name, Timestamp::from_nanos(1_700_000_000_000_000_000 + i));
        }
        let full = serde_text("seen", &t);
        assert!(full.len() > 1_400_000, "{}", full.len());
        let got = text(t.payload("seen", "unseen", &[("other", 0)])).remove(0);
        assert!(got.len() <= PAYLOAD_BUDGET + 100, "{}", got.len());
        assert!(got.len() < crate::KITCHEN_MAX_DUMPLING_BYTES);
        let v: serde_json::Value = serde_json::from_str(&got).expect("JSON");
        let shown = v["seen"].as_object().expect("table").len();
        assert_eq!(v["unseen"].as_u64(), Some(1000 - shown as u64));
        assert!(shown > 500, "{shown}");
        // The newest are shown, the oldest left out.
        let newest = format!("0999{}", "\u{1}".repeat(249));
        assert!(v["seen"].get(&newest).is_some());
        assert!(v["seen"]
            .get(format!("0000{}", "\u{1}".repeat(249)))
            .is_none());
        // A counter that becomes non-zero is shown (and the cached text is not reused).
        let with = text(t.payload("seen", "unseen", &[("other", 3)])).remove(0);
        assert!(with.ends_with(&format!(",\"unseen\":{},\"other\":3}}", 1000 - shown)));
        // Once the table fits again, the payload is serde's text of it once more.
        for i in 0..1000u64 {
            t.count(&format!("n{i}.test"), Timestamp::from_nanos(5));
        }
        assert_eq!(
            text(t.payload("seen", "unseen", &[])),
            vec![serde_text("seen", &t)]
        );
    }
}
