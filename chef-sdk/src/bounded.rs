//! Bounded collections, so that no chef state grows without limit.
//!
//! [`BoundedMap`] keeps insertion (first-seen) order, like a Python `dict`, and holds at
//! most `capacity` entries: inserting a new key into a full map first evicts the entry
//! that was touched least recently. Hashing is fixed (no randomness, so no `wasi:random`
//! import) and fast ([`FastHasher`]); the bound keeps the cost of a crafted collision set
//! small.
//!
//! Inside a chef's state snapshot (chef API 0.2, [`crate::state`]) a map is written with its
//! bounds and recency order, so a restored map evicts exactly what the old one would have
//! (see `bounded/state.rs`).

mod state;

use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};

use hashbrown::HashTable;

/// The key-lookup trait of [`BoundedMap::get`] and friends (`&str` finds a `String` key).
pub use equivalent::Equivalent;

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

/// "No node": the end of a list, or an empty one.
const NIL: u32 = u32::MAX;

/// One entry, in a slab; linked into two lists by slab index (no moves on removal).
struct Node<K, V> {
    key: K,
    value: V,
    /// The key's hash, kept so the table never rehashes a key (and eviction finds the
    /// victim's table slot without `Eq`).
    hash: u64,
    /// Insertion (first-seen) order: what `iter`, `drain` and serialisation follow.
    prev: u32,
    next: u32,
    /// Recency order: the eviction victim is the oldest.
    older: u32,
    newer: u32,
}

/// Both ends of one doubly linked list.
#[derive(Clone, Copy)]
struct Ends {
    head: u32,
    tail: u32,
}

const EMPTY: Ends = Ends {
    head: NIL,
    tail: NIL,
};

/// An insertion-ordered map with at most `capacity` entries (least-recently-touched
/// eviction).
///
/// Every operation is O(1) (amortised, as any hash table), including an insert into a full
/// map: entries live in a slab linked into two lists (first-seen order and recency), and a
/// hash table maps keys to slab slots. Eviction unlinks the recency list's oldest entry;
/// removal unlinks an entry from both lists without moving the others, so the survivors
/// keep their first-seen order.
pub struct BoundedMap<K, V> {
    table: HashTable<u32>,
    nodes: Vec<Option<Node<K, V>>>,
    /// Empty slab slots, reused before the slab grows.
    free: Vec<u32>,
    order: Ends,
    recency: Ends,
    capacity: usize,
    evicted: u64,
    /// Most bytes of entries a state snapshot holds (the newest entries that fit).
    state_budget: usize,
    /// List links rewritten since creation: the work counter the O(1) test reads.
    #[cfg(test)]
    links: u64,
}

/// Capacity of a [`BoundedMap::default()`].
pub const DEFAULT_CAPACITY: usize = 10_000;

impl<K: Hash + Eq, V> Default for BoundedMap<K, V> {
    /// An empty map of [`DEFAULT_CAPACITY`] entries.
    fn default() -> Self {
        BoundedMap::new(DEFAULT_CAPACITY)
    }
}

/// Slab indices are `u32` (half the link size of `usize`); `NIL` is reserved.
const MAX_CAPACITY: usize = (u32::MAX - 1) as usize;

impl<K: Hash + Eq, V> BoundedMap<K, V> {
    /// An empty map holding at most `capacity` entries (at least 1, at most 2^32 - 2).
    pub fn new(capacity: usize) -> Self {
        BoundedMap {
            table: HashTable::new(),
            nodes: Vec::new(),
            free: Vec::new(),
            order: EMPTY,
            recency: EMPTY,
            capacity: capacity.clamp(1, MAX_CAPACITY),
            evicted: 0,
            state_budget: usize::MAX,
            #[cfg(test)]
            links: 0,
        }
    }

