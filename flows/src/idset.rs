//! A set of keys handed out in increasing order (flow ids, or keys made of them such as the
//! kitchen's per-direction keys), kept so that inserting, finding and removing recent keys
//! touch memory next to each other.
//!
//! Why not a hash set: a stream lane keeps the directions its chef gave up until their flows
//! end; on the high-cardinality corpus that is half a million inserts, a lookup per chunk
//! and two removals per ended flow in a set of a hundred thousand keys, each one a random
//! cache miss in a hash set. Keys of recent flows are close together, so here they sit in
//! a **ring** indexed by the key's low bits: new keys fill it in order, and flows end in
//! about the order they started. A key whose
//! ring place a newer key wants while it is still in the set (a long-lived flow's, or one
//! more than a ring's length older than the newest) goes to an **overflow** hash set; when
//! that holds more than an eighth of the keys, the ring doubles (while it has fewer than 16
//! entries per key) and every key is placed again. An entry is 4 bytes (the key's high
//! bits), so the ring stays under 32 entries (128 bytes) per key at the set's peak, besides
//! the first [`INITIAL_RING`]; every operation is O(1) (amortised for the doublings).

use std::collections::HashSet;
use std::hash::BuildHasherDefault;

use crate::reassembly::FlowIdHasher;

/// Ring entries at the start (4 KiB).
pub const INITIAL_RING: usize = 1024;

/// A set of `u64` keys, fastest when they come in about increasing order (see the module
/// docs).
#[derive(Debug, Clone)]
pub struct IdSet {
    /// For the key placed at `key & (ring.len() - 1)`: `(key >> shift) + 1`, or 0.
    ring: Vec<u32>,
    /// `log2(ring.len())`.
    shift: u32,
    /// Keys whose ring place another key holds, and keys too large for a ring entry.
    overflow: HashSet<u64, BuildHasherDefault<FlowIdHasher>>,
    len: usize,
}

impl Default for IdSet {
    fn default() -> Self {
        IdSet {
            ring: vec![0; INITIAL_RING],
            shift: INITIAL_RING.trailing_zeros(),
            overflow: HashSet::default(),
            len: 0,
        }
    }
}

impl IdSet {
    /// Keys in the set.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the set holds no key.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Where `key` goes in the ring and what that entry holds for it (`None`: a key too
    /// large for an entry, kept in the overflow set).
    #[inline]
    fn entry(&self, key: u64) -> (usize, Option<u32>) {
        // The ring's length is a power of two: the low bits place the key, the rest (plus
        // one, 0 = empty) is stored.
        let place = (key as usize) & (self.ring.len() - 1);
        let stored = u32::try_from((key >> self.shift) + 1).ok();
        (place, stored)
    }

    /// Whether `key` is in the set.
    #[inline]
    pub fn contains(&self, key: u64) -> bool {
        let (p, stored) = self.entry(key);
        (stored.is_some_and(|s| self.ring[p] == s))
            || (!self.overflow.is_empty() && self.overflow.contains(&key))
    }

    /// Adds `key`; false when it was in the set already.
    pub fn insert(&mut self, key: u64) -> bool {
        if self.contains(key) {
            return false;
        }
        self.len += 1;
        if !self.put(key) {
            return true;
        }
        // Many keys aside (a ring shorter than the span of the keys in the set): a longer
        // ring, while it stays under 16 entries per key (keys that collide at any length,
        // such as long-lived flows' among many new ones, stay aside instead).
        if self.overflow.len() * 8 > self.len && self.ring.len() < 16 * self.len {
            self.grow();
        }
        true
    }

    /// Places `key` (not in the set) in the ring; the key there before it goes to the
    /// overflow set, unless it is the newer one (then `key` goes there). True when a key
    /// went to the overflow set.
    fn put(&mut self, key: u64) -> bool {
        let (p, stored) = self.entry(key);
        let Some(stored) = stored else {
            self.overflow.insert(key);
            return true;
        };
        let there = self.ring[p];
        if there != 0 {
            if there > stored {
                self.overflow.insert(key);
                return true;
            }
            self.overflow
                .insert((u64::from(there - 1) << self.shift) | p as u64);
        }
        self.ring[p] = stored;
        there != 0
    }

