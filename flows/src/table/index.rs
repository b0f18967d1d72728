//! The flow table's index: a 32-bit hash tag to a slab slot, open addressing with linear
//! probing.
//!
//! Why not a general hash map: each entry is one `u64` holding the key's tag *and* its slot,
//! so
//!
//! * a lookup for a key that is not in the table (every new flow) reads only the index,
//!   never a slot: a slot is read only when its full 32-bit tag matches;
//! * removing a flow (eviction, timeout) needs only the flow's stored tag and slot number,
//!   no key comparison and no slot read;
//! * growing rehashes from the tags alone (the bucket is the tag's low bits), so it reads no
//!   slot either.
//!
//! On a table with hundreds of thousands of flows, slots are cache misses; these are what the
//! flow table's per-packet cost is made of. Entries are removed by backward shifting
//! (no tombstones), so probes stay short however many flows come and go. The load is kept
//! at most 1/2: with linear probing a miss then reads about 2.5 entries, almost always in
//! one cache line. Buckets are 8 bytes; at the default 262 144 flows the index is 4 MiB.
//!
//! The tag is taken from a per-process seeded hash (the table's), so outside input cannot
//! aim flows at one run of buckets.

/// An empty bucket (entries store `slot + 1`, so no real entry is 0).
const EMPTY: u64 = 0;

/// Smallest bucket count.
const MIN_BUCKETS: usize = 16;

/// Tag → slot, see the module docs.
pub(super) struct Index {
    entries: Vec<u64>,
    mask: usize,
    len: usize,
}

#[inline]
fn entry(tag: u32, slot: u32) -> u64 {
    (u64::from(tag) << 32) | (u64::from(slot) + 1)
}

#[inline]
fn tag_of(e: u64) -> u32 {
    (e >> 32) as u32
}

#[inline]
fn slot_of(e: u64) -> u32 {
    // `slot + 1` was stored; EMPTY is never passed here.
    (e as u32).wrapping_sub(1)
}

impl Index {
    /// An index that holds `n` entries before it first grows.
    pub(super) fn with_capacity(n: usize) -> Self {
        let buckets = n.saturating_mul(2).next_power_of_two().max(MIN_BUCKETS);
        Index {
            entries: vec![EMPTY; buckets],
            mask: buckets - 1,
            len: 0,
        }
    }

    /// Entries held.
    #[inline]
    pub(super) fn len(&self) -> usize {
        self.len
    }

    #[inline]
    fn home(&self, tag: u32) -> usize {
        tag as usize & self.mask
    }

    /// Starts fetching `tag`'s home bucket into the cache (a hint; see `prefetch.rs`): a
    /// batch asks for its packets' buckets a few packets ahead, so the cache misses overlap
    /// with other work instead of stalling each lookup.
    #[inline]
    pub(super) fn prefetch(&self, tag: u32) {
        super::prefetch::prefetch(&self.entries[self.home(tag)]);
    }

    /// The slot whose tag is `tag` and for which `is_key(slot)` holds.
    #[inline]
    pub(super) fn find(&self, tag: u32, mut is_key: impl FnMut(u32) -> bool) -> Option<u32> {
        let mut i = self.home(tag);
        loop {
            let e = self.entries[i];
            if e == EMPTY {
                return None;
            }
            if tag_of(e) == tag && is_key(slot_of(e)) {
                return Some(slot_of(e));
            }
            i = (i + 1) & self.mask;
        }
    }

    /// Adds `slot` under `tag` (the caller knows its key is not in the index).
    pub(super) fn insert(&mut self, tag: u32, slot: u32) {
        if (self.len + 1) * 2 > self.entries.len() {
            self.grow();
        }
        self.place(entry(tag, slot));
        self.len += 1;
    }

    fn place(&mut self, e: u64) {
        let mut i = self.home(tag_of(e));
        while self.entries[i] != EMPTY {
            i = (i + 1) & self.mask;
        }
        self.entries[i] = e;
    }

    fn grow(&mut self) {
        let buckets = self.entries.len() * 2;
        let old = std::mem::replace(&mut self.entries, vec![EMPTY; buckets]);
        self.mask = buckets - 1;
        for e in old {
            if e != EMPTY {
                self.place(e);
            }
        }
    }

