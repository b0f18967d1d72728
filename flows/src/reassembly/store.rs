//! Where the reassembler keeps each flow's stream state, found by flow id: a slab of states
//! and a ring indexed by the id's low bits, with a small map for the ids the ring cannot
//! place.
//!
//! Why not a hash map: with a million flows each lookup of a hash map keyed by flow id is a
//! random cache miss, and a flow's state was looked up at three random places (its first
//! segment, its release, its end), each one or two misses, plus the map's rehashes (its
//! tombstones fill up under the churn of short flows). Flow ids are handed out in order,
//! one per new flow, so:
//! - **The ring** (`id & mask`) places the flows of the last `ring.len()` ids one after
//!   the other: a new flow's lookup and insert touch the ring where the previous new flow
//!   did, and flows ending in about the order they started (idle timeouts, least recently
//!   used eviction) walk it in order too. An entry is the slot's number (4 bytes).
//! - **The slab** reuses the slot a flow just ended left, last freed first, so a new flow's
//!   state is written to memory the end of another flow has just touched (on the
//!   high-cardinality corpus a batch's new flows take the slots its previous batch's ends
//!   freed); [`FlowStore::prefetch`] lets a caller with many ends to do fetch their states
//!   ahead.
//! - **The overflow map** holds a flow whose ring place was wanted by a newer id while it
//!   was still alive (a long-lived flow, once a ring's length of newer flows came after it).
//!   When it holds more than a quarter of the ring's length, the ring doubles and every flow
//!   is placed again, so the ring stays under 8 entries per flow with state at its peak
//!   (32 bytes each), besides the initial [`INITIAL_RING`].
//!
//! Every operation is O(1) (amortised for the ring's and the slab's growth); the number of
//! states is the caller's to bound (the reassembler's: by the flow table's size).

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use super::FlowIdHasher;

/// Ring entries at the start (4 KiB).
pub(super) const INITIAL_RING: usize = 1024;

/// A ring entry that names no slot.
const NONE: u32 = 0;

/// One slab slot: a flow's id and its value (a free slot keeps its last value until it is
/// taken again; the caller leaves nothing allocated in it, [`FlowStore::remove_with`]).
#[derive(Debug)]
struct Slot<V> {
    id: u64,
    value: V,
}

/// Values by flow id (see the module docs).
#[derive(Debug)]
pub(super) struct FlowStore<V> {
    slots: Vec<Slot<V>>,
    /// Free slots, the last freed at the end.
    free: Vec<u32>,
    /// `slot + 1` of the flow placed at `id & (ring.len() - 1)`, or [`NONE`].
    ring: Vec<u32>,
    /// Flows whose ring place another flow holds.
    overflow: HashMap<u64, u32, BuildHasherDefault<FlowIdHasher>>,
    len: usize,
}

impl<V> Default for FlowStore<V> {
    fn default() -> Self {
        FlowStore {
            slots: Vec::new(),
            free: Vec::new(),
            ring: vec![NONE; INITIAL_RING],
            overflow: HashMap::default(),
            len: 0,
        }
    }
}

impl<V> FlowStore<V> {
    /// Flows with a value.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Ring entries now (for the bound's test).
    #[cfg(test)]
    fn ring_len(&self) -> usize {
        self.ring.len()
    }

    fn place(&self, id: u64) -> usize {
        // The ring's length is a power of two; the low bits of a u64 id index it.
        (id as usize) & (self.ring.len() - 1)
    }

    /// The slot of `id`, if it has one.
    #[inline]
    fn slot_of(&self, id: u64) -> Option<usize> {
        let r = self.ring[self.place(id)];
        if r != NONE {
            let s = (r - 1) as usize;
            if self.slots[s].id == id {
                return Some(s);
            }
        }
        if self.overflow.is_empty() {
            return None;
        }
        self.overflow.get(&id).map(|&s| s as usize)
    }

    /// The value of `id`.
    pub(super) fn get(&self, id: u64) -> Option<&V> {
        let s = self.slot_of(id)?;
        Some(&self.slots[s].value)
    }