    /// The maximum number of entries.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Changes the maximum number of entries (at least 1), evicting the least recently
    /// touched entries (counted) if the map holds more. For a chef's
    /// [`crate::Chef::restored`], when a new version changed a bound.
    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity.clamp(1, MAX_CAPACITY);
        while self.table.len() > self.capacity {
            self.evict_one();
        }
    }

    /// The map, whose chef-state snapshots hold at most `bytes` of entries (their JSON
    /// text): the newest entries that fit, in recency order; older ones are left out as if
    /// evicted. Sizes a chef's snapshot by construction when entries can be large (a
    /// partial record, a name of escaped control bytes). Default: no budget. A restored map
    /// keeps the budget it was saved with.
    pub fn with_state_budget(mut self, bytes: usize) -> Self {
        self.state_budget = bytes;
        self
    }

    /// Sets the state budget (see [`BoundedMap::with_state_budget`]); for a chef's
    /// [`crate::Chef::restored`], when a new version changed it.
    pub fn set_state_budget(&mut self, bytes: usize) {
        self.state_budget = bytes;
    }

    /// The state budget (see [`BoundedMap::with_state_budget`]).
    pub fn state_budget(&self) -> usize {
        self.state_budget
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.table.len() == 0
    }

    /// How many entries were evicted to respect the bound, since creation.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// The value for `key`, without touching it.
    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        let i = self.find(key)?;
        Some(&self.node(i).value)
    }

    /// The value for `key`, marked as just used; `None` if absent.
    pub fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        let i = self.find(key)?;
        self.touch(i);
        Some(&mut self.node_mut(i).value)
    }

    /// The value for `key`, inserting `make()` (after evicting the least-recently-touched
    /// entry if full) when absent. Marks the entry as just used.
    pub fn get_or_insert_with(&mut self, key: K, make: impl FnOnce() -> V) -> &mut V {
        let hash = hash_of(&key);
        let i = match self.find_hashed(hash, &key) {
            Some(i) => {
                self.touch(i);
                i
            }
            None => self.insert_new(hash, key, make()),
        };
        &mut self.node_mut(i).value
    }

    /// Inserts or replaces `key`'s value (evicting if full and `key` is new); returns the
    /// previous value, so `insert(k, v).is_none()` means "`k` is new".
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        let hash = hash_of(&key);
        match self.find_hashed(hash, &key) {
            Some(i) => {
                self.touch(i);
                Some(std::mem::replace(&mut self.node_mut(i).value, value))
            }
            None => {
                self.insert_new(hash, key, value);
                None
            }
        }
    }

    /// Removes `key`, returning its value.
    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        let hash = hash_of(key);
        let nodes = &self.nodes;
        let entry = self
            .table
            .find_entry(hash, |&i| {
                nodes[i as usize]
                    .as_ref()
                    .is_some_and(|n| key.equivalent(&n.key))
            })
            .ok()?;
        let (i, _) = entry.remove();
        Some(self.unlink_and_free(i).value)
    }

    /// Removes every entry (the eviction count is kept).
    pub fn clear(&mut self) {
        self.table.clear();
        self.nodes.clear();
        self.free.clear();
        self.order = EMPTY;
        self.recency = EMPTY;
    }

    /// The least recently touched entry: the one an insert of a new key into the full map
    /// would evict. Does not touch it.
    pub fn oldest(&self) -> Option<(&K, &V)> {
        let at = self.recency.head;
        (at != NIL).then(|| {
            let n = self.node(at);
            (&n.key, &n.value)
        })
    }

    /// The entries a payload of at most `budget` bytes can show: the most recently touched
    /// ones whose `cost`s (each entry's share of the payload, e.g. its JSON text and a
    /// comma) add up to at most `budget`, listed in first-seen order like
    /// [`BoundedMap::iter`], and how many were left out. When every entry fits (the usual
    /// case) that is every entry, and it serialises as the map itself does. For an interval
    /// payload that lists a table of capture-controlled strings: the kitchen refuses a
    /// payload over its size limit, so a table too large for it would never be shown at
    /// all (see [`crate::PAYLOAD_BUDGET`]).
    pub fn newest_within(
        &self,
        budget: usize,
        mut cost: impl FnMut(&K, &V) -> usize,
    ) -> Within<'_, K, V> {
        let mut total = 0usize;
        let mut all = Vec::with_capacity(self.len());
        for (k, v) in self.iter() {
            total = total.saturating_add(cost(k, v));
            all.push((k, v));
        }
        if total <= budget {
            return Within {
                entries: all,
                left_out: 0,
            };
        }
        // Over: the newest first, while they fit; then shown in first-seen order.
        let mut keep = vec![false; self.nodes.len()];
        let mut used = 0usize;
        let mut kept = 0usize;
        let mut at = self.recency.tail;
        while at != NIL {
            let n = self.node(at);
            used = used.saturating_add(cost(&n.key, &n.value));
            if used > budget {
                break;
            }
            keep[at as usize] = true;
            kept += 1;
            at = n.older;
        }
        let mut entries = Vec::with_capacity(kept);
        let mut at = self.order.head;
        while at != NIL {
            let n = self.node(at);
            if keep[at as usize] {
                entries.push((&n.key, &n.value));
            }
            at = n.next;
        }
        Within {
            entries,
            left_out: self.len() - kept,
        }
    }

    /// Entries in insertion (first-seen) order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        let mut at = self.order.head;
        std::iter::from_fn(move || {
            if at == NIL {
                return None;
            }
            let n = self.node(at);
            at = n.next;
            Some((&n.key, &n.value))
        })
    }

    /// Calls `f` on every entry in insertion (first-seen) order with its value mutable,
    /// without marking any entry as used (the recency order is unchanged). For a chef that
    /// keeps derived data beside each value (e.g. the value's JSON text) and refreshes it
    /// while it walks the table.
    pub fn for_each_mut(&mut self, mut f: impl FnMut(&K, &mut V)) {
        let mut at = self.order.head;
        while at != NIL {
            let n = self.node_mut(at);
            f(&n.key, &mut n.value);
            at = n.next;
        }
    }

    /// Removes and returns every entry, in insertion order.
    pub fn drain(&mut self) -> impl Iterator<Item = (K, V)> + '_ {
        let mut out = Vec::with_capacity(self.len());
        let mut at = self.order.head;
        while at != NIL {
            let Some(n) = self.nodes.get_mut(at as usize).and_then(Option::take) else {
                break;
            };
            at = n.next;
            out.push((n.key, n.value));
        }
        self.clear();
        out.into_iter()
    }

    fn node(&self, i: u32) -> &Node<K, V> {
        match self.nodes.get(i as usize) {
            Some(Some(n)) => n,
            // The table and both lists only hold indices of occupied slots.
            _ => unreachable!("BoundedMap: dangling slot {i}"),
        }
    }

    fn node_mut(&mut self, i: u32) -> &mut Node<K, V> {
        match self.nodes.get_mut(i as usize) {
            Some(Some(n)) => n,
            _ => unreachable!("BoundedMap: dangling slot {i}"),
        }
    }

    fn find<Q>(&self, key: &Q) -> Option<u32>
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        self.find_hashed(hash_of(key), key)
    }

    fn find_hashed<Q>(&self, hash: u64, key: &Q) -> Option<u32>
    where
        Q: Equivalent<K> + ?Sized,
    {
        let nodes = &self.nodes;
        self.table
            .find(hash, |&i| {
                nodes[i as usize]
                    .as_ref()
                    .is_some_and(|n| n.hash == hash && key.equivalent(&n.key))
            })
            .copied()
    }

    /// Adds a key known to be absent, evicting first when full; returns its slot.
    fn insert_new(&mut self, hash: u64, key: K, value: V) -> u32 {
        if self.table.len() >= self.capacity {
            self.evict_one();
        }
        let node = Node {
            key,
            value,
            hash,
            prev: self.order.tail,
            next: NIL,
            older: self.recency.tail,
            newer: NIL,
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.nodes[i as usize] = Some(node);
                i
            }
            None => {
                // Bounded by `capacity` (<= MAX_CAPACITY), so the index fits and is not NIL.
                self.nodes.push(Some(node));
                (self.nodes.len() - 1) as u32
            }
        };
        self.link_order_tail(i);
        self.link_recency_tail(i);
        let nodes = &self.nodes;
        self.table.insert_unique(hash, i, |&j| {
            nodes[j as usize].as_ref().map_or(0, |n| n.hash)
        });
        i
    }

    /// Drops the least recently touched entry.
    fn evict_one(&mut self) {
        let victim = self.recency.head;
        if victim == NIL {
            return;
        }
        let hash = self.node(victim).hash;
        if let Ok(entry) = self.table.find_entry(hash, |&i| i == victim) {
            entry.remove();
        }
        drop(self.unlink_and_free(victim));
        self.evicted += 1;
    }

    /// Makes `i` the most recently touched entry.
    fn touch(&mut self, i: u32) {
        if self.recency.tail == i {
            return;
        }
        self.unlink_recency(i);
        let tail = self.recency.tail;
        let n = self.node_mut(i);
        n.older = tail;
        n.newer = NIL;
        self.link_recency_tail(i);
    }

    /// Takes `i` out of both lists and the slab (not the table: the caller did that).
    fn unlink_and_free(&mut self, i: u32) -> Node<K, V> {
        self.unlink_recency(i);
        let (prev, next) = {
            let n = self.node(i);
            (n.prev, n.next)
        };
        self.count_link();
        match prev {
            NIL => self.order.head = next,
            p => self.node_mut(p).next = next,
        }
        match next {
            NIL => self.order.tail = prev,
            n => self.node_mut(n).prev = prev,
        }
        self.free.push(i);
        match self.nodes[i as usize].take() {
            Some(n) => n,
            None => unreachable!("BoundedMap: freeing an empty slot {i}"),
        }
    }

    fn unlink_recency(&mut self, i: u32) {
        let (older, newer) = {
            let n = self.node(i);
            (n.older, n.newer)
        };
        self.count_link();
        match older {
            NIL => self.recency.head = newer,
            o => self.node_mut(o).newer = newer,
        }
        match newer {
            NIL => self.recency.tail = older,
            n => self.node_mut(n).older = older,
        }
    }

    /// Appends `i` (whose `prev` is already the old tail) to the first-seen list.
    fn link_order_tail(&mut self, i: u32) {
        self.count_link();
        match self.order.tail {
            NIL => self.order.head = i,
            t => self.node_mut(t).next = i,
        }
        self.order.tail = i;
    }

    /// Appends `i` (whose `older` is already the old tail) to the recency list.
    fn link_recency_tail(&mut self, i: u32) {
        self.count_link();
        match self.recency.tail {
            NIL => self.recency.head = i,
            t => self.node_mut(t).newer = i,
        }
        self.recency.tail = i;
    }

    #[inline]
    fn count_link(&mut self) {
        #[cfg(test)]
        {
            self.links += 1;
        }
    }
}