    /// Removes `slot`, stored under `tag`; false when it is not there.
    pub(super) fn remove(&mut self, tag: u32, slot: u32) -> bool {
        let want = entry(tag, slot);
        let mut i = self.home(tag);
        loop {
            let e = self.entries[i];
            if e == EMPTY {
                return false;
            }
            if e == want {
                break;
            }
            i = (i + 1) & self.mask;
        }
        // Backward shift: move later entries of the run into the hole when their home is
        // not between the hole and where they sit, so every probe still finds them.
        let mut j = i;
        loop {
            j = (j + 1) & self.mask;
            let e = self.entries[j];
            if e == EMPTY {
                break;
            }
            let home = self.home(tag_of(e));
            // Cyclic distances from the home: the entry may move back to the hole when the
            // hole is no further from its home than where it sits now.
            if (i.wrapping_sub(home) & self.mask) < (j.wrapping_sub(home) & self.mask) {
                self.entries[i] = e;
                i = j;
            }
        }
        self.entries[i] = EMPTY;
        self.len -= 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (xorshift), so the test needs no dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn runs_that_wrap_past_the_end_of_the_array() {
        // 16 buckets (MIN_BUCKETS); the array only grows past 8 entries.
        for home in [0u32, 5, 9, 15] {
            let mut idx = Index::with_capacity(8);
            assert_eq!(idx.mask, 15);
            // Eight entries with the same home: a run of 8 from `home`, wrapping to the
            // start of the array when the home is near its end.
            let tags: Vec<u32> = (0..8).map(|k| home | (k << 8)).collect();
            for (s, &t) in tags.iter().enumerate() {
                idx.insert(t, s as u32);
            }
            for (s, &t) in tags.iter().enumerate() {
                assert_eq!(
                    idx.find(t, |x| x == s as u32),
                    Some(s as u32),
                    "home {home}"
                );
                assert_eq!(idx.find(t, |_| false), None);
            }
            assert_eq!(idx.find(home | (99 << 8), |_| true), None, "tag not stored");
            // Remove from the middle and the front: the rest stays findable.
            let mut removed = Vec::new();
            for k in [3usize, 0, 7] {
                assert!(idx.remove(tags[k], k as u32));
                assert!(!idx.remove(tags[k], k as u32));
                removed.push(k);
                for (s, &t) in tags.iter().enumerate() {
                    let want = (!removed.contains(&s)).then_some(s as u32);
                    assert_eq!(
                        idx.find(t, |x| x == s as u32),
                        want,
                        "home {home}, removed {k}"
                    );
                }
            }
            assert_eq!(idx.len(), 5);
        }
    }

    #[test]
    fn matches_a_map_under_random_inserts_and_removes() {
        // Few distinct tag values force long runs, collisions and wraparound at the end of
        // the bucket array, which is where backward shifting can go wrong.
        for tag_bits in [3u32, 6, 32] {
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ u64::from(tag_bits));
            let mut idx = Index::with_capacity(4);
            let mut model: std::collections::HashMap<u32, u32> = Default::default();
            let mut next_slot = 0u32;
            for _ in 0..20_000 {
                let r = rng.next();
                if !r.is_multiple_of(3) || model.is_empty() {
                    let tag = (rng.next() as u32) & (u32::MAX >> (32 - tag_bits));
                    idx.insert(tag, next_slot);
                    model.insert(next_slot, tag);
                    next_slot += 1;
                } else {
                    let (&slot, &tag) = model
                        .iter()
                        .nth((r as usize / 3) % model.len())
                        .expect("not empty");
                    assert!(idx.remove(tag, slot));
                    model.remove(&slot);
                    assert!(!idx.remove(tag, slot), "removed twice");
                }
                assert_eq!(idx.len(), model.len());
            }
            for (&slot, &tag) in &model {
                assert_eq!(idx.find(tag, |s| s == slot), Some(slot));
            }
            assert_eq!(idx.find(u32::MAX, |_| false), None);
        }
    }
}