    /// The value of `id`, to change.
    #[inline]
    pub(super) fn get_mut(&mut self, id: u64) -> Option<&mut V> {
        let s = self.slot_of(id)?;
        Some(&mut self.slots[s].value)
    }

    /// Whether `id` has a value.
    pub(super) fn contains(&self, id: u64) -> bool {
        self.slot_of(id).is_some()
    }

    /// The value of `id`, made by `make` when it has none.
    #[inline]
    pub(super) fn get_or_insert_with(&mut self, id: u64, make: impl FnOnce() -> V) -> &mut V {
        let s = match self.slot_of(id) {
            Some(s) => s,
            None => self.insert_new(id, make()),
        };
        &mut self.slots[s].value
    }

    /// Gives `id` (which has no value) the slot last freed, or a new one; returns it.
    fn insert_new(&mut self, id: u64, value: V) -> usize {
        let s = match self.free.pop() {
            Some(s) => {
                self.slots[s as usize] = Slot { id, value };
                s as usize
            }
            None => {
                self.slots.push(Slot { id, value });
                self.slots.len() - 1
            }
        };
        self.len += 1;
        self.put(id, s as u32);
        if self.overflow.len() * 4 > self.ring.len() {
            self.grow();
        }
        s
    }

    /// Places `id` (at `slot`) in the ring; the flow there before it goes to the overflow map
    /// (the newer id keeps the ring: it is the one more likely to be looked up soon).
    fn put(&mut self, id: u64, slot: u32) {
        let p = self.place(id);
        let r = self.ring[p];
        if r != NONE {
            let other = self.slots[(r - 1) as usize].id;
            if other > id {
                // An older flow got its first state late: it goes aside, not the newer one.
                self.overflow.insert(id, slot);
                return;
            }
            self.overflow.insert(other, r - 1);
        }
        self.ring[p] = slot + 1;
    }

    /// Doubles the ring and places every flow again.
    #[cold]
    fn grow(&mut self) {
        let doubled = vec![NONE; self.ring.len() * 2];
        let old = std::mem::replace(&mut self.ring, doubled);
        let aside = std::mem::take(&mut self.overflow);
        let placed = old.into_iter().filter(|&r| r != NONE).map(|r| r - 1);
        for s in placed.chain(aside.into_values()) {
            let id = self.slots[s as usize].id;
            self.put(id, s);
        }
    }

    /// Removes `id`'s value, handing it to `last` first (in place: the caller leaves nothing
    /// allocated in it); its slot is the next one taken. `None` when `id` had no value.
    pub(super) fn remove_with<R>(&mut self, id: u64, last: impl FnOnce(&mut V) -> R) -> Option<R> {
        let s = self.slot_of(id)?;
        let p = self.place(id);
        if self.ring[p] == s as u32 + 1 {
            self.ring[p] = NONE;
        } else {
            self.overflow.remove(&id);
        }
        self.free.push(s as u32);
        self.len -= 1;
        Some(last(&mut self.slots[s].value))
    }

