//! The flow table's index: a 32-bit hash tag to a slab slot, in buckets of one cache line.
//!
//! Why not a general hash map: each entry is one `u64` holding the key's tag *and* its slot,
//! so
//!
//! * a lookup for a key that is not in the table (every new flow) reads only the index,
//!   never a slot: a slot is read only when its full 32-bit tag matches;
//! * removing a flow (eviction, timeout) needs only the flow's stored tag and slot number,
//!   no key comparison and no slot read;
//! * growing rehashes from the tags alone, so it reads no slot either.
//!
//! On a table with hundreds of thousands of flows, slots and buckets are cache misses, and
//! on high-cardinality traffic (every packet a new flow and an eviction) a packet both
//! looks up a missing key and removes another: these are what the per-packet cost is made
//! of. So a bucket is one aligned 64-byte line: seven entries and an overflow count (how
//! many entries passed this bucket because it was full when they came; F14's scheme). A
//! key's entries are only in its home bucket or, while that bucket's overflow count is not
//! 0, the buckets after it. Each operation scans a bucket's seven entries without a branch
//! per entry (a bit mask of the matches), so a lookup, an insertion and a removal each read
//! one line and mispredict nothing in the common case; a removal only clears its entry
//! (and lowers the counts of the buckets its entry had passed), with no tombstones and no
//! shifting, so probes stay as short as the load allows however many flows come and go.
//! The load is kept at most 1/2 (3.5 entries a bucket on average, so about 1 bucket in 20
//! overflows). The bucket count need not be a power of two (a key's home is the tag scaled
//! to it, Lemire's multiply-shift), so the index is close to its target size: about 4.8 MB
//! at the default 262 144 flows.
//!
//! The tag is taken from a per-process seeded hash (the table's), so outside input cannot
//! aim flows at one bucket.

/// An empty entry (entries store `slot + 1`, so no real entry is 0).
const EMPTY: u64 = 0;

/// Entries in a bucket (with the overflow count, one 64-byte line).
const WAYS: usize = 7;

/// Smallest bucket count.
const MIN_BUCKETS: usize = 2;

/// One cache line of the index.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Bucket {
    /// Entries placed after this bucket (in a later one) while their home is this one or
    /// an earlier one of the run: a lookup goes on to the next bucket only while this is
    /// not 0.
    overflow: u32,
    _pad: u32,
    entries: [u64; WAYS],
}

const EMPTY_BUCKET: Bucket = Bucket {
    overflow: 0,
    _pad: 0,
    entries: [EMPTY; WAYS],
};

impl Bucket {
    /// Bit `k` set when entry `k` holds `tag` (a stored tag, never 0, so an empty entry
    /// never matches). Written without a branch per entry.
    #[inline(always)]
    fn matches(&self, tag: u32) -> u32 {
        let mut m = 0;
        for (k, &e) in self.entries.iter().enumerate() {
            m |= u32::from(tag_of(e) == tag) << k;
        }
        m
    }

    /// Bit `k` set when entry `k` is exactly `e`.
    #[inline(always)]
    fn holds(&self, want: u64) -> u32 {
        let mut m = 0;
        for (k, &e) in self.entries.iter().enumerate() {
            m |= u32::from(e == want) << k;
        }
        m
    }
}

/// Tag → slot, see the module docs.
pub(super) struct Index {
    buckets: Vec<Bucket>,
    len: usize,
    /// Entries held before the index grows (half of the entries' room).
    cap: usize,
}

/// The tag as stored: never 0, so an empty entry (all zero) matches no tag and a bucket
/// scan needs no separate emptiness test. (The tag loses its lowest bit of spread.)
#[inline(always)]
fn stored(tag: u32) -> u32 {
    tag | 1
}

#[inline(always)]
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

/// Buckets for `n` entries at a load of at most 1/2.
fn buckets_for(n: usize) -> usize {
    n.saturating_mul(2).div_ceil(WAYS).max(MIN_BUCKETS)
}

