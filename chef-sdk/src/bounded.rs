//! Bounded collections, so that no chef state grows without limit.
//!
//! [`BoundedMap`] keeps insertion (first-seen) order, like a Python `dict`, and holds at
//! most `capacity` entries: inserting a new key into a full map first evicts the entry
//! that was touched least recently. Hashing is fixed (no randomness, so no `wasi:random`
//! import) and fast ([`FastHasher`]); the bound keeps the cost of a crafted collision set
//! small.

use std::hash::{BuildHasherDefault, Hash, Hasher};

use indexmap::IndexMap;

type Fixed = BuildHasherDefault<FastHasher>;

/// The hasher of [`BoundedMap`]: the multiply-rotate mixing of rustc's `FxHasher`, one step
/// per 8 bytes, with its final rotation so the low bits (the table index) depend on every
/// input bit.
///
/// Why not std's `DefaultHasher`: SipHash with fixed keys is no harder to attack than this
/// (the keys are public either way), and in a chef it cost ~100 ns per lookup of a
/// socket-address key; this takes a few ns.
#[derive(Debug, Default, Clone, Copy)]
pub struct FastHasher(u64);

/// rustc-hash's multiplier (an odd constant with well-spread bits).
const MULTIPLIER: u64 = 0xf135_7aea_2e62_a9c5;

impl FastHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = self.0.wrapping_add(word).wrapping_mul(MULTIPLIER);
    }
}

impl Hasher for FastHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            // The length in the top byte, so "a" and "a\0" differ.
            self.add(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 56));
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }
    #[inline]
    fn write_u16(&mut self, i: u16) {
        self.add(u64::from(i));
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    #[inline]
    fn write_u128(&mut self, i: u128) {
        self.add(i as u64);
        self.add((i >> 64) as u64);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.0.rotate_left(26)
    }
}

struct Slot<V> {
    value: V,
    touched: u64,
}

/// An insertion-ordered map with at most `capacity` entries (least-recently-touched
/// eviction).
///
/// Lookups and updates are O(1); inserting a new key into a full map is O(n) (one scan to
/// find the victim), which is fine for the few-thousand-entry maps chefs keep.
pub struct BoundedMap<K, V> {
    map: IndexMap<K, Slot<V>, Fixed>,
    capacity: usize,
    clock: u64,
    evicted: u64,
}

/// Capacity of a [`BoundedMap::default()`].
pub const DEFAULT_CAPACITY: usize = 10_000;

impl<K: Hash + Eq, V> Default for BoundedMap<K, V> {
    /// An empty map of [`DEFAULT_CAPACITY`] entries.
    fn default() -> Self {
        BoundedMap::new(DEFAULT_CAPACITY)
    }
}

impl<K: Hash + Eq, V> BoundedMap<K, V> {
    /// An empty map holding at most `capacity` entries (at least 1).
    pub fn new(capacity: usize) -> Self {
        BoundedMap {
            map: IndexMap::with_hasher(Fixed::default()),
            capacity: capacity.max(1),
            clock: 0,
            evicted: 0,
        }
    }

    /// The maximum number of entries.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// How many entries were evicted to respect the bound, since creation.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// The value for `key`, without touching it.
    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        Q: Hash + indexmap::Equivalent<K> + ?Sized,
    {
        self.map.get(key).map(|s| &s.value)
    }

    /// The value for `key`, marked as just used; `None` if absent.
    pub fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        Q: Hash + indexmap::Equivalent<K> + ?Sized,
    {
        self.clock += 1;
        let clock = self.clock;
        self.map.get_mut(key).map(|s| {
            s.touched = clock;
            &mut s.value
        })
    }

    /// The value for `key`, inserting `make()` (after evicting the least-recently-touched
    /// entry if full) when absent. Marks the entry as just used.
    pub fn get_or_insert_with(&mut self, key: K, make: impl FnOnce() -> V) -> &mut V {
        self.clock += 1;
        let clock = self.clock;
        // Only a full map needs the extra lookup (one hash per call otherwise).
        if self.map.len() >= self.capacity && !self.map.contains_key(&key) {
            self.evict_one();
        }
        let slot = self.map.entry(key).or_insert_with(|| Slot {
            value: make(),
            touched: clock,
        });
        slot.touched = clock;
        &mut slot.value
    }