    /// Asks the processor to fetch `id`'s value ahead of a lookup (when the ring places it);
    /// no effect on results.
    #[inline]
    pub(super) fn prefetch(&self, id: u64) {
        let r = self.ring[self.place(id)];
        if r != NONE {
            crate::table::prefetch::prefetch_all(&self.slots[(r - 1) as usize]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// xorshift: deterministic choices.
    fn next(x: &mut u64) -> u64 {
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        *x
    }

    #[test]
    fn it_answers_as_a_map_does_under_churn_and_long_lived_flows() {
        let mut store: FlowStore<u64> = FlowStore::default();
        let mut model: HashMap<u64, u64> = HashMap::new();
        let mut x = 0x1234_5678_9abc_def1u64;
        let mut next_id = 1u64;
        let mut live: std::collections::VecDeque<u64> = Default::default();
        let mut peak = 0;
        for step in 0..200_000u64 {
            match next(&mut x) % 10 {
                // New flows, most of the time: ids in order, some skipped (flows without
                // stream state), and now and then an old id getting its first state late.
                0..=4 => {
                    next_id += 1 + next(&mut x) % 3;
                    let id = if next(&mut x).is_multiple_of(50) && next_id > 5000 {
                        next_id - 1 - next(&mut x) % 5000
                    } else {
                        next_id
                    };
                    if model.contains_key(&id) {
                        continue;
                    }
                    assert_eq!(*store.get_or_insert_with(id, || step), step);
                    model.insert(id, step);
                    // Every 97th id is a long-lived flow: it never ends.
                    if id % 97 != 0 {
                        live.push_back(id);
                    }
                }
                // Ends: mostly the oldest (eviction order), some at random.
                5..=8 if !live.is_empty() => {
                    let i = if next(&mut x).is_multiple_of(4) {
                        (next(&mut x) % live.len() as u64) as usize
                    } else {
                        0
                    };
                    let Some(id) = live.remove(i) else { continue };
                    let got = store.remove_with(id, |v| *v);
                    assert_eq!(got, model.remove(&id));
                    assert_eq!(store.remove_with(id, |v| *v), None, "gone");
                }
                _ => {
                    // Lookups of present, absent and never-seen ids, and a change.
                    let id = next(&mut x) % (next_id + 10);
                    assert_eq!(store.get(id), model.get(&id));
                    if let (Some(v), Some(m)) = (store.get_mut(id), model.get_mut(&id)) {
                        *v += 1;
                        *m += 1;
                    }
                }
            }
            assert_eq!(store.len(), model.len());
            peak = peak.max(model.len());
            // The bound: under 8 ring entries per flow at its peak, or the initial ring.
            assert!(store.ring_len() <= INITIAL_RING.max(8 * peak));
        }
        for (id, v) in &model {
            assert_eq!(store.get(*id), Some(v));
            assert!(store.contains(*id));
        }
        assert!(
            store.overflow.len() * 4 <= store.ring.len(),
            "the ring grew when the overflow map was a quarter of it"
        );
        assert!(
            store.ring_len() > INITIAL_RING,
            "long-lived flows made it grow"
        );
        // Slots are reused: no more than the peak number of flows.
        assert_eq!(store.slots.len(), peak);
    }

    #[test]
    fn a_new_flow_takes_the_slot_an_ended_flow_just_freed() {
        let mut store: FlowStore<u32> = FlowStore::default();
        for id in 1..=100 {
            store.get_or_insert_with(id, || id as u32);
        }
        assert_eq!(store.remove_with(40, |v| *v), Some(40));
        let before = store.slots.len();
        store.get_or_insert_with(1000, || 7);
        assert_eq!(store.slots.len(), before, "the freed slot was taken");
        assert_eq!(store.slot_of(1000), Some(39));
        assert_eq!(store.get(1000), Some(&7));
        assert_eq!(store.get(40), None);
    }

    #[test]
    fn flows_a_ring_length_apart_both_stay_found_and_the_ring_grows() {
        let mut store: FlowStore<u64> = FlowStore::default();
        let n = INITIAL_RING as u64;
        // Every id lands on the ring's first place: all but one go to the overflow map.
        for k in 0..1000u64 {
            store.get_or_insert_with(k * n, || k);
        }
        for k in 0..1000u64 {
            assert_eq!(store.get(k * n), Some(&k));
        }
        assert!(store.ring_len() > INITIAL_RING, "the ring grew");
        assert!(store.overflow.len() * 4 <= store.ring_len());
        // The one in the ring ends: the others are still found, and a newcomer at that place
        // takes the ring.
        for k in (0..1000u64).step_by(3) {
            assert_eq!(store.remove_with(k * n, |v| *v), Some(k));
        }
        for k in 0..1000u64 {
            let want = (k % 3 != 0).then_some(k);
            assert_eq!(store.get(k * n).copied(), want);
        }
        assert_eq!(store.len(), 666);
    }
}
