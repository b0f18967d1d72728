//! The packets waiting for one selective chef's next call.
//!
//! Why: a chef interested in a few protocols (DNS, ARP, DHCP) matches a handful of packets
//! in each 256-packet batch. Calling it once per batch cost ~1-2 µs per packet offered,
//! almost all of it the fixed cost of a wasm call (entering the instance, lowering the
//! list, lifting the result), measured by `nd-kitchen-bench` on the mixed corpus. So the
//! [`crate::dispatch::Dispatcher`] gathers a selective chef's packets here, across
//! batches, and calls the chef when the queue is full, before every interval poke, at the
//! end of input, around hot reloads, and, live, when the oldest queued packet has waited
//! [`MAX_QUEUE_AGE`]. A chef interested in every packet gets each batch as it is (already
//! full, no copy). In a replay, a chef that takes only packets is not called before
//! every poke but once for up to 16 of those calls (`lane/merge.rs`).
//!
//! Order is kept: a chef sees its packets in capture order and every packet before the
//! poke that follows it, so a replay's output is still reproducible byte for byte.
//! Memory: at most [`MAX_BATCH_PACKETS`] records and [`MAX_BATCH_BYTES`] of frames per
//! chef, like one batch.

use std::time::{Duration, Instant};

use crate::chef_host::WirePacket;
use crate::dispatch::InterestMatcher;
use crate::parse::batch::{Batch, MAX_BATCH_BYTES, MAX_BATCH_PACKETS};

/// Live: how long a packet may wait in a chef's queue before the chef is called anyway
/// (the same bound as a live batch's age, so a quiet chef's dumplings are not held back).
pub const MAX_QUEUE_AGE: Duration = Duration::from_millis(50);

/// One chef's waiting packets: records re-pointed into the queue's own arena.
#[derive(Default)]
pub struct ChefQueue {
    /// The records, in capture order; their spans point into `arena`.
    pub packets: Vec<WirePacket>,
    /// The frames of `packets`, back to back.
    pub arena: Vec<u8>,
    /// When the oldest queued packet arrived (live age limit).
    since: Option<Instant>,
}

impl ChefQueue {
    /// Number of queued packets.
    pub fn len(&self) -> usize {
        self.packets.len()
    }

    /// True when no packet waits.
    pub fn is_empty(&self) -> bool {
        self.packets.is_empty()
    }

    /// True when a frame of `frame_len` bytes no longer fits (the chef must be called
    /// first, so that no call exceeds one batch's size).
    pub fn cannot_take(&self, frame_len: usize) -> bool {
        !self.packets.is_empty()
            && (self.packets.len() >= MAX_BATCH_PACKETS
                || self.arena.len() + frame_len > MAX_BATCH_BYTES)
    }

    /// True when the queue holds a full batch's worth of packets.
    pub fn is_full(&self) -> bool {
        self.packets.len() >= MAX_BATCH_PACKETS
    }

    /// True when the oldest packet has waited at least `max_age` at `now`.
    pub fn older_than(&self, max_age: Duration, now: Instant) -> bool {
        self.since
            .is_some_and(|t| now.saturating_duration_since(t) >= max_age)
    }

    /// Append packet `at` of `batch`, copying its bytes into the queue's arena and
    /// re-pointing its spans; `now` is when the step that queues it started (the live age
    /// limit counts from it; passed in, not read, so a replay reads no clock per packet).
    /// Returns false (and queues nothing) when the batch's record points outside its
    /// arena, which the batch builder never produces.
    pub fn push(&mut self, batch: &Batch, at: usize, now: Instant) -> bool {
        let Some(WirePacket(p)) = batch.packets.get(at) else {
            return false;
        };
        let start = p.frame.offset as usize;
        let end = start + packet_bytes(p);
        let Some(bytes) = batch.arena.get(start..end) else {
            return false;
        };
        let base = self.arena.len() as u32;
        self.arena.extend_from_slice(bytes);
        let mut q = *p;
        q.frame.offset = base;
        // Payload and padding lie inside the frame, or (a reassembled IP datagram's payload)
        // right after it: keep their distance from its start.
        q.payload.offset = base.wrapping_add(p.payload.offset.wrapping_sub(p.frame.offset));
        q.padding.offset = base.wrapping_add(p.padding.offset.wrapping_sub(p.frame.offset));
        if self.packets.is_empty() {
            self.since = Some(now);
        }
        self.packets.push(WirePacket(q));
        true
    }