impl Index {
    /// An index that holds `n` entries before it first grows.
    pub(super) fn with_capacity(n: usize) -> Self {
        Self::with_buckets(buckets_for(n))
    }

    fn with_buckets(b: usize) -> Self {
        Index {
            buckets: vec![EMPTY_BUCKET; b],
            len: 0,
            cap: b * WAYS / 2,
        }
    }

    /// Entries held.
    #[inline]
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Empties it (keeping its size).
    pub(super) fn clear(&mut self) {
        self.buckets.fill(EMPTY_BUCKET);
        self.len = 0;
    }

    /// The home bucket of `tag`: the tag scaled to the bucket count.
    #[inline]
    fn home(&self, tag: u32) -> usize {
        ((u64::from(tag) * self.buckets.len() as u64) >> 32) as usize
    }

    #[inline]
    fn next(&self, b: usize) -> usize {
        if b + 1 == self.buckets.len() {
            0
        } else {
            b + 1
        }
    }

    /// Starts fetching `tag`'s home bucket into the cache (a hint; see `prefetch.rs`): a
    /// batch asks for its packets' buckets a few packets ahead, so the cache misses overlap
    /// with other work instead of stalling each lookup.
    #[inline]
    pub(super) fn prefetch(&self, tag: u32) {
        super::prefetch::prefetch(&self.buckets[self.home(stored(tag))]);
    }

    /// The slot whose tag is `tag` and for which `is_key(slot)` holds.
    #[inline(always)]
    pub(super) fn find(&self, tag: u32, mut is_key: impl FnMut(u32) -> bool) -> Option<u32> {
        let tag = stored(tag);
        let mut b = self.home(tag);
        loop {
            let bucket = &self.buckets[b];
            let mut m = bucket.matches(tag);
            while m != 0 {
                let s = slot_of(bucket.entries[m.trailing_zeros() as usize]);
                if is_key(s) {
                    return Some(s);
                }
                m &= m - 1;
            }
            if bucket.overflow == 0 {
                return None;
            }
            b = self.next(b);
        }
    }

    /// Adds `slot` under `tag` (the caller knows its key is not in the index).
    #[inline]
    pub(super) fn insert(&mut self, tag: u32, slot: u32) {
        if self.len + 1 > self.cap {
            self.grow();
        }
        self.place(entry(stored(tag), slot));
        self.len += 1;
    }

    /// Puts `e` in the first bucket from its home with room, counting the overflow of each
    /// full bucket it passes. (The load is at most 1/2, so there is always room.)
    #[inline]
    fn place(&mut self, e: u64) {
        let mut b = self.home(tag_of(e));
        loop {
            let free = self.buckets[b].holds(EMPTY);
            if free != 0 {
                self.buckets[b].entries[free.trailing_zeros() as usize] = e;
                return;
            }
            self.buckets[b].overflow += 1;
            b = self.next(b);
        }
    }

    fn grow(&mut self) {
        let old = std::mem::replace(self, Self::with_buckets(self.buckets.len() * 2));
        self.len = old.len;
        for bucket in &old.buckets {
            for &e in &bucket.entries {
                if e != EMPTY {
                    self.place(e);
                }
            }
        }
    }

