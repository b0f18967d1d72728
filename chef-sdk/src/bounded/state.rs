//! The state form of [`BoundedMap`]: how a map is written into a chef's state snapshot
//! (chef API 0.2, [`crate::state`]) and read back by the chef's next version.
//!
//! ```json
//! {"capacity": 1000, "evicted": 3, "state_budget": null,
//!  "entries": [["a.test", 2], ["b.test", 1]], "recency": [1, 0]}
//! ```
//!
//! `entries` are in first-seen order (what dumplings list), `recency` gives their indices
//! from least to most recently touched (what eviction follows), so a restored map lists,
//! and later evicts, exactly what the old one would have. Under a
//! [`BoundedMap::with_state_budget`] only the newest entries whose JSON fits are written;
//! the ones left out count as evicted. Reading checks every bound (entries within the
//! capacity, `recency` a permutation, no key twice) and refuses a state that breaks one.

use std::hash::Hash;
use std::io;

use serde::ser::{SerializeStruct, Serializer};
use serde::Deserialize;

use super::{BoundedMap, EMPTY, MAX_CAPACITY, NIL};

/// Counts the bytes written to it.
struct Count(usize);

impl io::Write for Count {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Length of `value`'s JSON text (what it adds to a snapshot, give or take a comma).
fn json_len<T: serde::Serialize + ?Sized>(value: &T) -> usize {
    let mut n = Count(0);
    match serde_json::to_writer(&mut n, value) {
        Ok(()) => n.0,
        // Does not serialise: the snapshot fails anyway (and says why).
        Err(_) => 0,
    }
}

pub(super) fn serialize<K, V, S>(map: &BoundedMap<K, V>, s: S) -> Result<S::Ok, S::Error>
where
    K: serde::Serialize + Hash + Eq,
    V: serde::Serialize,
    S: Serializer,
{
    // Which entries go in: the newest first, while they fit the budget.
    let mut keep = vec![false; map.nodes.len()];
    let mut kept = 0usize;
    let mut used = 0usize;
    let mut at = map.recency.tail;
    while at != NIL {
        let n = map.node(at);
        if map.state_budget != usize::MAX {
            used = used.saturating_add(json_len(&(&n.key, &n.value)) + 1);
            if used > map.state_budget {
                break;
            }
        }
        keep[at as usize] = true;
        kept += 1;
        at = n.older;
    }
    // Their places in first-seen order, then the recency list as those places.
    let mut place = vec![NIL; map.nodes.len()];
    let mut entries = Vec::with_capacity(kept);
    let mut at = map.order.head;
    while at != NIL {
        let n = map.node(at);
        if keep[at as usize] {
            place[at as usize] = entries.len() as u32;
            entries.push((&n.key, &n.value));
        }
        at = n.next;
    }
    let mut recency = Vec::with_capacity(kept);
    let mut at = map.recency.head;
    while at != NIL {
        if keep[at as usize] {
            recency.push(place[at as usize]);
        }
        at = map.node(at).newer;
    }
    let left_out = (map.len() - kept) as u64;
    let budget = (map.state_budget != usize::MAX).then_some(map.state_budget);
    let mut st = s.serialize_struct("BoundedMap", 5)?;
    st.serialize_field("capacity", &map.capacity)?;
    st.serialize_field("evicted", &map.evicted.saturating_add(left_out))?;
    st.serialize_field("state_budget", &budget)?;
    st.serialize_field("entries", &entries)?;
    st.serialize_field("recency", &recency)?;
    st.end()
}

/// The state form as read.
#[derive(Deserialize)]
struct Raw<K, V> {
    capacity: usize,
    evicted: u64,
    #[serde(default)]
    state_budget: Option<usize>,
    entries: Vec<(K, V)>,
    recency: Vec<u32>,
}

impl<'de, K, V> Deserialize<'de> for BoundedMap<K, V>
where
    K: Deserialize<'de> + Hash + Eq,
    V: Deserialize<'de>,
{
    /// Reads the state form (a chef's snapshot); a plain object, as dumplings carry, has no
    /// bounds or recency and is refused.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let raw = Raw::<K, V>::deserialize(d)?;
        let len = raw.entries.len();
        if raw.capacity == 0 || raw.capacity > MAX_CAPACITY {
            return Err(D::Error::custom(format!(
                "a bounded map's capacity {} is out of range",
                raw.capacity
            )));
        }
        if len > raw.capacity {
            return Err(D::Error::custom(format!(
                "a bounded map holds {len} entries, over its capacity {}",
                raw.capacity
            )));
        }
        if raw.recency.len() != len {
            return Err(D::Error::custom(
                "a bounded map's recency list does not match its entries",
            ));
        }
        let mut map = BoundedMap::new(raw.capacity);
        map.evicted = raw.evicted;
        map.state_budget = raw.state_budget.unwrap_or(usize::MAX);
        for (key, value) in raw.entries {
            let hash = super::hash_of(&key);
            if map.find_hashed(hash, &key).is_some() {
                return Err(D::Error::custom("a bounded map holds a key twice"));
            }
            // A fresh map under its capacity: no eviction, slots 0..len in this order.
            map.insert_new(hash, key, value);
        }
        let mut placed = vec![false; len];
        map.recency = EMPTY;
        for &i in &raw.recency {
            match placed.get_mut(i as usize) {
                Some(p) if !*p => *p = true,
                _ => {
                    return Err(D::Error::custom(
                        "a bounded map's recency list is not a permutation of its entries",
                    ))
                }
            }
            let tail = map.recency.tail;
            let n = map.node_mut(i);
            n.older = tail;
            n.newer = NIL;
            map.link_recency_tail(i);
        }
        Ok(map)
    }
}