    /// Drop the first `n` packets, whose frames are the arena's first `bytes` bytes (after
    /// the chef was called with them), re-pointing the others' spans.
    pub fn remove_front(&mut self, n: usize, bytes: usize) {
        self.packets.drain(..n.min(self.packets.len()));
        self.arena.drain(..bytes.min(self.arena.len()));
        let b = bytes as u32;
        for WirePacket(p) in &mut self.packets {
            // As in `push`: every span keeps its distance from its frame's start.
            p.frame.offset = p.frame.offset.wrapping_sub(b);
            p.payload.offset = p.payload.offset.wrapping_sub(b);
            p.padding.offset = p.padding.offset.wrapping_sub(b);
        }
        if self.packets.is_empty() {
            self.since = None;
        }
    }

    /// True when a segment of the queue from packet `from` (arena byte `from_bytes`) on,
    /// taken as a queue of its own, could not take a frame of `frame_len` bytes
    /// ([`ChefQueue::cannot_take`] for the packets queued since the last call the
    /// dispatcher would have made without merging, `lane::merge`).
    pub fn segment_cannot_take(&self, from: usize, from_bytes: usize, frame_len: usize) -> bool {
        let n = self.packets.len().saturating_sub(from);
        let bytes = self.arena.len().saturating_sub(from_bytes);
        n > 0 && (n >= MAX_BATCH_PACKETS || bytes + frame_len > MAX_BATCH_BYTES)
    }

    /// Empty the queue (after the chef was called with it), keeping its capacity.
    pub fn clear(&mut self) {
        self.packets.clear();
        self.arena.clear();
        self.since = None;
    }
}

/// The arena bytes a packet's spans cover from the start of its frame: the frame, and for the
/// packet that completed a fragmented IP datagram, the reassembled payload the batch builder
/// appended right after it ([`crate::parse::defrag`]).
pub fn packet_bytes(p: &crate::chef_host::bindings::Packet) -> usize {
    let frame_end = u64::from(p.frame.offset) + u64::from(p.frame.len);
    let payload_end = u64::from(p.payload.offset) + u64::from(p.payload.len);
    (frame_end.max(payload_end) - u64::from(p.frame.offset)) as usize
}

/// Whether `matching` packets of a batch of `len` are most of it (at least
/// [`DENSE_SHARE_PCT`] %). An empty queue is then better skipped: the chef is called with
/// the records of the matching packets, their spans still pointing into the batch's
/// arena, and that whole arena, where queuing would copy nearly every frame only to be
/// called with them at the end of the offer or soon after.
///
/// Why: TopTalkersChef takes IP packets, and on the mixed corpus most of its batches hold
/// an ARP or other frame and are short (a poke every ~70 packets cuts them), so the check
/// that a whole batch matched rarely applied and its queue copied nearly every frame of
/// the replay.
/// What the chef may see beyond its packets are the bytes of the few frames it did not ask
/// for, in the arena no record of its call points at: interest is a filter that saves
/// calls, not a wall (a chef may ask for every packet).
pub fn is_dense(matching: usize, len: usize) -> bool {
    matching > 0 && matching * 100 >= len * DENSE_SHARE_PCT
}

/// The share of a batch a chef's interest must match for [`is_dense`].
pub const DENSE_SHARE_PCT: usize = 50;