    /// Removes `slot`, stored under `tag`; false when it is not there.
    #[inline]
    pub(super) fn remove(&mut self, tag: u32, slot: u32) -> bool {
        let tag = stored(tag);
        let want = entry(tag, slot);
        let home = self.home(tag);
        let mut b = home;
        loop {
            let m = self.buckets[b].holds(want);
            if m != 0 {
                self.buckets[b].entries[m.trailing_zeros() as usize] = EMPTY;
                break;
            }
            if self.buckets[b].overflow == 0 {
                return false;
            }
            b = self.next(b);
        }
        // The entry had passed the buckets from its home to the one it sat in.
        let mut p = home;
        while p != b {
            self.buckets[p].overflow -= 1;
            p = self.next(p);
        }
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
        // 3 buckets (8 entries at a load of 1/2), room for 10 before growing.
        for home in 0..3usize {
            let mut idx = Index::with_capacity(8);
            assert_eq!((idx.buckets.len(), idx.cap), (3, 10));
            // Nine entries with the same home: seven fill it, two overflow into the next
            // bucket (the first one, when the home is the last).
            let base = (((home as u64) << 32).div_ceil(3)) as u32;
            let tags: Vec<u32> = (0..9).map(|k| base + k).collect();
            for (s, &t) in tags.iter().enumerate() {
                assert_eq!(idx.home(t), home);
                idx.insert(t, s as u32);
            }
            assert_eq!(idx.buckets[home].overflow, 2);
            let next = (home + 1) % 3;
            assert_eq!(
                idx.buckets[next].holds(EMPTY).count_ones(),
                5,
                "home {home}"
            );
            for (s, &t) in tags.iter().enumerate() {
                assert_eq!(
                    idx.find(t, |x| x == s as u32),
                    Some(s as u32),
                    "home {home}"
                );
                assert_eq!(idx.find(t, |_| false), None);
            }
            assert_eq!(idx.find(base + 99, |_| true), None, "tag not stored");
            // Remove from the home bucket and from the overflow: the rest stays findable,
            // and the count drops only for what had overflowed.
            let mut removed = Vec::new();
            for k in [3usize, 0, 8, 7] {
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
            assert_eq!(idx.buckets[home].overflow, 0, "both overflowed ones gone");
            assert_eq!(idx.len(), 5);
        }
    }

    /// The overflow counts recomputed from where the entries sit.
    fn overflow_from_entries(idx: &Index) -> Vec<u32> {
        let mut want = vec![0u32; idx.buckets.len()];
        for (p, bucket) in idx.buckets.iter().enumerate() {
            for &e in &bucket.entries {
                if e != EMPTY {
                    let mut b = idx.home(tag_of(e));
                    while b != p {
                        want[b] += 1;
                        b = idx.next(b);
                    }
                }
            }
        }
        want
    }

    #[test]
    fn matches_a_map_under_random_inserts_and_removes() {
        // Few distinct tag values (spread over the buckets, since a home is the tag scaled
        // to the bucket count) force long runs, equal tags, overflow chains and wraparound
        // at the end of the bucket array; a first phase mostly inserts (the index grows),
        // a second one inserts and removes alike at a steady size (overflow counts go up
        // and down).
        for tag_bits in [3u32, 6, 12, 32] {
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ u64::from(tag_bits));
            let mut idx = Index::with_capacity(4);
            let mut model: std::collections::HashMap<u32, u32> = Default::default();
            let mut next_slot = 0u32;
            for step in 0..40_000 {
                let r = rng.next();
                let insert = if step < 20_000 {
                    !r.is_multiple_of(3)
                } else {
                    r.is_multiple_of(2)
                };
                if insert || model.is_empty() {
                    let v = rng.next() as u32;
                    let tag = if tag_bits == 32 {
                        v
                    } else {
                        (v >> (32 - tag_bits)) << (32 - tag_bits) | (v & 1)
                    };
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
                if step % 997 == 0 {
                    let counts: Vec<u32> = idx.buckets.iter().map(|b| b.overflow).collect();
                    assert_eq!(counts, overflow_from_entries(&idx), "tag bits {tag_bits}");
                    for (&slot, &tag) in &model {
                        assert_eq!(idx.find(tag, |s| s == slot), Some(slot));
                    }
                }
            }
            for (&slot, &tag) in &model {
                assert_eq!(idx.find(tag, |s| s == slot), Some(slot));
                assert_eq!(idx.find(tag, |_| false), None);
            }
            assert_eq!(idx.find(u32::MAX - 7, |_| false), None);
            // Emptied, every count is back to 0.
            for (&slot, &tag) in &model {
                assert!(idx.remove(tag, slot));
            }
            assert_eq!(idx.len(), 0);
            assert!(idx
                .buckets
                .iter()
                .all(|b| b.overflow == 0 && b.holds(EMPTY) == 0x7f));
        }
    }
}