    /// Doubles the ring and places every key again.
    #[cold]
    fn grow(&mut self) {
        let doubled = vec![0; self.ring.len() * 2];
        let old = std::mem::replace(&mut self.ring, doubled);
        let old_shift = self.shift;
        self.shift += 1;
        let aside = std::mem::take(&mut self.overflow);
        let placed = old
            .into_iter()
            .enumerate()
            .filter(|&(_, s)| s != 0)
            .map(|(p, s)| (u64::from(s - 1) << old_shift) | p as u64);
        for key in placed.chain(aside) {
            self.put(key);
        }
    }

    /// Removes `key`; false when it was not in the set.
    #[inline]
    pub fn remove(&mut self, key: u64) -> bool {
        let (p, stored) = self.entry(key);
        let removed = if stored.is_some_and(|s| self.ring[p] == s) {
            self.ring[p] = 0;
            true
        } else {
            !self.overflow.is_empty() && self.overflow.remove(&key)
        };
        self.len -= usize::from(removed);
        removed
    }

    /// Ring entries now (for the bound's test).
    #[cfg(test)]
    fn ring_len(&self) -> usize {
        self.ring.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    fn next(x: &mut u64) -> u64 {
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        *x
    }

    #[test]
    fn it_answers_as_a_hash_set_does_under_churn_and_long_lived_keys() {
        let mut set = IdSet::default();
        let mut model: HashSet<u64> = HashSet::new();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next_key = 0u64;
        let mut live: VecDeque<u64> = VecDeque::new();
        let mut peak = 0;
        for _ in 0..200_000 {
            match next(&mut x) % 10 {
                0..=4 => {
                    next_key += 1 + next(&mut x) % 4;
                    // Now and then an older key, and the one key without a `key + 1`.
                    let key = match next(&mut x) % 100 {
                        0 if next_key > 3000 => next_key - 1 - next(&mut x) % 3000,
                        1 => u64::MAX,
                        _ => next_key,
                    };
                    assert_eq!(set.insert(key), model.insert(key), "insert {key}");
                    // Every 89th key is a long-lived flow's: it stays.
                    if key % 89 != 0 {
                        live.push_back(key);
                    }
                }
                5..=8 if !live.is_empty() => {
                    let i = if next(&mut x).is_multiple_of(4) {
                        (next(&mut x) % live.len() as u64) as usize
                    } else {
                        0
                    };
                    let Some(key) = live.remove(i) else { continue };
                    assert_eq!(set.remove(key), model.remove(&key), "remove {key}");
                }
                _ => {
                    let key = next(&mut x) % (next_key + 10);
                    assert_eq!(set.contains(key), model.contains(&key));
                    assert_eq!(set.remove(key), model.remove(&key));
                }
            }
            assert_eq!(set.len(), model.len());
            peak = peak.max(model.len());
            assert!(set.ring_len() <= INITIAL_RING.max(32 * peak));
        }
        assert!(set.ring_len() > INITIAL_RING, "it grew");
        for &k in &model {
            assert!(set.contains(k));
        }
        assert_eq!(set.is_empty(), model.is_empty());
    }

    #[test]
    fn keys_a_ring_length_apart_all_stay_in_the_set() {
        let mut set = IdSet::default();
        let n = INITIAL_RING as u64;
        for k in 0..1000u64 {
            assert!(set.insert(k * n));
            assert!(!set.insert(k * n), "once");
        }
        assert!(set.ring_len() > INITIAL_RING);
        for k in (0..1000u64).step_by(2) {
            assert!(set.remove(k * n));
            assert!(!set.remove(k * n));
        }
        for k in 0..1000u64 {
            assert_eq!(set.contains(k * n), k % 2 == 1);
        }
        assert_eq!(set.len(), 500);
        assert!(set.insert(u64::MAX) && set.contains(u64::MAX) && set.remove(u64::MAX));
        assert!(set.insert(0) && set.contains(0) && !set.contains(2 * n));
    }
}