fn hash_of<Q: Hash + ?Sized>(key: &Q) -> u64 {
    Fixed::default().hash_one(key)
}

/// Some entries of a [`BoundedMap`], in first-seen order, and how many were left out
/// ([`BoundedMap::newest_within`]). Serialises as a JSON object of the entries shown, like
/// the map itself (the count is the caller's to report).
pub struct Within<'a, K, V> {
    /// The entries shown.
    pub entries: Vec<(&'a K, &'a V)>,
    /// How many entries were left out.
    pub left_out: usize,
}

impl<K: serde::Serialize, V: serde::Serialize> serde::Serialize for Within<'_, K, V> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.entries.iter().copied())
    }
}

impl<K, V> serde::Serialize for BoundedMap<K, V>
where
    K: serde::Serialize + Hash + Eq,
    V: serde::Serialize,
{
    /// Serialises as a JSON object (or map) in insertion order; inside a chef's state
    /// snapshot, in the state form (bounds and recency order, see `bounded/state.rs`).
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if crate::state::in_state_form() {
            state::serialize(self, s)
        } else {
            s.collect_map(self.iter())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_within_shows_the_newest_that_fit_in_first_seen_order() {
        let mut m = BoundedMap::new(10);
        for k in 0..6u32 {
            m.insert(k, k);
        }
        m.insert(1, 1); // touched: now the newest
        assert_eq!(m.oldest(), Some((&0, &0)));
        let all = m.newest_within(6, |_, _| 1);
        assert_eq!(all.left_out, 0);
        assert_eq!(
            serde_json::to_string(&all).expect("json"),
            serde_json::to_string(&m).expect("json")
        );
        let some = m.newest_within(3, |_, _| 1);
        let keys: Vec<u32> = some.entries.iter().map(|(k, _)| **k).collect();
        assert_eq!((keys, some.left_out), (vec![1, 4, 5], 3));
        assert!(m.newest_within(0, |_, _| 1).entries.is_empty());
    }

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
    fn for_each_mut_walks_first_seen_order_and_keeps_recency() {
        let mut m = BoundedMap::new(3);
        for k in ["a", "b", "c"] {
            m.insert(k, 0);
        }
        m.get_mut("a"); // a is now the most recent; b the oldest
        let mut seen = Vec::new();
        m.for_each_mut(|k, v| {
            seen.push(*k);
            *v += 10;
        });
        assert_eq!(seen, ["a", "b", "c"]);
        // Walking touched nothing: b is still the eviction victim.
        m.insert("d", 1);
        let all: Vec<_> = m.iter().map(|(k, v)| (*k, *v)).collect();
        assert_eq!(all, vec![("a", 10), ("c", 10), ("d", 1)]);
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

    /// The reference semantics (the map's original, O(n) implementation): a vector in
    /// first-seen order with a touch clock; eviction scans for the oldest touch.
    struct Model {
        entries: Vec<(u32, u32, u64)>,
        capacity: usize,
        clock: u64,
        evicted: u64,
    }

    impl Model {
        fn position(&self, k: u32) -> Option<usize> {
            self.entries.iter().position(|e| e.0 == k)
        }
        fn touch_or_insert(&mut self, k: u32, v: Option<u32>) -> Option<u32> {
            self.clock += 1;
            if let Some(p) = self.position(k) {
                self.entries[p].2 = self.clock;
                return Some(match v {
                    Some(v) => std::mem::replace(&mut self.entries[p].1, v),
                    None => self.entries[p].1,
                });
            }
            if self.entries.len() >= self.capacity {
                let victim = (0..self.entries.len()).min_by_key(|&i| self.entries[i].2);
                if let Some(i) = victim {
                    self.entries.remove(i);
                    self.evicted += 1;
                }
            }
            self.entries.push((k, v.unwrap_or(0), self.clock));
            None
        }
    }

    #[test]
    fn matches_the_reference_semantics_under_random_operations() {
        // A fixed xorshift stream: deterministic, no dependency.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for capacity in [1usize, 2, 7, 64] {
            let mut m = BoundedMap::new(capacity);
            let mut r = Model {
                entries: Vec::new(),
                capacity,
                clock: 0,
                evicted: 0,
            };
            for step in 0..20_000 {
                let k = (next() % (capacity as u64 * 3)) as u32;
                match next() % 6 {
                    0 => assert_eq!(m.insert(k, step), r.touch_or_insert(k, Some(step))),
                    1 | 2 => {
                        let had = r.touch_or_insert(k, None);
                        let got = *m.get_or_insert_with(k, || 0);
                        assert_eq!(got, had.unwrap_or(0));
                    }
                    3 => {
                        let want = r.position(k).map(|p| r.entries[p].1);
                        if want.is_some() {
                            r.touch_or_insert(k, None);
                        }
                        assert_eq!(m.get_mut(&k).map(|v| *v), want);
                    }
                    4 => {
                        let want = r.position(k).map(|p| r.entries.remove(p).1);
                        assert_eq!(m.remove(&k), want);
                    }
                    _ => assert_eq!(m.get(&k), r.position(k).map(|p| &r.entries[p].1)),
                }
                if step % 5000 == 4999 {
                    m.clear();
                    r.entries.clear();
                }
                let got: Vec<(u32, u32)> = m.iter().map(|(k, v)| (*k, *v)).collect();
                let want: Vec<(u32, u32)> = r.entries.iter().map(|e| (e.0, e.1)).collect();
                assert_eq!(got, want, "capacity {capacity}, step {step}");
                assert_eq!(m.evicted(), r.evicted);
                assert_eq!(m.len(), r.entries.len());
            }
            let want: Vec<(u32, u32)> = r.entries.iter().map(|e| (e.0, e.1)).collect();
            assert_eq!(m.drain().collect::<Vec<_>>(), want);
            assert!(m.is_empty() && m.iter().next().is_none());
        }
    }

    thread_local! {
        /// `Hash` and `Eq` calls on [`Counted`] keys in this thread.
        static KEY_CALLS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    }

    /// A key that counts how often the map hashes or compares it.
    #[derive(Debug, Clone, Copy)]
    struct Counted(u64);

    impl PartialEq for Counted {
        fn eq(&self, other: &Self) -> bool {
            KEY_CALLS.with(|c| c.set(c.get() + 1));
            self.0 == other.0
        }
    }
    impl Eq for Counted {}
    impl Hash for Counted {
        fn hash<H: Hasher>(&self, h: &mut H) {
            KEY_CALLS.with(|c| c.set(c.get() + 1));
            self.0.hash(h);
        }
    }

    /// Work per operation on a full map of `capacity`: (list links rewritten, key hash/eq
    /// calls), per operation, over a mix of new-key inserts (each evicts), hits, removals.
    fn work_per_op(capacity: usize) -> (f64, f64) {
        let mut m = BoundedMap::new(capacity);
        for k in 0..capacity as u64 {
            m.insert(Counted(k), k);
        }
        assert_eq!(m.len(), capacity);
        let links = m.links;
        let calls = KEY_CALLS.with(|c| c.get());
        let ops = 30_000u64;
        let base = capacity as u64;
        for j in 0..ops / 3 {
            // A new key into the full map: evicts the least recently touched.
            *m.get_or_insert_with(Counted(base + j), || 0) += 1;
            // A hit on a recent key (moves it to the recency tail).
            assert!(m.get_mut(&Counted(base + j)).is_some());
            // A removal and a re-insert in the middle of the first-seen order (a key a
            // quarter of the map back, always still present: the same work at any size).
            let mid = base + j - capacity as u64 / 4;
            let v = m.remove(&Counted(mid));
            assert!(v.is_some(), "key {mid} was evicted");
            m.insert(Counted(mid), v.unwrap_or_default());
        }
        assert!(m.evicted() >= ops / 3);
        (
            (m.links - links) as f64 / ops as f64,
            (KEY_CALLS.with(|c| c.get()) - calls) as f64 / ops as f64,
        )
    }

    #[test]
    fn every_operation_is_constant_work_at_any_size() {
        // Counted, not timed: an O(capacity) eviction (a scan for the oldest entry, or a
        // shift of every later entry to keep first-seen order) makes the work per operation
        // grow 64x between these sizes; O(1) keeps it equal.
        let (links_small, calls_small) = work_per_op(1_000);
        let (links_big, calls_big) = work_per_op(64_000);
        assert!(links_small < 8.0, "{links_small} links per operation");
        assert!(
            links_big <= links_small * 1.1,
            "links per operation grew from {links_small} to {links_big}"
        );
        // Hash-table probes: each compares at most a few keys whatever the size.
        assert!(calls_small < 4.0, "{calls_small} key calls per operation");
        assert!(
            calls_big <= calls_small * 1.5 + 0.5,
            "key calls per operation grew from {calls_small} to {calls_big}"
        );
    }
}