    /// Inserts or replaces `key`'s value (evicting if full and `key` is new); returns the
    /// previous value, so `insert(k, v).is_none()` means "`k` is new".
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        self.clock += 1;
        let clock = self.clock;
        if let Some(slot) = self.map.get_mut(&key) {
            slot.touched = clock;
            return Some(std::mem::replace(&mut slot.value, value));
        }
        if self.map.len() >= self.capacity {
            self.evict_one();
        }
        self.map.insert(
            key,
            Slot {
                value,
                touched: clock,
            },
        );
        None
    }

    /// Removes `key`, returning its value.
    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        Q: Hash + indexmap::Equivalent<K> + ?Sized,
    {
        self.map.shift_remove(key).map(|s| s.value)
    }

    /// Removes every entry (the eviction count is kept).
    pub fn clear(&mut self) {
        self.map.clear();
    }

    /// Entries in insertion (first-seen) order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.map.iter().map(|(k, s)| (k, &s.value))
    }

    /// Removes and returns every entry, in insertion order.
    pub fn drain(&mut self) -> impl Iterator<Item = (K, V)> + '_ {
        self.map.drain(..).map(|(k, s)| (k, s.value))
    }

    fn evict_one(&mut self) {
        let victim = self
            .map
            .values()
            .enumerate()
            .min_by_key(|(_, s)| s.touched)
            .map(|(i, _)| i);
        if let Some(i) = victim {
            // shift_remove keeps the first-seen order of the survivors.
            self.map.shift_remove_index(i);
            self.evicted += 1;
        }
    }
}

impl<K, V> serde::Serialize for BoundedMap<K, V>
where
    K: serde::Serialize,
    V: serde::Serialize,
{
    /// Serialises as a JSON object (or map) in insertion order.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.map.iter().map(|(k, slot)| (k, &slot.value)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_first_seen_order_and_bound() {
        let mut m = BoundedMap::new(3);
        for k in ["a", "b", "c"] {
            *m.get_or_insert_with(k, || 0) += 1;
        }
        *m.get_or_insert_with("a", || 0) += 1; // a is now the most recent
        *m.get_or_insert_with("d", || 0) += 1; // evicts b, the least recently touched
        let keys: Vec<_> = m.iter().map(|(k, v)| (*k, *v)).collect();
        assert_eq!(keys, vec![("a", 2), ("c", 1), ("d", 1)]);
        assert_eq!(m.len(), 3);
        assert_eq!(m.evicted(), 1);
        assert_eq!(
            serde_json::to_string(&m).ok().as_deref(),
            Some(r#"{"a":2,"c":1,"d":1}"#)
        );
    }

    #[test]
    fn fast_hasher_spreads_addresses_over_the_low_bits() {
        use std::hash::BuildHasher;
        use std::net::{IpAddr, Ipv4Addr, SocketAddr};
        // 4096 consecutive addresses and ports (a typical flow table) into 4096 buckets
        // by the low 12 bits: a good hash fills most of them.
        let build = Fixed::default();
        let mut buckets = vec![false; 4096];
        for i in 0..4096u32 {
            let a = SocketAddr::new(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)), 443);
            buckets[(build.hash_one(a) & 4095) as usize] = true;
        }
        let used = buckets.iter().filter(|b| **b).count();
        // A random function fills 1 - 1/e ≈ 63 % of them.
        assert!(used > 2300, "{used} of 4096 buckets used");
        assert_ne!(build.hash_one("a"), build.hash_one("a\0"));
    }

    #[test]
    fn insert_replaces_and_drain_empties() {
        let mut m = BoundedMap::new(0); // clamped to 1
        assert_eq!(m.insert(1, "x"), None);
        assert_eq!(m.insert(1, "y"), Some("x"));
        assert_eq!(m.get(&1), Some(&"y"));
        m.insert(2, "z");
        assert_eq!(m.get(&1), None);
        assert_eq!(m.drain().collect::<Vec<_>>(), vec![(2, "z")]);
        assert!(m.is_empty());
        assert_eq!(m.capacity(), 1);
    }
}