/// The indexes of the packets of `batch` that `m` matches.
pub fn matching<'a>(batch: &'a Batch, m: &'a InterestMatcher) -> impl Iterator<Item = usize> + 'a {
    batch
        .classes
        .iter()
        .enumerate()
        .filter(move |(_, c)| m.matches(c))
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chef_host::bindings::{Interest, NetworkProtocol};
    use crate::parse::packet::{parse_into, NetClass};
    use capture::PacketRecord;

    fn batch_of(frames: &[&[u8]], other_at: usize) -> Batch {
        let mut batch = Batch::default();
        for (i, f) in frames.iter().enumerate() {
            let rec = PacketRecord {
                timestamp_ns: i as u64,
                link_type: 9999, // unsupported: payload = whole frame
                interface_index: 0,
                original_len: f.len() as u32,
                data: f,
            };
            let (p, mut c) = parse_into(&rec, &mut batch.arena);
            c.net = if i == other_at {
                NetClass::Other
            } else {
                NetClass::Arp
            };
            batch.packets.push(WirePacket(p));
            batch.classes.push(c);
        }
        batch
    }

    fn other_only() -> InterestMatcher {
        InterestMatcher::new(&Interest {
            link_types: vec![],
            network: vec![NetworkProtocol::Other],
            transport: vec![],
            ports: vec![],
            flow_events: false,
            stream_bytes: 0,
        })
    }

    #[test]
    fn push_repoints_spans_across_batches() {
        let m = other_only();
        let mut q = ChefQueue::default();
        let first = batch_of(&[b"aaaa", b"bbbbbb", b"cc"], 1);
        for i in matching(&first, &m).collect::<Vec<_>>() {
            assert!(q.push(&first, i, Instant::now()));
        }
        let second = batch_of(&[b"dddd", b"ee", b"ffff"], 2);
        for i in matching(&second, &m).collect::<Vec<_>>() {
            assert!(q.push(&second, i, Instant::now()));
        }
        assert_eq!(q.len(), 2);
        assert_eq!(q.arena, b"bbbbbbffff");
        let (a, b) = (q.packets[0].0, q.packets[1].0);
        assert_eq!((a.frame.offset, a.payload.offset, a.payload.len), (0, 0, 6));
        // The second frame sits after the first, although it was at offset 6 of its
        // own batch's arena: spans follow the frame, not the batch.
        assert_eq!((b.frame.offset, b.payload.offset, b.payload.len), (6, 6, 4));
        assert_eq!(b.timestamp_ns, 2);
        q.clear();
        assert!(q.is_empty() && q.arena.is_empty());
    }

    #[test]
    fn a_full_queue_takes_no_more() {
        let mut q = ChefQueue::default();
        assert!(
            !q.cannot_take(MAX_BATCH_BYTES + 1),
            "an empty queue takes any frame"
        );
        let big = vec![7u8; MAX_BATCH_BYTES / 2 + 1];
        let batch = batch_of(&[&big, &big], usize::MAX);
        assert!(q.push(&batch, 0, Instant::now()));
        assert!(
            q.cannot_take(big.len()),
            "two halves overflow one batch's bytes"
        );
        let small = batch_of(&[b"x"], usize::MAX);
        q.clear();
        for _ in 0..MAX_BATCH_PACKETS {
            assert!(!q.cannot_take(1));
            assert!(q.push(&small, 0, Instant::now()));
        }
        assert!(q.is_full() && q.cannot_take(1));
    }

    #[test]
    fn removing_the_front_repoints_the_rest() {
        let m = other_only();
        let mut q = ChefQueue::default();
        let first = batch_of(&[b"aaaa", b"bbbbbb", b"cc"], 1);
        let second = batch_of(&[b"dddd", b"ee", b"ffff"], 2);
        for b in [&first, &second] {
            for i in matching(b, &m).collect::<Vec<_>>() {
                assert!(q.push(b, i, Instant::now()));
            }
        }
        assert!(q.segment_cannot_take(1, 6, MAX_BATCH_BYTES - 3));
        assert!(!q.segment_cannot_take(1, 6, MAX_BATCH_BYTES - 4));
        assert!(
            !q.segment_cannot_take(2, 10, usize::MAX / 2),
            "an empty segment takes any frame"
        );
        q.remove_front(1, 6);
        assert_eq!(q.len(), 1);
        assert_eq!(q.arena, b"ffff");
        let p = q.packets[0].0;
        assert_eq!((p.frame.offset, p.frame.len, p.payload.offset), (0, 4, 0));
        assert_eq!(p.timestamp_ns, 2);
        q.remove_front(1, 4);
        assert!(q.is_empty() && q.arena.is_empty());
    }

    #[test]
    fn age_counts_from_the_oldest_packet() {
        let mut q = ChefQueue::default();
        let now = Instant::now();
        assert!(
            !q.older_than(Duration::ZERO, now),
            "an empty queue has no age"
        );
        let batch = batch_of(&[b"x"], 0);
        assert!(q.push(&batch, 0, Instant::now()));
        assert!(q.older_than(Duration::ZERO, Instant::now()));
        assert!(!q.older_than(Duration::from_secs(3600), Instant::now()));
    }

    #[test]
    fn a_batch_mostly_matching_skips_the_queue() {
        assert!(!is_dense(0, 0), "nothing to call with");
        assert!(!is_dense(0, 10));
        assert!(is_dense(1, 1));
        assert!(is_dense(5, 10), "half the batch");
        assert!(!is_dense(4, 10));
        assert!(is_dense(255, 256), "all but one ARP frame");
        assert!(
            !is_dense(3, MAX_BATCH_PACKETS),
            "a DNS chef's few packets are queued"
        );
    }
}