#[cfg(test)]
mod tests {
    use crate::bounded::BoundedMap;

    fn state_json<T: serde::Serialize>(value: &T) -> String {
        crate::state::to_state_json(value)
    }

    fn restore(json: &str) -> Result<BoundedMap<String, u32>, String> {
        crate::state::from_state_json(json.as_bytes())
    }

    /// Touches `m` the way a chef does, returning what an uninterrupted map lists after.
    fn drive(m: &mut BoundedMap<String, u32>, keys: &[&str]) {
        for k in keys {
            *m.get_or_insert_with((*k).to_owned(), || 0) += 1;
        }
    }

    #[test]
    fn restores_bounds_and_recency_exactly() {
        let mut m = BoundedMap::new(3);
        drive(&mut m, &["a", "b", "c", "a", "d"]); // evicts b; recency c, a, d
        let json = state_json(&m);
        assert_eq!(
            json,
            r#"{"capacity":3,"evicted":1,"state_budget":null,"entries":[["a",2],["c",1],["d",1]],"recency":[1,0,2]}"#
        );
        let mut r = restore(&json).unwrap();
        assert_eq!((r.capacity(), r.evicted(), r.len()), (3, 1, 3));
        // Same later behaviour: the next new key evicts c (least recent), then a.
        let later = ["e", "d", "f", "a"];
        drive(&mut m, &later);
        drive(&mut r, &later);
        let list = |m: &BoundedMap<String, u32>| -> Vec<(String, u32)> {
            m.iter().map(|(k, v)| (k.clone(), *v)).collect()
        };
        assert_eq!(list(&r), list(&m));
        assert_eq!(r.evicted(), m.evicted());
        assert_eq!(state_json(&r), state_json(&m));
        // Outside a snapshot the map is still a plain object.
        assert_eq!(serde_json::to_string(&r).unwrap(), r#"{"d":2,"f":1,"a":1}"#);
    }

    #[test]
    fn a_budget_keeps_the_newest_entries_that_fit() {
        let mut m = BoundedMap::new(10).with_state_budget(30);
        drive(&mut m, &["aaaa", "bbbb", "cccc", "dddd", "aaaa"]);
        // Each entry is `["xxxx",n]` = 10 bytes + 1: the newest two fit in 30.
        let json = state_json(&m);
        let mut r = restore(&json).unwrap();
        let keys: Vec<&String> = r.iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["aaaa", "dddd"]);
        assert_eq!(r.evicted(), 2, "the left-out entries count as evicted");
        assert_eq!(r.state_budget(), 30);
        r.set_capacity(1);
        assert_eq!(
            r.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
            ["aaaa"]
        );
        assert_eq!(r.evicted(), 3);
    }

    #[test]
    fn broken_states_are_refused() {
        for (json, why) in [
            (r#"{"a":1}"#, "missing field"),
            (
                r#"{"capacity":0,"evicted":0,"entries":[],"recency":[]}"#,
                "out of range",
            ),
            (
                r#"{"capacity":1,"evicted":0,"entries":[["a",1],["b",1]],"recency":[0,1]}"#,
                "over its capacity",
            ),
            (
                r#"{"capacity":2,"evicted":0,"entries":[["a",1],["a",2]],"recency":[0,1]}"#,
                "a key twice",
            ),
            (
                r#"{"capacity":2,"evicted":0,"entries":[["a",1],["b",2]],"recency":[0,0]}"#,
                "not a permutation",
            ),
            (
                r#"{"capacity":2,"evicted":0,"entries":[["a",1],["b",2]],"recency":[0,2]}"#,
                "not a permutation",
            ),
            (
                r#"{"capacity":2,"evicted":0,"entries":[["a",1]],"recency":[]}"#,
                "does not match",
            ),
        ] {
            let e = restore(json).map(|_| ()).unwrap_err();
            assert!(e.contains(why), "{json}: {e}");
        }
    }
}
